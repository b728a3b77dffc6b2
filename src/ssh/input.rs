//! One input task per client: what the client types goes through the menu trigger
//! detector, then to the PTY (if the client may type) or, while its pause menu is open, to
//! the menu. Menu frames and mode changes go to the client's writer task, which alone
//! writes to the channel, so menu and live output never interleave. They are posted to its
//! [`Outbox`], which never waits: nothing russh's loop waits on may wait for a client that
//! has stopped reading (`ssh::mailbox`, `adr/0009`).
//!
//! Owns the menu's state for this client; knows nothing of russh (the handler feeds it).
//! A client's keys cost the daemon little: all keys of one packet are handled before one
//! redraw, redraws come at most every [`DRAW_EVERY`], owner actions name the client by the
//! id of the row that was drawn (never a re-fetched index), and Rewind scrolls one copy
//! of the history taken when it opened.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::mailbox::{Outbox, ToWriter};
use crate::menu::detector::{Detector, Event};
use crate::menu::view::{self, PeerRow};
use crate::menu::{Action, Menu, MenuConfig, Page, parse_keys_at};
use crate::session::screen::History;
use crate::session::{Attachment, Role, Who};

/// Keystroke messages queued per client for the PTY (each at most one SSH packet)...
const PTY_QUEUE: usize = 4096;
/// ...and bytes: memory per client stays bounded whatever the packet sizes.
const PTY_QUEUE_BYTES: usize = 1 << 20;

type Queued = (Bytes, tokio::sync::OwnedSemaphorePermit);

/// Shortest time between two menu frames for one client (~60 a second).
pub const DRAW_EVERY: Duration = Duration::from_millis(16);

/// From the SSH handler.
#[derive(Debug)]
pub enum FromClient {
    Data(Bytes),
    /// The client's window changed (its size is already recorded in the session).
    Resized,
}

/// The per-client queue to the PTY, bounded in messages and in bytes. Made when the client
/// first sends keys to the program: most of a crowd only watches, and an idle queue is a
/// block of slots per client.
struct PtyQueue {
    /// Hands the receiving end to the forwarder, once.
    open: Option<oneshot::Sender<mpsc::Receiver<Queued>>>,
    queue: Option<(mpsc::Sender<Queued>, Arc<tokio::sync::Semaphore>)>,
}

impl PtyQueue {
    fn new(open: oneshot::Sender<mpsc::Receiver<Queued>>) -> Self {
        PtyQueue {
            open: Some(open),
            queue: None,
        }
    }

    /// Queue `bytes` for the PTY, waiting while the client's budget is spent. Dropped if
    /// the forwarder is gone (the client is leaving).
    async fn send(&mut self, bytes: Bytes) {
        let (tx, budget) = match &mut self.queue {
            Some(queue) => queue,
            None => {
                let (tx, rx) = mpsc::channel::<Queued>(PTY_QUEUE);
                if let Some(open) = self.open.take() {
                    let _ = open.send(rx);
                }
                let budget = Arc::new(tokio::sync::Semaphore::new(PTY_QUEUE_BYTES));
                self.queue.insert((tx, budget))
            }
        };
        let need = bytes.len().clamp(1, PTY_QUEUE_BYTES) as u32;
        let Ok(permit) = Arc::clone(budget).acquire_many_owned(need).await else {
            return;
        };
        let _ = tx.send((bytes, permit)).await;
    }
}

pub struct InputTask {
    client: Arc<Attachment>,
    writer: Outbox,
    detector: Option<Detector>,
    menu: Option<Menu>,
    /// Viewers may rewind too (`server --viewer-history`).
    viewer_history: bool,
    /// The client came from the lobby: its menu offers "Sessions...".
    lobby: bool,
    /// The ids of the peer rows as last drawn: what a pick refers to.
    drawn: Vec<u64>,
    /// The history being rewound (taken when Rewind opened).
    history: Option<History>,
    /// A frame is owed (keys changed the menu, or a draw was held back by the rate limit).
    dirty: bool,
    last_draw: Option<Instant>,
    /// The client was told that its typing is dropped (once per read-only stretch).
    told_read_only: bool,
    /// Messages this client sent lately (rate-limited).
    messages: MessageRate,
}

