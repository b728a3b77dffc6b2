//! Sessions served by processes of their own: the daemon's side of `hearth session-host`
//! ([`super::host`]). The daemon starts a host per session (in a session of its own, so no
//! signal meant for the daemon reaches it), forwards the per-session calls to the host's
//! socket, follows the host's events into the daemon's ring, and on start adopts the hosts
//! a previous daemon left running. A host that goes away without ending its session is
//! reported `lost`, its history record settled, and what it left running ended.
//!
//! Owns the front's view of a host ([`Remote`]); it never reaches into a session: everything
//! goes through the control API, in its own types.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hearth_rpc::{
    ApiError, CreateRequest, ErrorKind, EventKind, HearthClient, SessionInfo, SessionState,
};
use parking_lot::Mutex;
use tarpc::client::RpcError;
use tokio_util::sync::CancellationToken;

use super::host::{self, HostReply, HostStart};
use super::registry::Entry;
use super::{Daemon, Ended, history, plan};

/// How long a new host may take to answer its start (it spawns the program and opens the
/// recording, as the daemon itself would).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one event poll waits on a host.
const FOLLOW_WAIT_MS: u32 = super::service::MAX_EVENTS_WAIT_MS;

/// A session served by a host process.
pub struct Remote {
    pub id: String,
    /// Its name (`rename` changes it).
    pub name: Mutex<Option<String>>,
    pub port: u16,
    /// The host's control socket.
    pub socket: PathBuf,
    /// The host process.
    pub pid: u32,
    /// What started it (with the port it got), for `restart`.
    pub request: CreateRequest,
    client: Mutex<HearthClient>,
    /// The last the daemon heard of it (answers, and the events it follows).
    last: Mutex<SessionInfo>,
    /// The daemon is ending it (`kill`, `shutdown`): its going away is not a loss.
    pub(super) ending: AtomicBool,
    /// Stops its event follower.
    stop: CancellationToken,
    /// The host's event sequence the follower has copied up to (its next `since`).
    followed: tokio::sync::watch::Sender<u64>,
}

impl Entry for Remote {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<String> {
        self.name.lock().clone()
    }
    fn kept_port(&self) -> Option<u16> {
        (self.last.lock().state == SessionState::Down).then_some(self.port)
    }
}

impl Remote {
    /// Whether its program has exited, as far as the daemon heard.
    pub fn exited(&self) -> bool {
        self.last.lock().exit_code.is_some()
    }
}

impl Remote {
    /// Wait (2 s at most) until the follower has copied every event the host has now: its
    /// session's last ones (`exited`) reach the daemon's ring before the host stops. Not
    /// when the follower is stopped (the daemon is shutting down): nothing would copy them.
    async fn drain_events(&self) {
        if self.stop.is_cancelled() {
            return;
        }
        let ctx = context_for(Duration::from_secs(2));
        let end = self
            .call(async |c, _| c.events(ctx, None, None, 1, 0).await)
            .await;
        let Ok(end) = end.map(|b| b.next) else {
            return;
        };
        let mut followed = self.followed.subscribe();
        let copied = tokio::time::timeout(Duration::from_secs(2), async {
            tokio::select! {
                r = followed.wait_for(|since| *since >= end) => r.is_ok(),
                () = self.stop.cancelled() => false,
            }
        })
        .await;
        if copied != Ok(true) && !self.stop.is_cancelled() {
            tracing::warn!(session = %self.id, "the host's last events were not copied within 2 s");
        }
    }

    fn new(
        info: &SessionInfo,
        socket: PathBuf,
        pid: u32,
        request: CreateRequest,
        client: HearthClient,
        stop: CancellationToken,
    ) -> Remote {
        Remote {
            id: info.id.clone(),
            name: Mutex::new(info.name.clone()),
            port: info.port,
            socket,
            pid,
            request,
            client: Mutex::new(client),
            last: Mutex::new(info.clone()),
            ending: AtomicBool::new(false),
            stop,
            followed: tokio::sync::watch::channel(0).0,
        }
    }

    /// Forward one call to the host (`f` gets the client and the session's id); a host that
    /// does not answer is an error in words.
    pub async fn call<T>(
        &self,
        f: impl AsyncFnOnce(HearthClient, String) -> Result<Result<T, ApiError>, RpcError>,
    ) -> Result<T, ApiError> {
        let client = self.client.lock().clone();
        f(client, self.id.clone()).await.map_err(|e| {
            ApiError::new(
                ErrorKind::Daemon,
                format!("session {}'s process did not answer: {e}", self.id),
            )
        })?
    }

