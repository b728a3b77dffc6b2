//! The SSH adapter: one listener per session, public-key auth (fail closed), and a
//! [`handler::Connection`] per connection that attaches to the transport-free
//! [`crate::session::Session`]. Output reaches each client through its own writer task
//! ([`writer`]), so a client whose SSH window is full only ever waits for itself.
//!
//! It owns russh configuration, key checks and channel plumbing. It must not own session
//! state (sizes, logs, screens): it asks the session.

pub mod handler;
pub mod input;
pub mod keys;
pub mod lobby;
pub mod mailbox;
pub mod preauth;
pub mod proxy;
pub mod seat;
pub mod stream;
pub mod writer;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::MethodKind;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::public::KeyData;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authorized_keys as authorized;
use crate::session::{Role, Session};

/// Who may join a session, decided per key (and client address) at auth time.
#[derive(Debug, Default)]
pub struct Access {
    /// The daemon user's keys in `~/.ssh`, checked again at every auth, so a key added
    /// there works at once and a removed one stops working.
    pub owners: keys::OwnerKeys,
    /// Key lines given with `--allow-key`.
    pub collaborators: Vec<authorized::Entry>,
    /// Key lines given with `--viewer-key`.
    pub viewers: Vec<authorized::Entry>,
    /// Everyone but owners joins as a viewer.
    pub viewers_only: bool,
    /// `--open`: any client (any key, or none) joins with this role.
    pub open: Option<Role>,
    /// The daemon's lobby key (a session in a process of its own): a connection with it
    /// joins on behalf of the lobby client it names, whose own key this access then
    /// checks, as on this port ([`LOBBY_CLIENT`]).
    pub delegate: Option<KeyData>,
}

/// The environment variable a lobby connection names its client with:
/// `ADDR USER KEYTYPE BASE64` (the client's address, user name and public key).
pub const LOBBY_CLIENT: &str = "HEARTH_LOBBY_CLIENT";

/// What the lobby hears, on stderr, of how a visit ended (then the channel closes):
/// `lobby`, `exited CODE` or `kicked`.
pub const LOBBY_END: &str = "\0hearth-lobby-end ";

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No list names the key (and the session is not open).
    Unknown,
    /// A list names the key, but a line of it does not admit this client.
    Denied(&'static str, authorized::Denied),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unknown => f.write_str("unknown key"),
            Refusal::Denied(list, why) => write!(f, "{list} key refused: {why}"),
        }
    }
}

impl Access {
    /// The role a key grants a client at `addr`. A key that a list names but does not
    /// admit (restricted, wrong `from=`, expired) is refused outright: it never falls
    /// through to a weaker role or to `--open`. Blocking (owner files): off the runtime.
    pub fn role_of(&self, key: &KeyData, addr: IpAddr) -> Result<Role, Refusal> {
        let now = std::time::SystemTime::now();
        let owners = self.owners.entries();
        let lists = [
            (
                "owner",
                Role::Owner,
                authorized::verdict(owners.iter().flat_map(|v| v.iter()), key, addr, now),
            ),
            (
                "--allow-key",
                Role::Collaborator,
                authorized::verdict(&self.collaborators, key, addr, now),
            ),
            (
                "--viewer-key",
                Role::Viewer,
                authorized::verdict(&self.viewers, key, addr, now),
            ),
        ];
        for (list, role, verdict) in lists {
            match verdict {
                Some(Ok(())) => return Ok(self.cap(role)),
                Some(Err(why)) => return Err(Refusal::Denied(list, why)),
                None => {}
            }
        }
        self.open.map(|r| self.cap(r)).ok_or(Refusal::Unknown)
    }

    /// The role of a client without a key (`none` auth): only in open mode.
    pub fn role_without_key(&self) -> Option<Role> {
        self.open.map(|r| self.cap(r))
    }

    fn cap(&self, role: Role) -> Role {
        if self.viewers_only && role != Role::Owner {
            Role::Viewer
        } else {
            role
        }
    }
}

/// What every connection of one session shares.
pub struct SessionServer {
    pub session: Arc<Session>,
    pub access: Arc<Access>,
    pub config: Arc<russh::server::Config>,
    /// The pause menu's trigger; `None` turns the menu off for this session.
    pub menu: Option<crate::menu::MenuConfig>,
    /// Viewers may rewind history (otherwise they see the current screen only).
    pub viewer_history: bool,
    /// Daemon-wide pre-auth limits.
    pub guard: Arc<preauth::PreAuth>,
    /// Time allowed from connect to successful auth.
    pub login_grace: Duration,
    /// Cancelled when the session is removed or the daemon stops.
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// This session's connections (each also on `tracker`): ending a session waits a
    /// moment for them to close by themselves, so what was said last (the client's
    /// terminal restored, the exit status) leaves before the rest is cut.
    pub connections: TaskTracker,
}

