//! The two systems under test, each started in its own temp dir on loopback:
//! hearth (a daemon, one fresh session per case) and the baseline, OpenSSH sshd whose
//! forced command attaches every connection to one shared tmux session (and, for the
//! transport floor, a second sshd that runs the flood straight in its PTY).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::procs;

pub trait System {
    fn name(&self) -> &'static str;
    /// Prepare a fresh shared session; returns the port to join.
    fn fresh_session(&mut self) -> anyhow::Result<u16>;
    /// Server-side processes whose memory and CPU count (not the shell in the session).
    fn server_pids(&self) -> Vec<u32>;
    fn key(&self) -> &Path;
    /// The CLI and its environment, and the session's id, to time the control plane
    /// during a flood (hearth only).
    fn control(&self) -> Option<Control> {
        None
    }
}

/// How to run the system's CLI against the current session.
pub struct Control {
    pub bin: PathBuf,
    pub env: Vec<(String, String)>,
    pub session: String,
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(path)
        .status()
        .context("ssh-keygen")?;
    if !st.success() {
        bail!("ssh-keygen failed");
    }
    Ok(())
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(20);
    while !ok() {
        if Instant::now() > end {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub struct Hearth {
    dir: tempfile::TempDir,
    bin: PathBuf,
    daemon: Child,
    key: PathBuf,
    session: Option<String>,
}

impl Hearth {
    /// A daemon whose config file has `extra` appended (a `[sessions]` table, say).
    pub fn start_with(extra: &str) -> anyhow::Result<Hearth> {
        let bin = std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join("hearth");
        if !bin.exists() {
            bail!(
                "{} not found: build it first (cargo build --release)",
                bin.display()
            );
        }
        let dir = tempfile::tempdir()?;
        let ssh = dir.path().join("home/.ssh");
        std::fs::create_dir_all(&ssh)?;
        let key = ssh.join("id_ed25519");
        keygen(&key)?;
        // The viewers all join from 127.0.0.1 at once: lift the pre-auth caps (and the
        // clients per session, for 1,000 viewers plus the typist, and the sessions, for
        // `--many`) in the bench's own config; the defaults stay as they are.
        let conf = dir.path().join("home/.config/hearth");
        std::fs::create_dir_all(&conf)?;
        std::fs::write(
            conf.join("config.toml"),
            format!(
                "[limits]\nmax_unauthenticated = 2000\nmax_unauthenticated_per_source = 2000\n\
                 max_clients = 2000\nmax_sessions = 1000\n{extra}"
            ),
        )?;
        let daemon = Self::spawn(&bin, dir.path())?;
        let h = Hearth {
            dir,
            bin,
            daemon,
            key,
            session: None,
        };
        wait_for("the hearth daemon", || {
            h.cli(&["ps"]).map(|o| o.status.success()).unwrap_or(false)
        })?;
        Ok(h)
    }

    fn spawn(bin: &Path, dir: &Path) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))?;
        Ok(procs::server(&mut Command::new(bin))
            .arg("daemon")
            .envs(Self::env_of(dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?)
    }

    fn env_of(dir: &Path) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), dir.join("home").display().to_string()),
            (
                "HEARTH_SOCKET".into(),
                dir.join("hearth.sock").display().to_string(),
            ),
            ("HEARTH_LOG".into(), "warn".into()),
        ]
    }

    /// A new unrecorded `/bin/sh` session on loopback; its JSON.
    pub fn shell(&self) -> anyhow::Result<serde_json::Value> {
        self.server(&["/bin/sh"])
    }

    /// A new unrecorded session running `command` on loopback; its JSON.
    pub fn server(&self, command: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut args = vec![
            "--json",
            "server",
            "--bind",
            "127.0.0.1",
            "--no-record",
            "--",
        ];
        args.extend_from_slice(command);
        let out = self.cli(&args)?;
        if !out.status.success() {
            bail!("server failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The daemon's pid.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.id()
    }

    pub fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(&self.bin)
            .args(args)
            .envs(Self::env_of(self.dir.path()))
            .output()?)
    }
}

