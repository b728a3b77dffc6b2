//! `hearth-rpc`: the control API between the `hearth` CLI (or any third-party tool) and the
//! hearth daemon.
//!
//! It owns the `#[tarpc::service]` trait, its plain data types, the one serializable error
//! enum, the protocol version, socket-path resolution and the connect/serve transport
//! helpers. It knows nothing of the daemon's internals: a tool that wants to drive hearth
//! links only this crate.
//!
//! # Layout
//!
//! - [`Hearth`]: the service. Every connection first calls [`Hearth::hello`] with
//!   [`PROTOCOL_VERSION`]; the daemon refuses every other call until that matched.
//! - [`types`]: the data that crosses the socket (sessions, peers, requests).
//! - [`error`]: [`ApiError`] and [`ErrorKind`], the only error that crosses the socket.
//! - [`socket`]: where the socket lives, and the JSON-over-Unix-socket transport.
//! - [`wait`]: a long wait as a loop of bounded `wait` calls that never misses output.

pub mod error;
pub mod socket;
pub mod types;
pub mod wait;

pub use error::{ApiError, ErrorKind};
pub use types::*;

/// Await one call, bounded by the caller's own timer as well as the call's deadline: a
/// client whose connection went away can otherwise wait forever. Transport failures and the
/// timeout come back as [`ErrorKind::Daemon`].
pub async fn bounded<T>(
    limit: std::time::Duration,
    f: impl std::future::Future<Output = Result<Result<T, ApiError>, tarpc::client::RpcError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ApiError::new(
            ErrorKind::Daemon,
            format!("the daemon did not answer: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorKind::Daemon,
            format!("the daemon did not answer within {} s", limit.as_secs()),
        )),
    }
}

/// Bumped whenever a request or response changes shape. [`Hearth::hello`] never changes
/// shape, so a mismatch is always reported as a clear error rather than a decode failure.
pub const PROTOCOL_VERSION: u32 = 9;

/// The most text one `send` takes (bytes).
pub const MAX_SEND_BYTES: usize = 2 * 1024 * 1024;

/// The variables a client carries from its own environment into a session's program
/// (`CreateRequest::caller_env`): what a user expects a program started from their shell
/// to see. Names ending in `*` are prefixes. `TERM` is not among them: the session's
/// terminal is hearth's (`xterm-256color`), whatever terminal asked for it.
pub const CARRIED_ENV: &[&str] = &["PATH", "LANG", "LANGUAGE", "LC_*", "TZ", "COLORTERM"];

/// This process's variables named by [`CARRIED_ENV`], for `CreateRequest::caller_env`.
pub fn carried_env() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            CARRIED_ENV.iter().any(|c| match c.strip_suffix('*') {
                Some(prefix) => k.starts_with(prefix),
                None => k == c,
            })
        })
        .collect();
    out.sort();
    out
}