/// The daemon's lobby: one more listener whose clients see the dashboard of every session
/// and join one on the same connection. Owner keys only.
pub struct LobbyServer {
    /// Owner keys only: no collaborator, viewer or open access.
    pub access: Arc<Access>,
    pub config: Arc<russh::server::Config>,
    pub guard: Arc<preauth::PreAuth>,
    pub login_grace: Duration,
    /// The sessions, as the daemon has them.
    pub sessions: Arc<dyn Sessions>,
    /// The name shown in the dashboard's header (this machine's host name).
    pub host: String,
    /// The daemon's lobby key, to join sessions in processes of their own.
    pub delegate: Option<Arc<russh::keys::PrivateKey>>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

/// A session the lobby can join.
pub enum Joinable {
    /// In this process.
    Here(Arc<SessionServer>),
    /// In a process of its own: the lobby joins it over SSH on its port, with the daemon's
    /// lobby key on behalf of its client (`ssh::proxy`).
    Elsewhere {
        addr: std::net::SocketAddr,
        name: String,
        id: String,
    },
}

/// What the lobby needs from the daemon (which implements it).
pub trait Sessions: Send + Sync {
    /// The session `target` (id, unique id prefix or name) names, if a client may join it
    /// now; otherwise why not, in words for the client.
    fn joinable(&self, target: &str) -> Result<Joinable, String>;
    /// A control API client for one lobby connection (in-process; it acts as the owner).
    fn api(&self) -> hearth_rpc::HearthClient;
}

/// Where a listener's connections go.
#[derive(Clone)]
pub enum Place {
    /// A session's own port.
    Session(Arc<SessionServer>),
    /// The lobby's port.
    Lobby(Arc<LobbyServer>),
}

impl Place {
    pub fn access(&self) -> &Arc<Access> {
        match self {
            Place::Session(s) => &s.access,
            Place::Lobby(l) => &l.access,
        }
    }
    pub fn guard(&self) -> &Arc<preauth::PreAuth> {
        match self {
            Place::Session(s) => &s.guard,
            Place::Lobby(l) => &l.guard,
        }
    }
    pub fn config(&self) -> &Arc<russh::server::Config> {
        match self {
            Place::Session(s) => &s.config,
            Place::Lobby(l) => &l.config,
        }
    }
    pub fn login_grace(&self) -> Duration {
        match self {
            Place::Session(s) => s.login_grace,
            Place::Lobby(l) => l.login_grace,
        }
    }
    pub fn cancel(&self) -> &CancellationToken {
        match self {
            Place::Session(s) => &s.cancel,
            Place::Lobby(l) => &l.cancel,
        }
    }
    pub fn tracker(&self) -> &TaskTracker {
        match self {
            Place::Session(s) => &s.tracker,
            Place::Lobby(l) => &l.tracker,
        }
    }
    /// For logs: the session id, or "lobby".
    pub fn label(&self) -> &str {
        match self {
            Place::Session(s) => &s.session.id,
            Place::Lobby(_) => "lobby",
        }
    }
}

/// russh settings for every session (the reasons are in `docs/architecture.md`, "SSH").
pub fn server_config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        methods: russh::MethodSet::from(&[MethodKind::PublicKey][..]),
        // A pause per rejected key slows guessing; OpenSSH probes `none` first, so that
        // first rejection is immediate or every login would wait.
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        keys: vec![host_key],
        // Watchers may stay silent for hours: never drop them for inactivity; keepalives
        // find dead peers instead.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        // `Handle::data` waits once a message is queued for the connection (default 10):
        // each writer keeps at most its batch in hand and one in russh's queue (slices of
        // the session's log, shared), and russh encrypts about one batch between two
        // socket writes, so a flood to 1,000 clients costs a bounded, small amount per
        // client (one instead of two: peak at 1,000 viewers ~6 MiB lower, no fan-out
        // change measured; docs/performance.md).
        event_buffer_size: 1,
        ..Default::default()
    }
}

/// Bind a session's listener. Port 0 picks a free port.
pub async fn bind(addr: IpAddr, port: u16) -> std::io::Result<TcpListener> {
    let socket = match addr {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // Allows `up` to rebind the same port while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(addr, port))?;
    socket.listen(128)
}

/// A running accept loop; dropping it does not stop it, [`Listener::close`] does.
pub struct Listener {
    cancel: CancellationToken,
    pub addr: SocketAddr,
}

impl Listener {
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

/// Accept connections on `listener` until closed or the session (or lobby) is cancelled.
pub fn serve(listener: TcpListener, place: Place) -> std::io::Result<Listener> {
    let addr = listener.local_addr()?;
    let cancel = place.cancel().child_token();
    let stop = cancel.clone();
    let tracker = place.tracker().clone();
    tracker.spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let slot = match place.guard().admit(peer.ip()) {
                Ok(slot) => slot,
                Err(why) => {
                    let source = place.guard().source(peer.ip());
                    if let Some(left_out) = place.guard().log_gate(source) {
                        tracing::warn!(%source, left_out, "refused a connection: {why}");
                    }
                    continue;
                }
            };
            // russh sets TCP_NODELAY only in its own accept loop, not in `run_stream`: without
            // it, Nagle and delayed ACKs stall half the joins by ~40 ms.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let connection = handler::run_connection(place.clone(), stream, peer, slot);
            match &place {
                Place::Session(s) => place
                    .tracker()
                    .spawn(s.connections.track_future(connection)),
                Place::Lobby(_) => place.tracker().spawn(connection),
            };
        }
        tracing::debug!(%addr, "listener closed");
    });
    Ok(Listener { cancel, addr })
}
