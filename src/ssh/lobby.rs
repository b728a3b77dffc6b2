//! The lobby: the dashboard over SSH. One task per lobby client owns its channel while it
//! is in the lobby: it draws [`crate::dashboard`] with ratatui into bytes at the client's
//! size (only what changed, after the first frame), turns the client's bytes into keys
//! with the menu's decoder, and follows the daemon through an in-process control API client
//! ([`crate::dashboard::live::Live`], the same feed `hearth top` uses). Enter joins the
//! selected session **on the same connection**: the task hands the channel to a normal
//! session client ([`super::seat::join`]) and forwards the client's input to it until
//! its stream ends; the session's `!>` menu then offers "Sessions..." to come back, and a
//! program that exits or a kick also brings the client back here.
//!
//! Access: the lobby admits owner keys only (its `Access` has no other list). Joining a
//! session checks the same key against that session's own access again, so the lobby
//! never grants more than the session's port would. Memory per client is bounded: frames
//! wait in at most [`MAX_PENDING`] bytes (beyond that the next frame is a full repaint) and
//! the terminal size is clamped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::LobbyServer;
use super::input::FromClient;
use super::keys::KeyData;
use super::seat::{Identity, Seat, join, role_of};
use super::writer::End;
use crate::dashboard::live::{Live, Source};
use crate::dashboard::{Action, Dashboard};
use crate::menu::parse_keys;
use crate::menu::view::Sink;

/// Frame bytes waiting for a client that does not read; beyond this they are dropped and
/// the next frame repaints everything.
pub const MAX_PENDING: usize = 256 * 1024;

/// The largest terminal the lobby draws (a client may claim any size).
const MAX_COLS: u16 = 1000;
const MAX_ROWS: u16 = 500;

