//! Commands for scripts and supervising agents: `send` (type into a session as one unit,
//! or into each of several picked by `--all`, `--name GLOB`, `--state STATE`),
//! `wait` (for a match, idleness or the exit; the waiting runs in the daemon, this loops over
//! bounded long polls through `hearth_rpc::wait` and never misses output), and `status`.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use hearth_rpc::{ApiError, HearthClient, SendRequest, WaitFor, WaitReason};
use serde_json::json;

use super::output::{Out, activity, agent};
use super::{Failure, call, ctx};

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// The session (id, prefix or name); or pick several with --all, --name, --state
    target: Option<String>,
    /// Text to type (words are joined with spaces), followed by Enter
    text: Vec<String>,
    /// Every session (that is listed: one that cannot take input is reported, not skipped)
    #[arg(long)]
    all: bool,
    /// Sessions whose name matches this glob (`*`, `?`)
    #[arg(long = "name", value_name = "GLOB")]
    name_glob: Option<String>,
    /// Sessions whose agent is in one of these states (comma-separated: waiting_input,
    /// needs_approval...); with --name, both must hold
    #[arg(long, value_delimiter = ',', value_name = "STATE")]
    state: Vec<String>,
    /// Do not press Enter after the text
    #[arg(long)]
    no_enter: bool,
    /// Press this key after the text (repeatable, in order): enter tab esc backspace space
    /// up down left right home end pgup pgdn insert delete f1..f12 C-a..C-z C-] M-<char>
    #[arg(long = "key", value_name = "NAME")]
    keys: Vec<String>,
    /// Wrap the text in bracketed paste if the program enabled it
    #[arg(long)]
    paste: bool,
    /// Type what stdin holds instead of TEXT
    #[arg(long, conflicts_with_all = ["text", "file"])]
    stdin: bool,
    /// Type this file's contents instead of TEXT
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("until").required(true).args(["pattern", "idle", "exit", "state"])))]
pub struct WaitArgs {
    target: String,
    /// A line of output (escape sequences stripped) matching this regex
    #[arg(long = "match", value_name = "REGEX")]
    pattern: Option<String>,
    /// Match the rendered screen instead of the output stream (full-screen programs)
    #[arg(long, requires = "pattern")]
    screen: bool,
    /// Let the terminal's echo of typed or sent text match too (by default a line that
    /// only repeats input is not output)
    #[arg(long, requires = "pattern")]
    include_echo: bool,
    /// No output for this long (e.g. 2s, 500ms, 1m)
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
    idle: Option<Duration>,
    /// The program exits
    #[arg(long)]
    exit: bool,
    /// Its agent is in one of these states, as its profile reads the screen
    /// (needs_approval, waiting_input, rate_limited, error, working, exited; comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "STATE")]
    state: Vec<String>,
    /// Search output from this cursor (`send --json` prints it as `offset`); default: now
    #[arg(long, value_name = "CURSOR")]
    from: Option<u64>,
    /// Give up after this long (exit status 124); default: wait forever
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
    timeout: Option<Duration>,
}

pub async fn send(client: &HearthClient, out: Out, mut args: SendArgs) -> Result<(), Failure> {
    let many = args.all || args.name_glob.is_some() || !args.state.is_empty();
    // With a selector there is no target: the first word was text.
    let target = if many {
        if let Some(first) = args.target.take() {
            args.text.insert(0, first);
        }
        None
    } else {
        Some(args.target.take().ok_or_else(|| {
            ApiError::invalid(
                "name a session, or pick several with --all, --name GLOB or --state STATE",
            )
        })?)
    };
    let text = if args.stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read stdin")?;
        String::from_utf8(buf).map_err(|_| ApiError::invalid("stdin is not UTF-8 text"))?
    } else if let Some(f) = &args.file {
        std::fs::read_to_string(f)
            .map_err(|e| ApiError::invalid(format!("cannot read {}: {e}", f.display())))?
    } else {
        args.text.join(" ")
    };
    let req = SendRequest {
        text,
        enter: !args.no_enter,
        keys: std::mem::take(&mut args.keys),
        paste: args.paste,
    };
    let Some(target) = target else {
        return broadcast(client, out, &args, req).await;
    };
    let r = call(client.send(ctx(), target, req)).await?;
    out.value(json!({"bytes": r.bytes, "offset": r.offset}), || {
        format!("sent {} bytes (output offset {})", r.bytes, r.offset)
    });
    Ok(())
}

/// Every state named is one (a typo must not pick nothing, silently).
pub fn check_states(states: &[String]) -> Result<(), ApiError> {
    for s in states {
        if crate::session::profile::AgentState::parse(s).is_none() {
            return Err(ApiError::invalid(format!(
                "unknown state '{}' (working, waiting_input, needs_approval, rate_limited, \
                 error, exited, unknown)",
                crate::text::safe(s)
            )));
        }
    }
    Ok(())
}

/// The sessions a broadcast picks: those whose name matches `name_glob` (when given; `*`
/// and `?`) and whose agent is in one of `states` (when any).
pub fn pick(
    sessions: Vec<hearth_rpc::SessionInfo>,
    name_glob: Option<&str>,
    states: &[String],
) -> Vec<hearth_rpc::SessionInfo> {
    sessions
        .into_iter()
        .filter(|s| {
            name_glob.is_none_or(|g| {
                s.name
                    .as_deref()
                    .is_some_and(|n| crate::authorized_keys::glob(g.as_bytes(), n.as_bytes()))
            })
        })
        .filter(|s| states.is_empty() || states.contains(&s.agent_state))
        .collect()
}

