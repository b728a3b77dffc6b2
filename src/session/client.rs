//! The clients of a session: who they are ([`ClientSpec`], [`Role`]), what `peers` shows
//! ([`Peer`]), and an [`Attachment`]: a client's membership, whose `Drop` detaches it.
//! Child of `session`, so it reaches the session's client table directly; like its parent
//! it knows nothing of transports.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Session;

/// What a client may do; decided by the key it authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Collaborator,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Collaborator => "collaborator",
            Role::Viewer => "viewer",
        }
    }
    pub fn may_type(self) -> bool {
        !matches!(self, Role::Viewer)
    }
}

/// Who is attaching.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub user: String,
    pub role: Role,
    pub address: String,
    pub key_fingerprint: String,
    /// (cols, rows) from the pty-req; 0 means unknown.
    pub size: (u16, u16),
    pub kind: ClientKind,
}

/// How a client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Ssh,
    /// A browser through a share link (always a viewer).
    Web,
}

/// A row of `peers`.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Unique for the session's life (names are reused once a client leaves).
    pub id: u64,
    pub name: String,
    pub spec: ClientSpec,
    pub size: (u16, u16),
    pub connected_at: SystemTime,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub in_menu: bool,
    pub read_only: bool,
    /// Time since this client last typed (or joined).
    pub idle: Duration,
}

pub(super) struct ClientEntry {
    pub(super) name: String,
    pub(super) spec: ClientSpec,
    pub(super) size: (u16, u16),
    pub(super) connected_at: SystemTime,
    pub(super) stats: Arc<Stats>,
    pub(super) kick: CancellationToken,
    /// In its pause menu: its size does not count.
    pub(super) in_menu: bool,
    /// Read-only by its own choice: its input is dropped and its size does not count.
    pub(super) read_only: bool,
    /// Bytes for this client only (colour queries its terminal should answer); shared
    /// with the attachment, whose writer sends them.
    pub(super) direct: Arc<Direct>,
    /// Wakes its writer (to repaint after the PTY was resized).
    pub(super) wake: Arc<tokio::sync::Notify>,
}

impl ClientEntry {
    /// Whether this client constrains the PTY size.
    pub(super) fn counts_for_size(&self) -> bool {
        self.spec.role.may_type() && !self.in_menu && !self.read_only
    }
}

#[derive(Default)]
pub struct Stats {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Milliseconds since the session's epoch of the last input (0 = joined, never typed).
    pub(super) last_input_ms: AtomicU64,
    /// ... and of the last `input` event (at most one a second per client).
    pub(super) last_input_event_ms: AtomicU64,
}

/// A one-line message from one client to the others (never written to the PTY).
#[derive(Debug, Clone)]
pub struct Notice {
    pub from: String,
    pub text: String,
}

/// `<user>-<n>` with the smallest n ≥ 1 not in use.
pub(super) fn smallest_free_name<'a>(user: &str, taken: impl Iterator<Item = &'a str>) -> String {
    let prefix = format!("{user}-");
    let used: std::collections::HashSet<u64> = taken
        .filter_map(|n| n.strip_prefix(&prefix))
        .filter_map(|n| n.parse().ok())
        .collect();
    let n = (1..).find(|n| !used.contains(n)).unwrap_or(1);
    format!("{user}-{n}")
}

/// At most this many queries wait for one client's terminal; more are dropped (a program
/// asking faster than a client takes them times out and uses its defaults).
const DIRECT_MAX: usize = 8;

/// Bytes for one client's terminal only: the queries a real terminal answers (colours),
/// sent to one client. Allocates nothing until a query comes: most clients never get one,
/// and a queue made eagerly cost each viewer ~1.5 KiB.
#[derive(Default)]
pub struct Direct {
    queue: parking_lot::Mutex<VecDeque<Bytes>>,
    ready: tokio::sync::Notify,
}

impl Direct {
    /// Queue `bytes`; false (and dropped) if [`DIRECT_MAX`] already wait.
    pub(super) fn try_send(&self, bytes: Bytes) -> bool {
        {
            let mut queue = self.queue.lock();
            if queue.len() >= DIRECT_MAX {
                return false;
            }
            queue.push_back(bytes);
        }
        self.ready.notify_one();
        true
    }

    /// The oldest waiting query, if any.
    pub fn try_recv(&self) -> Option<Bytes> {
        self.queue.lock().pop_front()
    }

    /// The oldest query, once there is one. Cancel-safe: a query is taken only when
    /// returned.
    pub async fn recv(&self) -> Bytes {
        loop {
            if let Some(bytes) = self.try_recv() {
                return bytes;
            }
            // `notify_one` keeps a permit when nobody waits: a query queued between the
            // check above and this wait still wakes it.
            self.ready.notified().await;
        }
    }
}

/// A client's membership in a session. Dropping it detaches the client (synchronously).
pub struct Attachment {
    pub(super) session: Arc<Session>,
    /// Woken first when output arrives while this client is the last typist.
    pub wake: Arc<tokio::sync::Notify>,
    /// Bytes meant for this client's terminal only, for its writer to send.
    pub(super) direct: Arc<Direct>,
    /// Set once detached: input and resizes are ignored from then on.
    pub(super) detached: std::sync::atomic::AtomicBool,
    pub(super) key: u64,
    pub name: String,
    pub stats: Arc<Stats>,
    /// Cancelled when the client is kicked.
    pub kick: CancellationToken,
}