/// Terminal modes a program may have left on, back to their defaults: mouse reports,
/// bracketed paste, application cursor keys and keypad, attributes, scroll region.
const RESET_MODES: &[u8] =
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\x1b[?2004l\x1b[?1l\x1b>\x1b[0m\x1b[r";
/// Into the lobby: its own alternate screen, no cursor, cleared.
const ENTER: &[u8] = b"\x1b[?1049h\x1b[?25l\x1b[0m\x1b[H\x1b[2J";
/// Out of the lobby for good: the normal screen and the cursor back, on a line of its own
/// (leaving the alternate screen puts the cursor back where it was, often mid-line).
const LEAVE: &[u8] = b"\x1b[0m\x1b[?1049l\x1b[?25h\r\n";

/// One lobby client.
pub struct Client {
    pub lobby: Arc<LobbyServer>,
    pub who: Identity,
    /// The key it authenticated with: each session it joins checks it again.
    pub key: KeyData,
    pub handle: Handle,
    pub channel: ChannelId,
    pub seat: Arc<Mutex<Seat>>,
    /// The connection's stop (the channel closed, the daemon stops).
    pub stop: CancellationToken,
    pub cut: CancellationToken,
    pub span: tracing::Span,
}

/// What the client chose in the dashboard.
enum Choice {
    Join(String),
    Quit,
    Gone,
}

/// How a visit to a session ended.
pub enum Visit {
    /// Back in the lobby, with this to say.
    Back(String),
    /// The client left (detached) or went away.
    Closed,
}

/// Serve one lobby client until it quits or goes away; `first` names a session to join at
/// once (`ssh -t -p LOBBY host NAME`).
pub async fn run(mut client: Client, mut rx: mpsc::Receiver<FromClient>, first: Option<String>) {
    let dash = Dashboard {
        title: "hearth lobby",
        ..Dashboard::new(client.lobby.host.clone(), false)
    };
    let live = tokio::select! {
        live = Live::start(
            vec![Source::new("lobby", client.lobby.sessions.api())],
            dash,
            &client.lobby.tracker,
        ) => live,
        _ = client.stop.cancelled() => return,
    };
    let mut live = match live {
        Ok(live) => live,
        Err(e) => {
            client
                .close(
                    Some(&format!(
                        "hearth: the lobby cannot start: {}\r\n",
                        e.message
                    )),
                    1,
                )
                .await;
            return;
        }
    };
    let mut next = first;
    loop {
        if let Some(target) = next.take() {
            match client.visit(&target, &mut rx).await {
                Visit::Back(status) => live.dash.status = Some(status),
                Visit::Closed => return,
            }
            live.refresh().await;
        }
        match client.dashboard(&mut live, &mut rx).await {
            Choice::Join(id) => next = Some(id),
            Choice::Quit => {
                client.close(None, 0).await;
                return;
            }
            Choice::Gone => return,
        }
    }
}

/// A send in flight.
type Sending = Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;

/// Frame bytes on their way to the client: at most one send in flight, the rest waiting
/// (bounded). A send in flight lives here, so it survives the loop's other branches.
struct Out {
    handle: Handle,
    channel: ChannelId,
    pending: Vec<u8>,
    sending: Option<Sending>,
    /// Bytes were dropped: the next frame must repaint everything.
    overflowed: bool,
}

impl Out {
    fn push(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > MAX_PENDING {
            self.pending.clear();
            self.pending.extend_from_slice(ENTER);
            self.overflowed = true;
            return;
        }
        self.pending.extend_from_slice(bytes);
    }

    fn busy(&self) -> bool {
        self.sending.is_some() || !self.pending.is_empty()
    }

    /// Start a send if none is in flight, and wait for the one in flight.
    async fn step(&mut self) -> Result<(), ()> {
        if self.sending.is_none() && !self.pending.is_empty() {
            let bytes = Bytes::from(std::mem::take(&mut self.pending));
            let (handle, channel) = (self.handle.clone(), self.channel);
            self.sending = Some(Box::pin(async move {
                handle.data(channel, bytes).await.map_err(|_| ())
            }));
        }
        if let Some(send) = self.sending.as_mut() {
            let r = send.await;
            self.sending = None;
            r?;
        }
        Ok(())
    }

    /// Send everything now (bounded in time: a client that does not read is cut).
    async fn flush(&mut self) -> Result<(), ()> {
        while self.busy() {
            self.step().await?;
        }
        Ok(())
    }
}

type Term = Terminal<CrosstermBackend<Sink>>;

impl Client {
    /// The client's size, clamped (0 means unknown: 80x24).
    fn size(&self) -> (u16, u16) {
        let (cols, rows) = self.seat.lock().size.unwrap_or((80, 24));
        let clamp = |v: u32, default: u16, max: u16| {
            if v == 0 {
                default
            } else {
                v.min(max as u32) as u16
            }
        };
        (clamp(cols, 80, MAX_COLS), clamp(rows, 24, MAX_ROWS))
    }

    /// A terminal at the client's size; its first frame draws every cell (the screen was
    /// cleared, and ratatui's blank buffer matches it).
    fn terminal(&self, sink: &Sink) -> Option<Term> {
        let (cols, rows) = self.size();
        Terminal::with_options(
            CrosstermBackend::new(sink.clone()),
            TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, cols, rows)),
            },
        )
        .ok()
    }

    /// The dashboard, until the client picks a session, quits or goes away.
    async fn dashboard(&mut self, live: &mut Live, rx: &mut mpsc::Receiver<FromClient>) -> Choice {
        let mut out = Out {
            handle: self.handle.clone(),
            channel: self.channel,
            pending: Vec::new(),
            sending: None,
            overflowed: false,
        };
        out.push(RESET_MODES);
        out.push(ENTER);
        let sink = Sink::default();
        let Some(mut term) = self.terminal(&sink) else {
            return Choice::Gone;
        };
        let mut dirty = true;
        loop {
            if dirty {
                if std::mem::take(&mut out.overflowed) {
                    let Some(t) = self.terminal(&sink) else {
                        return Choice::Gone;
                    };
                    term = t;
                }
                if term
                    .draw(|f| crate::dashboard::view::draw(f, &live.dash))
                    .is_err()
                {
                    return Choice::Gone;
                }
                out.push(&sink.take());
                // A frame dropped for a client that does not read: repaint all next time.
                dirty = out.overflowed;
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Choice::Gone,
                sent = out.step(), if out.busy() => if sent.is_err() {
                    return Choice::Gone;
                },
                msg = rx.recv() => {
                    dirty = true;
                    match msg {
                        None => return Choice::Gone,
                        Some(FromClient::Resized) => {
                            sink.take();
                            out.push(b"\x1b[0m\x1b[H\x1b[2J");
                            let Some(t) = self.terminal(&sink) else {
                                return Choice::Gone;
                            };
                            term = t;
                        }
                        Some(FromClient::Data(bytes)) => {
                            if let Some(choice) = self.dashboard_keys(live, &mut out, &bytes, rx).await {
                                return choice;
                            }
                        }
                    }
                }
                update = live.recv() => match update {
                    Some(update) => {
                        // Keys come from the channel; updates never ask for an action.
                        let _ = live.apply(update).await;
                        dirty = true;
                    }
                    None => return Choice::Gone,
                },
            }
        }
    }

    /// The keys of one packet on the dashboard; a choice that leaves it, if one was made.
    async fn dashboard_keys(
        &mut self,
        live: &mut Live,
        out: &mut Out,
        bytes: &[u8],
        rx: &mut mpsc::Receiver<FromClient>,
    ) -> Option<Choice> {
        for key in parse_keys(bytes) {
            match live.key(key) {
                None => {}
                Some(Action::Quit) => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), out.flush()).await;
                    return Some(Choice::Quit);
                }
                Some(Action::Attach(s)) => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), out.flush()).await;
                    return Some(Choice::Join(s.id));
                }
                Some(Action::Replay { id, find }) => {
                    let Ok(()) = self.replay_here(live, out, &id, find, rx).await else {
                        return Some(Choice::Gone);
                    };
                }
                Some(action) => live.act(action).await,
            }
        }
        None
    }

    /// Replay session `id`'s recording on this channel (from the last line holding `find`,
    /// if given), then say how it went on the dashboard's status line and have the
    /// dashboard repainted whole. Err: the client is gone.
    async fn replay_here(
        &mut self,
        live: &mut Live,
        out: &mut Out,
        id: &str,
        find: Option<String>,
        rx: &mut mpsc::Receiver<FromClient>,
    ) -> Result<(), ()> {
        if tokio::time::timeout(Duration::from_secs(2), out.flush())
            .await
            .is_err()
        {
            return Err(());
        }
        let from = match &find {
            None => 0.0,
            Some(text) => match live.last_hit(id, text).await {
                Ok(Some(t)) => t,
                Ok(None) => {
                    live.dash.status = Some(format!("{text:?} is not in {id}'s recording"));
                    return Ok(());
                }
                Err(e) => {
                    live.dash.status = Some(e.message);
                    return Ok(());
                }
            },
        };
        live.dash.status = Some(self.replay(live, id, from, rx).await?);
        out.push(RESET_MODES);
        out.push(ENTER);
        out.overflowed = true;
        Ok(())
    }

    /// Join the session `target` names on this channel; come back when its stream ends.
    async fn visit(&mut self, target: &str, rx: &mut mpsc::Receiver<FromClient>) -> Visit {
        let shared = match self.lobby.sessions.joinable(target) {
            Ok(super::Joinable::Here(s)) => s,
            Ok(super::Joinable::Elsewhere { addr, name, id }) => {
                let Some(delegate) = self.lobby.delegate.clone() else {
                    return Visit::Back(format!("{name} cannot be joined from the lobby"));
                };
                if !self.leave_the_lobby_screen().await {
                    return Visit::Closed;
                }
                tracing::info!(parent: &self.span, session = %id, "joining a session in its own process");
                return super::proxy::visit(self, delegate, addr, &name, rx).await;
            }
            Err(why) => return Visit::Back(why),
        };
        let name = shared
            .session
            .name()
            .unwrap_or_else(|| shared.session.id.clone());
        // The session's own access decides, as on its own port.
        let role = match role_of(&shared.access, &self.key, self.who.peer.ip()).await {
            Ok(role) => role,
            Err(why) => return Visit::Back(format!("{name}: your key is refused there ({why})")),
        };
        let who = Identity {
            role,
            ..self.who.clone()
        };
        if !self.leave_the_lobby_screen().await {
            return Visit::Closed;
        }
        let stop = self.stop.child_token();
        let joined = join(
            &shared,
            &self.seat,
            &who,
            self.handle.clone(),
            self.channel,
            stop.clone(),
            self.cut.clone(),
            true,
            &self.span,
        );
        let mut joined = match joined {
            Ok(j) => j,
            Err(e) => return Visit::Back(format!("cannot join {name}: {e}")),
        };
        tracing::info!(parent: &self.span, session = %shared.session.id, client = %joined.attachment.name, role = role.as_str(), "joined from the lobby");
        let end = loop {
            tokio::select! {
                end = &mut joined.writer => break end.unwrap_or(End::Gone),
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        let _ = joined.input.send(msg).await;
                    }
                    None => break End::Gone,
                },
                _ = self.stop.cancelled() => break End::Gone,
            }
        };
        stop.cancel();
        self.seat.lock().attachment = None;
        match end {
            End::Lobby => Visit::Back(format!("back from {name}")),
            End::Exited(code) => Visit::Back(format!("{name} exited with code {code}")),
            End::Kicked => Visit::Back(format!("you were disconnected from {name}")),
            End::Detached | End::Gone | End::Stopped => Visit::Closed,
        }
    }

    /// Out of the lobby's screen; the session's repaint selects the program's own. Whether
    /// the client is still there.
    async fn leave_the_lobby_screen(&self) -> bool {
        let enter = [RESET_MODES, b"\x1b[?25h"].concat();
        self.handle
            .data(self.channel, Bytes::from(enter))
            .await
            .is_ok()
    }

    /// Play a session's recording on this channel from `from` seconds into it (what came
    /// before is written at once: the screen as it was); any key stops it.
    async fn replay(
        &self,
        live: &Live,
        id: &str,
        from: f64,
        rx: &mut mpsc::Receiver<FromClient>,
    ) -> Result<String, ()> {
        let path = match live.recording(id).await {
            Ok(p) => p,
            Err(e) => return Ok(e.message),
        };
        // The file is read on a blocking thread, a few events ahead; it stops when we do.
        let (tx, mut events) = mpsc::channel::<(f64, String)>(64);
        let reader = tokio::task::spawn_blocking(move || {
            if std::fs::metadata(&path)?.len() == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let mut cast = crate::session::cast::Cast::open(&path)?;
            while let Some(e) = cast.next_event() {
                if let crate::session::cast::Event::Output(t, text) = e
                    && tx.blocking_send((t, text)).is_err()
                {
                    break;
                }
            }
            Ok::<(), std::io::Error>(())
        });
        let send = |bytes: Vec<u8>| {
            let (handle, channel) = (self.handle.clone(), self.channel);
            async move {
                handle
                    .data(channel, Bytes::from(bytes))
                    .await
                    .map_err(|_| ())
            }
        };
        send([LEAVE, RESET_MODES, b"\x1b[H\x1b[2J"].concat()).await?;
        let mut prev = 0.0f64;
        loop {
            let event = tokio::select! {
                _ = self.stop.cancelled() => return Err(()),
                msg = rx.recv() => match msg {
                    Some(FromClient::Data(_)) => return Ok(format!("stopped replaying {id}")),
                    Some(FromClient::Resized) => continue,
                    None => return Err(()),
                },
                e = events.recv() => e,
            };
            let Some((t, data)) = event else {
                break;
            };
            // Nothing waits before `from`.
            let gap = Duration::from_secs_f64((t - prev.max(from)).clamp(0.0, 2.0));
            prev = t;
            tokio::select! {
                _ = tokio::time::sleep(gap) => {}
                _ = self.stop.cancelled() => return Err(()),
                msg = rx.recv() => match msg {
                    Some(FromClient::Data(_)) => return Ok(format!("stopped replaying {id}")),
                    Some(FromClient::Resized) => {}
                    None => return Err(()),
                },
            }
            tokio::select! {
                sent = send(data.into_bytes()) => sent?,
                _ = self.stop.cancelled() => return Err(()),
            }
        }
        match reader.await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(format!(
                "nothing to replay of {id} yet (its recording is written within a second)"
            )),
            Ok(Err(e)) => Ok(format!("cannot replay {id}: {e}")),
            _ => Ok(format!("replayed {id}")),
        }
    }

    /// Leave the lobby's screen, say `message` on stderr, and close with `status`.
    async fn close(&mut self, message: Option<&str>, status: u32) {
        let (handle, channel) = (&self.handle, self.channel);
        let polite = tokio::time::timeout(Duration::from_secs(2), async {
            handle.data(channel, Bytes::from_static(LEAVE)).await.ok()?;
            if let Some(m) = message {
                handle
                    .extended_data(channel, 1, Bytes::from(m.to_string()))
                    .await
                    .ok()?;
            }
            handle.exit_status_request(channel, status).await.ok()?;
            handle.eof(channel).await.ok()?;
            handle.close(channel).await.ok()
        })
        .await;
        if !matches!(polite, Ok(Some(()))) {
            self.cut.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_collects_what_ratatui_writes() {
        let sink = Sink::default();
        let mut term = Terminal::with_options(
            CrosstermBackend::new(sink.clone()),
            TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, 80, 24)),
            },
        )
        .unwrap();
        let d = Dashboard::new("box", true);
        term.draw(|f| crate::dashboard::view::draw(f, &d)).unwrap();
        let first = String::from_utf8_lossy(&sink.take()).to_string();
        assert!(first.contains("hearth"), "{first}");
        term.draw(|f| crate::dashboard::view::draw(f, &d)).unwrap();
        let again = sink.take();
        assert!(
            again.len() < 64,
            "an unchanged frame sends (almost) nothing: {} bytes",
            again.len()
        );
    }
}