impl System for Hearth {
    fn name(&self) -> &'static str {
        "hearth"
    }

    fn fresh_session(&mut self) -> anyhow::Result<u16> {
        // A fresh daemon per case, so memory figures do not reuse an earlier case's heap.
        if self.session.take().is_some() {
            // `shutdown` ends sessions in processes of their own too (SIGTERM would not).
            let _ = self.cli(&["shutdown"]);
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
            let _ = self.daemon.wait();
            self.daemon = Self::spawn(&self.bin, self.dir.path())?;
            wait_for("the hearth daemon", || {
                self.cli(&["ps"])
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            })?;
        }
        let v = self.shell()?;
        self.session = Some(v["id"].as_str().context("id")?.to_string());
        Ok(v["port"].as_u64().context("port")? as u16)
    }

    fn server_pids(&self) -> Vec<u32> {
        // The daemon and its session hosts (not the shells they run).
        procs::tree(self.daemon.id())
            .into_iter()
            .filter(|p| *p == self.daemon.id() || procs::name(*p) == "hearth")
            .collect()
    }

    fn control(&self) -> Option<Control> {
        Some(Control {
            bin: self.bin.clone(),
            env: Self::env_of(self.dir.path()),
            session: self.session.clone()?,
        })
    }

    fn key(&self) -> &Path {
        &self.key
    }
}

impl Drop for Hearth {
    fn drop(&mut self) {
        // `shutdown` ends sessions in processes of their own too (SIGTERM would not).
        let _ = self.cli(&["shutdown"]);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let _ = self.daemon.wait();
    }
}

/// OpenSSH sshd + tmux: every connection runs `tmux new-session -A -s shared`.
pub struct Sshd {
    dir: tempfile::TempDir,
    sshd: Child,
    port: u16,
    key: PathBuf,
    tmux_sock: PathBuf,
}