    /// Its info, fresh from the host when it answers within a moment; else the last known.
    pub async fn info(&self) -> SessionInfo {
        let ctx = context_for(Duration::from_secs(3));
        match self.call(async |c, id| c.get(ctx, id).await).await {
            Ok(info) => {
                *self.last.lock() = info.clone();
                info
            }
            Err(_) => self.last.lock().clone(),
        }
    }

    /// Its state, as last heard.
    pub fn state(&self) -> SessionState {
        self.last.lock().state
    }

    /// Where this machine reaches its SSH listener (loopback for a wildcard bind).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let ip = match self.last.lock().bind.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Ok(IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            Ok(ip) => ip,
            Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        std::net::SocketAddr::new(ip, self.port)
    }

    /// What an event tells of its state.
    fn observe(&self, kind: &EventKind) {
        let mut last = self.last.lock();
        match kind {
            EventKind::Up => last.state = SessionState::Up,
            EventKind::Down => last.state = SessionState::Down,
            EventKind::Exited { exit_code } => {
                last.state = SessionState::Exited;
                last.exit_code = Some(*exit_code);
            }
            _ => {}
        }
    }

    /// Whether the host process is gone (a zombie counts as gone).
    fn gone(&self) -> bool {
        crate::session::procs::stat(self.pid as libc::pid_t).is_none_or(|s| s.state == 'Z')
    }
}

/// A call context with this much time.
fn context_for(limit: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + limit;
    ctx
}

/// Start a host for `start` on `socket` and wait for its answer: the session, and the
/// host's pid.
async fn spawn_host(
    start: &HostStart,
    socket: &Path,
    config: &super::Config,
) -> Result<(SessionInfo, u32), ApiError> {
    use std::os::unix::process::CommandExt as _;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut command = std::process::Command::new("/proc/self/exe");
    command
        .arg0("hearth")
        .arg("session-host")
        .arg("--socket")
        .arg(socket)
        .arg("--kill-grace")
        .arg(config.kill_grace.as_secs_f64().to_string())
        .arg("--login-grace")
        .arg(config.login_grace.as_secs().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    // It logs where the daemon does: the same file (rotated by whichever writes past the
    // cap), or the daemon's stderr.
    if let Some(log) = &config.log_file {
        command.arg("--log-file").arg(log);
    }
    // SAFETY: only setsid between fork and exec (async-signal-safe): a session of its own,
    // so a signal for the daemon's process group or terminal never reaches the host.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| {
            ApiError::new(
                ErrorKind::Spawn,
                format!("cannot start the session's process: {e}"),
            )
        })?;
    let pid = child.id().unwrap_or(0);
    let line = serde_json::to_string(start).map_err(|e| ApiError::internal(e.to_string()))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(ApiError::internal("the session's process has no pipes"));
    };
    let told = async {
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.shutdown().await?;
        drop(stdin);
        tokio::io::BufReader::new(stdout).lines().next_line().await
    };
    let answer = match tokio::time::timeout(START_TIMEOUT, told).await {
        Ok(Ok(Some(answer))) => answer,
        Ok(_) => {
            let status = child.wait().await.ok();
            return Err(ApiError::internal(format!(
                "the session's process ended before it answered ({})",
                status.map_or("unknown status".into(), |s| s.to_string())
            )));
        }
        Err(_) => {
            let _ = child.start_kill();
            return Err(ApiError::internal(format!(
                "the session's process did not answer within {} s",
                START_TIMEOUT.as_secs()
            )));
        }
    };
    // The host runs on its own from here; tokio reaps it when it ends (or, once this
    // daemon is gone, whoever adopts it).
    drop(child);
    let reply: HostReply = serde_json::from_str(&answer)
        .map_err(|e| ApiError::internal(format!("the session's process answered nonsense: {e}")))?;
    reply.map(|info| (info, pid))
}

