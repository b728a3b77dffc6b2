//! `hearth events [ID] [--follow] [--since SEQ]`: the daemon's events, one per line (JSON
//! objects with `--json`), read from a sequence number with bounded long polls, so a
//! follower can stop and resume exactly where it left off. `--hosts` merges several
//! daemons' streams (one connection per host, made again with back-off when it drops).

use std::io::Write as _;
use std::time::Duration;

use hearth_rpc::{Event, EventKind, HearthClient};

use super::output::Out;
use super::{Failure, call, ctx};

pub async fn events(
    client: &HearthClient,
    info: &hearth_rpc::DaemonInfo,
    local: bool,
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
    let mut client = client.clone();
    let mut epoch = info.events_epoch.clone();
    loop {
        let wait_ms = if follow { 25_000 } else { 0 };
        let mut c = ctx();
        c.deadline = std::time::Instant::now() + Duration::from_secs(60);
        let batch = match call(client.events(c, from, target.clone(), 1000, wait_ms)).await {
            Ok(batch) => batch,
            // Following this machine's daemon and it went away (a crash, a restart, an
            // upgrade): wait for the next one and go on where this left off.
            Err(_) if follow && local => {
                let (again, info) = reconnect(std::path::Path::new(&info.socket)).await;
                if info.events_epoch != epoch || info.events_epoch.is_empty() {
                    // Another numbering: all it holds is new to us.
                    from = Some(0);
                    epoch = info.events_epoch;
                }
                client = again;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut stdout = std::io::stdout().lock();
        for e in &batch.events {
            if writeln!(stdout, "{}", line(e, out, None)).is_err() {
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

/// Connect to the daemon on `socket` again, waiting (0.1 s doubling to 2 s) for one to
/// answer; says so once on stderr.
async fn reconnect(socket: &std::path::Path) -> (HearthClient, hearth_rpc::DaemonInfo) {
    let mut pause = Duration::from_millis(100);
    let mut told = false;
    loop {
        if let Ok((client, info)) = hearth_rpc::socket::connect(socket).await {
            if told {
                eprintln!(
                    "hearth: the daemon is back (pid {}); following on",
                    info.pid
                );
            }
            return (client, info);
        }
        if !told {
            eprintln!("hearth: the daemon went away; waiting for it (Ctrl-C stops)");
            told = true;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Lines one host's follower hands to the printer.
const QUEUED: usize = 1024;

/// `events --hosts a,b`: every host's events as they come, each marked with its host. A
/// host that cannot be reached is reported on stderr; when following, it is tried again
/// (1 s, doubling to 30 s) and resumes at its last sequence number. Exit status 1 if some
/// host could not be read.
pub async fn events_hosts(
    socket: &std::path::Path,
    hosts: &[String],
    out: Out,
    target: Option<String>,
    follow: bool,
) -> Result<(), Failure> {
    let config = super::remote::hosts()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(QUEUED);
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for host in hosts {
        let (tx, host, config, target) = (tx.clone(), host.clone(), config.clone(), target.clone());
        let (socket, failed) = (socket.to_path_buf(), std::sync::Arc::clone(&failed));
        tokio::spawn(async move {
            let mut from = if follow { None } else { Some(0) };
            let mut backoff = Duration::from_secs(1);
            let mut daemon: Option<String> = None;
            loop {
                let err = match super::remote::open(&host, &socket, &config, true).await {
                    Ok((client, info, _remote)) => {
                        backoff = Duration::from_secs(1);
                        // Another numbering than before (a daemon that did not continue
                        // its predecessor's ring): all it holds is new to us.
                        let this = match info.events_epoch.as_str() {
                            "" => format!("{} {}", info.pid, info.started_at),
                            epoch => epoch.to_string(),
                        };
                        if daemon.as_ref().is_some_and(|d| *d != this) {
                            from = Some(0);
                        }
                        daemon = Some(this);
                        match follow_one(&client, &host, out, &target, follow, &mut from, &tx).await
                        {
                            Ok(()) => return,
                            Err(e) => e,
                        }
                    }
                    Err(e) => e.into_api(),
                };
                if tx.is_closed() {
                    return;
                }
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                eprintln!("{host}: {}", err.message);
                if !follow {
                    return;
                }
                eprintln!("{host}: trying again in {}s", backoff.as_secs());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        });
    }
    drop(tx);
    let mut stdout = std::io::stdout();
    while let Some(line) = rx.recv().await {
        if writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            return Ok(()); // the reader went away
        }
    }
    if failed.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Failure::Exit(1));
    }
    Ok(())
}

/// One host's events into `tx` until done (not following) or the connection fails.
async fn follow_one(
    client: &HearthClient,
    host: &str,
    out: Out,
    target: &Option<String>,
    follow: bool,
    from: &mut Option<u64>,
    tx: &tokio::sync::mpsc::Sender<String>,
) -> Result<(), hearth_rpc::ApiError> {
    loop {
        let wait_ms = if follow { 25_000 } else { 0 };
        let batch = call(client.events(ctx(), *from, target.clone(), 1000, wait_ms))
            .await
            .map_err(Failure::into_api)?;
        for e in &batch.events {
            if tx.send(line(e, out, Some(host))).await.is_err() {
                return Ok(());
            }
        }
        let done = batch.events.is_empty() || *from == Some(batch.next);
        *from = Some(batch.next);
        if !follow && done {
            return Ok(());
        }
    }
}

/// An event as printed: JSON or readable, marked with its host when there are several.
fn line(e: &Event, out: Out, host: Option<&str>) -> String {
    match (out.json, host) {
        (true, None) => serde_json::to_string(e).unwrap_or_default(),
        (true, Some(h)) => {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            v["host"] = serde_json::Value::String(h.to_string());
            v.to_string()
        }
        // Names, titles, matched text and messages came from programs and clients.
        (false, None) => crate::text::safe(&human(e)).into_owned(),
        (false, Some(h)) => crate::text::safe(&format!("[{h}] {}", human(e))).into_owned(),
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
        EventKind::Notify { text } => format!("notification: {text}"),
        EventKind::Prompt => "prompt".to_string(),
        EventKind::Pruned { reason } => format!("pruned: {reason}"),
        EventKind::Restarting {
            attempt,
            exit_code,
            after_ms,
        } => format!(
            "exited with code {exit_code}: restart {attempt} in {:.1} s",
            *after_ms as f64 / 1000.0
        ),
        EventKind::Restarted {
            attempt,
            pid,
            command,
        } => format!("restart {attempt}: {} (pid {pid})", command.join(" ")),
        EventKind::Renamed { from, to } => match from {
            Some(f) => format!("renamed from {f} to {to}"),
            None => format!("named {to}"),
        },
        EventKind::Resume { step, at, reason } => match (at, reason) {
            (Some(at), _) => format!("rate-limit resume {step} for {at}"),
            (_, Some(r)) => format!("rate-limit resume {step}: {r}"),
            _ => format!("rate-limit resume {step}"),
        },
        EventKind::Command { exit_code } => match exit_code {
            Some(c) => format!("command finished ({c})"),
            None => "command finished".to_string(),
        },
        EventKind::State { from, to, text, .. } => match text {
            Some(t) => format!("{from} -> {to}: {t}"),
            None => format!("{from} -> {to}"),
        },
        EventKind::Input { client } => format!("{client} typed"),
        EventKind::Lost { reason } => format!("lost: {reason}"),
        EventKind::Skipped { count } => {
            format!("({count} events skipped: this reader fell behind)")
        }
        other => other.name().to_string(),
    };
    format!("{time} #{} {who}: {what}", e.seq)
}