/// Messages one client may send to the others per minute (each one is a banner on
/// everyone's screen, an event and an audit line).
pub const MESSAGES_PER_MINUTE: u32 = 10;

/// A fixed one-minute window of [`MESSAGES_PER_MINUTE`].
#[derive(Debug, Default)]
struct MessageRate {
    window: Option<Instant>,
    sent: u32,
}

impl MessageRate {
    fn allow(&mut self, now: Instant) -> bool {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(60))
        {
            self.window = Some(now);
            self.sent = 0;
        }
        if self.sent >= MESSAGES_PER_MINUTE {
            return false;
        }
        self.sent += 1;
        true
    }
}

impl InputTask {
    pub fn new(
        client: Arc<Attachment>,
        writer: Outbox,
        config: Option<&MenuConfig>,
        viewer_history: bool,
        lobby: bool,
    ) -> Self {
        InputTask {
            client,
            writer,
            detector: config.map(|c| Detector::new(&c.trigger, c.window)),
            menu: None,
            viewer_history,
            lobby,
            drawn: Vec::new(),
            history: None,
            dirty: false,
            last_draw: None,
            told_read_only: false,
            messages: MessageRate::default(),
        }
    }

    /// Run until the client's channel closes. Keystrokes for the PTY go through a per-client
    /// queue drained by a second future, so a program that stops reading its input does
    /// not also freeze this loop: `!>` still opens the menu while the queue is not full.
    ///
    /// Not an `async fn`: its state would hold `self` twice (the argument and the loop's
    /// copy), and a crowd of viewers pays for every byte of this future.
    pub fn run(
        self,
        rx: mpsc::Receiver<FromClient>,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send {
        let (open, opened) = oneshot::channel::<mpsc::Receiver<Queued>>();
        let client = Arc::clone(&self.client);
        let halt = stop.clone();
        let forwarder = async move {
            // The queue is made when the client first types (a viewer never does).
            let Ok(mut pty_rx) = opened.await else {
                return;
            };
            while let Some((bytes, _permit)) = pty_rx.recv().await {
                tokio::select! {
                    _ = Box::pin(client.input(bytes)) => {}
                    _ = halt.cancelled() => break,
                }
            }
        };
        // Handling keys (and the menu) is boxed while it runs (`on_data`, `forward`,
        // `client.input`): a viewer that never types does not carry that state. 3.8 -> 1.9 KiB
        // per client in all.
        let main = self.main(rx, stop, PtyQueue::new(open));
        futures::FutureExt::map(futures::future::join(main, forwarder), |_| ())
    }

    async fn main(
        mut self,
        mut rx: mpsc::Receiver<FromClient>,
        stop: CancellationToken,
        mut to_pty: PtyQueue,
    ) {
        let mut refresh = tokio::time::interval(Duration::from_secs(1));
        loop {
            let deadline = self
                .detector
                .as_ref()
                .and_then(Detector::deadline)
                .map(Instant::from_std);
            let peers_open = self.menu.as_ref().is_some_and(|m| m.page == Page::Peers);
            let draw_at = self.last_draw.map_or_else(Instant::now, |t| t + DRAW_EVERY);
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => break,
                    Some(FromClient::Data(bytes)) => Box::pin(self.on_data(bytes, &mut to_pty)).await,
                    Some(FromClient::Resized) => {
                        if self.menu.is_some() {
                            self.request_draw();
                        } else {
                            self.writer.post(ToWriter::Resized);
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let released = self
                        .detector
                        .as_mut()
                        .and_then(|d| d.expire(std::time::Instant::now()));
                    if let Some(b) = released {
                        Box::pin(self.forward(Bytes::from(b), &mut to_pty)).await;
                    }
                }
                _ = refresh.tick(), if peers_open => self.request_draw(),
                _ = tokio::time::sleep_until(draw_at), if self.dirty && self.menu.is_some() => {
                    self.draw();
                }
                _ = stop.cancelled() => break,
            }
        }
        if self.menu.is_some() {
            self.close_menu();
        }
    }

    async fn forward(&mut self, bytes: Bytes, to_pty: &mut PtyQueue) {
        // Dropped, as `Attachment::input` would; but the client is told, once, why.
        if !self.client.may_type() {
            if !self.told_read_only {
                self.told_read_only = true;
                let why = if self.client.role() == Role::Viewer {
                    "you are a viewer: what you type is not sent to the program"
                } else {
                    "read-only is on: what you type is not sent (!> menu to turn it off)"
                };
                self.writer.post(ToWriter::Note(why.into()));
            }
            return;
        }
        self.told_read_only = false;
        to_pty.send(bytes).await;
    }

    async fn on_data(&mut self, bytes: Bytes, to_pty: &mut PtyQueue) {
        // What follows a key that leaves the menu, in the same packet, comes round again.
        let mut pending = Some(bytes);
        while let Some(bytes) = pending.take() {
            if self.menu.is_some() {
                pending = self.menu_keys(&bytes);
                continue;
            }
            let Some(detector) = self.detector.as_mut() else {
                self.forward(bytes, to_pty).await;
                return;
            };
            for event in detector.feed(std::time::Instant::now(), &bytes) {
                match event {
                    Event::Forward(b) => self.forward(Bytes::from(b), to_pty).await,
                    Event::Open => {
                        tracing::debug!("menu opened");
                        let role = self.client.role();
                        let rewind = role != Role::Viewer || self.viewer_history;
                        let menu = Menu::new(role == Role::Owner, rewind);
                        self.menu = Some(if self.lobby { menu.from_lobby() } else { menu });
                        self.client.set_in_menu(true);
                        self.request_draw();
                    }
                    // Always the last event of a feed.
                    Event::Menu(rest) => pending = self.menu_keys(&rest),
                }
            }
        }
    }

    /// Handle every key of one packet, then draw once. Returns the bytes after a key that
    /// resumed, which are for the program (or the trigger) again.
    fn menu_keys(&mut self, bytes: &[u8]) -> Option<Bytes> {
        for (key, end) in parse_keys_at(bytes) {
            let menu = self.menu.as_mut()?;
            let action = menu.key(key, self.drawn.len(), self.client.size().1);
            let rewinding = matches!(menu.page, Page::Rewind(_));
            if !rewinding {
                self.history = None;
            } else if self.history.is_none() {
                self.history = Some(self.client.session().history());
            }
            // Owner powers are checked again here, not only by what the menu shows.
            let owner = self.client.role() == Role::Owner;
            match action {
                Action::Draw => {}
                Action::Resume => {
                    self.close_menu();
                    self.writer.post(ToWriter::Live);
                    let rest = &bytes[end..];
                    return (!rest.is_empty()).then(|| Bytes::copy_from_slice(rest));
                }
                Action::Detach => {
                    self.close_menu();
                    self.writer.post(ToWriter::Detach);
                    return None;
                }
                Action::Lobby if self.lobby => {
                    self.close_menu();
                    self.writer.post(ToWriter::Lobby);
                    return None;
                }
                Action::Find { text, older_than } => self.find(&text, older_than),
                Action::ToggleReadOnly => {
                    let ro = !self.client.read_only();
                    self.client.set_read_only(ro);
                }
                Action::Send(text) => {
                    if self.messages.allow(Instant::now()) {
                        self.client
                            .session()
                            .notify_others(&self.client.name, &text);
                    } else {
                        self.set_status(format!(
                            "not sent: at most {MESSAGES_PER_MINUTE} messages a minute"
                        ));
                    }
                }
                Action::Kick(i) if owner => {
                    let status = self.kick(i);
                    self.set_status(status);
                }
                Action::ToggleRole(i) if owner => {
                    let status = self.toggle_role(i);
                    self.set_status(status);
                }
                Action::ToggleLock if owner => {
                    let session = self.client.session();
                    session.set_locked(!session.is_locked(), &self.client.name);
                }
                Action::Kick(_) | Action::ToggleRole(_) | Action::ToggleLock | Action::Lobby => {}
            }
        }
        self.request_draw();
        None
    }

    /// Rewind to the newest line holding `text` (older than `older_than` when searching
    /// on), or say it is not there.
    fn find(&mut self, text: &str, older_than: Option<usize>) {
        let rows = self.client.size().1;
        let history = self
            .history
            .get_or_insert_with(|| self.client.session().history());
        match history.find(text, older_than, rows) {
            Some(back) => {
                if let Some(Menu {
                    page: Page::Rewind(at),
                    ..
                }) = self.menu.as_mut()
                {
                    *at = back;
                }
            }
            None => self.set_status(format!(
                "{text:?} not found{}  ·  / find  Esc: live",
                if older_than.is_some() {
                    " further back"
                } else {
                    ""
                }
            )),
        }
    }

    /// Kick the `i`th peer drawn on the menu's page (an owner's action); what to say.
    fn kick(&self, i: usize) -> String {
        match self.drawn.get(i).copied() {
            Some(id) if id == self.client.id() => "use Detach to leave".to_string(),
            Some(id) => match self.client.session().kick(Who::Id(id), &self.client.name) {
                Some(p) => format!("kicked {}", p.name),
                None => "that client has already left".to_string(),
            },
            None => "nobody to kick".to_string(),
        }
    }

    /// Make the `i`th peer drawn a viewer, or a viewer a collaborator (an owner's action);
    /// what to say.
    fn toggle_role(&self, i: usize) -> String {
        let session = self.client.session();
        let peer = self
            .drawn
            .get(i)
            .and_then(|id| session.peers().into_iter().find(|p| p.id == *id));
        let Some(p) = peer else {
            return "that client has already left".to_string();
        };
        let to = match p.spec.role {
            Role::Viewer => Role::Collaborator,
            _ => Role::Viewer,
        };
        match session.set_role(Who::Id(p.id), to, &self.client.name) {
            Ok(p) => format!("{} is now {}", p.name, p.spec.role.as_str()),
            Err(e) => e.to_string(),
        }
    }

    fn close_menu(&mut self) {
        self.menu = None;
        self.history = None;
        self.dirty = false;
        self.client.set_in_menu(false);
    }

    /// Draw now, or once [`DRAW_EVERY`] has passed since the last frame.
    fn request_draw(&mut self) {
        self.dirty = true;
        if self.last_draw.is_none_or(|t| t.elapsed() >= DRAW_EVERY) {
            self.draw();
        }
    }

    fn set_status(&mut self, status: String) {
        if let Some(m) = self.menu.as_mut() {
            m.status = Some(status);
        }
    }

    fn draw(&mut self) {
        self.dirty = false;
        self.last_draw = Some(Instant::now());
        let (cols, rows) = self.client.size();
        if let Some(Menu {
            page: Page::Rewind(back),
            search,
            status,
            ..
        }) = self.menu.as_mut()
        {
            let history = self
                .history
                .get_or_insert_with(|| self.client.session().history());
            // What is being typed, or what the last search said; else the usual status.
            let note = match (search.as_deref(), status.as_deref()) {
                (Some(typed), _) => Some(format!(
                    "find: {}_  ·  Enter: the newest  Esc: cancel",
                    crate::text::safe(typed)
                )),
                (None, Some(said)) => Some(crate::text::safe(said).into_owned()),
                (None, None) => None,
            };
            let (frame, shown) = history.frame(*back, cols, rows, note.as_deref());
            *back = shown;
            self.writer.post(ToWriter::Menu(frame));
            return;
        }
        let Some(menu) = &self.menu else { return };
        let session = self.client.session();
        let peers = session.peers();
        self.drawn = peers.iter().map(|p| p.id).collect();
        let ctx = view::ViewModel {
            session: session.name().unwrap_or_else(|| session.id.clone()),
            client: self.client.name.clone(),
            role: self.client.role().as_str().to_string(),
            read_only: self.client.read_only(),
            locked: session.is_locked(),
            peers: peers
                .into_iter()
                .map(|p| PeerRow {
                    me: p.id == self.client.id(),
                    name: p.name,
                    role: p.spec.role.as_str().to_string(),
                    size: p.size,
                    idle_secs: p.idle.as_secs(),
                    in_menu: p.in_menu,
                    read_only: p.read_only,
                })
                .collect(),
        };
        let frame = view::render(menu, &ctx, cols, rows);
        self.writer.post(ToWriter::Menu(frame));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_limited_per_minute() {
        let mut r = super::MessageRate::default();
        let t0 = tokio::time::Instant::now();
        for _ in 0..super::MESSAGES_PER_MINUTE {
            assert!(r.allow(t0));
        }
        assert!(!r.allow(t0 + std::time::Duration::from_secs(59)));
        assert!(r.allow(t0 + std::time::Duration::from_secs(60)));
    }
}