impl Sshd {
    pub fn start() -> anyhow::Result<Sshd> {
        let sshd_bin = Path::new("/usr/sbin/sshd");
        if !sshd_bin.exists() {
            bail!(
                "/usr/sbin/sshd not found: apt-get install openssh-server (or pass --no-baseline)"
            );
        }
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let key = d.join("id_ed25519");
        keygen(&key)?;
        keygen(&d.join("host_ed25519"))?;
        std::fs::copy(key.with_extension("pub"), d.join("authorized_keys"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let tmux_sock = d.join("tmux.sock");
        let tmux_conf = d.join("tmux.conf");
        std::fs::write(
            &tmux_conf,
            "set -g status off\nset -g default-shell /bin/sh\n",
        )?;
        let config = d.join("sshd_config");
        let force = format!(
            "tmux -S {} -f {} new-session -A -s shared",
            tmux_sock.display(),
            tmux_conf.display()
        );
        std::fs::write(&config, sshd_config(d, port, Some(&force)))?;
        let sshd = spawn_sshd(&config, &d.join("sshd.log"), port)?;
        Ok(Sshd {
            dir,
            sshd,
            port,
            key,
            tmux_sock,
        })
    }

    /// The transport floor: the standard flood run by a second sshd straight in its PTY
    /// (no multiplexer) and read by one OpenSSH `ssh -tt` client, from the Enter that starts
    /// it to the marker (median of 3). What delivering the flood over SSH to one client
    /// costs on this machine, encryption and the client's decryption included.
    pub fn transport_floor(&self, flood_cmd: &str, marker: &[u8]) -> anyhow::Result<f64> {
        let d = self.dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = d.join("sshd_direct_config");
        std::fs::write(&config, sshd_config(d, port, None))?;
        let mut sshd = spawn_sshd(&config, &d.join("sshd_direct.log"), port)?;
        let mut times = Vec::new();
        let result = (|| {
            for _ in 0..3 {
                times.push(direct_flood(&self.key, port, flood_cmd, marker)?);
            }
            anyhow::Ok(())
        })();
        let _ = sshd.kill();
        let _ = sshd.wait();
        result?;
        crate::median_of(times).context("no transport floor measured")
    }

    fn tmux_server_pid(&self) -> Option<u32> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.tmux_sock)
            .args(["display-message", "-p", "#{pid}"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }
}

/// An sshd config on loopback `port` with the keys in `d`; every connection runs `force`
/// if given, else what the client asks for.
fn sshd_config(d: &Path, port: u16, force: Option<&str>) -> String {
    let mut config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
         StrictModes no\nPermitRootLogin prohibit-password\nPidFile {pid}\nLogLevel ERROR\n\
         MaxStartups 1000\nMaxSessions 1000\n",
        hk = d.join("host_ed25519").display(),
        ak = d.join("authorized_keys").display(),
        pid = d.join(format!("sshd-{port}.pid")).display(),
    );
    if let Some(force) = force {
        config.push_str(&format!("ForceCommand {force}\n"));
    }
    config
}

/// Start `/usr/sbin/sshd` on `config` (a server process: pinned with the servers) and wait
/// until it listens on `port`.
fn spawn_sshd(config: &Path, log: &Path, port: u16) -> anyhow::Result<Child> {
    std::fs::create_dir_all("/run/sshd").ok();
    let sshd = procs::server(&mut Command::new("/usr/sbin/sshd"))
        .args(["-D", "-e", "-f"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting sshd")?;
    wait_for("sshd to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    Ok(sshd)
}

/// One transport-floor flood: `ssh -tt` runs a shell that says it is ready and waits for
/// a line; the clock starts at the Enter that releases `flood_cmd`, and stops at `marker`.
fn direct_flood(key: &Path, port: u16, flood_cmd: &str, marker: &[u8]) -> anyhow::Result<f64> {
    use std::io::Write;
    let mut child = ssh_tt(key, port)
        .arg(format!("echo READY-$((2+2)); read go; {flood_cmd}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("ssh")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    read_until(&mut stdout, b"READY-4").context("the transport floor's ssh never got ready")?;
    let t0 = Instant::now();
    stdin.write_all(b"\r")?;
    stdin.flush()?;
    read_until(&mut stdout, marker).context("the transport floor's flood ended early")?;
    let took = t0.elapsed().as_secs_f64();
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    Ok(took)
}

/// OpenSSH `ssh -tt` to 127.0.0.1:`port` with `key` and nothing from the user's config
/// (no host key prompts, no agent, errors only), for the caller to add a command and its
/// stdio to.
pub fn ssh_tt(key: &Path, port: u16) -> Command {
    let mut ssh = Command::new("ssh");
    ssh.args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args([
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
            "-tt",
            "-p",
        ])
        .arg(port.to_string())
        .arg("127.0.0.1")
        .env("TERM", "xterm-256color");
    ssh
}

/// Read `from` until `needle` has gone by (keeping only a needle's length between reads).
pub fn read_until(from: &mut impl std::io::Read, needle: &[u8]) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        if n == 0 {
            bail!("end of stream before {:?}", String::from_utf8_lossy(needle));
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.windows(needle.len()).any(|w| w == needle) {
            return Ok(());
        }
        let keep = tail.len().saturating_sub(needle.len());
        tail.drain(..keep);
    }
}

impl System for Sshd {
    fn name(&self) -> &'static str {
        "sshd+tmux"
    }

    fn fresh_session(&mut self) -> anyhow::Result<u16> {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.tmux_sock)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
        let _ = &self.dir;
        Ok(self.port)
    }

    fn server_pids(&self) -> Vec<u32> {
        // Every sshd process (listener, per-connection monitors and sessions) and the tmux
        // clients they run, plus the tmux server, but not the shell in the pane.
        let mut pids: Vec<u32> = procs::tree(self.sshd.id())
            .into_iter()
            .filter(|p| matches!(procs::name(*p).as_str(), "sshd" | "tmux" | "tmux: client"))
            .collect();
        pids.extend(self.tmux_server_pid());
        pids
    }

    fn key(&self) -> &Path {
        &self.key
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.fresh_session();
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}
