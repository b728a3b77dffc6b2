//! A session host: `hearth session-host`, the process that serves one session so that it
//! outlives the daemon (a crash, a restart, an upgrade). The daemon starts it with a
//! [`HostStart`] on its stdin; it runs the same [`Daemon`](super::Daemon) with that one
//! session (the program and its PTY, the output log, the screen model, the recorder and
//! audit, the triggers, the SSH listener and its clients) and serves the control API for it
//! on its own socket in the daemon's private directory (`sessions/<id>.sock`, 0600, same uid
//! only, the usual versioned handshake). Its answer to the start (the session, or why it
//! could not start) is one JSON line on stdout; then stdin and stdout are let go of.
//!
//! Owns the start protocol only: what the daemon sends, what the host answers. The front's
//! side (starting hosts, forwarding calls, following events, adopting hosts a previous
//! daemon started) is [`super::remote`].

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hearth_rpc::{ApiError, CreateRequest, SessionInfo};
use serde::{Deserialize, Serialize};

/// What the daemon tells a new session host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStart {
    /// The session's id (chosen by the daemon, unique among its sessions).
    pub id: String,
    pub request: CreateRequest,
    /// The session this one restarts, if any.
    pub restarted_from: Option<String>,
    /// The daemon's control socket: the session's programs reach hearth there
    /// (`HEARTH_SOCKET`).
    pub daemon_socket: PathBuf,
    /// Sessions alive when this one starts: their recordings and history records are
    /// never pruned by it.
    pub keep: Vec<String>,
}

/// The host's answer on stdout: the session, or why it could not start.
pub type HostReply = Result<SessionInfo, ApiError>;

/// Where the daemon at `daemon_socket` keeps its session hosts' sockets.
pub fn sessions_dir(daemon_socket: &Path) -> PathBuf {
    daemon_socket
        .parent()
        .unwrap_or(Path::new("."))
        .join("sessions")
}

/// The daemon's lobby key (beside its socket): the lobby joins sessions in processes of
/// their own with it, on behalf of its clients.
pub fn lobby_key(daemon_socket: &Path) -> PathBuf {
    daemon_socket.with_file_name("lobby_key")
}

/// A session host's socket.
pub fn socket_of(daemon_socket: &Path, id: &str) -> PathBuf {
    sessions_dir(daemon_socket).join(format!("{id}.sock"))
}

/// `hearth session-host`: read the start from stdin, then serve the session until it is
/// killed (or the process is told to stop: SIGTERM ends the session like `kill`).
pub async fn main(
    socket: PathBuf,
    kill_grace: f64,
    login_grace: u64,
    log_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    // Started as /proc/self/exe (the daemon's own binary, even after an upgrade replaced
    // the file): named `hearth` in ps and top, not `exe`.
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"hearth".as_ptr()) };
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("cannot read the session's start")?
    .context("cannot read the session's start")?;
    let start: HostStart =
        serde_json::from_str(line.trim()).context("the session's start is not valid")?;
    let mut config = super::load_config(kill_grace, login_grace)?;
    // The daemon runs hooks and the lobby; a host serves its session only.
    config.hooks.clear();
    config.lobby = None;
    config.session_processes = false;
    config.event_ring = config.event_ring.min(HOST_EVENT_RING);
    config.max_sessions = 1;
    config.host = Some(start);
    config.log_file = log_file;
    let result = super::serve(socket.clone(), config, false).await;
    let _ = std::fs::remove_file(socket.with_extension("lock"));
    result
}

/// Events a host keeps for the daemon to read (it reads them as they come; a new daemon
/// starts from the newest).
const HOST_EVENT_RING: usize = 2_000;

/// Answer the daemon on stdout (one JSON line), then let go of stdin and stdout: the host
/// must not depend on the daemon's pipes once it runs on its own.
pub fn answer(reply: &HostReply) {
    let line = serde_json::to_string(reply).unwrap_or_else(|e| {
        serde_json::to_string(&HostReply::Err(ApiError::internal(e.to_string())))
            .unwrap_or_default()
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto our own standard descriptors; `null` stays open for the call.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}
