//! Hooks: commands from `[[hooks]]` run on events. The runner reads the event ring like any
//! other consumer (from a sequence number), so nothing in a session's output path waits for
//! it. Runs go through a bounded queue to at most [`CONCURRENCY`] at once; an overflow is
//! counted and logged, never waited for. Each run is `sh -c`, with the event in its
//! environment, its output discarded (a hook that prints 100 MB costs nothing), and killed
//! after its timeout. Failures and timeouts are logged with the hook's index.

use std::sync::Arc;
use std::time::Duration;

use hearth_rpc::Event;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config_file::Hook;
use super::events::EventRing;

/// Hooks running at once.
pub const CONCURRENCY: usize = 4;
/// Runs waiting for a slot before more are dropped (and counted).
const QUEUE: usize = 256;
/// A hook's default time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `hook` wants `event`.
pub fn wants(hook: &Hook, e: &Event) -> bool {
    let kind = e.kind.name();
    let kind_ok = hook.on.is_empty() || hook.on.iter().any(|k| k == kind);
    let session_ok = hook.session.as_deref().is_none_or(|g| {
        crate::authorized_keys::glob(g.as_bytes(), e.session.as_bytes())
            || e.name
                .as_deref()
                .is_some_and(|n| crate::authorized_keys::glob(g.as_bytes(), n.as_bytes()))
    });
    // `to`: a state change to one of these states (other kinds pass; `on` picks kinds).
    let to_ok = hook.to.is_empty()
        || match &e.kind {
            hearth_rpc::EventKind::State { to, .. } => hook.to.iter().any(|s| s == to),
            _ => false,
        };
    kind_ok && session_ok && to_ok && kind != "skipped"
}

/// Run `hooks` on every event from now on, until `stop`.
pub async fn run(
    hooks: Arc<Vec<Hook>>,
    ring: Arc<EventRing>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<(usize, Event)>(QUEUE);
    // The dispatcher: one slot per running hook.
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let (dispatch_hooks, dispatch_tracker, dispatch_stop) =
        (Arc::clone(&hooks), tracker.clone(), stop.clone());
    tracker.spawn(async move {
        while let Some((i, event)) = rx.recv().await {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (hook, stop) = (dispatch_hooks[i].clone(), dispatch_stop.clone());
            dispatch_tracker.spawn(async move {
                run_one(i, &hook, &event, stop).await;
                drop(permit);
            });
        }
    });
    let mut next = ring.next_seq();
    let mut dropped: u64 = 0;
    loop {
        let (events, after) = ring.read(next, 1000, |_| true);
        next = after;
        for e in &events {
            for (i, hook) in hooks.iter().enumerate() {
                if wants(hook, e) && tx.try_send((i, e.clone())).is_err() {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        tracing::warn!(dropped, "hooks are behind; runs dropped");
                    }
                }
            }
        }
        if events.is_empty() {
            tokio::select! {
                _ = ring.wait_for(next, Duration::from_secs(3600)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

async fn run_one(index: usize, hook: &Hook, e: &Event, stop: CancellationToken) {
    let json = serde_json::to_string(e).unwrap_or_default();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&hook.run)
        .env("HEARTH_EVENT", json)
        .env("HEARTH_EVENT_KIND", e.kind.name())
        .env("HEARTH_SESSION", &e.session)
        .env("HEARTH_SESSION_NAME", e.name.as_deref().unwrap_or(""))
        // Marks the hook (and what it starts) as not the session's: `kill` spares it.
        .env("HEARTH_HOOK", index.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own process group: whatever the hook starts ends with it (below).
        .process_group(0)
        .kill_on_drop(true);
    // Registered before the orphan reaper can see it: tokio reaps it.
    let spawned = crate::session::procs::with_spawn_lock(|| match cmd.spawn() {
        Ok(c) => {
            let pid = c.id().unwrap_or_default() as libc::pid_t;
            Some(((c, pid), pid))
        }
        Err(err) => {
            tracing::warn!(hook = index, error = %err, "hook did not start");
            None
        }
    });
    let Some((mut child, pid)) = spawned else {
        return;
    };
    let limit = hook.timeout.unwrap_or(DEFAULT_TIMEOUT);
    tokio::select! {
        status = tokio::time::timeout(limit, child.wait()) => match status {
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => tracing::warn!(hook = index, kind = e.kind.name(), status = %s, "hook failed"),
            Ok(Err(err)) => tracing::warn!(hook = index, error = %err, "hook lost"),
            Err(_) => {
                kill_group(pid);
                let _ = child.kill().await;
                tracing::warn!(hook = index, kind = e.kind.name(), ?limit, "hook timed out; killed");
            }
        },
        _ = stop.cancelled() => {
            kill_group(pid);
            let _ = child.kill().await;
        }
    }
    // A hook ends with its shell: what it left running in its group (`cmd &`) ends too, so
    // runs never pile up past the limit nor outlive the daemon. (`setsid` escapes this on
    // purpose.) The daemon, as subreaper, reaps them.
    kill_group(pid);
    crate::session::procs::disown(pid);
}

/// SIGKILL to the process group `pgid` (a hook's, led by its shell).
fn kill_group(pgid: libc::pid_t) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals that group; no memory is involved.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}
