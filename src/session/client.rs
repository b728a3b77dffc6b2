//! The clients of a session: who they are ([`ClientSpec`], [`Role`]), what `peers` shows
//! ([`Peer`]), and an [`Attachment`]: a client's membership, whose `Drop` detaches it.
//! Child of `session`, so it reaches the session's client table directly; like its parent
//! it knows nothing of transports.

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
    /// Bytes for this client only (colour queries its terminal should answer); the
    /// receiving end is the attachment's inbox.
    pub(super) direct: tokio::sync::mpsc::Sender<Bytes>,
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

/// A client's membership in a session. Dropping it detaches the client (synchronously).
pub struct Attachment {
    pub(super) session: Arc<Session>,
    /// Woken first when output arrives while this client is the last typist.
    pub wake: Arc<tokio::sync::Notify>,
    /// Bytes meant for this client's terminal only; its writer takes the receiver once.
    pub(super) inbox: parking_lot::Mutex<Option<tokio::sync::mpsc::Receiver<Bytes>>>,
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

    /// The receiver of bytes for this client's terminal only (once; `None` after).
    pub fn take_inbox(&self) -> Option<tokio::sync::mpsc::Receiver<Bytes>> {
        self.inbox.lock().take()
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
}
