//! One writer task per client: it paints the current screen, then streams the session's
//! output from its own cursor into its own channel. `Handle::data` waits while that
//! client's SSH window is full; meanwhile the log moves on without it, and if the client
//! falls behind what the log retains it is repainted from the screen model and continues
//! live. So a slow client costs nobody else anything, and its memory is bounded by one
//! batch in flight plus russh's own per-channel buffer.
//!
//! It is the only writer of its channel: pause-menu frames (from the input task) and
//! banners (messages from other clients) go through it too. While the menu is open, live
//! output is held back (the cursor simply stops); on leaving, the client is repainted.
//! When the child exits, the client gets the rest of the output, then the exit status.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::input::ToWriter;
use crate::session::{Attachment, Notice, Read};

/// Largest batch handed to russh at once.
const MAX_BATCH: usize = 32 * 1024;

/// How the client's stream ended.
#[derive(Debug)]
enum End {
    Exited(i32),
    Kicked,
    Detached,
    /// The connection or channel went away, or the daemon is stopping.
    Gone,
}

pub struct Writer {
    pub att: Arc<Attachment>,
    pub handle: Handle,
    pub channel: ChannelId,
    pub control: mpsc::Receiver<ToWriter>,
    pub stop: CancellationToken,
    pub cut: CancellationToken,
}

impl Writer {
    pub async fn run(mut self) {
        let end = self.stream().await;
        // Whatever ended the stream, the client no longer counts: not for sizing, not in
        // `peers`, and its input goes nowhere.
        self.att.detach();
        tracing::debug!(?end, "client stream ended");
        let (message, status): (Option<&str>, Option<i32>) = match end {
            End::Exited(code) => (None, Some(code)),
            End::Kicked => (
                Some("\r\n[hearth] you were disconnected from this session\r\n"),
                Some(0),
            ),
            End::Detached => (Some("[hearth] detached\r\n"), Some(0)),
            End::Gone => return,
        };
        let leave = if matches!(end, End::Detached) {
            // Back from the menu's alternate screen to the normal one.
            "\x1b[?1049l\x1b[0m\r\n"
        } else {
            ""
        };
        let (handle, channel) = (&self.handle, self.channel);
        // Best effort: a stalled client cannot take its goodbye, then it is cut.
        let polite = tokio::time::timeout(Duration::from_secs(2), async {
            if let Some(m) = message {
                let text = format!("{leave}{m}");
                handle.data(channel, Bytes::from(text)).await.ok()?;
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
            self.cut.cancel();
        } else if matches!(end, End::Kicked) {
            // A well-behaved client hangs up once its channel closes; cut one that lingers.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => self.cut.cancel(),
                _ = self.stop.cancelled() => {}
            }
        }
    }

    async fn send(&self, bytes: Bytes) -> Result<(), End> {
        let n = bytes.len();
        tokio::select! {
            sent = self.handle.data(self.channel, bytes) => {
                sent.map_err(|_| End::Gone)?;
                self.att.count_out(n);
                Ok(())
            }
            _ = self.att.kick.cancelled() => Err(End::Kicked),
            _ = self.stop.cancelled() => Err(End::Gone),
        }
    }

    async fn stream(&mut self) -> End {
        let session = Arc::clone(self.att.session());
        let mut output = session.output_watch();
        let mut exit = session.exit_watch();
        let mut notices = session.notices();
        let (paint, mut cursor) = session.snapshot();
        let mut pending = Some(Bytes::from(paint));
        let mut in_menu = false;
        let mut control_open = true;
        loop {
            if let Some(bytes) = pending.take()
                && let Err(end) = self.send(bytes).await
            {
                return end;
            }
            // Menu commands and banners are looked at between batches, even while output
            // streams without pause.
            if control_open {
                match self.control.try_recv() {
                    Ok(cmd) => {
                        match self.command(cmd, &mut in_menu, &mut cursor) {
                            Ok(bytes) => pending = Some(bytes),
                            Err(end) => return end,
                        }
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => control_open = false,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
            match notices.try_recv() {
                Ok(n) => {
                    if !in_menu && n.from != self.att.name {
                        pending = Some(self.banner(&n));
                    }
                    continue;
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => {}
            }
            if in_menu {
                // Live output is held back: the cursor stays; the log is bounded, and a
                // cursor it left behind is repainted on return.
                tokio::select! {
                    cmd = self.control.recv(), if control_open => match cmd {
                        Some(cmd) => match self.command(cmd, &mut in_menu, &mut cursor) {
                            Ok(bytes) => pending = Some(bytes),
                            Err(end) => return end,
                        },
                        None => control_open = false,
                    },
                    _ = exit.wait_for(|c| c.is_some()) => {
                        // The program ended: leave the menu and deliver the end.
                        match self.command(ToWriter::Live, &mut in_menu, &mut cursor) {
                            Ok(bytes) => pending = Some(bytes),
                            Err(end) => return end,
                        }
                    }
                    _ = self.att.kick.cancelled() => return End::Kicked,
                    _ = self.stop.cancelled() => return End::Gone,
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
                        cmd = self.control.recv(), if control_open => match cmd {
                            Some(cmd) => match self.command(cmd, &mut in_menu, &mut cursor) {
                                Ok(bytes) => pending = Some(bytes),
                                Err(end) => return end,
                            },
                            None => control_open = false,
                        },
                        n = notices.recv() => {
                            if let Ok(n) = n && n.from != self.att.name {
                                pending = Some(self.banner(&n));
                            }
                        }
                        _ = self.att.kick.cancelled() => return End::Kicked,
                        _ = self.stop.cancelled() => return End::Gone,
                    }
                }
            }
        }
    }

    /// Apply a menu command; the bytes to send.
    fn command(&self, cmd: ToWriter, in_menu: &mut bool, cursor: &mut u64) -> Result<Bytes, End> {
        match cmd {
            ToWriter::Menu(frame) => {
                let mut bytes = Vec::with_capacity(frame.len() + 16);
                if !*in_menu {
                    *in_menu = true;
                    bytes.extend_from_slice(b"\x1b[?1049h\x1b[?25l");
                }
                bytes.extend_from_slice(&frame);
                Ok(Bytes::from(bytes))
            }
            ToWriter::Live => {
                *in_menu = false;
                let (paint, at) = self.att.session().snapshot();
                *cursor = at;
                // The repaint itself selects the screen the program is on.
                Ok(Bytes::from(paint))
            }
            ToWriter::Detach => Err(End::Detached),
        }
    }

    /// A one-line banner over the top row; the cursor and attributes are restored, and the
    /// next repaint (or the program's own redraw) removes it.
    fn banner(&self, n: &Notice) -> Bytes {
        let cols = match self.att.size().0 {
            0 => 80,
            c => c as usize,
        };
        let clean: String = n.text.chars().filter(|c| !c.is_control()).collect();
        let mut line: String = format!(" [{}] {} ", n.from, clean)
            .chars()
            .take(cols)
            .collect();
        let pad = cols.saturating_sub(line.chars().count());
        line.extend(std::iter::repeat_n(' ', pad));
        Bytes::from(format!("\x1b7\x1b[1;1H\x1b[0;30;43m{line}\x1b[0m\x1b8"))
    }
}
