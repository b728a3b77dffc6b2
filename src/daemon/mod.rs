//! The daemon: the registry of sessions, the control socket's accept loop (peer uid checked
//! on every connection), the tarpc adapter ([`service`]) and clean shutdown.
//!
//! [`Daemon::run`] takes the bound socket and a shutdown token, so tests bind first and
//! never race. One cancellation tree: the daemon's token is the parent of every session's,
//! and one `TaskTracker` waits for every task. This module translates between the control
//! API and the session/SSH layers; it must not do terminal work itself.

pub mod config_file;
pub mod events;
pub mod frames;
pub mod history;
pub mod hooks;
pub mod host;
pub mod plan;
pub mod registry;
pub mod remote;
pub mod service;
pub mod socket;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use hearth_rpc::{ApiError, CreateRequest, ErrorKind, SessionInfo};
use tarpc::server::{BaseChannel, Channel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::session::{Limits, Session};
use crate::ssh;
use registry::{Hosted, Registry};

/// A session `kill` removed: what started it (for `restart`) and how it ended (so a
/// follower reading it as it was killed learns the exit, not "not found").
#[derive(Debug, Clone)]
pub struct Ended {
    pub id: String,
    pub request: CreateRequest,
    pub exit_code: Option<i32>,
    /// Its recording, if one was made.
    pub recording: Option<PathBuf>,
}

/// Removed sessions whose request `restart` remembers.
const REMEMBER_ENDED: usize = 64;

/// Calls one control connection may have in flight at once.
const MAX_REQUESTS_PER_CONNECTION: usize = 64;

/// Control connections open at once; at the cap, a new one closes the one idle longest
/// (so 20,000 idle connections of a runaway script never keep `ps` out).
pub const MAX_CONTROL_CONNECTIONS: usize = 256;

/// A monotonic clock for control connections' activity (milliseconds since first use).
pub(crate) fn control_clock() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// The open control connections: when each last sent something, and how to close it.
#[derive(Default)]
struct ControlConns {
    next: u64,
    live: std::collections::HashMap<u64, (Arc<std::sync::atomic::AtomicU64>, CancellationToken)>,
}

/// Daemon-wide settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between SIGHUP and SIGKILL when ending a session.
    pub kill_grace: Duration,
    pub limits: Limits,
    pub max_sessions: usize,
    /// `[limits] idle_kill_after`: sessions idle this long (no output, no input, nobody
    /// attached) are pruned.
    pub idle_kill_after: Option<Duration>,
    /// Concurrent SSH connections that have not authenticated yet, daemon-wide (random
    /// early drop from half of it)...
    pub max_unauthenticated: usize,
    /// ...and from one source (an IPv4 address or an IPv6 /64, or the blocks below).
    pub max_unauthenticated_per_source: usize,
    /// What one source is (`[limits] per_source_netblock`).
    pub source_prefixes: ssh::preauth::Prefixes,
    /// Time allowed from connect to successful auth.
    pub login_grace: Duration,
    /// Where `~/.ssh` (owner keys) is read, and sessions start by default.
    pub home: PathBuf,
    /// The command when a request names none and gives no shell: the daemon's `$SHELL`.
    pub shell: String,
    pub host_key: PathBuf,
    /// Where sessions record (`None`: no recording).
    pub record: Option<crate::session::record::RecordConfig>,
    /// Events kept in the daemon-wide ring.
    pub event_ring: usize,
    /// `[[hooks]]`: commands run on events.
    pub hooks: Vec<config_file::Hook>,
    /// `[[triggers]]`: output triggers for the sessions they name.
    pub triggers: Vec<crate::session::trigger::Trigger>,
    /// Default pause-menu trigger and window (`None`: sessions start without a menu).
    pub menu: Option<crate::menu::MenuConfig>,
    /// The `hearth` binary, to start sessions through its exec shim (`None`: directly).
    pub exec_shim: Option<PathBuf>,
    /// Where the lobby listens (`None`: no lobby).
    pub lobby: Option<std::net::SocketAddr>,
    /// The web front (`None`: no web links).
    pub web: Option<config_file::Web>,
    /// The size a session starts at when its request gives none (`[sessions] size`).
    pub default_size: Option<(u16, u16)>,
    /// Serve each new session from a process of its own (`hearth session-host`), so it
    /// outlives this daemon (`[sessions] processes`, default "own"; `daemon
    /// --sessions-in-daemon` turns it off).
    pub session_processes: bool,
    /// Set in a session host: the one session it serves.
    pub host: Option<host::HostStart>,
    /// The log file (`daemon --log-file`), which session hosts share.
    pub log_file: Option<PathBuf>,
    /// `[[profiles]]`: how agents' screens read as states.
    pub profiles: Arc<Vec<crate::session::profile::Profile>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kill_grace: Duration::from_secs(3),
            limits: Limits::default(),
            max_sessions: 100,
            idle_kill_after: None,
            // A pre-auth connection costs a task and a few KiB, not a process as in sshd.
            max_unauthenticated: 4096,
            max_unauthenticated_per_source: 10,
            source_prefixes: ssh::preauth::Prefixes::default(),
            event_ring: events::DEFAULT_CAPACITY,
            hooks: Vec::new(),
            triggers: Vec::new(),
            login_grace: Duration::from_secs(30),
            home: crate::paths::home_dir(),
            shell: std::env::var("SHELL")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".into()),
            host_key: crate::paths::host_key(),
            menu: Some(crate::menu::MenuConfig::default()),
            exec_shim: None,
            lobby: None,
            web: None,
            default_size: None,
            session_processes: false,
            host: None,
            log_file: None,
            profiles: Arc::default(),
            record: Some(crate::session::record::RecordConfig::new(
                crate::paths::recordings_dir(),
            )),
        }
    }
}

/// `hearth daemon`: load the config file, bind the control socket, run until a signal or
/// the `shutdown` call.
pub async fn main(
    socket: PathBuf,
    kill_grace: f64,
    login_grace: u64,
    (lobby_port, lobby_bind): (Option<u16>, Option<String>),
    (web_port, web_bind): (Option<u16>, Option<String>),
    (sessions_in_daemon, replace): (bool, bool),
    log_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut config = load_config(kill_grace, login_grace)?;
    config.lobby = config_file::load_lobby(&crate::paths::config_file(), lobby_port, lobby_bind)?;
    config.web = config_file::load_web(&crate::paths::config_file(), web_port, web_bind)?;
    config.session_processes &= !sessions_in_daemon;
    config.log_file = log_file;
    if replace {
        take_over(&socket).await?;
    }
    serve(socket, config, replace).await
}

