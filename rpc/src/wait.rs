//! The client side of a long wait: the daemon answers each `wait` call within 30 s, so a
//! caller that waits longer loops over bounded polls, each resuming from the cursor the
//! previous one returned, and so never misses output in between. The CLI and the MCP
//! server both use this; any tool linking `hearth-rpc` can.

use std::time::{Duration, Instant};

use crate::{ApiError, ErrorKind, HearthClient, WaitFor, WaitReason, WaitReply, WaitRequest};

/// Longest single poll.
pub const POLL: Duration = Duration::from_secs(25);

impl WaitReason {
    /// The reason as `--json` and MCP report it: a session that ended before the
    /// condition is reported as `exit` (its exit status tells it apart).
    pub fn reported(self) -> &'static str {
        match self {
            WaitReason::Match => "match",
            WaitReason::Idle => "idle",
            WaitReason::Exit | WaitReason::Ended => "exit",
            WaitReason::Timeout => "timeout",
            WaitReason::State => "state",
        }
    }
}

/// Wait on `target` until `until` happens, or `timeout` passes (`None`: no limit).
pub async fn wait_for(
    client: &HearthClient,
    target: &str,
    until: WaitFor,
    mut from: Option<u64>,
    timeout: Option<Duration>,
) -> Result<WaitReply, ApiError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let poll = left.map_or(POLL, |l| l.min(POLL));
        let req = WaitRequest {
            until: until.clone(),
            from,
            timeout_ms: poll.as_millis() as u32,
        };
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + poll + Duration::from_secs(30);
        let reply = client
            .wait(ctx, target.to_string(), req)
            .await
            .map_err(|e| {
                ApiError::new(ErrorKind::Daemon, format!("the daemon did not answer: {e}"))
            })??;
        if reply.reason == WaitReason::Timeout && left.is_none_or(|l| l > poll) {
            // One poll ran out; the wait goes on from where it stopped.
            from = Some(reply.offset);
            continue;
        }
        return Ok(reply);
    }
}
