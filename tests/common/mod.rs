//! Test helpers: a real daemon in temp dirs ([`TestDaemon`], stopped on drop), the real CLI,
//! an in-process russh client ([`SshClient`]) that keeps a screen model of what it
//! received, OpenSSH clients driven through tmux ([`Tmux`]), and [`wait_until`]: every
//! wait is on a condition with a deadline.
#![allow(dead_code)]

pub mod mcp;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use russh::ChannelMsg;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg, ssh_key::LineEnding};
use serde_json::Value;
use tokio::sync::Notify;

pub const BIN: &str = env!("CARGO_BIN_EXE_hearth");
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The longest any one CLI call in a test may take: well above every call's own bound
/// (the longest, `wait`'s polls, are 30 s each), far below a hung suite.
/// The config that keeps sessions in the daemon's process.
pub const IN_DAEMON: &str = "[sessions]\nprocesses = \"daemon\"\n";

pub const CLI_BOUND: Duration = Duration::from_secs(90);

/// Run `cmd` to completion like [`Command::output`], but kill it and panic (naming it and
/// showing what it printed) if it takes longer than `limit`. Every process a test runs to
/// completion goes through here.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    output_fed_within(cmd, None, limit)
}

/// [`output_within`], with `input` written to the command's stdin (from a thread of its
/// own, so a command that answers while it reads cannot deadlock the test).
pub fn output_fed_within(cmd: &mut Command, input: Option<Vec<u8>>, limit: Duration) -> Output {
    use std::io::Read as _;
    let what = format!("{cmd:?}");
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = stdin.write_all(&input);
        });
    }
    let collect = |from: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = from {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = collect(child.stdout.take().map(|r| Box::new(r) as _));
    let err = collect(child.stderr.take().map(|r| Box::new(r) as _));
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// [`output_within`] as a method: `.output_bounded()` where a test would write
/// `.output().unwrap()`.
pub trait Bounded {
    fn output_bounded(&mut self) -> Output;
}

impl Bounded for Command {
    fn output_bounded(&mut self) -> Output {
        output_within(self, CLI_BOUND)
    }
}

/// A program other than hearth (ssh, tmux, sshd...) with a constructed environment: only
/// `PATH` comes from whoever runs the tests, so nothing in their environment
/// (`XDG_CONFIG_HOME`, `HEARTH_SOCKET`, `SSH_AUTH_SOCK`...) reaches what a test starts.
pub fn external(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .env("HOME", std::env::temp_dir());
    c
}

/// Poll `check` until it returns `Some`, or panic after `deadline` naming `what`.
pub fn wait_until<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The exit status a shell line wrote to `path` (`...; echo $? > path`), once it has
/// (tmux 3.3 does not always record a dead pane's).
pub fn written_status(path: &Path) -> i32 {
    wait_until(
        &format!("{} to be written", path.display()),
        DEADLINE,
        || std::fs::read_to_string(path).ok()?.trim().parse().ok(),
    )
}

/// A key pair on disk, usable by OpenSSH (`path`) and by russh (`key`).
pub struct Key {
    pub path: PathBuf,
    pub key: Arc<PrivateKey>,
}

impl Key {
    pub fn generate(path: &Path) -> Key {
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        key.write_openssh_file(path, LineEnding::LF).unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let public = key.public_key().to_openssh().unwrap();
        std::fs::write(path.with_extension("pub"), format!("{public}\n")).unwrap();
        Key {
            path: path.to_path_buf(),
            key: Arc::new(key),
        }
    }

    pub fn public_line(&self) -> String {
        self.key.public_key().to_openssh().unwrap()
    }

    pub fn pub_path(&self) -> PathBuf {
        self.path.with_extension("pub")
    }
}

/// A temp HOME (with the owner's key in ~/.ssh) and socket dir; no daemon yet.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub socket: PathBuf,
    pub owner: Key,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let ssh = home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let owner = Key::generate(&ssh.join("id_ed25519"));
        let socket = dir.path().join("run").join("hearth.sock");
        Env {
            home,
            socket,
            owner,
            dir,
        }
    }

    /// A key that is not the owner's (for collaborators or for refusals).
    pub fn other_key(&self, name: &str) -> Key {
        Key::generate(&self.dir.path().join(name))
    }

    /// Write `~/.config/hearth/config.toml`.
    pub fn write_config(&self, text: &str) {
        let conf = self.home.join(".config/hearth");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("config.toml"), text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args);
        self.environment(&mut c);
        c
    }

    /// A `sh -c SCRIPT` with the same constructed environment as [`Env::command`], and
    /// `PATH` starting with `path_first`.
    pub fn script(&self, script: &str, path_first: &Path) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        self.environment(&mut c);
        c.env(
            "PATH",
            format!(
                "{}:{}",
                path_first.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        c
    }

    /// Every process a test starts gets this environment, never the caller's: only PATH
    /// is taken from it (to find ssh, tmux, sh).
    fn environment(&self, c: &mut Command) {
        c.env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SHELL", "/bin/sh")
            .env("HEARTH_SOCKET", &self.socket)
            .env("HEARTH_LOG", "hearth=debug,info")
            // The harness starts daemons itself; a CLI call racing a starting daemon must
            // not start (and leak) a second one.
            .env("HEARTH_NO_AUTOSTART", "1")
            .current_dir(self.dir.path());
    }

    /// Run the CLI to completion, within [`CLI_BOUND`] (a hang fails the test, naming the
    /// call, instead of hanging the suite).
    pub fn cli(&self, args: &[&str]) -> Output {
        output_within(self.command(args).stdin(Stdio::null()), CLI_BOUND)
    }

    /// Run the CLI with `input` on its stdin, within [`CLI_BOUND`].
    pub fn cli_fed(&self, args: &[&str], input: &[u8]) -> Output {
        output_fed_within(&mut self.command(args), Some(input.to_vec()), CLI_BOUND)
    }

    /// Run the CLI with `--json`; (exit success, parsed stdout).
    pub fn json(&self, args: &[&str]) -> (bool, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {text:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    }

    /// `--json` call that must succeed.
    pub fn ok(&self, args: &[&str]) -> Value {
        let (ok, v) = self.json(args);
        assert!(ok, "hearth {args:?} failed: {v}");
        v
    }

    /// `--json` call that must fail with `kind`; returns the message.
    pub fn err(&self, args: &[&str], kind: &str) -> String {
        let (ok, v) = self.json(args);
        assert!(!ok, "hearth {args:?} should have failed: {v}");
        assert_eq!(v["error"]["kind"], kind, "{v}");
        v["error"]["message"].as_str().unwrap().to_string()
    }

    /// Start `hearth daemon` in the foreground, wait until it answers.
    pub fn start_daemon(self) -> TestDaemon {
        let child = self.spawn_daemon();
        let d = TestDaemon {
            env: self,
            child: Some(child),
        };
        d.wait_ready();
        d
    }

    pub fn spawn_daemon(&self) -> Child {
        self.spawn_daemon_limited(None)
    }

    /// The daemon with its open-file limit (soft and hard) set to `nofile`, if given.
    pub fn spawn_daemon_limited(&self, nofile: Option<u64>) -> Child {
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).unwrap();
        let mut c = self.command(&["daemon", "--kill-grace", "1", "--login-grace", "2"]);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit between fork and exec (async-signal-safe).
            unsafe {
                c.pre_exec(move || {
                    let r = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

pub struct TestDaemon {
    pub env: Env,
    pub child: Option<Child>,
}

impl std::ops::Deref for TestDaemon {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl TestDaemon {
    pub fn start() -> TestDaemon {
        Env::new().start_daemon()
    }

    /// A daemon whose sessions live in its own process (`[sessions] processes =
    /// "daemon"`): for what only that mode does (sessions end with the daemon).
    pub fn start_in_daemon() -> TestDaemon {
        let env = Env::new();
        env.write_config(IN_DAEMON);
        env.start_daemon()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9` the daemon (a crash): nothing of it runs its shutdown.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the daemon again on the same HOME and socket (after `crash` or `terminate`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.child = Some(self.env.spawn_daemon());
        self.wait_ready();
    }

    pub fn wait_ready(&self) {
        wait_until("the daemon to answer", DEADLINE, || {
            let out = self.cli(&["--json", "version"]);
            out.status.success().then_some(())
        });
    }

    /// Start a session running `command` (`sh -c` when one string); returns its JSON.
    pub fn session(&self, extra: &[&str], command: &[&str]) -> Value {
        let mut args = vec!["server", "--bind", "127.0.0.1"];
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(command);
        self.ok(&args)
    }

    /// A session running a plain `/bin/sh`; (id, port).
    pub fn shell(&self, extra: &[&str]) -> (String, u16) {
        let s = self.session(extra, &["/bin/sh"]);
        (id_of(&s), port_of(&s))
    }

    /// How many clients `peers` lists.
    pub fn peer_count(&self, id: &str) -> usize {
        self.ok(&["peers", id]).as_array().unwrap().len()
    }

    /// SIGTERM and wait for exit; returns whether it exited in time.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Resident memory of the daemon, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_of(self.pid())
    }
}

/// Resident memory of process `pid`, in KiB (0 once it is gone).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The peak resident memory of a process while something runs: a thread samples it every
/// 10 ms until [`PeakRss::stop`].
pub struct PeakRss {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> PeakRss {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = rss_of(pid);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_of(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(rss_of(pid))
        });
        PeakRss { stop, thread }
    }

    /// The highest RSS seen, in KiB.
    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // `shutdown` ends every session, those in processes of their own too (SIGTERM
        // stops only the daemon then); SIGTERM after it is the backstop.
        if let Some(child) = self.child.as_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            let stop = self
                .env
                .command(&["shutdown"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut stop) = stop {
                let end = Instant::now() + DEADLINE;
                while stop.try_wait().ok().flatten().is_none() && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = stop.kill();
                let _ = stop.wait();
            }
        }
        if !self.terminate() {
            eprintln!("daemon did not stop on SIGTERM");
        }
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.env.daemon_log());
        }
    }
}

// ---------------------------------------------------------------- russh client

pub struct Accept;

impl russh::client::Handler for Accept {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[derive(Default)]
pub struct Received {
    pub raw: Vec<u8>,
    /// Replies (success or failure) to our channel requests: pty-req, then shell/exec.
    pub replies: usize,
    pub exit: Option<u32>,
    pub closed: bool,
}

/// An in-process SSH client with a pty; everything received is kept and parsed.
pub struct SshClient {
    pub handle: russh::client::Handle<Accept>,
    pub write: russh::ChannelWriteHalf<russh::client::Msg>,
    pub received: Arc<Mutex<Received>>,
    pub notify: Arc<Notify>,
    pub size: (u16, u16),
}

pub async fn try_connect(
    port: u16,
    key: &Key,
    user: &str,
) -> Result<russh::client::Handle<Accept>, String> {
    let config = Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, ("127.0.0.1", port), Accept)
        .await
        .map_err(|e| e.to_string())?;
    let auth = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::clone(&key.key), None))
        .await
        .map_err(|e| e.to_string())?;
    if !auth.success() {
        return Err("auth refused".into());
    }
    Ok(handle)
}

impl SshClient {
    pub async fn connect(port: u16, key: &Key, user: &str, cols: u16, rows: u16) -> SshClient {
        Self::connect_with(port, key, user, cols, rows, None).await
    }

    pub async fn connect_with(
        port: u16,
        key: &Key,
        user: &str,
        cols: u16,
        rows: u16,
        exec: Option<&str>,
    ) -> SshClient {
        let handle = try_connect(port, key, user).await.unwrap();
        let channel = handle.channel_open_session().await.unwrap();
        channel
            .request_pty(true, "xterm-256color", cols as u32, rows as u32, 0, 0, &[])
            .await
            .unwrap();
        match exec {
            Some(cmd) => channel.exec(true, cmd).await.unwrap(),
            None => channel.request_shell(true).await.unwrap(),
        }
        let (mut read, write) = channel.split();
        let received = Arc::new(Mutex::new(Received::default()));
        let notify = Arc::new(Notify::new());
        let (r, n) = (Arc::clone(&received), Arc::clone(&notify));
        tokio::spawn(async move {
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => r.lock().raw.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => r.lock().exit = Some(exit_status),
                    ChannelMsg::Success | ChannelMsg::Failure => r.lock().replies += 1,
                    ChannelMsg::Close => break,
                    _ => {}
                }
                n.notify_waiters();
            }
            r.lock().closed = true;
            n.notify_waiters();
        });
        let client = SshClient {
            handle,
            write,
            received,
            notify,
            size: (cols, rows),
        };
        // russh returns from `request_shell` before the server answers: wait for the
        // answer (the server attaches before it says yes), or for a refusal.
        client
            .wait_for("the server to answer pty-req and shell", |c| {
                let r = c.received.lock();
                r.replies >= 2 || r.closed || r.exit.is_some()
            })
            .await;
        client
    }

    pub async fn send(&self, text: &str) {
        self.write
            .data_bytes(text.as_bytes().to_vec())
            .await
            .unwrap();
    }

    pub async fn resize(&mut self, cols: u16, rows: u16) {
        self.size = (cols, rows);
        self.write
            .window_change(cols as u32, rows as u32, 0, 0)
            .await
            .unwrap();
    }

    pub fn raw(&self) -> Vec<u8> {
        self.received.lock().raw.clone()
    }

    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().raw).into_owned()
    }

    /// The screen this client shows: everything received, through a terminal emulator.
    pub fn screen(&self) -> String {
        let mut p = vt100::Parser::new(self.size.1.max(1), self.size.0.max(1), 0);
        p.process(&self.received.lock().raw);
        p.screen().contents()
    }

    /// Wait until `check(self)` holds, with a deadline.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&SshClient) -> bool) {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.notify.notified();
            if check(self) {
                return;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() && !check(self) {
                panic!(
                    "timed out waiting for {what}; screen:\n{}\nraw tail: {:?}",
                    self.screen(),
                    tail(&self.raw_text(), 400)
                );
            }
        }
    }

    pub async fn wait_text(&self, needle: &str) {
        let n = needle.to_string();
        self.wait_for(&format!("{needle:?} in the output"), move |c| {
            c.raw_text().contains(&n)
        })
        .await
    }

    pub async fn wait_screen(&self, needle: &str) {
        let n = needle.to_string();
        self.wait_for(&format!("{needle:?} on the screen"), move |c| {
            c.screen().contains(&n)
        })
        .await
    }

    pub async fn wait_exit(&self) -> u32 {
        self.wait_for("the exit status", |c| c.received.lock().exit.is_some())
            .await;
        self.received.lock().exit.unwrap()
    }

    pub async fn wait_closed(&self) {
        self.wait_for("the channel to close", |c| c.received.lock().closed)
            .await
    }
}

pub fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

// ---------------------------------------------------------------- OpenSSH through tmux

/// OpenSSH arguments that ignore the real user's config and known_hosts.
pub fn ssh_args(key: &Key, port: u16) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-i",
        key.path.to_str().unwrap(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
        "-p",
        &port.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// OpenSSH joined to `port` with its output going into a pipe nobody reads (yet): once its
/// SSH window is full, the server's writer for it waits. Returns once it is attached.
pub fn stalled_ssh(d: &TestDaemon, id: &str, port: u16) -> Child {
    let before = d.peer_count(id);
    let child = external("ssh")
        .args(ssh_args(&d.owner, port))
        .args(["-tt", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the stalled client to attach", DEADLINE, || {
        (d.peer_count(id) > before).then_some(())
    });
    child
}

/// Reads `from` on a thread of its own until it ends; the chunks come on the channel.
pub fn drain(mut from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// A private tmux server; each window runs one command.
pub struct Tmux {
    pub socket: PathBuf,
}

impl Tmux {
    pub fn new(dir: &Path) -> Tmux {
        Tmux {
            socket: dir.join(format!("tmux-{}", std::process::id())),
        }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        external("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap()
    }

    /// Run `cmd` (a shell line) in a new window `name` of the given size.
    pub fn run(&self, name: &str, cols: u16, rows: u16, cmd: &str) {
        let (c, r) = (cols.to_string(), rows.to_string());
        let has = self.tmux(&["has-session", "-t", "t"]).status.success();
        let out = if has {
            self.tmux(&["new-window", "-d", "-t", "t", "-n", name, cmd])
        } else {
            self.tmux(&[
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
                "-n",
                name,
                "-x",
                &c,
                "-y",
                &r,
                cmd,
            ])
        };
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t = format!("t:{name}");
        self.tmux(&["set-option", "-t", &t, "remain-on-exit", "on"]);
        self.tmux(&["resize-window", "-t", &t, "-x", &c, "-y", &r]);
    }

    /// Resize window `name` (its pane's program gets SIGWINCH, as from a terminal).
    pub fn resize(&self, name: &str, cols: u16, rows: u16) {
        let (t, c, r) = (format!("t:{name}"), cols.to_string(), rows.to_string());
        assert!(
            self.tmux(&["resize-window", "-t", &t, "-x", &c, "-y", &r])
                .status
                .success()
        );
    }

    pub fn send_keys(&self, name: &str, keys: &[&str]) {
        let t = format!("t:{name}");
        let mut args = vec!["send-keys", "-t", &t];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    /// Send literal text.
    pub fn type_text(&self, name: &str, text: &str) {
        let t = format!("t:{name}");
        assert!(
            self.tmux(&["send-keys", "-t", &t, "-l", text])
                .status
                .success()
        );
    }

    pub fn capture(&self, name: &str) -> String {
        let t = format!("t:{name}");
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", &t]).stdout).into_owned()
    }

    /// The pane with its attributes and colours as SGR sequences (`capture-pane -e`).
    pub fn capture_ansi(&self, name: &str) -> String {
        let t = format!("t:{name}");
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-e", "-p", "-t", &t]).stdout)
            .into_owned()
    }

    /// The same with every cell, trailing blanks included (`capture-pane -e -N`): blank
    /// cells with a background or other attributes are not trimmed away.
    pub fn capture_cells(&self, name: &str) -> String {
        let t = format!("t:{name}");
        String::from_utf8_lossy(
            &self
                .tmux(&["capture-pane", "-e", "-N", "-p", "-t", &t])
                .stdout,
        )
        .into_owned()
    }

    pub fn wait_for(&self, name: &str, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let s = self.capture(name);
            if s.contains(needle) {
                return s;
            }
            if Instant::now() > end {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {needle:?} in tmux window {name}; it shows:\n{s}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A tmux format evaluated for window `name` (e.g. `#{alternate_on}`).
    pub fn format(&self, name: &str, format: &str) -> String {
        let t = format!("t:{name}");
        let out = self.tmux(&["display-message", "-p", "-t", &t, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The exit status of the window's command once it is dead.
    pub fn dead_status(&self, name: &str) -> Option<i32> {
        let t = format!("t:{name}");
        let out = self.tmux(&[
            "display-message",
            "-p",
            "-t",
            &t,
            "#{pane_dead} #{pane_dead_status}",
        ]);
        let s = String::from_utf8_lossy(&out.stdout);
        let mut it = s.split_whitespace();
        (it.next() == Some("1")).then(|| it.next().and_then(|c| c.parse().ok()).unwrap_or(-1))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

pub fn port_of(v: &Value) -> u16 {
    v["port"].as_u64().unwrap() as u16
}

pub fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}