/// `daemon --replace`: ask the daemon running on `socket` to stop without ending its
/// sessions (over the socket; with SIGTERM when it speaks another protocol version). A
/// daemon that holds sessions in its own process refuses, and nothing is replaced.
async fn take_over(socket: &Path) -> anyhow::Result<()> {
    use hearth_rpc::socket::ConnectError;
    match hearth_rpc::socket::connect(socket).await {
        Ok((client, info)) => {
            tracing::info!(pid = info.pid, version = %info.version, "taking over from the running daemon");
            if let Ok(Err(e)) = client.shutdown(tarpc::context::current(), true).await {
                anyhow::bail!(
                    "the running daemon (pid {}) cannot hand over: {}",
                    info.pid,
                    e.message
                );
            }
        }
        // Nothing answers: start as usual.
        Err(ConnectError::Unreachable(..)) => {}
        Err(e) => {
            let Some(pid) = socket::holder(socket) else {
                anyhow::bail!(
                    "cannot take over from the daemon on {}: {e}",
                    socket.display()
                );
            };
            tracing::warn!(pid, error = %e, "the running daemon speaks another protocol: SIGTERM");
            // SAFETY: a plain syscall on the hearth process that holds the socket's lock.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    Ok(())
}

/// The daemon's settings: the command line's, then the config file's.
pub(crate) fn load_config(kill_grace: f64, login_grace: u64) -> anyhow::Result<Config> {
    if !(0.0..=3600.0).contains(&kill_grace) {
        anyhow::bail!("--kill-grace must be between 0 and 3600 seconds");
    }
    let file = crate::paths::config_file();
    let mut config = Config {
        kill_grace: Duration::from_secs_f64(kill_grace),
        login_grace: Duration::from_secs(login_grace),
        menu: config_file::load_menu(&file)?,
        // This process is the `hearth` binary: /proc/self/exe is it even after an upgrade
        // replaced the file.
        exec_shim: Some(PathBuf::from("/proc/self/exe")),
        record: config_file::load_recording(
            &file,
            crate::session::record::RecordConfig::new(crate::paths::recordings_dir()),
        )?,
        ..Default::default()
    };
    config_file::apply_limits(&file, &mut config)?;
    config.default_size = config_file::load_default_size(&file)?;
    config.session_processes = config_file::load_session_processes(&file)?;
    config.profiles = Arc::new(config_file::load_profiles(&file)?);
    let (ring, hooks, triggers) = config_file::load_events(&file)?;
    if let Some(n) = ring {
        config.event_ring = n;
    }
    config.hooks = hooks;
    config.triggers = triggers;
    Ok(config)
}

/// Bind the control socket at `socket` and run a daemon (or a session host) on it until a
/// signal or the `shutdown` call: signals, the child subreaper and its reaper around
/// [`Daemon::run`].
pub(crate) async fn serve(socket: PathBuf, config: Config, replace: bool) -> anyhow::Result<()> {
    raise_fd_limit();
    // Taking over: the running daemon lets go of the socket once it has stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let control = loop {
        match socket::bind(&socket).await {
            Ok(c) => break c,
            Err(e) if replace && socket::is_held(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    // The root of the cancellation tree: a signal cancels it; the task ends with it.
    let on_signal = shutdown.clone();
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT"),
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = on_signal.cancelled() => return,
        }
        on_signal.cancel();
    });
    // What sessions orphan is adopted (and reaped) here, not by init.
    if let Err(e) = crate::session::procs::become_subreaper() {
        tracing::warn!(error = %e, "cannot become a child subreaper");
    }
    let reap_stop = shutdown.clone();
    let reaper = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut child) = signal(SignalKind::child()) else {
            tracing::error!("cannot watch SIGCHLD; adopted orphans stay zombies");
            return;
        };
        loop {
            tokio::select! {
                _ = child.recv() => {}
                // Every SIGCHLD sweeps every ended child (signals that coalesce lose
                // nothing); a rare sweep anyway, for a zombie handed over without one. Rare:
                // every session process runs this, and an idle one must not wake for it.
                _ = tokio::time::sleep(Duration::from_secs(300)) => {}
                _ = reap_stop.cancelled() => return,
            }
            let _ = tokio::task::spawn_blocking(crate::session::procs::reap_orphans).await;
        }
    });
    let result = Daemon::run(control, config, shutdown.clone()).await;
    shutdown.cancel();
    let _ = signals.await;
    let _ = reaper.await;
    result
}

/// Descriptors the daemon may open: sshd forks per connection, we hold every connection
/// in one process (up to 4,096 unauthenticated ones, 256 control ones, and each session's
/// clients and pty). The soft limit is raised towards the hard one (often 1,024 -> 16,384).
const FD_LIMIT: libc::rlim_t = 16_384;

fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < FD_LIMIT {
            let was = r.rlim_cur;
            r.rlim_cur = FD_LIMIT.min(r.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 {
                tracing::debug!(from = was, to = r.rlim_cur, "raised the open-file limit");
            }
        }
    }
}

pub struct Daemon {
    config: Config,
    registry: Registry<Hosted>,
    /// Sessions served by processes of their own.
    remotes: Registry<remote::Remote>,
    ssh_config: Arc<russh::server::Config>,
    socket: PathBuf,
    started_at: SystemTime,
    /// The host key's public line and fingerprint, for `hello` and `known-hosts`.
    host_public: (String, String),
    cancel: CancellationToken,
    /// The parent of every session's SSH side. Not a child of `cancel`: on shutdown each
    /// session is ended first (its clients told and their terminals restored), then its
    /// connections are cut; this is cancelled after that, as a backstop.
    sessions_cancel: CancellationToken,
    tracker: TaskTracker,
    guard: Arc<ssh::preauth::PreAuth>,
    /// The daemon-wide event ring.
    pub events: Arc<events::EventRing>,
    /// The lobby's key for sessions in processes of their own (the daemon's only).
    lobby_key: Option<Arc<russh::keys::PrivateKey>>,
    /// Whether stopping ends the sessions in processes of their own too: `shutdown` says;
    /// a signal keeps them (sessions in this process always end with it).
    end_sessions_on_stop: std::sync::atomic::AtomicBool,
    /// What started the last sessions removed (by `kill`), for `restart`: (id, request).
    ended: parking_lot::Mutex<std::collections::VecDeque<Ended>>,
    /// Where the lobby listens, once it does.
    lobby: parking_lot::Mutex<Option<std::net::SocketAddr>>,
    /// The web front and where it listens, once it does.
    web: parking_lot::Mutex<Option<(Arc<crate::web::Front>, std::net::SocketAddr)>>,
    /// Control connections over the socket (bounded, idle-longest evicted).
    control_conns: Arc<parking_lot::Mutex<ControlConns>>,
    /// The runtime that carries the sessions' SSH traffic.
    main: tokio::runtime::Handle,
    /// The control plane's own runtime, on its own thread ([`ControlThread`]).
    control: tokio::runtime::Handle,
}

/// The control plane runs on a thread and runtime of its own, so `ps`, `screen` or `wait`
/// answer at once while the main runtime's workers are busy streaming a flood to many
/// clients (on 2 cores that queue was 30-70 ms deep at 50 viewers). Calls that bind
/// sockets or start long-lived tasks (`create`, `up`, `restart`) run their work on the
/// main runtime ([`Daemon::on_main`]), so no session traffic ever lands here.
struct ControlThread {
    handle: tokio::runtime::Handle,
    stop: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

/// The control thread's name (its runtime runs every task on it).
const CONTROL_THREAD: &str = "control";

/// Listeners and session tasks belong on the main runtime (`Daemon::on_main`); debug
/// builds (the tests' daemon) check it.
fn not_on_control_thread() {
    debug_assert_ne!(
        std::thread::current().name(),
        Some(CONTROL_THREAD),
        "session work must run on the main runtime"
    );
}

impl ControlThread {
    fn start() -> anyhow::Result<ControlThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(CONTROL_THREAD)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the control runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name(CONTROL_THREAD.into())
            .spawn(move || {
                runtime.block_on(stopped.cancelled());
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| anyhow::anyhow!("cannot start the control thread: {e}"))?;
        Ok(ControlThread {
            handle,
            stop,
            thread,
        })
    }