impl Attachment {
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Bytes for this client's terminal only (terminal queries it should answer).
    pub fn direct(&self) -> &Arc<Direct> {
        &self.direct
    }

    /// This client's id (as in [`Peer::id`]).
    pub fn id(&self) -> u64 {
        self.key
    }

    pub fn resize(&self, cols: u32, rows: u32) {
        if !self.is_detached() {
            self.session.set_client_size(self.key, cols, rows);
        }
    }

    /// This client's (cols, rows) as it last reported them.
    pub fn size(&self) -> (u16, u16) {
        self.session
            .clients
            .lock()
            .get(&self.key)
            .map_or((0, 0), |c| c.size)
    }

    pub fn set_in_menu(&self, in_menu: bool) {
        self.session
            .update_client(self.key, |c| c.in_menu = in_menu);
    }

    pub fn set_read_only(&self, read_only: bool) {
        self.session
            .update_client(self.key, |c| c.read_only = read_only);
    }

    pub fn read_only(&self) -> bool {
        self.session
            .clients
            .lock()
            .get(&self.key)
            .is_some_and(|c| c.read_only)
    }

    pub fn role(&self) -> Role {
        self.session
            .clients
            .lock()
            .get(&self.key)
            .map_or(Role::Viewer, |c| c.spec.role)
    }

    /// Whether this client's input reaches the PTY now.
    pub fn may_type(&self) -> bool {
        self.session
            .clients
            .lock()
            .get(&self.key)
            .is_some_and(|c| c.spec.role.may_type() && !c.read_only)
    }

    pub fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Acquire)
    }

    /// Leave the session now (idempotent; dropping the attachment does it too).
    pub fn detach(&self) {
        if !self.detached.swap(true, Ordering::AcqRel) {
            self.session.detach(self.key);
            let mut typist = self.session.typist.lock();
            if typist.as_ref().is_some_and(|t| t.key == self.key) {
                *typist = None;
            }
        }
    }

    /// Type into the PTY, if this client may type (role and read-only checked here, so no
    /// adapter can forget).
    pub async fn input(&self, data: Bytes) {
        if self.is_detached() || !self.may_type() {
            return;
        }
        self.stats
            .bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.session.activity.input(&self.name);
        self.session.remember_typed(&data, true);
        let now_ms = self.session.epoch.elapsed().as_millis() as u64;
        let last_event = self.stats.last_input_event_ms.load(Ordering::Relaxed);
        if last_event == 0 || now_ms.saturating_sub(last_event) >= 1000 {
            self.stats
                .last_input_event_ms
                .store(now_ms.max(1), Ordering::Relaxed);
            self.session.emit(super::SessionEvent::Input {
                client: self.name.clone(),
            });
        }
        self.stats.last_input_ms.store(
            self.session.epoch.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
        if let Some(r) = &self.session.recorder {
            r.audit.input(std::time::Instant::now(), &self.name, &data);
        }
        {
            let mut typist = self.session.typist.lock();
            if typist.as_ref().is_none_or(|t| t.key != self.key) {
                *typist = Some(super::Typist {
                    key: self.key,
                    wake: Arc::clone(&self.wake),
                });
            }
        }
        self.session.input(data).await;
    }

    pub fn count_out(&self, n: usize) {
        self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_take_the_smallest_free_number() {
        assert_eq!(smallest_free_name("al", [].into_iter()), "al-1");
        assert_eq!(
            smallest_free_name("al", ["al-1", "al-3", "bo-2"].into_iter()),
            "al-2"
        );
        assert_eq!(smallest_free_name("al", ["al-2"].into_iter()), "al-1");
    }

    #[test]
    fn direct_keeps_order_and_a_bound() {
        let d = Direct::default();
        for i in 0..DIRECT_MAX {
            assert!(d.try_send(Bytes::from(vec![i as u8])));
        }
        assert!(
            !d.try_send(Bytes::from_static(b"x")),
            "one past the bound is dropped"
        );
        for i in 0..DIRECT_MAX {
            assert_eq!(d.try_recv().as_deref(), Some(&[i as u8][..]));
        }
        assert!(d.try_recv().is_none());
    }

    #[tokio::test]
    async fn direct_wakes_a_waiting_writer() {
        let d = Arc::new(Direct::default());
        let waiting = tokio::spawn({
            let d = Arc::clone(&d);
            async move { d.recv().await }
        });
        tokio::task::yield_now().await;
        assert!(d.try_send(Bytes::from_static(b"q")));
        let got = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert_eq!(got.ok().and_then(|r| r.ok()).as_deref(), Some(&b"q"[..]));
        // Queued before anyone waits: taken at once.
        assert!(d.try_send(Bytes::from_static(b"r")));
        assert_eq!(d.recv().await, Bytes::from_static(b"r"));
    }
}