impl Daemon {
    /// `create` when sessions get processes of their own: checked here (a bad request
    /// starts nothing), then started by a new host.
    pub(super) async fn create_remote(
        self: &Arc<Self>,
        req: CreateRequest,
        restarted_from: Option<String>,
    ) -> Result<SessionInfo, ApiError> {
        let plan = plan::plan(&req, &self.config)?;
        let _claim = self
            .remotes
            .claim(plan.name.as_deref(), self.config.max_sessions)?;
        if plan.port != 0
            && let Some(owner) = self.remotes.port_owner(plan.port)
        {
            return Err(super::port_kept(plan.port, &owner.id));
        }
        let id = self.new_id();
        let socket = host::socket_of(&self.socket, &id);
        let start = HostStart {
            id: id.clone(),
            request: req.clone(),
            restarted_from,
            daemon_socket: self.socket.clone(),
            keep: self.live_ids().into_iter().collect(),
        };
        let (info, pid) = spawn_host(&start, &socket, &self.config).await?;
        let client = match hearth_rpc::socket::connect(&socket).await {
            Ok((client, _)) => client,
            Err(e) => {
                // SAFETY: a plain syscall; the host ends its session on SIGTERM.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                return Err(ApiError::internal(format!(
                    "the session's process started but does not answer: {e}"
                )));
            }
        };
        let request = CreateRequest {
            port: Some(info.port),
            ..req
        };
        let remote = Arc::new(Remote::new(
            &info,
            socket,
            pid,
            request,
            client,
            self.cancel.child_token(),
        ));
        self.remotes.insert(Arc::clone(&remote));
        // From the host's first event (`created`) on.
        self.follow(remote, 1);
        tracing::info!(session = %info.id, port = info.port, host_pid = pid, "session started in its own process");
        Ok(info)
    }

    /// Copy a host's events into the daemon's ring, from `since`, until it ends. A host
    /// that stops answering is reached again; one whose process is gone is lost.
    fn follow(self: &Arc<Self>, remote: Arc<Remote>, mut since: u64) {
        let daemon = Arc::downgrade(self);
        let ring = Arc::clone(&self.events);
        self.tracker.spawn(async move {
            loop {
                let ctx = context_for(Duration::from_millis(u64::from(FOLLOW_WAIT_MS) + 15_000));
                let polled = tokio::select! {
                    _ = remote.stop.cancelled() => return,
                    b = remote.call(async |c, _| c.events(ctx, Some(since), None, 1_000, FOLLOW_WAIT_MS).await) => b,
                };
                match polled {
                    Ok(batch) => {
                        for e in batch.events {
                            remote.observe(&e.kind);
                            let host_seq = e.seq;
                            ring.publish_event(e, Some(host_seq));
                        }
                        since = batch.next;
                        remote.followed.send_replace(since);
                        continue;
                    }
                    Err(e) if remote.ending.load(Ordering::Acquire) => {
                        tracing::debug!(session = %remote.id, error = %e, "host ended");
                        return;
                    }
                    Err(_) => {}
                }
                if remote.gone() {
                    if let Some(d) = daemon.upgrade() {
                        d.lost(&remote, "its process ended without ending the session");
                    }
                    return;
                }
                // Alive but not answering on this connection: connect again, after a moment.
                tokio::select! {
                    _ = remote.stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                if let Ok((client, _)) = hearth_rpc::socket::connect(&remote.socket).await {
                    *remote.client.lock() = client;
                }
            }
        });
    }

    /// A host went away without ending its session: forget it, say so, settle its history
    /// record and end what it left running.
    fn lost(&self, remote: &Remote, reason: &str) {
        tracing::warn!(session = %remote.id, host_pid = remote.pid, reason, "session lost");
        self.remotes.remove(&remote.id);
        self.events.forget_host(&remote.id);
        let last = remote.last.lock().clone();
        self.remember(Ended {
            id: remote.id.clone(),
            request: hearth_rpc::CreateRequest {
                name: remote.name(),
                ..remote.request.clone()
            },
            exit_code: last.exit_code,
            recording: last.recording.map(PathBuf::from),
        });
        self.events.publish(
            &remote.id,
            remote.name().as_deref(),
            EventKind::Lost {
                reason: reason.to_string(),
            },
        );
        // Files off the runtime: the record is read and written again.
        let (socket, id) = (remote.socket.clone(), remote.id.clone());
        let dir = self.history_dir().map(Path::to_path_buf);
        self.tracker.spawn_blocking(move || {
            let _ = std::fs::remove_file(&socket);
            let _ = std::fs::remove_file(socket.with_extension("lock"));
            if let Some(dir) = dir {
                history::mark_lost(&dir, &id);
            }
        });
        self.end_marked(std::collections::HashSet::from([remote.id.clone()]));
    }

    /// Rename a session in its own process (which checks and records it), then here.
    pub(super) async fn rename_remote(
        &self,
        remote: &Remote,
        name: &str,
    ) -> Result<SessionInfo, ApiError> {
        let ctx = context_for(Duration::from_secs(10));
        let name = name.to_string();
        let info = remote
            .call(async |c, id| c.rename(ctx, id, name).await)
            .await?;
        *remote.name.lock() = info.name.clone();
        *remote.last.lock() = info.clone();
        Ok(info)
    }

    /// End a session served by a host: the host ends it as `kill` would, then stops. A host
    /// that does not answer is told with SIGTERM (which ends its session too).
    pub(super) async fn end_remote(&self, remote: &Remote) -> SessionInfo {
        remote.ending.store(true, Ordering::Release);
        let ctx = context_for(self.config.kill_grace + Duration::from_secs(10));
        let ended = remote
            .call(async |c, id| c.kill(ctx, vec![id], false).await)
            .await
            .ok()
            .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)));
        let info = match ended {
            Some(info) => {
                remote.drain_events().await;
                let _ = remote.call(async |c, _| c.shutdown(ctx, false).await).await;
                info
            }
            None => {
                tracing::warn!(session = %remote.id, host_pid = remote.pid, "the session's process did not answer `kill`: SIGTERM");
                // SAFETY: a plain syscall on the host we started (or adopted).
                unsafe { libc::kill(remote.pid as libc::pid_t, libc::SIGTERM) };
                remote.last.lock().clone()
            }
        };
        remote.stop.cancel();
        info
    }

    /// At start: adopt every session host a previous daemon left running (its socket
    /// answers), with the same id, name, port and clients; remove the sockets of hosts that
    /// are gone (their sessions are settled as lost with the rest).
    pub(super) async fn adopt_session_hosts(self: &Arc<Self>) {
        let dir = host::sessions_dir(&self.socket);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let sockets: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sock"))
            .collect();
        for socket in sockets {
            let connected =
                tokio::time::timeout(START_TIMEOUT, hearth_rpc::socket::connect(&socket)).await;
            let adopted = match connected {
                Ok(Ok((client, hello))) => self.adopt(&socket, client, hello.pid).await,
                // Nothing listens: the host is gone (its session is settled as lost with the
                // rest of the previous daemon's).
                Ok(Err(hearth_rpc::socket::ConnectError::Unreachable(..))) => {
                    tracing::info!(socket = %socket.display(), "a session host is gone; removing its socket");
                    let _ = std::fs::remove_file(&socket);
                    let _ = std::fs::remove_file(socket.with_extension("lock"));
                    continue;
                }
                Ok(Err(e)) => Err(e.into_api()),
                Err(_) => Err(ApiError::internal("no answer")),
            };
            match adopted {
                Ok(n) => {
                    tracing::info!(socket = %socket.display(), sessions = n, "adopted a session host")
                }
                // Alive but not adoptable (another protocol version, or stuck): left running
                // as it is, and said.
                Err(e) => tracing::warn!(
                    socket = %socket.display(),
                    error = %e.message,
                    "cannot adopt a session host; it keeps running unadopted (its session \
                     ends when its program does, or with `kill` of the pid holding {})",
                    socket.with_extension("lock").display()
                ),
            }
        }
    }

    async fn adopt(
        self: &Arc<Self>,
        socket: &Path,
        client: HearthClient,
        pid: u32,
    ) -> Result<usize, ApiError> {
        let ctx = context_for(Duration::from_secs(5));
        let unreachable = |e: RpcError| ApiError::internal(e.to_string());
        let sessions = client.list(ctx).await.map_err(unreachable)??;
        // Its events after the last the daemon's ring took from it (the previous daemon's,
        // continued from its journal): nothing repeated, nothing missed while no daemon
        // ran. Without one, from now on.
        let end = client
            .events(ctx, None, None, 1, 0)
            .await
            .map_err(unreachable)??
            .next;
        for info in &sessions {
            let since = self.events.host_seq(&info.id).map_or(end, |s| s + 1);
            let request = self.request_of(info).await;
            let remote = Arc::new(Remote::new(
                info,
                socket.to_path_buf(),
                pid,
                request,
                client.clone(),
                self.cancel.child_token(),
            ));
            self.remotes.insert(Arc::clone(&remote));
            self.follow(remote, since);
        }
        Ok(sessions.len())
    }

    /// What started an adopted session: its history record's request, else what its info
    /// says.
    async fn request_of(&self, info: &SessionInfo) -> CreateRequest {
        let from_info = CreateRequest {
            port: Some(info.port),
            bind: Some(info.bind.clone()),
            name: info.name.clone(),
            cwd: Some(info.cwd.clone()),
            command: info.command.clone(),
            ..Default::default()
        };
        let Some(dir) = self.history_dir().map(Path::to_path_buf) else {
            return from_info;
        };
        let id = info.id.clone();
        tokio::task::spawn_blocking(move || {
            history::find(&dir, &std::collections::HashSet::new(), &id)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .map_or(from_info, |r| r.request)
    }
}