    /// Stop the runtime (after the task tree has ended) and wait for its thread.
    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

impl Daemon {
    /// Serve the control API on `control` until `shutdown` is cancelled (by a signal or the
    /// `shutdown` call), then end every session and remove the socket.
    pub async fn run(
        control: socket::ControlSocket,
        config: Config,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let host_key = ssh::keys::load_or_create_host_key(&config.host_key)?;
        let host_public = (
            host_key
                .public_key()
                .to_openssh()
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            ssh::keys::fingerprint_of(host_key.public_key().key_data()),
        );
        let control_thread = ControlThread::start()?;
        let daemon = Arc::new(Daemon {
            main: tokio::runtime::Handle::current(),
            control: control_thread.handle.clone(),
            host_public,
            ssh_config: Arc::new(ssh::server_config(host_key)),
            registry: Registry::default(),
            remotes: Registry::default(),
            socket: control.path.clone(),
            started_at: SystemTime::now(),
            cancel: shutdown.clone(),
            sessions_cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            ended: parking_lot::Mutex::new(std::collections::VecDeque::new()),
            lobby: parking_lot::Mutex::new(None),
            web: parking_lot::Mutex::new(None),
            control_conns: Arc::default(),
            // A host's ring lives as long as its session; the daemon's continues across
            // restarts, from its journal beside the socket.
            events: Arc::new(match &config.host {
                Some(_) => events::EventRing::new(config.event_ring),
                None => events::EventRing::journaled(
                    config.event_ring,
                    &control.path.with_file_name("events.jsonl"),
                ),
            }),
            end_sessions_on_stop: std::sync::atomic::AtomicBool::new(!config.session_processes),
            lobby_key: match &config.host {
                Some(_) => None,
                None => ssh::keys::load_or_create_host_key(&host::lobby_key(&control.path))
                    .map(Arc::new)
                    .map_err(|e| tracing::warn!(error = %e, "no lobby key: the lobby cannot join sessions in processes of their own"))
                    .ok(),
            },
            guard: Arc::new(ssh::preauth::PreAuth::new(
                config.max_unauthenticated,
                config.max_unauthenticated_per_source,
                config.source_prefixes,
            )),
            config,
        });
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        daemon.before_serving().await?;
        tracing::info!(socket = %daemon.socket.display(), pid = std::process::id(), "daemon ready");
        // Under systemd (Type=notify), say so; elsewhere this does nothing.
        if std::env::var_os("NOTIFY_SOCKET").is_some()
            && let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready])
        {
            tracing::warn!(error = %e, "cannot notify systemd of readiness");
        }
        // The listener's file is used from the control runtime (its events are driven
        // there); `control` keeps the path and the lock until the end.
        let listener = std::os::fd::AsFd::as_fd(&control.listener)
            .try_clone_to_owned()
            .map_err(|e| anyhow::anyhow!("cannot use the control socket: {e}"))?;
        let accepting = daemon.control.spawn(Daemon::accept(
            Arc::clone(&daemon),
            std::os::unix::net::UnixListener::from(listener),
            uid,
            shutdown.clone(),
        ));
        if let Some(start) = daemon.config.host.clone() {
            daemon.start_hosted(start, &shutdown).await;
        }
        shutdown.cancelled().await;
        let _ = accepting.await;
        daemon.end_sessions().await;
        daemon.sessions_cancel.cancel();
        drop(control);
        daemon.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), daemon.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not end within 5 s");
        }
        control_thread.stop().await;
        tracing::info!("daemon stopped");
        Ok(())
    }

    /// In a session host: start its one session and tell the daemon that spawned it how
    /// that went; a host whose session did not start stops.
    async fn start_hosted(self: &Arc<Self>, start: host::HostStart, shutdown: &CancellationToken) {
        let reply = self.create_as(start.request, start.restarted_from).await;
        if reply.is_ok() {
            self.serve_web_here();
        }
        host::answer(&reply);
        if reply.is_err() {
            shutdown.cancel();
        }
    }

    /// Before the first call is served: adopt the session hosts a previous daemon left and
    /// settle the rest as lost (not in a host), open the lobby, start the hooks.
    async fn before_serving(self: &Arc<Self>) -> anyhow::Result<()> {
        if self.config.host.is_none() {
            self.adopt_session_hosts().await;
            self.end_what_a_crash_left().await;
        }
        if let Some(addr) = self.config.lobby {
            self.open_lobby(addr).await?;
        }
        if let (None, Some(web)) = (&self.config.host, &self.config.web) {
            self.open_web(web.addr).await?;
        }
        if let (None, Some(after)) = (&self.config.host, self.config.idle_kill_after) {
            let (daemon, stop) = (Arc::clone(self), self.cancel.clone());
            self.tracker.spawn(async move {
                let every = (after / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = stop.cancelled() => return,
                    }
                    if let Err(e) = daemon.prune(Some(after), false, false).await {
                        tracing::warn!(error = %e.message, "idle_kill_after: prune failed");
                    }
                }
            });
        }
        if !self.config.hooks.is_empty() {
            self.tracker.spawn(hooks::run(
                Arc::new(self.config.hooks.clone()),
                Arc::clone(&self.events),
                self.tracker.clone(),
                self.cancel.clone(),
            ));
        }
        Ok(())
    }

    /// On the way out: every session ends (`shutdown`, or sessions in this process), or
    /// only this process's while those in processes of their own keep running (a signal,
    /// `shutdown --keep-sessions`).
    async fn end_sessions(&self) {
        if self
            .end_sessions_on_stop
            .load(std::sync::atomic::Ordering::Acquire)
        {
            tracing::info!("shutting down: ending every session");
            self.kill_all().await;
            return;
        }
        tracing::info!(
            sessions = self.remotes.all().len(),
            "stopping the daemon only: sessions in processes of their own keep running"
        );
        let local: Vec<String> = self
            .registry
            .all()
            .iter()
            .map(|h| h.session.id.clone())
            .collect();
        if !local.is_empty() {
            let _ = self.kill(&local, false).await;
        }
    }

    /// The control socket's accept loop, on the control runtime: each connection from this
    /// user is served there.
    async fn accept(
        daemon: Arc<Self>,
        listener: std::os::unix::net::UnixListener,
        uid: u32,
        shutdown: CancellationToken,
    ) {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot accept on the control socket");
                shutdown.cancel();
                return;
            }
        };
        // Accept failures (out of file descriptors, say) are logged once, with a count
        // when accepting works again.
        let mut failing: u64 = 0;
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        if failing == 0 {
                            tracing::warn!(error = %e, "control accept failed; retrying (logged once)");
                        }
                        failing += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if failing > 0 {
                tracing::info!(failures = failing, "control connections accepted again");
                failing = 0;
            }
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == uid => {}
                Ok(cred) => {
                    tracing::warn!(
                        peer_uid = cred.uid(),
                        "refused control connection from another user"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refused control connection: no peer credentials");
                    continue;
                }
            }
            let (key, activity, stop) = daemon.admit_control();
            let server = service::Control::new(Arc::clone(&daemon));
            let transport =
                hearth_rpc::socket::transport(frames::Guarded::new(stream).with_activity(activity));
            let conns = Arc::clone(&daemon.control_conns);
            daemon.serve_control_until(server, transport, stop, move || {
                conns.lock().live.remove(&key);
            });
        }
    }

    /// A place for a new control connection: at the cap, the connection idle longest is
    /// closed first. Returns its key, its activity clock and its stop.
    fn admit_control(&self) -> (u64, Arc<std::sync::atomic::AtomicU64>, CancellationToken) {
        use std::sync::atomic::Ordering;
        let mut conns = self.control_conns.lock();
        if conns.live.len() >= MAX_CONTROL_CONNECTIONS {
            let idlest = conns
                .live
                .iter()
                .min_by_key(|(_, (a, _))| a.load(Ordering::Relaxed))
                .map(|(k, _)| *k);
            if let Some((_, stop)) = idlest.and_then(|k| conns.live.remove(&k)) {
                stop.cancel();
                static TOLD: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !TOLD.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max = MAX_CONTROL_CONNECTIONS,
                        "too many control connections: closing the idle ones (logged once)"
                    );
                }
            }
        }
        conns.next += 1;
        let key = conns.next;
        let activity = Arc::new(std::sync::atomic::AtomicU64::new(control_clock()));
        let stop = self.cancel.child_token();
        conns
            .live
            .insert(key, (Arc::clone(&activity), stop.clone()));
        (key, activity, stop)
    }

    /// Run `work` on the main runtime (for calls that bind sockets or start session tasks:
    /// they must not land on the control thread) and wait for it.
    async fn on_main<T, F>(
        self: &Arc<Self>,
        work: impl FnOnce(Arc<Daemon>) -> F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        self.tracker
            .spawn_on(work(Arc::clone(self)), &self.main)
            .await
            .map_err(|e| ApiError::internal(format!("the call did not finish: {e}")))?
    }

    /// Serve the control API on one connection's transport: every call is a task of the
    /// tree too, and a long poll ends with the daemon.
    fn serve_control<T>(&self, server: service::Control, transport: T)
    where
        T: tarpc::Transport<
                tarpc::Response<hearth_rpc::HearthResponse>,
                tarpc::ClientMessage<hearth_rpc::HearthRequest>,
            > + Send
            + 'static,
        T::Error: std::error::Error + Send + Sync + 'static,
    {
        self.serve_control_until(server, transport, self.cancel.clone(), || {});
    }

    /// [`Daemon::serve_control`] until `stop` (a child of the daemon's), then `ended`.
    fn serve_control_until<T>(
        &self,
        server: service::Control,
        transport: T,
        stop: CancellationToken,
        ended: impl FnOnce() + Send + 'static,
    ) where
        T: tarpc::Transport<
                tarpc::Response<hearth_rpc::HearthResponse>,
                tarpc::ClientMessage<hearth_rpc::HearthRequest>,
            > + Send
            + 'static,
        T::Error: std::error::Error + Send + Sync + 'static,
    {
        use hearth_rpc::Hearth;
        // A bound on what one connection may hold: requests beyond it are refused.
        let channel = BaseChannel::with_defaults(transport)
            .max_concurrent_requests(MAX_REQUESTS_PER_CONNECTION);
        let tracker = self.tracker.clone();
        self.tracker.spawn_on(
            async move {
                let calls = stop.clone();
                let serve = channel.execute(server.serve()).for_each(|call| {
                    let stop = calls.clone();
                    tracker.spawn(async move {
                        tokio::select! {
                            _ = call => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                    std::future::ready(())
                });
                tokio::select! {
                    _ = serve => {}
                    _ = stop.cancelled() => {}
                }
                ended();
            },
            &self.control,
        );
    }

    /// A control API client inside the daemon (the lobby's), acting as the owner: the same
    /// service the socket serves, over an in-memory transport.
    pub fn local_client(self: &Arc<Self>) -> hearth_rpc::HearthClient {
        let (client, server) = tarpc::transport::channel::unbounded();
        self.serve_control(service::Control::local(Arc::clone(self)), server);
        hearth_rpc::HearthClient::new(tarpc::client::Config::default(), client).spawn()
    }

    /// Open the web front (`hearth daemon --web-port`, `[web]`; adr/0015).
    async fn open_web(self: &Arc<Self>, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the web front on {addr}: {e}"))?;
        let bound = listener.local_addr()?;
        let weak = Arc::downgrade(self);
        let route: crate::web::Router = Arc::new(move |id: &str| {
            let daemon = weak.upgrade()?;
            match daemon.resolve(id).ok()? {
                Target::Local(h) => Some(crate::web::Route::Here(Arc::clone(&h.session))),
                Target::Remote(r) => {
                    Some(crate::web::Route::Host(crate::web::host_socket(&r.socket)))
                }
            }
        });
        let front = crate::web::Front::new(
            crate::web::shares::Shares::load(Some(crate::paths::state_dir().join("shares.json"))),
            ssh::preauth::PreAuth::new(
                self.config.max_unauthenticated,
                self.config.max_unauthenticated_per_source,
                self.config.source_prefixes,
            ),
            (route, self.history_dir().map(Path::to_path_buf)),
            self.tracker.clone(),
            self.cancel.clone(),
        );
        self.tracker.spawn(Arc::clone(&front).serve(listener));
        tracing::info!(addr = %bound, "web front open");
        *self.web.lock() = Some((front, bound));
        Ok(())
    }

    /// In a session host: serve the session's live view to the front on its web socket.
    fn serve_web_here(&self) {
        let Some(h) = self.registry.all().into_iter().next() else {
            return;
        };
        let path = crate::web::host_socket(&self.socket);
        let (tracker, cancel) = (self.tracker.clone(), self.sessions_cancel.clone());
        let session = Arc::clone(&h.session);
        self.tracker.spawn(async move {
            if let Err(e) = crate::web::serve_host(path.clone(), session, tracker, cancel).await {
                tracing::warn!(path = %path.display(), error = %e, "cannot serve the web view: share links cannot show this session");
            }
        });
    }

    /// Where the web front listens, once it does.
    pub fn web_addr(&self) -> Option<std::net::SocketAddr> {
        self.web.lock().as_ref().map(|w| w.1)
    }

    fn front(&self) -> Result<(Arc<crate::web::Front>, std::net::SocketAddr), ApiError> {
        if self.config.host.is_some() {
            return Err(ApiError::state(
                "share links are the daemon's, not a session's",
            ));
        }
        self.web.lock().clone().ok_or_else(|| {
            ApiError::state(
                "this daemon serves no web links: set `[web] port` in the config file, or \
                 start it with `hearth daemon --web-port PORT` (docs/web.md)",
            )
        })
    }

    fn share_info(
        &self,
        s: &crate::web::shares::Share,
        front: &crate::web::Front,
    ) -> hearth_rpc::Share {
        let at = |secs: u64| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs))
                .to_string()
        };
        hearth_rpc::Share {
            id: s.id.clone(),
            session: s.session.clone(),
            name: self.resolve(&s.session).ok().and_then(|t| t.name()),
            token: None,
            url: None,
            created_at: at(s.created_unix),
            expires_at: at(s.expires_unix),
            viewers: front.viewers(&s.id),
            replay: s.replay,
        }
    }

    /// `share`: a new link to a session (live, or ended: then the page is its replay).
    pub async fn share(
        &self,
        target: &str,
        expires: Option<Duration>,
        replay: bool,
    ) -> Result<hearth_rpc::Share, ApiError> {
        let (front, addr) = self.front()?;
        // A live session, unless the target is an ended one's exact id or name while only
        // the start of a live id (as for `events`, `logs`, `replay`), or nothing live.
        let live = self.resolve(target).ok().map(|t| t.id().to_string());
        let id = match live {
            Some(id) if !self.means_ended(target).await => id,
            _ => {
                let e = self.find_ended(target).await?;
                if e.recording.is_none() {
                    return Err(ApiError::state(format!(
                        "session {} has ended and left no recording to show",
                        e.id
                    )));
                }
                e.id
            }
        };
        if replay && self.history_dir().is_none() {
            return Err(ApiError::state(
                "recording is off in this daemon: there is no recording to replay",
            ));
        }
        let (token, share) = {
            let (front, id) = (Arc::clone(&front), id.clone());
            let expires = expires.unwrap_or(crate::web::shares::DEFAULT_EXPIRY);
            // It writes the links' file.
            tokio::task::spawn_blocking(move || front.shares.create(&id, expires, replay))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(ApiError::invalid)?
        };
        tracing::info!(session = %id, link = %share.id, "share link made");
        let base = match &self.config.web.as_ref().and_then(|w| w.url.clone()) {
            Some(u) => u.clone(),
            None => {
                let host = if addr.ip().is_unspecified() {
                    crate::join::hostname().unwrap_or_else(|| "localhost".into())
                } else if addr.is_ipv6() {
                    format!("[{}]", addr.ip())
                } else {
                    addr.ip().to_string()
                };
                format!("http://{host}:{}", addr.port())
            }
        };
        let mut info = self.share_info(&share, &front);
        info.url = Some(format!("{base}/s/{token}"));
        info.token = Some(token);
        Ok(info)
    }

    /// `share --list`.
    pub fn shares(&self) -> Result<Vec<hearth_rpc::Share>, ApiError> {
        let (front, _) = self.front()?;
        Ok(front
            .shares
            .list()
            .iter()
            .map(|s| self.share_info(s, &front))
            .collect())
    }

    /// `share --revoke`: the links revoked (their viewers are cut).
    pub async fn unshare(
        &self,
        which: Option<String>,
        all: bool,
    ) -> Result<Vec<hearth_rpc::Share>, ApiError> {
        let (front, _) = self.front()?;
        if which.is_none() && !all {
            return Err(ApiError::invalid("give a link's token or id, or --all"));
        }
        let f = Arc::clone(&front);
        // It writes the links' file.
        let gone = tokio::task::spawn_blocking(move || {
            f.shares.revoke(if all { None } else { which.as_deref() })
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::not_found)?;
        tracing::info!(links = gone.len(), "share links revoked");
        Ok(gone.iter().map(|s| self.share_info(s, &front)).collect())
    }

    /// Open the lobby's listener (`hearth daemon --lobby-port`, `[lobby]`).
    async fn open_lobby(self: &Arc<Self>, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        use anyhow::Context;
        let listener = ssh::bind(addr.ip(), addr.port())
            .await
            .with_context(|| format!("cannot open the lobby on {addr}"))?;
        let server = Arc::new(ssh::LobbyServer {
            access: Arc::new(ssh::Access {
                owners: ssh::keys::OwnerKeys::new(self.config.home.clone()),
                ..Default::default()
            }),
            config: Arc::clone(&self.ssh_config),
            guard: Arc::clone(&self.guard),
            login_grace: self.config.login_grace,
            sessions: Arc::new(LobbySessions(Arc::downgrade(self))),
            host: crate::join::hostname().unwrap_or_else(|| "this machine".into()),
            delegate: self.lobby_key.clone(),
            cancel: self.cancel.child_token(),
            tracker: self.tracker.clone(),
        });
        let listener = ssh::serve(listener, ssh::Place::Lobby(server))?;
        tracing::info!(addr = %listener.addr, "lobby open");
        *self.lobby.lock() = Some(listener.addr);
        Ok(())
    }

    /// Where the lobby listens, if it is open.
    pub fn lobby_addr(&self) -> Option<std::net::SocketAddr> {
        *self.lobby.lock()
    }

    /// The session `target` names (id, name or unique id prefix), wherever it runs.
    pub fn resolve(&self, target: &str) -> Result<Target, ApiError> {
        match self.registry.resolve(target) {
            Ok(h) => Ok(Target::Local(h)),
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.remotes.resolve(target).map(Target::Remote)
            }
            Err(e) => Err(e),
        }
    }

    fn new_id(&self) -> String {
        if let Some(host) = &self.config.host {
            return host.id.clone();
        }
        loop {
            let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
            if !self.registry.id_taken(&id) && !self.remotes.id_taken(&id) {
                return id;
            }
        }
    }

    /// Start again what a session ran (command, cwd, env, name, port, options): an exited
    /// session is removed first; a running one is refused; a removed one is found among
    /// the last 64 killed.
    pub async fn restart(
        self: &Arc<Self>,
        target: &str,
        open: Option<hearth_rpc::Grant>,
        keys_only: bool,
    ) -> Result<SessionInfo, ApiError> {
        // Refused before anything is ended: an open session is reopened to anyone only when
        // asked again.
        let was_open = match self.resolve(target) {
            Ok(t) => t.request().open,
            Err(e) if e.kind == ErrorKind::NotFound => self.find_ended(target).await?.request.open,
            Err(e) => return Err(e),
        };
        if was_open.is_some() && open.is_none() && !keys_only {
            return Err(ApiError::state(format!(
                "session {target} was started with --open (anyone who reaches the port joins): \
                 `hearth restart {target} --open` keeps it open, `--keys-only` restarts it for \
                 keys only"
            )));
        }
        let (mut req, old) = match self.resolve(target) {
            Ok(t) => {
                let id = t.id().to_string();
                if t.info().await.exit_code.is_none() {
                    return Err(ApiError::state(format!(
                        "session {id} is still running: `hearth kill` it first, or wait for it to exit"
                    )));
                }
                // With the name it has now (it may have been renamed).
                let req = CreateRequest {
                    name: t.name(),
                    ..t.request().clone()
                };
                self.kill(std::slice::from_ref(&id), false).await?;
                (req, id)
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                let ended = self.find_ended(target).await?;
                (ended.request, ended.id)
            }
            Err(e) => return Err(e),
        };
        req.open = open;
        self.create_as(req, Some(old)).await
    }

    /// Give a session another name: unique among live sessions (and names being claimed),
    /// not one that looks like an id. A session in a process of its own is renamed there
    /// (its events, audit and history carry the name), then here.
    pub async fn rename(
        self: &Arc<Self>,
        target: &str,
        name: &str,
    ) -> Result<SessionInfo, ApiError> {
        plan::validate_name(name)?;
        let t = self.resolve(target)?;
        if t.name().as_deref() == Some(name) {
            return Ok(t.info().await);
        }
        let taken = |n: &str| {
            ApiError::new(
                ErrorKind::AlreadyExists,
                format!("a session named '{n}' already exists"),
            )
        };
        match t {
            Target::Local(h) => {
                // Held until the new name is in place: no create or rename takes it meanwhile.
                let _claim = self.registry.claim(Some(name), usize::MAX)?;
                if self
                    .remotes
                    .resolve(name)
                    .is_ok_and(|r| r.name.lock().as_deref() == Some(name))
                {
                    return Err(taken(name));
                }
                h.session.rename(name.to_string());
                let info = h.info();
                if let Some(dir) = self.history_dir() {
                    history::write(dir, &history::Record::new(&info, &h.request));
                }
                Ok(info)
            }
            Target::Remote(r) => {
                let _claim = self.remotes.claim(Some(name), usize::MAX)?;
                if self
                    .registry
                    .resolve(name)
                    .is_ok_and(|h| h.session.name().as_deref() == Some(name))
                {
                    return Err(taken(name));
                }
                self.rename_remote(&r, name).await
            }
        }
    }

    pub async fn create(self: &Arc<Self>, req: CreateRequest) -> Result<SessionInfo, ApiError> {
        self.create_as(req, None).await
    }

    /// [`Daemon::create`], noting the session it restarts.
    async fn create_as(
        self: &Arc<Self>,
        req: CreateRequest,
        restarted_from: Option<String>,
    ) -> Result<SessionInfo, ApiError> {
        not_on_control_thread();
        if self.cancel.is_cancelled() {
            return Err(ApiError::state("the daemon is shutting down"));
        }
        if self.config.session_processes && self.config.host.is_none() {
            return self.create_remote(req, restarted_from).await;
        }
        let mut plan = plan::plan(&req, &self.config)?;
        // Name and slot are claimed atomically before any await; held until registered.
        let _claim = self
            .registry
            .claim(plan.name.as_deref(), self.config.max_sessions)?;
        // Bind first: a busy port fails the call before anything is spawned.
        let bind = plan.bind;
        let (listener, port) = self.bind_session_port(bind, plan.port).await?;

        let id = self.new_id();
        let mut keep = self.live_ids();
        keep.insert(id.clone());
        let (sid, limits) = (id.clone(), self.config.limits.clone());
        let (name, mut spec, record) = (plan.name.clone(), plan.spec.clone(), plan.record.clone());
        spec.session_id = Some(id.clone());
        spec.socket = Some(match &self.config.host {
            Some(host) => host.daemon_socket.clone(),
            None => self.socket.clone(),
        });
        let open = plan.open;
        let session_triggers = std::mem::take(&mut plan.triggers);
        // fork/exec and the recording's files: blocking work, off the runtime.
        // Events from the first byte on; held until `created` is published.
        let sink = events::SessionSink::new(Arc::clone(&self.events), &id, name.as_deref());
        let early = Arc::clone(&sink);
        let session = tokio::task::spawn_blocking(move || {
            let events: crate::session::EventSink = Box::new(move |e| early.emit(e));
            Session::start(
                sid,
                name,
                spec,
                limits,
                record.as_ref().map(|r| (r, &keep)),
                Some(events),
            )
        })
        .await
        .map_err(|e| ApiError::internal(format!("session start panicked: {e}")))?
        .map_err(ApiError::from)?;
        let shared = self.ssh_shared(&session, plan);
        let listener = match ssh::serve(listener, ssh::Place::Session(Arc::clone(&shared))) {
            Ok(l) => l,
            Err(e) => {
                session.terminate(self.config.kill_grace).await;
                return Err(ApiError::internal(format!(
                    "cannot serve the listener: {e}"
                )));
            }
        };
        let hosted = Arc::new(Hosted {
            session,
            bind,
            port,
            shared,
            listener: parking_lot::Mutex::new(Some(listener)),
            request: CreateRequest {
                port: Some(port),
                ..req
            },
            restarted_from,
        });
        self.registry.insert(Arc::clone(&hosted));
        if let Some(dir) = self.history_dir() {
            history::write(dir, &history::Record::new(&hosted.info(), &hosted.request));
            history::prune(dir, history::MAX_RECORDS, &self.live_ids());
        }
        self.close_on_exit(&hosted);
        sink.open();
        self.watch_events(&hosted);
        self.start_triggers(&hosted, session_triggers);
        self.watch_agent(&hosted);
        let info = hosted.info();
        tracing::info!(session = %info.id, port, command = ?info.command, "session started");
        if open.is_some() {
            tracing::warn!(session = %info.id, port, access = %info.access, "OPEN session: any client that reaches the port joins, without a key");
        }
        Ok(info)
    }

    /// What follows a session's agent from its start: the profiles' states (always: the
    /// profiles hearth ships, and terminal signals such as notifications and OSC 133 give a
    /// state without any), and, when a profile resumes after a rate limit, the resumer.
    fn watch_agent(&self, hosted: &Arc<Hosted>) {
        self.tracker.spawn(crate::session::profile::watch(
            Arc::clone(&hosted.session),
            Arc::clone(&self.config.profiles),
            self.cancel.clone(),
        ));
        if self
            .config
            .profiles
            .iter()
            .any(|p| p.on_rate_limit.is_some())
        {
            self.tracker.spawn(crate::session::resume::run(
                Arc::clone(&hosted.session),
                Arc::clone(&self.config.profiles),
                self.cancel.clone(),
            ));
        }
    }

    /// A session's listener on `bind`:`port` (0: any free port), and the port it got. A port
    /// a session that is down still owns is refused with what to do about it.
    async fn bind_session_port(
        &self,
        bind: std::net::IpAddr,
        port: u16,
    ) -> Result<(tokio::net::TcpListener, u16), ApiError> {
        if port != 0
            && let Some(owner) = self.registry.port_owner(port)
        {
            return Err(port_kept(port, &owner.session.id));
        }
        let listener = ssh::bind(bind, port).await.map_err(|e| {
            ApiError::new(
                ErrorKind::PortUnavailable,
                format!("cannot listen on {bind} port {port}: {e}"),
            )
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| ApiError::internal(e.to_string()))?
            .port();
        Ok((listener, port))
    }

    /// Run the config's triggers that name this session, and its own, in one task.
    fn start_triggers(&self, hosted: &Hosted, own: Vec<crate::session::trigger::Trigger>) {
        let mut triggers: Vec<_> = self
            .config
            .triggers
            .iter()
            .filter(|t| t.applies_to(&hosted.session.id, hosted.session.name().as_deref()))
            .cloned()
            .collect();
        triggers.extend(own);
        if !triggers.is_empty() {
            self.tracker.spawn(crate::session::trigger::run(
                Arc::clone(&hosted.session),
                triggers,
                self.cancel.clone(),
            ));
        }
    }

    fn publish(&self, h: &Hosted, kind: hearth_rpc::EventKind) {
        self.events
            .publish(&h.session.id, h.session.name().as_deref(), kind);
    }

    /// `busy`/`idle`/`recording_error`: the session reports them from its own activity,
    /// through its event sink like the rest of its events.
    fn watch_events(&self, hosted: &Arc<Hosted>) {
        self.tracker.spawn(crate::session::activity::report(
            Arc::clone(&hosted.session),
            self.cancel.clone(),
        ));
    }

    /// An exited session accepts no joins: free its port once the program ends, and note
    /// the end in its history record.
    fn close_on_exit(&self, hosted: &Arc<Hosted>) {
        let watched = Arc::clone(hosted);
        let stop = self.cancel.clone();
        let dir = self.history_dir().map(Path::to_path_buf);
        self.tracker.spawn(async move {
            let mut exit = watched.session.exit_watch();
            tokio::select! {
                _ = exit.wait_for(|c| c.is_some()) => {
                    watched.close_listener();
                    if let Some(dir) = dir {
                        record_end(&dir, &watched);
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Where history records are kept: beside the recordings (none when recording is off
    /// daemon-wide).
    pub fn history_dir(&self) -> Option<&Path> {
        self.config.record.as_ref().map(|r| r.dir.as_path())
    }

    /// Sessions of a previous daemon that died without ending them (and that no session
    /// host adopted here serves): note them as lost in history before the first call is
    /// served (so `history` never shows them as running), and end what they left running.
    async fn end_what_a_crash_left(&self) {
        let Some(dir) = self.history_dir().map(Path::to_path_buf) else {
            return;
        };
        let live = self.live_ids();
        if let Ok(lost) =
            tokio::task::spawn_blocking(move || history::settle_lost(&dir, &live)).await
        {
            self.end_marked(lost);
        }
    }

    /// End what sessions that are gone (`lost`) left running (children that ignored the
    /// hangup or left the tty's session), with the usual SIGHUP, grace, SIGKILL, in the
    /// background.
    fn end_marked(&self, lost: std::collections::HashSet<String>) {
        if lost.is_empty() {
            return;
        }
        let grace = self.config.kill_grace;
        let stop = self.cancel.clone();
        self.tracker.spawn(async move {
            let lost = Arc::new(lost);
            let marked = Arc::clone(&lost);
            let Ok(pids) =
                tokio::task::spawn_blocking(move || crate::session::pty::marked_processes(&marked))
                    .await
            else {
                return;
            };
            if pids.is_empty() {
                return;
            }
            tracing::warn!(
                sessions = lost.len(),
                processes = pids.len(),
                "ending what sessions that are gone left running"
            );
            for p in &pids {
                // SAFETY: a plain syscall; a process already gone is fine.
                unsafe { libc::kill(*p, libc::SIGHUP) };
            }
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = stop.cancelled() => {}
            }
            // Looked up again: a pid that ended meanwhile may be someone else's now.
            let left =
                tokio::task::spawn_blocking(move || crate::session::pty::marked_processes(&lost))
                    .await
                    .unwrap_or_default();
            for p in left {
                // SAFETY: as above.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        });
    }

    /// Ids of the sessions this daemon holds (in a session host: also the ones the daemon
    /// held when it started this host).
    /// Sessions whose program runs: their ids and names now.
    pub fn live_names(&self) -> std::collections::HashMap<String, Option<String>> {
        self.registry
            .all()
            .iter()
            .filter(|h| h.session.exit_code().is_none())
            .map(|h| (h.session.id.clone(), h.session.name()))
            .chain(
                self.remotes
                    .all()
                    .iter()
                    .filter(|r| !r.exited())
                    .map(|r| (r.id.clone(), r.name.lock().clone())),
            )
            .collect()
    }

    pub fn live_ids(&self) -> std::collections::HashSet<String> {
        let held = self.config.host.iter().flat_map(|h| h.keep.iter().cloned());
        self.registry
            .all()
            .iter()
            .map(|h| h.session.id.clone())
            .chain(self.remotes.all().iter().map(|r| r.id.clone()))
            .chain(held)
            .collect()
    }

    /// What every SSH connection of a new session shares.
    fn ssh_shared(&self, session: &Arc<Session>, plan: plan::Plan) -> Arc<ssh::SessionServer> {
        Arc::new(ssh::SessionServer {
            session: Arc::clone(session),
            access: Arc::new(ssh::Access {
                owners: ssh::keys::OwnerKeys::new(self.config.home.clone()),
                collaborators: plan.collaborators,
                viewers: plan.viewers,
                viewers_only: plan.viewers_only,
                open: plan.open,
                delegate: self.config.host.as_ref().and_then(|h| {
                    let path = host::lobby_key(&h.daemon_socket);
                    let key = russh::keys::load_secret_key(&path, None).ok()?;
                    Some(key.public_key().key_data().clone())
                }),
            }),
            guard: Arc::clone(&self.guard),
            login_grace: self.config.login_grace,
            config: Arc::clone(&self.ssh_config),
            menu: plan.menu,
            viewer_history: plan.viewer_history,
            cancel: self.sessions_cancel.child_token(),
            tracker: self.tracker.clone(),
            connections: TaskTracker::new(),
        })
    }

    pub async fn up(&self, target: &str) -> Result<SessionInfo, ApiError> {
        not_on_control_thread();
        let hosted = self.registry.resolve(target)?;
        if hosted.session.exit_code().is_some() {
            return Err(ApiError::state(format!(
                "session {} has exited; it cannot be brought up",
                hosted.session.id
            )));
        }
        if hosted.listener.lock().is_some() {
            return Ok(hosted.info());
        }
        let listener = ssh::bind(hosted.bind, hosted.port).await.map_err(|e| {
            ApiError::new(
                ErrorKind::PortUnavailable,
                format!("cannot listen again on port {}: {e}", hosted.port),
            )
        })?;
        let listener = ssh::serve(listener, ssh::Place::Session(Arc::clone(&hosted.shared)))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut slot = hosted.listener.lock();
        if slot.is_some() {
            listener.close();
        } else {
            *slot = Some(listener);
        }
        drop(slot);
        self.publish(&hosted, hearth_rpc::EventKind::Up);
        Ok(hosted.info())
    }

    pub fn down(&self, target: &str, kick: bool) -> Result<SessionInfo, ApiError> {
        let hosted = self.registry.resolve(target)?;
        hosted.close_listener();
        self.publish(&hosted, hearth_rpc::EventKind::Down);
        if kick {
            hosted.session.kick_all(service::BY_CLI);
        }
        Ok(hosted.info())
    }

    /// Sessions to prune: those whose program ended (`exited`), and those idle for `idle`
    /// (no output and no input for that long, nobody attached). Unless `dry_run`, each gets
    /// a `pruned` event saying why and is killed (its history record says how it ended).
    pub async fn prune(
        &self,
        idle: Option<Duration>,
        exited: bool,
        dry_run: bool,
    ) -> Result<Vec<SessionInfo>, ApiError> {
        if idle.is_none() && !exited {
            return Err(ApiError::invalid(
                "say what to prune: --idle DUR, --exited, or both",
            ));
        }
        let targets: Vec<Target> = (self.registry.all().into_iter().map(Target::Local))
            .chain(self.remotes.all().into_iter().map(Target::Remote))
            .collect();
        let mut picked = Vec::new();
        for t in targets {
            let info = t.info().await;
            if let Some(reason) = prune_reason(&info, idle, exited, SystemTime::now()) {
                picked.push((info, reason));
            }
        }
        if dry_run {
            return Ok(picked.into_iter().map(|(info, _)| info).collect());
        }
        let mut pruned = Vec::with_capacity(picked.len());
        for (info, reason) in picked {
            tracing::info!(session = %info.id, %reason, "pruned");
            self.events.publish(
                &info.id,
                info.name.as_deref(),
                hearth_rpc::EventKind::Pruned { reason },
            );
            // Gone meanwhile (it ended, someone killed it): nothing to do.
            if let Ok(mut killed) = self.kill(std::slice::from_ref(&info.id), false).await {
                pruned.append(&mut killed);
            }
        }
        Ok(pruned)
    }

    pub async fn kill(&self, targets: &[String], all: bool) -> Result<Vec<SessionInfo>, ApiError> {
        let victims: Vec<Target> = if all {
            let local = self.registry.all().into_iter().map(Target::Local);
            local
                .chain(self.remotes.all().into_iter().map(Target::Remote))
                .collect()
        } else {
            if targets.is_empty() {
                return Err(ApiError::invalid("name at least one session, or use --all"));
            }
            // Resolve every target before touching any: a typo kills nothing.
            let mut v: Vec<Target> = Vec::new();
            for t in targets {
                let t = self.resolve(t)?;
                if !v.iter().any(|x| x.id() == t.id()) {
                    v.push(t);
                }
            }
            v
        };
        let grace = self.config.kill_grace;
        let ended = futures::future::join_all(victims.iter().map(|t| async move {
            match t {
                Target::Local(h) => end_session(h, grace).await,
                Target::Remote(r) => self.end_remote(r).await,
            }
        }))
        .await;
        for (t, info) in victims.iter().zip(&ended) {
            if let (Some(dir), Target::Local(h)) = (self.history_dir(), t) {
                record_end(dir, h);
            }
            self.registry.remove(t.id());
            self.remotes.remove(t.id());
            self.remember(Ended {
                id: t.id().to_string(),
                request: CreateRequest {
                    name: t.name(),
                    ..t.request().clone()
                },
                exit_code: info.exit_code,
                recording: info.recording.as_ref().map(PathBuf::from),
            });
        }
        // A session host ends with its session: a moment after this reply has left (the
        // daemon also asks it to stop at once, with `shutdown`).
        if self.config.host.is_some() && self.registry.all().is_empty() {
            let stop = self.cancel.clone();
            self.tracker.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => stop.cancel(),
                    _ = stop.cancelled() => {}
                }
            });
        }
        self.trim_soon();
        Ok(ended)
    }

    /// Keep what started a removed session, and how it ended, for `restart` and readers.
    fn remember(&self, ended: Ended) {
        let mut remembered = self.ended.lock();
        remembered.push_back(ended);
        if remembered.len() > REMEMBER_ENDED {
            remembered.pop_front();
        }
    }

    /// Give the memory of ended sessions back to the system a moment after they go (their
    /// tasks and threads let go of them just after `kill` returns). glibc keeps freed memory
    /// in its per-thread arenas otherwise: RSS grew by ~100 MB over the first rounds of 100
    /// sessions started and killed, then stayed there. Coalesced: at most one pending.
    fn trim_soon(&self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            static PENDING: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if PENDING.swap(true, std::sync::atomic::Ordering::AcqRel) {
                return;
            }
            let stop = self.cancel.clone();
            self.tracker.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.cancelled() => {}
                }
                PENDING.store(false, std::sync::atomic::Ordering::Release);
                // SAFETY: malloc_trim has no preconditions; it only releases free memory.
                let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
            });
        }
    }

    /// Whether `target` is an ended session's exact id or name while only the start of a
    /// live one's id: then it means the ended one (as for `events`), not the live one.
    pub async fn means_ended(&self, target: &str) -> bool {
        match self.resolve(target) {
            Ok(t) if t.id() == target || t.name().as_deref() == Some(target) => false,
            Ok(_) => self
                .find_ended(target)
                .await
                .is_ok_and(|e| e.id == target || e.request.name.as_deref() == Some(target)),
            Err(_) => false,
        }
    }

    /// A session that has left the daemon: among the last this daemon removed (by id,
    /// name or id prefix), else from the history records on disk (so after a restart too;
    /// read off the runtime).
    pub async fn find_ended(&self, target: &str) -> Result<Ended, ApiError> {
        let remembered = self
            .ended
            .lock()
            .iter()
            .rev()
            .find(|x| {
                x.id == target
                    || x.request.name.as_deref() == Some(target)
                    || (!target.is_empty() && x.id.starts_with(target))
            })
            .cloned();
        if let Some(e) = remembered {
            return Ok(e);
        }
        let Some(dir) = self.history_dir().map(Path::to_path_buf) else {
            return Err(ApiError::not_found(format!("no session '{target}'")));
        };
        let (live, target) = (self.live_ids(), target.to_string());
        let r = tokio::task::spawn_blocking(move || history::find(&dir, &live, &target))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
        Ok(Ended {
            recording: r.recording.map(PathBuf::from),
            id: r.id,
            // The name it ended with (it may have been renamed since it started).
            request: CreateRequest {
                name: r.name,
                ..r.request
            },
            exit_code: r.exit_code,
        })
    }

    async fn kill_all(&self) {
        let _ = self.kill(&[], true).await;
    }
}

/// The error for a port that a session which is down keeps for itself.
fn port_kept(port: u16, id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::PortUnavailable,
        format!(
            "port {port} belongs to session {id} (down); `hearth up {id}` reopens it, or \
             `hearth kill {id}` frees it"
        ),
    )
}

/// A session the daemon holds: in its own process, or in a process of its own.
#[derive(Clone)]
pub enum Target {
    Local(Arc<Hosted>),
    Remote(Arc<remote::Remote>),
}

impl Target {
    pub fn id(&self) -> &str {
        match self {
            Target::Local(h) => &h.session.id,
            Target::Remote(r) => &r.id,
        }
    }

    pub fn request(&self) -> &CreateRequest {
        match self {
            Target::Local(h) => &h.request,
            Target::Remote(r) => &r.request,
        }
    }

    pub fn name(&self) -> Option<String> {
        match self {
            Target::Local(h) => h.session.name(),
            Target::Remote(r) => r.name.lock().clone(),
        }
    }

    /// Its info (a host is asked; the last known if it does not answer at once).
    pub async fn info(&self) -> SessionInfo {
        match self {
            Target::Local(h) => h.info(),
            Target::Remote(r) => r.info().await,
        }
    }
}

/// Whether a session in `state` takes joins; why not, in words for the client.
fn joinable_in(state: hearth_rpc::SessionState, label: &str, id: &str) -> Result<(), String> {
    match state {
        hearth_rpc::SessionState::Up => Ok(()),
        hearth_rpc::SessionState::Exited => Err(format!("{label} has exited")),
        hearth_rpc::SessionState::Down => Err(format!(
            "{label} is down (no new joins): `hearth up {id}` first"
        )),
    }
}

/// What the lobby sees of the daemon. Weak: the lobby's tasks never keep a stopped
/// daemon alive.
struct LobbySessions(std::sync::Weak<Daemon>);

impl ssh::Sessions for LobbySessions {
    fn joinable(&self, target: &str) -> Result<ssh::Joinable, String> {
        let daemon = self.0.upgrade().ok_or("the daemon is stopping")?;
        match daemon.resolve(target).map_err(|e| e.message)? {
            Target::Local(hosted) => {
                let label = hosted
                    .session
                    .name()
                    .unwrap_or_else(|| hosted.session.id.clone());
                joinable_in(hosted.state(), &label, &hosted.session.id)?;
                Ok(ssh::Joinable::Here(Arc::clone(&hosted.shared)))
            }
            Target::Remote(r) => {
                let label = r.name.lock().clone().unwrap_or_else(|| r.id.clone());
                joinable_in(r.state(), &label, &r.id)?;
                Ok(ssh::Joinable::Elsewhere {
                    addr: r.local_addr(),
                    name: label,
                    id: r.id.clone(),
                })
            }
        }
    }

    fn api(&self) -> hearth_rpc::HearthClient {
        match self.0.upgrade() {
            Some(daemon) => daemon.local_client(),
            // A client whose server is gone: every call fails at once.
            None => {
                let (client, _) = tarpc::transport::channel::unbounded();
                hearth_rpc::HearthClient::new(tarpc::client::Config::default(), client).spawn()
            }
        }
    }
}

fn record_end(dir: &Path, h: &Hosted) {
    let record = history::Record::new(&h.info(), &h.request)
        .ended(h.session.exit_code(), h.session.exited_at());
    history::write(dir, &record);
}

/// End one session: close its listener, end its child, give clients a moment to receive
/// the exit status, then cut what remains.
async fn end_session(h: &Hosted, grace: Duration) -> SessionInfo {
    h.close_listener();
    let code = h.session.terminate(grace).await;
    tracing::info!(session = %h.session.id, ?code, "session ended");
    // Clients leave, then their connections close (the last words flushed), within 2 s
    // together; then whatever remains is cut.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    h.session.wait_empty(Duration::from_secs(2)).await;
    h.shared.connections.close();
    let _ = tokio::time::timeout_at(deadline, h.shared.connections.wait()).await;
    h.shared.cancel.cancel();
    h.info()
}

/// Why `prune` takes this session, if it does: its program ended (with `exited`), or it
/// has been idle for `idle` (no output, no input, nobody attached) at `now`.
fn prune_reason(
    info: &SessionInfo,
    idle: Option<Duration>,
    exited: bool,
    now: SystemTime,
) -> Option<String> {
    if info.exit_code.is_some() || info.state == hearth_rpc::SessionState::Exited {
        return exited.then(|| match info.exit_code {
            Some(c) => format!("its program exited ({c})"),
            None => "its program exited".into(),
        });
    }
    let idle = idle?;
    let input_age = info
        .last_input_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .map(|t| now.duration_since(t).unwrap_or_default());
    let quiet = Duration::from_millis(info.idle_ms);
    (info.clients == 0 && quiet >= idle && input_age.is_none_or(|a| a >= idle)).then(|| {
        format!(
            "idle for {} (no output or input, nobody attached)",
            humantime::format_duration(Duration::from_secs(quiet.as_secs()))
        )
    })
}
