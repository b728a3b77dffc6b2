//! The tarpc adapter: one [`Control`] per control connection. It checks the handshake, then
//! translates each call into a [`Daemon`] operation. Errors leave as [`ApiError`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use hearth_rpc::{
    ApiError, CreateRequest, DaemonInfo, EndedSession, ErrorKind, EventBatch, Grant, Hearth,
    OutputChunk, PROTOCOL_VERSION, PeerInfo, ReadFrom, SendReply, SendRequest, SessionInfo,
    VERSION, WaitReply, WaitRequest,
};
use tarpc::context::Context;

use super::{Daemon, Target, history};
use crate::session;

// Session errors become the socket's error here, at the adapter's edge.

impl From<session::SpawnError> for ApiError {
    fn from(e: session::SpawnError) -> ApiError {
        ApiError::new(ErrorKind::Spawn, e.to_string())
    }
}

/// Who acts, in logs and the audit trail, when the owner acts through the control socket.
pub const BY_CLI: &str = "cli";

#[derive(Clone)]
pub struct Control {
    daemon: Arc<Daemon>,
    greeted: Arc<AtomicBool>,
}

/// The longest `events` long poll: the daemon follows each session process's events with
/// one, so an idle session wakes nobody more often than this (a dead process is seen at
/// once anyway: its connection closes).
pub const MAX_EVENTS_WAIT_MS: u32 = 300_000;

/// How long a read waits for a session being ended to be gone.
const ENDING_WAIT: Duration = Duration::from_secs(15);

impl Control {
    /// A read of a session that has ended (killed, or with an earlier daemon): what its
    /// recording kept, and the end, not "not found".
    async fn read_ended(
        &self,
        target: &str,
        from: ReadFrom,
        max: u32,
    ) -> Result<OutputChunk, ApiError> {
        let ended = self.daemon.find_ended(target).await?;
        let (data, next) = match ended.recording {
            Some(path) if path.is_file() => {
                let max = session::boundary::read_limit(max);
                let from = session::boundary::read_from(from);
                tokio::task::spawn_blocking(move || session::cast::read_output(&path, from, max))
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .map_err(|e| ApiError::internal(format!("cannot read the recording: {e}")))?
            }
            _ => (
                Vec::new(),
                match from {
                    ReadFrom::Offset(o) => o,
                    _ => 0,
                },
            ),
        };
        Ok(OutputChunk {
            data,
            next,
            skipped: 0,
            exited: true,
            exit_code: ended.exit_code,
            end: None,
        })
    }

    pub fn new(daemon: Arc<Daemon>) -> Self {
        Control {
            daemon,
            greeted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The daemon's own client (the lobby's): no handshake to make, it is this version.
    pub fn local(daemon: Arc<Daemon>) -> Self {
        Control {
            daemon,
            greeted: Arc::new(AtomicBool::new(true)),
        }
    }

    fn check(&self) -> Result<(), ApiError> {
        if self.greeted.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::Protocol,
                "call hello with the protocol version first",
            ))
        }
    }
}

impl Hearth for Control {
    async fn hello(
        self,
        _: Context,
        protocol: u32,
        client_version: String,
    ) -> Result<DaemonInfo, ApiError> {
        if protocol != PROTOCOL_VERSION {
            return Err(ApiError::new(
                ErrorKind::Protocol,
                format!(
                    "protocol mismatch: this client ({client_version}) speaks protocol {protocol}, \
                     the daemon ({VERSION}, pid {}) speaks {PROTOCOL_VERSION}; \
                     restart the daemon with the same hearth version (`hearth shutdown`)",
                    std::process::id()
                ),
            ));
        }
        self.greeted.store(true, Ordering::Release);
        Ok(DaemonInfo {
            version: VERSION.to_string(),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            socket: self.daemon.socket.display().to_string(),
            started_at: humantime::format_rfc3339_seconds(self.daemon.started_at).to_string(),
            host_key: self.daemon.host_public.0.clone(),
            host_key_fingerprint: self.daemon.host_public.1.clone(),
            lobby: self.daemon.lobby_addr().map(|a| a.to_string()),
            events_epoch: self.daemon.events.epoch.clone(),
        })
    }