/// The crate (and CLI) version, reported by `hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The control API. Targets (`target`) are a session id, a unique id prefix or a name.
#[tarpc::service]
pub trait Hearth {
    /// Version handshake; must be the first call on every connection.
    async fn hello(protocol: u32, client_version: String) -> Result<DaemonInfo, ApiError>;
    /// Start a session: spawn its command in a PTY and open its SSH listener.
    async fn create(request: CreateRequest) -> Result<SessionInfo, ApiError>;
    /// All sessions, oldest first.
    async fn list() -> Result<Vec<SessionInfo>, ApiError>;
    /// One session.
    async fn get(target: String) -> Result<SessionInfo, ApiError>;
    /// Give a session another name (unique; not one that looks like an id). Its id, port,
    /// recording and clients stay; events from then on carry the new name.
    async fn rename(target: String, name: String) -> Result<SessionInfo, ApiError>;
    /// Reopen a `down` session's listener on the same port.
    async fn up(target: String) -> Result<SessionInfo, ApiError>;
    /// Close a session's listener; attached clients stay unless `kick`.
    async fn down(target: String, kick: bool) -> Result<SessionInfo, ApiError>;
    /// End sessions (SIGHUP, grace, SIGKILL) and remove them. `all` ignores `targets`.
    async fn kill(targets: Vec<String>, all: bool) -> Result<Vec<SessionInfo>, ApiError>;
    /// Kill sessions whose program ended (`exited`) and ones idle for `idle_ms` (no output,
    /// no input, nobody attached); `dry_run`: only say which. Each gets a `pruned` event.
    async fn prune(
        idle_ms: Option<u64>,
        exited: bool,
        dry_run: bool,
    ) -> Result<Vec<SessionInfo>, ApiError>;
    /// The clients attached to a session.
    async fn peers(target: String) -> Result<Vec<PeerInfo>, ApiError>;
    /// Disconnect one client (by its name, e.g. `alice-1`).
    async fn kick(target: String, client: String) -> Result<PeerInfo, ApiError>;
    /// Refuse new joins (owners still get in), or accept them again.
    async fn lock(target: String, locked: bool) -> Result<SessionInfo, ApiError>;
    /// Change a client's role live: `viewer` or `collaborator`.
    async fn role(target: String, client: String, role: Grant) -> Result<PeerInfo, ApiError>;
    /// Show a one-line message to every attached client (never written to the PTY).
    async fn message(target: String, text: String) -> Result<(), ApiError>;
    /// Read output from a cursor: a long poll that waits up to `wait_ms` (at most 30 000)
    /// for output when there is none yet. `max` caps the bytes returned (at most 4 MiB).
    async fn read(
        target: String,
        from: ReadFrom,
        max: u32,
        wait_ms: u32,
    ) -> Result<OutputChunk, ApiError>;
    /// Start again what a session ran (same command, cwd, env, name, port), once it has
    /// exited or was killed. A session started with `--open` is restarted open only with
    /// `open` given again, and for keys only with `keys_only`; with neither it is refused
    /// (never reopened to anyone silently).
    async fn restart(
        target: String,
        open: Option<Grant>,
        keys_only: bool,
    ) -> Result<SessionInfo, ApiError>;
    /// Events from sequence number `since` (default: only new ones), for one session or all:
    /// a long poll that waits up to `wait_ms` (at most 300 000) when there are none. A caller
    /// that fell behind the ring gets a `skipped` event first.
    async fn events(
        since: Option<u64>,
        session: Option<String>,
        max: u32,
        wait_ms: u32,
    ) -> Result<EventBatch, ApiError>;
    /// Type into a session's program as one unit (never interleaved with a typist).
    async fn send(target: String, request: SendRequest) -> Result<SendReply, ApiError>;
    /// Wait, in the daemon, for a match, idleness or the exit: at most
    /// `request.timeout_ms` (30 s); on timeout, resume from the reply's `offset`.
    async fn wait(target: String, request: WaitRequest) -> Result<WaitReply, ApiError>;
    /// The current screen: plain text, or with colours and cursor (`ansi`).
    async fn screen(target: String, ansi: bool) -> Result<String, ApiError>;
    /// Sessions that have ended and left the daemon (killed, or ended with an earlier
    /// daemon), newest first, from their records beside the recordings: so they survive
    /// daemon restarts. `target` picks one (id, unique id prefix or name: the newest of
    /// that name); `since_unix` keeps those that ended (or started) at or after it.
    async fn history(
        target: Option<String>,
        since_unix: Option<u64>,
    ) -> Result<Vec<EndedSession>, ApiError>;
    /// Search the plain text of every recording (live and ended sessions, newest first)
    /// for a regex: a batch of hits found within a fraction of a second, and a cursor to
    /// go on from (`None`: done). Hits stream: the first comes as soon as it is found.
    async fn search(
        request: SearchRequest,
        cursor: Option<SearchCursor>,
    ) -> Result<SearchBatch, ApiError>;
    /// A read-only web link to a session, valid for `expires_secs` (default a day): the
    /// token is in the answer only. `replay`: the page has a timeline over the recording
    /// too (a link to an ended session always has). Refused unless the daemon serves the
    /// web (`[web] port`).
    async fn share(
        target: String,
        expires_secs: Option<u64>,
        replay: bool,
    ) -> Result<Share, ApiError>;
    /// The live links, oldest first (no tokens).
    async fn shares() -> Result<Vec<Share>, ApiError>;
    /// Revoke a link (its token or id), or every link with `all`: its viewers are cut.
    async fn unshare(which: Option<String>, all: bool) -> Result<Vec<Share>, ApiError>;
    /// Stop the daemon: every session is ended as by `kill --all`; with `keep_sessions`,
    /// sessions served by processes of their own keep running (a new daemon adopts them),
    /// and a daemon that holds sessions in its own process refuses.
    async fn shutdown(keep_sessions: bool) -> Result<(), ApiError>;
}