/// `send --all | --name GLOB | --state STATE`: the same input to each picked session, each
/// as one unit, at once; one result per session (`{session, name, bytes, offset}` or
/// `{session, name, error}`); a session that cannot take it never stops the others; exit 1
/// when any could not.
async fn broadcast(
    client: &HearthClient,
    out: Out,
    args: &SendArgs,
    req: SendRequest,
) -> Result<(), Failure> {
    check_states(&args.state)?;
    let picked = pick(
        call(client.list(ctx())).await?,
        args.name_glob.as_deref(),
        &args.state,
    );
    if picked.is_empty() {
        return Err(ApiError::not_found("no session matches (see `hearth ps`)").into());
    }
    let sends = picked.iter().map(|s| {
        let req = req.clone();
        async move { (s, call(client.send(ctx(), s.id.clone(), req)).await) }
    });
    let results = futures::future::join_all(sends).await;
    let mut failed = 0;
    let mut rows = Vec::with_capacity(results.len());
    let mut lines = Vec::with_capacity(results.len());
    for (s, r) in results {
        let name = s.name.clone();
        match r {
            Ok(r) => {
                rows.push(
                    json!({"session": s.id, "name": name, "bytes": r.bytes, "offset": r.offset}),
                );
                lines.push(format!(
                    "{} {}: sent {} bytes (output offset {})",
                    s.id,
                    name.as_deref().unwrap_or("-"),
                    r.bytes,
                    r.offset
                ));
            }
            Err(e) => {
                failed += 1;
                let e = match e {
                    Failure::Api(e) => e,
                    Failure::Other(e) => ApiError::internal(format!("{e:#}")),
                    Failure::Exit(c) => ApiError::internal(format!("exit {c}")),
                };
                lines.push(format!(
                    "{} {}: {}",
                    s.id,
                    name.as_deref().unwrap_or("-"),
                    e.message
                ));
                rows.push(json!({"session": s.id, "name": name,
                                 "error": {"kind": e.kind, "message": e.message}}));
            }
        }
    }
    out.value(json!(rows), || {
        lines
            .iter()
            .map(|l| crate::text::safe(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    });
    if failed > 0 {
        return Err(Failure::Exit(1));
    }
    Ok(())
}

pub async fn wait(client: &HearthClient, out: Out, args: WaitArgs) -> Result<(), Failure> {
    let until = match (&args.pattern, args.idle) {
        _ if !args.state.is_empty() => WaitFor::State {
            states: args.state.clone(),
        },
        (Some(p), _) => WaitFor::Match {
            regex: p.clone(),
            screen: args.screen,
            include_echo: args.include_echo,
        },
        (None, Some(d)) => WaitFor::Idle {
            ms: d.as_millis() as u64,
        },
        (None, None) => WaitFor::Exit,
    };
    let r =
        hearth_rpc::wait::wait_for(client, &args.target, until, args.from, args.timeout).await?;
    let status = match r.reason {
        WaitReason::Match | WaitReason::Idle | WaitReason::Exit | WaitReason::State => 0,
        WaitReason::Ended => 3,
        WaitReason::Timeout => 124,
    };
    let reason = r.reason.reported();
    out.value(
        json!({"reason": reason, "match": r.matched, "line": r.line, "offset": r.offset,
               "exit_code": r.exit_code, "idle_ms": r.idle_ms, "state": r.state}),
        || match r.reason {
            WaitReason::Match => r.line.clone().unwrap_or_default(),
            WaitReason::Idle => format!("idle for {} ms", r.idle_ms.unwrap_or(0)),
            WaitReason::Exit => format!("exited with code {}", r.exit_code.unwrap_or(-1)),
            WaitReason::Ended => format!(
                "the session ended (exit code {}) before the condition",
                r.exit_code.unwrap_or(-1)
            ),
            WaitReason::Timeout => "timed out".into(),
            WaitReason::State => format!("state: {}", r.state.clone().unwrap_or_default()),
        },
    );
    if status == 0 {
        Ok(())
    } else {
        Err(Failure::Exit(status))
    }
}

pub async fn status(
    client: &HearthClient,
    out: Out,
    target: String,
    lines: usize,
) -> Result<(), Failure> {
    let s = call(client.get(ctx(), target.clone())).await?;
    let screen = call(client.screen(ctx(), target, false)).await?;
    let mut last: Vec<&str> = screen
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(lines)
        .collect();
    last.reverse();
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    v["lines"] = json!(last);
    out.value(v, || {
        let mut t = format!(
            "{} {}  {}  agent {}  {}x{}  clients {}  output {} bytes",
            s.id,
            s.name.as_deref().unwrap_or(""),
            activity(&s),
            agent(&s),
            s.cols,
            s.rows,
            s.clients,
            s.output_bytes
        );
        if let Some(title) = &s.title {
            t.push_str(&format!("\ntitle: {title}"));
        }
        if let Some(by) = &s.last_input_by {
            t.push_str(&format!("\nlast input by {by}"));
        }
        if let Some(p) = &s.restart {
            t.push_str(&format!("\nrestart {}", p.when));
            if let Some(max) = p.max_restarts {
                t.push_str(&format!(" (at most {max} in a row)"));
            }
            t.push_str(&format!(", restarts so far: {}", s.restarts));
            if let Some(r) = &s.restarting {
                t.push_str(&format!(
                    "; exited with {}, restart {} at {}",
                    r.exit_code, r.attempt, r.at
                ));
            }
        }
        if !last.is_empty() {
            t.push_str("\n\n");
            t.push_str(&last.join("\n"));
        }
        t
    });
    Ok(())
}