    async fn create(self, _: Context, request: CreateRequest) -> Result<SessionInfo, ApiError> {
        self.check()?;
        self.daemon
            .on_main(|daemon| async move { daemon.create(request).await })
            .await
    }

    async fn list(self, _: Context) -> Result<Vec<SessionInfo>, ApiError> {
        self.check()?;
        let local = self
            .daemon
            .registry
            .all()
            .iter()
            .map(|h| h.info())
            .collect();
        let remotes = self.daemon.remotes.all();
        let remote = futures::future::join_all(remotes.iter().map(|r| r.info())).await;
        Ok([local, remote].concat())
    }

    async fn get(self, ctx: Context, target: String) -> Result<SessionInfo, ApiError> {
        self.check()?;
        match self.daemon.resolve(&target)? {
            Target::Local(h) => Ok(h.info()),
            Target::Remote(r) => r.call(async |c, id| c.get(ctx, id).await).await,
        }
    }

    async fn prune(
        self,
        _: Context,
        idle_ms: Option<u64>,
        exited: bool,
        dry_run: bool,
    ) -> Result<Vec<SessionInfo>, ApiError> {
        self.check()?;
        let idle = idle_ms.map(Duration::from_millis);
        self.daemon.prune(idle, exited, dry_run).await
    }

    async fn rename(
        self,
        _: Context,
        target: String,
        name: String,
    ) -> Result<SessionInfo, ApiError> {
        self.check()?;
        self.daemon.rename(&target, &name).await
    }

    async fn up(self, ctx: Context, target: String) -> Result<SessionInfo, ApiError> {
        self.check()?;
        if let Target::Remote(r) = self.daemon.resolve(&target)? {
            return r.call(async |c, id| c.up(ctx, id).await).await;
        }
        self.daemon
            .on_main(|daemon| async move { daemon.up(&target).await })
            .await
    }

    async fn down(self, ctx: Context, target: String, kick: bool) -> Result<SessionInfo, ApiError> {
        self.check()?;
        if let Target::Remote(r) = self.daemon.resolve(&target)? {
            return r.call(async |c, id| c.down(ctx, id, kick).await).await;
        }
        self.daemon.down(&target, kick)
    }

    async fn kill(
        self,
        _: Context,
        targets: Vec<String>,
        all: bool,
    ) -> Result<Vec<SessionInfo>, ApiError> {
        self.check()?;
        self.daemon.kill(&targets, all).await
    }

    async fn peers(self, ctx: Context, target: String) -> Result<Vec<PeerInfo>, ApiError> {
        self.check()?;
        match self.daemon.resolve(&target)? {
            Target::Local(h) => Ok(h.session.peer_infos()),
            Target::Remote(r) => r.call(async |c, id| c.peers(ctx, id).await).await,
        }
    }

    async fn kick(
        self,
        ctx: Context,
        target: String,
        client: String,
    ) -> Result<PeerInfo, ApiError> {
        self.check()?;
        match self.daemon.resolve(&target)? {
            Target::Local(h) => h.session.kick_named(&client, BY_CLI),
            Target::Remote(r) => r.call(async |c, id| c.kick(ctx, id, client).await).await,
        }
    }

    async fn lock(
        self,
        ctx: Context,
        target: String,
        locked: bool,
    ) -> Result<SessionInfo, ApiError> {
        self.check()?;
        match self.daemon.resolve(&target)? {
            Target::Local(h) => {
                h.session.set_locked(locked, BY_CLI);
                Ok(h.info())
            }
            Target::Remote(r) => r.call(async |c, id| c.lock(ctx, id, locked).await).await,
        }
    }

    async fn role(
        self,
        ctx: Context,
        target: String,
        client: String,
        role: Grant,
    ) -> Result<PeerInfo, ApiError> {
        self.check()?;
        match self.daemon.resolve(&target)? {
            Target::Local(h) => h.session.grant(&client, role, BY_CLI),
            Target::Remote(r) => {
                r.call(async |c, id| c.role(ctx, id, client, role).await)
                    .await
            }
        }
    }

