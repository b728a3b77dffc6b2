//! One writer task per client: it paints the current screen, then streams the session's
//! output from its own cursor into its own channel. `Handle::data` waits while that
//! client's SSH window is full; meanwhile the log moves on without it, and if the client
//! falls behind what the log retains it is repainted from the screen model and continues
//! live. So a slow client costs nobody else anything, and its memory is bounded by one
//! batch in flight plus russh's queue of one (smaller batches on a crowded session; the
//! batches are slices of the session's log, shared with every other client at that offset).
//!
//! It is the only writer of its channel: pause-menu frames (from the input task) and
//! banners (messages from other clients) go through it too. While the menu is open, live
//! output is held back (the cursor simply stops); on leaving, the client is repainted.
//! When the child exits, the client gets the rest of the output, then the exit status.
//!
//! Shaped as one event loop: `Event` is everything that can happen to the client,
//! `next_event` waits for the next one (work already available first, in priority order:
//! stop, kick, menu commands, bytes for this terminal, banners, then output), and `handle`
//! applies it. The reading policy (lag, skip-ahead, clipping, pacing) is the session's
//! [`Reader`]; this module only moves bytes into one channel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::mailbox::ToWriter;
use super::mailbox::{Inbox, Mail};
use crate::session::reader::{BURST, COALESCE, FRAME_INTERVAL, Next, Reader, SMALL};
use crate::session::{Attachment, Direct, Notice, size};
use crate::tripwire::Tripwire;

/// How the client's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exited(i32),
    Kicked,
    Detached,
    /// Back to the lobby (the menu's "Sessions..."); the channel stays open.
    Lobby,
    /// The connection or channel went away.
    Gone,
    /// The session is ending under the client (the daemon stops, or the session is killed
    /// before its program exits).
    Stopped,
}

pub use crate::session::screen::{LEAVE_ALTERNATE, RESTORE};

/// How long a message banner stays over the top row before the row is repainted.
pub const BANNER_TIME: Duration = Duration::from_secs(6);

/// Everything that can happen to one client's stream.
enum Event {
    Stop,
    Kicked,
    /// A menu command from the input task (`None`: the input task ended).
    Control(Option<ToWriter>),
    /// Bytes for this terminal only (a colour query it should answer).
    Direct(Bytes),
    /// A message from another client.
    Notice(Notice),
    /// Output (or a mode change, or the exit) is ready to be streamed.
    Output,
    /// Something changed upstream (output, exit, the typist's wake-up); look again.
    Poke,
    /// The program exited while this client was in its menu.
    ExitInMenu,
    /// A banner's time is up: repaint what it covers.
    BannerGone,
}

pub struct Writer {
    pub client: Arc<Attachment>,
    pub handle: Handle,
    pub channel: ChannelId,
    pub control: Inbox,
    pub stop: CancellationToken,
    pub cut: CancellationToken,
    /// The client came from the lobby: when the program exits or the client is kicked, it
    /// goes back there (the channel stays open) instead of being closed.
    pub lobby: bool,
}

/// The stream's state; owned by the loop.
struct Stream {
    /// `Writer::stop` and the client's kick, watched without locks: both are looked at on
    /// every event and every send.
    stop: Tripwire,
    kick: Tripwire,
    reader: Reader,
    notices: broadcast::Receiver<Notice>,
    /// `Session::notices_sent` when `notices` was last found empty.
    notices_seen: u64,
    direct: Arc<Direct>,
    control_open: bool,
    in_menu: bool,
    /// `Some(size)` while the client gets clipped frames.
    clip: Option<(u16, u16)>,
    /// No clipped frame before this.
    next_frame: Option<Instant>,
    /// Output is gathering for [`COALESCE`] before it is sent (a small read wakes the last
    /// typist at once).
    hold_until: Option<Instant>,
    /// When output was last sent: fresh output within [`BURST`] of it gathers.
    last_output: Option<Instant>,
    /// A banner is shown until then.
    banner_until: Option<Instant>,
    /// The session's resize count at the last repaint: a resize since repaints.
    resizes: u64,
}

