//! `hearth events [ID] [--follow] [--since SEQ]`: the daemon's events, one per line (JSON
//! objects with `--json`), read from a sequence number with bounded long polls, so a
//! follower can stop and resume exactly where it left off.

use std::io::Write as _;
use std::time::Duration;

use hearth_rpc::{Event, EventKind, HearthClient};

use super::output::Out;
use super::{Failure, call, ctx};

pub async fn events(
    client: &HearthClient,
    out: Out,
    target: Option<String>,
    follow: bool,
    since: Option<u64>,
) -> Result<(), Failure> {
    // Without --since: everything the ring holds, or (following) only what comes next.
    let mut from = match (since, follow) {
        (Some(s), _) => Some(s),
        (None, false) => Some(0),
        (None, true) => None,
    };
    loop {
        let wait_ms = if follow { 25_000 } else { 0 };
        let mut c = ctx();
        c.deadline = std::time::Instant::now() + Duration::from_secs(60);
        let batch = call(client.events(c, from, target.clone(), 1000, wait_ms)).await?;
        let mut stdout = std::io::stdout().lock();
        for e in &batch.events {
            let line = if out.json {
                serde_json::to_string(e).unwrap_or_default()
            } else {
                human(e)
            };
            if writeln!(stdout, "{line}").is_err() {
                return Ok(()); // the reader went away
            }
        }
        let _ = stdout.flush();
        let done = batch.events.is_empty() || from == Some(batch.next);
        from = Some(batch.next);
        if !follow && done {
            return Ok(());
        }
    }
}

/// One readable line per event.
fn human(e: &Event) -> String {
    let who = e.name.clone().unwrap_or_else(|| e.session.clone());
    let time = e.time.get(11..19).unwrap_or(&e.time);
    let what = match &e.kind {
        EventKind::Exited { exit_code } => format!("exited with code {exit_code}"),
        EventKind::Locked { by } => format!("locked by {by}"),
        EventKind::Unlocked { by } => format!("unlocked by {by}"),
        EventKind::Joined { client, role, addr } => {
            format!("{client} joined as {role} from {addr}")
        }
        EventKind::Left { client } => format!("{client} left"),
        EventKind::Kicked { client, by } => format!("{client} kicked by {by}"),
        EventKind::Role { client, role, by } => format!("{client} is now {role} (by {by})"),
        EventKind::Idle { idle_ms } => format!("idle ({} s)", idle_ms / 1000),
        EventKind::Title { title } => format!("title: {title}"),
        EventKind::Match { trigger, text } => format!("trigger {trigger} matched: {text}"),
        EventKind::Message { by } => format!("message from {by}"),
        EventKind::RecordingError { error } => format!("recording error: {error}"),
        EventKind::Input { client } => format!("{client} typed"),
        EventKind::Skipped { count } => {
            format!("({count} events skipped: this reader fell behind)")
        }
        other => other.name().to_string(),
    };
    format!("{time} #{} {who}: {what}", e.seq)
}