    async fn message(self, ctx: Context, target: String, text: String) -> Result<(), ApiError> {
        self.check()?;
        match self.daemon.resolve(&target)? {
            Target::Local(h) => h.session.message("owner", &text),
            Target::Remote(r) => r.call(async |c, id| c.message(ctx, id, text).await).await,
        }
    }

    async fn read(
        self,
        ctx: Context,
        target: String,
        from: ReadFrom,
        max: u32,
        wait_ms: u32,
    ) -> Result<OutputChunk, ApiError> {
        self.check()?;
        if self.daemon.means_ended(&target).await {
            return self.read_ended(&target, from, max).await;
        }
        let hosted = match self.daemon.resolve(&target) {
            Ok(Target::Local(h)) => h,
            Ok(Target::Remote(r)) => {
                let read = r
                    .call(async |c, id| c.read(ctx, id, from, max, wait_ms).await)
                    .await;
                // Its process went away because the session is being ended: once it has,
                // this is a read of an ended session, as below.
                if read.is_err() && r.ending.load(std::sync::atomic::Ordering::Acquire) {
                    let deadline = tokio::time::Instant::now() + ENDING_WAIT;
                    while tokio::time::Instant::now() < deadline
                        && self.daemon.resolve(&target).is_ok()
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    return self.read_ended(&target, from, max).await;
                }
                return read;
            }
            // Ended (killed, or with an earlier daemon): read what its recording kept,
            // and report the end, not "not found".
            Err(e) if e.kind == ErrorKind::NotFound => {
                return self.read_ended(&target, from, max).await;
            }
            Err(e) => return Err(e),
        };
        Ok(hosted.session.read_chunk(from, max, wait_ms).await)
    }