impl Writer {
    /// Stream until the client leaves; how it ended.
    pub async fn run(mut self) -> End {
        let (end, on_alternate) = self.stream().await;
        // Whatever ended the stream, the client no longer counts: not for sizing, not in
        // `peers`, and its input goes nowhere.
        self.client.detach();
        tracing::debug!(?end, "client stream ended");
        if self.lobby && matches!(end, End::Exited(_) | End::Kicked | End::Lobby) {
            // The lobby takes the channel back and says what happened.
            return end;
        }
        self.goodbye(end, on_alternate).await;
        end
    }

    /// Leave the client's terminal clean ([`RESTORE`]; `on_alternate`: the menu or the
    /// program had it on the alternate screen), say why the stream ended and close the
    /// channel; cut a client that cannot take it.
    async fn goodbye(&self, end: End, on_alternate: bool) {
        let (why, status): (&str, Option<i32>) = match end {
            End::Exited(code) => ("", Some(code)),
            End::Kicked => (
                "\r\n[hearth] you were disconnected from this session\r\n",
                Some(0),
            ),
            End::Detached => ("\r\n[hearth] detached\r\n", Some(0)),
            End::Stopped => ("\r\n[hearth] the session was ended\r\n", None),
            End::Gone | End::Lobby => return,
        };
        let message = Some(format!(
            "{}{RESTORE}{why}",
            if on_alternate { LEAVE_ALTERNATE } else { "" }
        ));
        let (handle, channel) = (&self.handle, self.channel);
        // Best effort: a stalled client cannot take its goodbye, then it is cut.
        let polite = tokio::time::timeout(Duration::from_secs(2), async {
            if let Some(m) = message {
                handle
                    .data(channel, Bytes::from(m.into_bytes()))
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
            self.cut.cancel();
        } else if matches!(end, End::Kicked) {
            // A well-behaved client hangs up once its channel closes; cut one that lingers.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => self.cut.cancel(),
                _ = self.stop.cancelled() => {}
            }
        }
    }

    async fn send(&self, bytes: Bytes, stream: &Stream) -> Result<(), End> {
        let n = bytes.len();
        // The send first: when the transport takes it at once (the usual case), neither
        // token's wait is registered and dropped again, which for a crowd of a thousand
        // was a measurable share of one keystroke's fan-out; a send that has to wait still
        // ends on a kick or the stop.
        tokio::select! {
            biased;
            sent = self.handle.data(self.channel, bytes) => {
                sent.map_err(|_| End::Gone)?;
                self.client.count_out(n);
                Ok(())
            }
            _ = stream.kick.tripped() => Err(End::Kicked),
            _ = stream.stop.tripped() => Err(End::Stopped),
        }
    }

    /// Stream until the client leaves: how, and whether its terminal is left on the
    /// alternate screen (the menu's, or the program's).
    async fn stream(&mut self) -> (End, bool) {
        let (end, in_menu) = self.stream_inner().await;
        let on_alternate = in_menu || self.client.session().on_alternate_screen();
        (end, on_alternate)
    }

    async fn stream_inner(&mut self) -> (End, bool) {
        let session = Arc::clone(self.client.session());
        // Bytes for this client only (a colour query for its terminal to answer).
        let direct = Arc::clone(self.client.direct());
        let mut stream = Stream {
            stop: Tripwire::new(&self.stop),
            kick: Tripwire::new(&self.client.kick),
            reader: Reader::terminal(&session),
            // Counted before subscribing: a notice sent in between is then seen as new.
            notices_seen: session.notices_sent(),
            notices: session.notices(),
            direct,
            control_open: true,
            in_menu: false,
            clip: None,
            next_frame: None,
            hold_until: None,
            last_output: None,
            banner_until: None,
            resizes: 0,
        };
        let mut pending = Some(self.repaint(&mut stream));
        loop {
            if let Some(bytes) = pending.take()
                && let Err(end) = self.send(bytes, &stream).await
            {
                return (end, stream.in_menu);
            }
            let event = self.next_event(&mut stream).await;
            match self.handle(event, &mut stream) {
                Ok(bytes) => pending = bytes,
                Err(end) => return (end, stream.in_menu),
            }
        }
    }

    /// The next thing to do: work already available first, in priority order, so menu
    /// commands and banners are seen between batches even while output streams without
    /// pause; otherwise wait for any of it.
    async fn next_event(&mut self, stream: &mut Stream) -> Event {
        if stream.stop.is_tripped() {
            return Event::Stop;
        }
        if stream.kick.is_tripped() {
            return Event::Kicked;
        }
        if stream.control_open {
            match self.control.try_recv() {
                Mail::Command(cmd) => return Event::Control(Some(cmd)),
                Mail::Closed => return Event::Control(None),
                Mail::Empty => {}
            }
        }
        // A query for this client's terminal waits while the menu is open: its answer
        // would reach the menu as keys instead of the program.
        if !stream.in_menu
            && let Some(bytes) = stream.direct.try_recv()
        {
            return Event::Direct(bytes);
        }
        // Notices only when one was sent since the receiver was last empty (a send rings
        // this client's `wake`, below).
        let sent = stream.reader.session().notices_sent();
        if sent != stream.notices_seen {
            loop {
                match stream.notices.try_recv() {
                    Ok(n) => return Event::Notice(n),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            stream.notices_seen = sent;
        }
        let now = Instant::now();
        if !stream.in_menu && stream.banner_until.is_some_and(|t| now >= t) {
            return Event::BannerGone;
        }
        let held = stream.hold_until.is_some_and(|t| now < t);
        let paced = stream.clip.is_some() && stream.next_frame.is_some_and(|t| now < t);
        if !stream.in_menu && !held && !paced && self.output_ready(stream) {
            return Event::Output;
        }
        let exited = stream.reader.session().exit_code().is_some();
        let wake_at = [
            stream.hold_until.filter(|_| held),
            stream.next_frame.filter(|_| paced),
            stream.banner_until.filter(|_| !stream.in_menu),
        ]
        .into_iter()
        .flatten()
        .min();
        let (client, control_open, in_menu) = (
            Arc::clone(&self.client),
            stream.control_open,
            stream.in_menu,
        );
        tokio::select! {
            biased;
            _ = stream.stop.tripped() => Event::Stop,
            _ = stream.kick.tripped() => Event::Kicked,
            cmd = self.control.recv(), if control_open => Event::Control(cmd),
            bytes = stream.direct.recv(), if !in_menu => Event::Direct(bytes),
            _ = std::future::ready(()), if in_menu && exited => Event::ExitInMenu,
            _ = tokio::time::sleep_until(wake_at.unwrap_or(now)), if wake_at.is_some() => {
                stream.hold_until = None;
                Event::Poke
            }
            _ = client.wake.notified() => {
                stream.hold_until = None;
                Event::Poke
            }
            _ = stream.reader.changed(), if !held => {
                // Bulk output while more keeps coming gathers briefly, for the typist too
                // (a small read, such as its next echo, wakes it at once). Small output,
                // or output after a quiet spell, goes out at once.
                let now = Instant::now();
                let bursting = stream.last_output.is_some_and(|t| now.duration_since(t) < BURST);
                let bulk = stream.reader.pending() > SMALL;
                if bursting && bulk {
                    stream.hold_until = Some(now + COALESCE);
                }
                Event::Poke
            }
        }
    }

    /// Whether streaming has something to do: a mode change, output, or the end.
    fn output_ready(&self, stream: &Stream) -> bool {
        self.clip_size() != stream.clip
            || self.resized(stream)
            || stream.reader.has_more()
            || stream.reader.session().exit_code().is_some()
    }

    /// Apply one event; the bytes to send, if any.
    fn handle(&mut self, event: Event, stream: &mut Stream) -> Result<Option<Bytes>, End> {
        match event {
            Event::Stop => Err(End::Stopped),
            Event::Kicked => Err(End::Kicked),
            Event::Control(None) => {
                stream.control_open = false;
                Ok(None)
            }
            Event::Control(Some(cmd)) => self.command(cmd, stream),
            Event::Direct(bytes) => Ok(Some(bytes)),
            Event::Notice(n) if stream.in_menu || n.from == self.client.name => Ok(None),
            Event::Notice(n) => {
                stream.banner_until = Some(Instant::now() + BANNER_TIME);
                Ok(Some(banner(&n, self.client.size().0)))
            }
            // The banner covered the top row: the current screen puts it back.
            Event::BannerGone => {
                stream.banner_until = None;
                Ok(Some(self.repaint(stream)))
            }
            // The program ended: leave the menu and deliver the end.
            Event::ExitInMenu => self.command(ToWriter::Live, stream),
            Event::Poke => Ok(None),
            Event::Output => self.output(stream),
        }
    }

    /// The next piece of the live stream.
    fn output(&mut self, stream: &mut Stream) -> Result<Option<Bytes>, End> {
        // A client smaller than the PTY gets clipped frames instead of the raw stream
        // (which would wrap on its terminal); switching modes repaints.
        if self.clip_size() != stream.clip || self.resized(stream) {
            return Ok(Some(self.repaint(stream)));
        }
        if let Some((cols, rows)) = stream.clip {
            if stream.reader.has_more() {
                stream.next_frame = Some(Instant::now() + FRAME_INTERVAL);
                return Ok(Some(stream.reader.clipped(cols, rows, false)));
            }
            return match stream.reader.read(0) {
                Next::Exited(code) => Err(End::Exited(code)),
                _ => Ok(None),
            };
        }
        let batch = stream.reader.batch();
        match stream.reader.read(batch) {
            Next::Data(bytes) => {
                stream.last_output = Some(Instant::now());
                Ok(Some(bytes))
            }
            Next::Behind(_) => {
                tracing::debug!("client fell behind; repainting");
                Ok(Some(self.repaint(stream)))
            }
            Next::UpToDate => Ok(None),
            Next::Exited(code) => Err(End::Exited(code)),
        }
    }

    /// `Some(size)` when this client is smaller than the PTY on an axis it reports.
    fn clip_size(&self) -> Option<(u16, u16)> {
        size::clip(self.client.size(), self.client.session().pty_size())
    }

    /// Whether the PTY was resized since this client's last repaint.
    fn resized(&self, stream: &Stream) -> bool {
        self.client.session().resizes() != stream.resizes
    }

    /// A full repaint for the client's current mode.
    fn repaint(&self, stream: &mut Stream) -> Bytes {
        // Read before the screen: a resize in between repaints again, never not at all.
        stream.resizes = self.client.session().resizes();
        stream.clip = self.clip_size();
        match stream.clip {
            Some((cols, rows)) => {
                stream.next_frame = Some(Instant::now() + FRAME_INTERVAL);
                stream.reader.clipped(cols, rows, true)
            }
            None => stream.reader.repaint(),
        }
    }

    /// Apply a command from the input task; the bytes to send, if any.
    fn command(&self, cmd: ToWriter, stream: &mut Stream) -> Result<Option<Bytes>, End> {
        match cmd {
            ToWriter::Menu(frame) => {
                let mut bytes = Vec::with_capacity(frame.len() + 16);
                if !stream.in_menu {
                    stream.in_menu = true;
                    bytes.extend_from_slice(b"\x1b[?1049h\x1b[?25l");
                }
                bytes.extend_from_slice(&frame);
                Ok(Some(Bytes::from(bytes)))
            }
            // The repaint itself selects the screen the program is on.
            ToWriter::Live => {
                stream.in_menu = false;
                Ok(Some(self.repaint(stream)))
            }
            // The loop re-evaluates the client's mode on its next turn.
            ToWriter::Resized => Ok(None),
            ToWriter::Note(_) if stream.in_menu => Ok(None),
            ToWriter::Note(text) => {
                stream.banner_until = Some(Instant::now() + BANNER_TIME);
                let note = Notice {
                    from: "hearth".into(),
                    text,
                };
                Ok(Some(banner(&note, self.client.size().0)))
            }
            ToWriter::Detach => Err(End::Detached),
            ToWriter::Lobby => Err(End::Lobby),
        }
    }
}

/// A one-line banner over the top row of a `cols`-wide terminal; the cursor and attributes
/// are restored, and the next repaint (or the program's own redraw) removes it.
fn banner(n: &Notice, cols: u16) -> Bytes {
    let cols = if cols == 0 { 80 } else { cols as usize };
    let mut line: String = format!(
        " [{}] {} ",
        crate::text::safe(&n.from),
        crate::text::safe(&n.text)
    )
    .chars()
    .take(cols)
    .collect();
    let pad = cols.saturating_sub(line.chars().count());
    line.extend(std::iter::repeat_n(' ', pad));
    Bytes::from(format!("\x1b7\x1b[1;1H\x1b[0;30;43m{line}\x1b[0m\x1b8"))
}
