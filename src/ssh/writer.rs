//! One writer task per client: it paints the current screen, then streams the session's
//! output from its own cursor into its own channel. `Handle::data` waits while that
//! client's SSH window is full; meanwhile the log moves on without it, and if the client
//! falls behind what the log retains it is repainted from the screen model and continues
//! live. So a slow client costs nobody else anything, and its memory is bounded by one
//! batch in flight plus russh's own per-channel buffer.
//!
//! When the child exits, the client gets the rest of the output, then the exit status.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::ChannelId;
use russh::server::Handle;
use tokio_util::sync::CancellationToken;

use crate::session::{Attachment, Read};

/// Largest batch handed to russh at once.
const MAX_BATCH: usize = 32 * 1024;

/// How the client's stream ended.
#[derive(Debug)]
enum End {
    Exited(i32),
    Kicked,
    /// The connection or channel went away, or the daemon is stopping.
    Gone,
}

pub async fn run(
    att: Arc<Attachment>,
    handle: Handle,
    channel: ChannelId,
    stop: CancellationToken,
    cut: CancellationToken,
) {
    let end = stream(&att, &handle, channel, &stop).await;
    // Whatever ended the stream, the client no longer counts: not for sizing, not in
    // `peers`, and its input goes nowhere.
    att.detach();
    tracing::debug!(?end, "client stream ended");
    let kicked = matches!(end, End::Kicked);
    let (message, status) = match end {
        End::Exited(code) => (None, Some(code)),
        End::Kicked => (
            Some("\r\n[hearth] you were disconnected from this session\r\n"),
            Some(0),
        ),
        End::Gone => (None, None),
    };
    if status.is_none() && message.is_none() {
        return;
    }
    // Best effort: a stalled client cannot take its goodbye, then it is cut.
    let polite = tokio::time::timeout(Duration::from_secs(2), async {
        if let Some(m) = message {
            handle
                .data(channel, Bytes::from_static(m.as_bytes()))
                .await
                .ok()?;
        }
        if let Some(code) = status {
            handle
                .exit_status_request(channel, code as u32)
                .await
                .ok()?;
        }
        handle.eof(channel).await.ok()?;
        handle.close(channel).await.ok()
    })
    .await;
    if !matches!(polite, Ok(Some(()))) {
        cut.cancel();
    } else if kicked {
        // A well-behaved client hangs up once its channel closes; cut one that lingers.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => cut.cancel(),
            _ = stop.cancelled() => {}
        }
    }
}

async fn stream(
    att: &Attachment,
    handle: &Handle,
    channel: ChannelId,
    stop: &CancellationToken,
) -> End {
    let session = Arc::clone(att.session());
    let mut output = session.output_watch();
    let mut exit = session.exit_watch();
    let (paint, mut cursor) = session.snapshot();
    let mut pending = Some(Bytes::from(paint));
    loop {
        if let Some(bytes) = pending.take() {
            let n = bytes.len();
            tokio::select! {
                sent = handle.data(channel, bytes) => {
                    if sent.is_err() {
                        return End::Gone;
                    }
                    att.count_out(n);
                }
                _ = att.kick.cancelled() => return End::Kicked,
                _ = stop.cancelled() => return End::Gone,
            }
            continue;
        }
        output.borrow_and_update();
        match session.read(cursor, MAX_BATCH) {
            Read::Data(bytes, next) => {
                cursor = next;
                pending = Some(bytes);
            }
            Read::Lagged(_) => {
                let (paint, at) = session.snapshot();
                tracing::debug!(skipped = at - cursor, "client fell behind; repainting");
                cursor = at;
                pending = Some(Bytes::from(paint));
            }
            Read::UpToDate => {
                if let Some(code) = *exit.borrow_and_update() {
                    // The exit is reported only after the reader drained; one more read
                    // makes sure nothing appended in between is skipped.
                    if matches!(session.read(cursor, 1), Read::UpToDate) {
                        return End::Exited(code);
                    }
                    continue;
                }
                tokio::select! {
                    _ = output.changed() => {}
                    _ = exit.changed() => {}
                    _ = att.kick.cancelled() => return End::Kicked,
                    _ = stop.cancelled() => return End::Gone,
                }
            }
        }
    }
}
