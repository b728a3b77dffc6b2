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

/// A client this far behind the output skips to the current screen instead of being sent
/// the backlog (nobody reads megabytes scrolling by; the log and recording keep them). Well
/// above a screenful or a typical burst, well below the log's capacity.
const SKIP_BEHIND: u64 = 1024 * 1024;

/// How long a client that is not the last typist lets fresh output gather before sending
/// it: a few keystrokes' echoes go out as one packet instead of one each, and the typist's
/// own echo is not slowed by N viewers' sends. Far below what a watcher can perceive.
const COALESCE: Duration = Duration::from_millis(4);

/// Least time between two clipped frames (about 30 per second).
const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// Where a client's stream stands.
struct State {
    /// Log offset of what the client has (or is about to be) shown.
    cursor: u64,
    in_menu: bool,
    /// `Some(size)` while the client gets clipped frames.
    clip: Option<(u16, u16)>,
    last_frame: Option<tokio::time::Instant>,
}

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
        let mut st = State {
            cursor: 0,
            in_menu: false,
            clip: None,
            last_frame: None,
        };
        let mut pending = Some(self.repaint(&mut st));
        let mut control_open = true;
        // Bytes for this client only (a colour query for its terminal to answer).
        let (direct_tx, mut direct) = mpsc::channel::<Bytes>(8);
        *self.att.direct.lock() = Some(direct_tx);
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
                        match self.command(cmd, &mut st) {
                            Ok(bytes) => pending = bytes,
                            Err(end) => return end,
                        }
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => control_open = false,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
            // A query for this client's terminal waits while the menu is open: its answer
            // would reach the menu as keys instead of the program.
            if !st.in_menu
                && let Ok(bytes) = direct.try_recv()
            {
                pending = Some(bytes);
                continue;
            }
            match notices.try_recv() {
                Ok(n) => {
                    if !st.in_menu && n.from != self.att.name {
                        pending = Some(self.banner(&n));
                    }
                    continue;
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => {}
            }
            if st.in_menu {
                // Live output is held back: the cursor stays; the log is bounded, and a
                // cursor it left behind is repainted on return.
                tokio::select! {
                    cmd = self.control.recv(), if control_open => {
                        match self.on_control(cmd, &mut st, &mut control_open) {
                            Ok(bytes) => pending = bytes,
                            Err(end) => return end,
                        }
                    }
                    _ = exit.wait_for(|c| c.is_some()) => {
                        // The program ended: leave the menu and deliver the end.
                        match self.command(ToWriter::Live, &mut st) {
                            Ok(bytes) => pending = bytes,
                            Err(end) => return end,
                        }
                    }
                    _ = self.att.kick.cancelled() => return End::Kicked,
                    _ = self.stop.cancelled() => return End::Gone,
                }
                continue;
            }
            output.borrow_and_update();
            // A client smaller than the PTY gets clipped frames instead of the raw stream
            // (which would wrap on its terminal); switching modes repaints.
            if self.clip_size() != st.clip {
                pending = Some(self.repaint(&mut st));
                continue;
            }
            if let Some((cols, rows)) = st.clip {
                if st.cursor < session.output_end() {
                    if let Some(t) = st.last_frame {
                        tokio::select! {
                            _ = tokio::time::sleep_until(t + FRAME_INTERVAL) => {}
                            _ = self.att.kick.cancelled() => return End::Kicked,
                            _ = self.stop.cancelled() => return End::Gone,
                        }
                    }
                    let (frame, at) = session.clipped_snapshot(cols, rows, false);
                    st.cursor = at;
                    st.last_frame = Some(tokio::time::Instant::now());
                    pending = Some(Bytes::from(frame));
                    continue;
                }
            } else if session.output_end().saturating_sub(st.cursor) > SKIP_BEHIND {
                tracing::debug!("client far behind; skipping to the current screen");
                pending = Some(self.repaint(&mut st));
                continue;
            } else {
                match session.read(st.cursor, MAX_BATCH) {
                    Read::Data(bytes, next) => {
                        st.cursor = next;
                        pending = Some(bytes);
                        continue;
                    }
                    Read::Lagged(_) => {
                        tracing::debug!("client fell behind; repainting");
                        pending = Some(self.repaint(&mut st));
                        continue;
                    }
                    Read::UpToDate => {}
                }
            }
            // Up to date.
            if let Some(code) = *exit.borrow_and_update() {
                // The exit is reported only after the reader drained; make sure nothing
                // appended in between is skipped.
                if st.cursor >= session.output_end() {
                    return End::Exited(code);
                }
                continue;
            }
            tokio::select! {
                _ = output.changed() => {
                    if !self.att.is_last_typist() {
                        tokio::select! {
                            _ = tokio::time::sleep(COALESCE) => {}
                            _ = self.att.wake.notified() => {}
                            _ = self.att.kick.cancelled() => return End::Kicked,
                            _ = self.stop.cancelled() => return End::Gone,
                        }
                    }
                }
                _ = self.att.wake.notified() => {}
                _ = exit.changed() => {}
                cmd = self.control.recv(), if control_open => {
                    match self.on_control(cmd, &mut st, &mut control_open) {
                        Ok(bytes) => pending = bytes,
                        Err(end) => return end,
                    }
                }
                n = notices.recv() => {
                    if let Ok(n) = n && n.from != self.att.name {
                        pending = Some(self.banner(&n));
                    }
                }
                bytes = direct.recv() => pending = bytes,
                _ = self.att.kick.cancelled() => return End::Kicked,
                _ = self.stop.cancelled() => return End::Gone,
            }
        }
    }

    /// `Some(size)` when this client is smaller than the PTY on an axis it reports.
    fn clip_size(&self) -> Option<(u16, u16)> {
        let (cols, rows) = self.att.size();
        let (pcols, prows) = self.att.session().pty_size();
        let smaller = (cols > 0 && cols < pcols) || (rows > 0 && rows < prows);
        smaller.then(|| {
            (
                if cols == 0 { pcols } else { cols.min(pcols) },
                if rows == 0 { prows } else { rows.min(prows) },
            )
        })
    }

    /// A full repaint for the client's current mode; resets the cursor to the log's end.
    fn repaint(&self, st: &mut State) -> Bytes {
        let session = self.att.session();
        st.clip = self.clip_size();
        let (bytes, at) = match st.clip {
            Some((cols, rows)) => {
                st.last_frame = Some(tokio::time::Instant::now());
                session.clipped_snapshot(cols, rows, true)
            }
            None => session.snapshot(),
        };
        st.cursor = at;
        Bytes::from(bytes)
    }

    /// A message (or the end) of the input task's channel; the bytes to send, if any.
    fn on_control(
        &self,
        cmd: Option<ToWriter>,
        st: &mut State,
        open: &mut bool,
    ) -> Result<Option<Bytes>, End> {
        match cmd {
            Some(cmd) => self.command(cmd, st),
            None => {
                *open = false;
                Ok(None)
            }
        }
    }

    /// Apply a command from the input task; the bytes to send, if any.
    fn command(&self, cmd: ToWriter, st: &mut State) -> Result<Option<Bytes>, End> {
        match cmd {
            ToWriter::Menu(frame) => {
                let mut bytes = Vec::with_capacity(frame.len() + 16);
                if !st.in_menu {
                    st.in_menu = true;
                    bytes.extend_from_slice(b"\x1b[?1049h\x1b[?25l");
                }
                bytes.extend_from_slice(&frame);
                Ok(Some(Bytes::from(bytes)))
            }
            // The repaint itself selects the screen the program is on.
            ToWriter::Live => {
                st.in_menu = false;
                Ok(Some(self.repaint(st)))
            }
            // The loop re-evaluates the client's mode on its next turn.
            ToWriter::Resized => Ok(None),
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
