//! `hearth grep`: search what every session printed (running and ended), as plain text,
//! newest sessions first; hits print as the daemon finds them. Exit 0 with hits, 1 without,
//! 2 on an error (like grep). Talks to the daemon only through hearth-rpc (`search`, a
//! call per batch with a cursor).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_rpc::{ApiError, HearthClient, SearchHit, SearchRequest, SearchScope};

use super::output::{Failure, Out};
use super::{call, ctx};

#[derive(Debug, clap::Args)]
pub struct GrepArgs {
    /// A regex (Rust syntax: `error\[E\d+\]`, `(?i)panic`); ^ and $ match at line ends
    pattern: String,
    /// Only these sessions (ids, id prefixes or names; running or ended)
    #[arg(value_name = "ID")]
    sessions: Vec<String>,
    /// Only lines printed within this long (e.g. 2h, 1d)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
    since: Option<Duration>,
    /// Only lines printed before TIME (RFC 3339, `2026-12-02 15:00:00` in UTC, or a
    /// duration ago: 30m)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only sessions that have ended
    #[arg(long, conflicts_with_all = ["live", "all"])]
    ended: bool,
    /// Only running sessions
    #[arg(long, conflicts_with = "all")]
    live: bool,
    /// Running and ended sessions (the default)
    #[arg(long)]
    all: bool,
    /// Case-insensitive
    #[arg(long, short = 'i')]
    ignore_case: bool,
    /// Lines of context before and after each hit (at most 20)
    #[arg(long, short = 'C', value_name = "N", default_value_t = 0)]
    context: u32,
    /// Stop after N hits
    #[arg(long, short = 'm', value_name = "N")]
    max: Option<u64>,
}

/// A time given as RFC 3339 (or `YYYY-MM-DD HH:MM:SS`, UTC) or as a duration ago, in
/// seconds since the Unix epoch.
fn when(s: &str) -> Result<u64, Failure> {
    let t = humantime::parse_rfc3339_weak(s)
        .ok()
        .or_else(|| {
            humantime::parse_duration(s)
                .ok()
                .and_then(|d| SystemTime::now().checked_sub(d))
        })
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "--until {s:?}: give a time (2026-12-02T15:00:00Z) or a duration ago (30m)"
            ))
        })?;
    Ok(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

pub async fn grep(client: &HearthClient, out: Out, args: GrepArgs) -> Result<(), Failure> {
    // grep's statuses: an error is 2, so `if hearth grep` tells "none" from "failed".
    match run(client, out, args).await {
        Err(e @ (Failure::Api(_) | Failure::Other(_))) => {
            e.report(out.json);
            Err(Failure::Exit(2))
        }
        other => other,
    }
}

async fn run(client: &HearthClient, out: Out, args: GrepArgs) -> Result<(), Failure> {
    let since_unix = args.since.map(|d| {
        SystemTime::now()
            .checked_sub(d)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    });
    let req = SearchRequest {
        pattern: args.pattern,
        ignore_case: args.ignore_case,
        sessions: args.sessions,
        scope: if args.ended {
            SearchScope::Ended
        } else if args.live {
            SearchScope::Live
        } else {
            SearchScope::All
        },
        since_unix,
        until_unix: args.until.as_deref().map(when).transpose()?,
        context: args.context,
        max: args.max,
    };
    let mut cursor = None;
    let mut found = 0u64;
    let mut first: Option<(String, f64)> = None;
    loop {
        let batch = call(client.search(ctx(), req.clone(), cursor)).await?;
        for w in &batch.warnings {
            eprintln!("hearth: warning: {}", crate::text::safe_lines(w));
        }
        for hit in &batch.hits {
            if out.json {
                super::output::line(&serde_json::to_string(hit).unwrap_or_default());
            } else {
                super::output::line(&human(hit, req.context > 0));
            }
            first.get_or_insert_with(|| (hit.session.clone(), hit.offset_secs));
            found += 1;
        }
        match batch.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    match first {
        None => Err(Failure::Exit(1)),
        Some((id, at)) => {
            if !out.json {
                eprintln!(
                    "({found} found; replay one from its time: hearth replay {id} --from {at}s)"
                );
            }
            Ok(())
        }
    }
}

/// One hit for a human: who, when (and how far into the recording), the line; with
/// context, the lines around it under a header.
fn human(h: &SearchHit, with_context: bool) -> String {
    use crate::text::safe;
    let who = h.name.as_deref().unwrap_or(&h.session);
    let at = format!(
        "{}  {}  +{}s",
        safe(who),
        h.time.get(..19).unwrap_or(&h.time).replace('T', " "),
        h.offset_secs
    );
    let again = match h.repeats {
        0 => String::new(),
        n => format!("  (and {n} more time(s) within a minute)"),
    };
    if !with_context {
        return format!("{at}  {}{again}", safe(&h.line));
    }
    let mut text = format!("--\n{at}{again}");
    for l in &h.before {
        text.push_str(&format!("\n  | {}", safe(l)));
    }
    text.push_str(&format!("\n  > {}", safe(&h.line)));
    for l in &h.after {
        text.push_str(&format!("\n  | {}", safe(l)));
    }
    text
}