    async fn events(
        self,
        _: Context,
        since: Option<u64>,
        session: Option<String>,
        max: u32,
        wait_ms: u32,
    ) -> Result<EventBatch, ApiError> {
        self.check()?;
        // A live session by its id or name; then one that has ended, by its id or name as
        // the events recorded it; then a live session by a unique id prefix.
        let wanted: Option<String> = session.as_deref().map(|t| {
            let live = self.daemon.resolve(t).ok();
            let exact = live
                .as_ref()
                .filter(|h| h.id() == t || h.name().as_deref() == Some(t));
            match (exact, live.as_ref()) {
                (Some(h), _) => h.id().to_string(),
                _ if self.daemon.events.mentions(t) => t.to_string(),
                (None, Some(h)) => h.id().to_string(),
                (None, None) => t.to_string(),
            }
        });
        let keep = |e: &hearth_rpc::Event| {
            wanted
                .as_deref()
                .is_none_or(|w| e.session == w || e.name.as_deref() == Some(w))
        };
        let ring = &self.daemon.events;
        let since = since.unwrap_or_else(|| ring.next_seq());
        let max = (max as usize).clamp(1, 10_000);
        let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_EVENTS_WAIT_MS)));
        let deadline = tokio::time::Instant::now() + wait;
        let mut from = since;
        loop {
            let (events, next) = ring.read(from, max, keep);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !events.is_empty() || left.is_zero() {
                return Ok(EventBatch { events, next });
            }
            from = next;
            ring.wait_for(next, left).await;
        }
    }

    async fn restart(
        self,
        _: Context,
        target: String,
        open: Option<Grant>,
        keys_only: bool,
    ) -> Result<SessionInfo, ApiError> {
        self.check()?;
        self.daemon
            .on_main(move |daemon| async move { daemon.restart(&target, open, keys_only).await })
            .await
    }

    async fn send(
        self,
        ctx: Context,
        target: String,
        req: SendRequest,
    ) -> Result<SendReply, ApiError> {
        self.check()?;
        match self.daemon.resolve(&target)? {
            Target::Local(h) => {
                // SAFETY: getuid has no preconditions.
                let uid = unsafe { libc::getuid() };
                h.session.send_request(req, uid).await
            }
            Target::Remote(r) => r.call(async |c, id| c.send(ctx, id, req).await).await,
        }
    }

    async fn wait(
        self,
        ctx: Context,
        target: String,
        req: WaitRequest,
    ) -> Result<WaitReply, ApiError> {
        self.check()?;
        match self.daemon.resolve(&target)? {
            Target::Local(h) => h.session.wait_request(req).await,
            Target::Remote(r) => r.call(async |c, id| c.wait(ctx, id, req).await).await,
        }
    }

    async fn screen(self, ctx: Context, target: String, ansi: bool) -> Result<String, ApiError> {
        self.check()?;
        let resolved = if self.daemon.means_ended(&target).await {
            Err(ApiError::not_found(format!("session {target} has ended")))
        } else {
            self.daemon.resolve(&target)
        };
        let hosted = match resolved {
            Ok(Target::Local(h)) => h,
            Ok(Target::Remote(r)) => {
                return r.call(async |c, id| c.screen(ctx, id, ansi).await).await;
            }
            // An ended session's last screen: its recording replayed into the screen model.
            Err(e) if e.kind == ErrorKind::NotFound => {
                let ended = self.daemon.find_ended(&target).await?;
                let Some(path) = ended.recording.filter(|p| p.is_file()) else {
                    return Err(ApiError::not_found(format!(
                        "session {} has ended and has no recording to rebuild its screen from",
                        ended.id
                    )));
                };
                let screen = tokio::task::spawn_blocking(move || session::cast::last_screen(&path))
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .map_err(|e| ApiError::internal(format!("cannot read the recording: {e}")))?;
                return Ok(if ansi {
                    String::from_utf8_lossy(&screen.repaint()).into_owned()
                } else {
                    screen.text()
                });
            }
            Err(e) => return Err(e),
        };
        Ok(hosted.session.screen_of(ansi))
    }

    async fn history(
        self,
        _: Context,
        target: Option<String>,
        since_unix: Option<u64>,
    ) -> Result<Vec<EndedSession>, ApiError> {
        self.check()?;
        let Some(dir) = self.daemon.history_dir().map(std::path::Path::to_path_buf) else {
            return Ok(Vec::new());
        };
        let live = self.daemon.live_ids();
        tokio::task::spawn_blocking(move || match target {
            Some(t) => history::find(&dir, &live, &t).map(|r| vec![r.info()]),
            None => Ok(history::list(&dir, &live, since_unix)),
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    }

    async fn search(
        self,
        _: Context,
        request: hearth_rpc::SearchRequest,
        cursor: Option<hearth_rpc::SearchCursor>,
    ) -> Result<hearth_rpc::SearchBatch, ApiError> {
        self.check()?;
        let Some(dir) = self.daemon.history_dir().map(std::path::Path::to_path_buf) else {
            return Err(ApiError::state(
                "recording is off in this daemon ([recording] enabled = false): there is \
                 nothing to search",
            ));
        };
        let live = self.daemon.live_names();
        tokio::task::spawn_blocking(move || {
            let names = history::names(&dir);
            crate::search::run(&dir, &request, cursor, &live, &names)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    }

    async fn share(
        self,
        _: Context,
        target: String,
        expires_secs: Option<u64>,
        replay: bool,
    ) -> Result<hearth_rpc::Share, ApiError> {
        self.check()?;
        self.daemon
            .share(
                &target,
                expires_secs.map(std::time::Duration::from_secs),
                replay,
            )
            .await
    }

    async fn shares(self, _: Context) -> Result<Vec<hearth_rpc::Share>, ApiError> {
        self.check()?;
        self.daemon.shares()
    }

    async fn unshare(
        self,
        _: Context,
        which: Option<String>,
        all: bool,
    ) -> Result<Vec<hearth_rpc::Share>, ApiError> {
        self.check()?;
        self.daemon.unshare(which, all).await
    }

    async fn shutdown(self, _: Context, keep_sessions: bool) -> Result<(), ApiError> {
        self.check()?;
        if keep_sessions {
            let held = self.daemon.registry.all().len();
            if held > 0 {
                return Err(ApiError::state(format!(
                    "{held} session(s) run inside this daemon's process and would end with it; \
                     only sessions in processes of their own (`[sessions] processes = \"own\"`) \
                     outlive the daemon. `hearth shutdown` ends them all"
                )));
            }
        }
        tracing::info!(keep_sessions, "shutdown requested over the control socket");
        self.daemon
            .end_sessions_on_stop
            .store(!keep_sessions, Ordering::Release);
        self.daemon.cancel.cancel();
        Ok(())
    }
}
