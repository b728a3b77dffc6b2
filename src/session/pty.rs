//! The PTY and the three threads around it (portable-pty is blocking):
//! - the reader hands every read to the session (`Session::on_output`);
//! - the writer drains the bounded input channel, batching what is queued into one write;
//! - the waiter reaps the child with `waitpid` and reports its exit status once the
//!   reader has seen EOF (or shortly after, when a background job keeps the tty open).
//!
//! The writer lives as long as the session; a reader and a waiter belong to one run of the
//! program (a restart policy starts another run, with a new PTY, in the same session).
//!
//! Nothing here runs on the tokio runtime. It must not know about clients or transports.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::mpsc;

use super::Session;

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Spec {
    /// When the program is started again after it exits (`None`: its exit ends the
    /// session).
    pub restart: Option<super::restart::Policy>,
    /// Program and arguments; never empty.
    pub command: Vec<String>,
    pub cwd: PathBuf,
    /// Applied after the defaults (TERM, PATH with the shadow dir).
    pub env: Vec<(String, String)>,
    /// Prepended to PATH.
    pub shadow_dir: Option<PathBuf>,
    /// (cols, rows) before any client attaches.
    pub size: (u16, u16),
    /// `HEARTH_SESSION` for the program: its session's id.
    pub session_id: Option<String>,
    /// `HEARTH_SOCKET` for the program: the daemon's control socket.
    pub socket: Option<PathBuf>,
    /// The `hearth` binary, to start the program through its exec shim (which makes it
    /// die with the daemon; see [`super::procs`]). `None` runs the program directly.
    pub shim: Option<PathBuf>,
}

pub struct Spawned {
    pub master: Box<dyn MasterPty + Send>,
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
    pub leader: Arc<Leader>,
}

/// The session's child (a session and process-group leader). Signals reach it only until
/// it is reaped: once its pid is free it could be anyone's.
pub struct Leader {
    pub pid: u32,
    reaped: parking_lot::Mutex<bool>,
}

impl Leader {
    /// Send `sig` to its process group (pgid = pid) and to it, unless already reaped.
    pub fn signal(&self, sig: libc::c_int) {
        let reaped = self.reaped.lock();
        if !*reaped {
            // SAFETY: plain syscalls on our own unreaped child; failure is fine.
            unsafe {
                libc::kill(-(self.pid as libc::pid_t), sig);
                libc::kill(self.pid as libc::pid_t, sig);
            }
        }
    }

    pub fn reaped(&self) -> bool {
        *self.reaped.lock()
    }

    /// Block until it ends, then reap it; its exit code, or 128 + signal number. It is
    /// waited for without reaping first (`WNOWAIT`), so [`Leader::signal`] never races
    /// the reaping.
    fn wait(&self) -> i32 {
        let pid = self.pid as libc::pid_t;
        loop {
            // SAFETY: plain syscall; `info` outlives it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
        let mut reaped = self.reaped.lock();
        let code = wait_pid(pid);
        *reaped = true;
        super::procs::disown(pid);
        code
    }
}

/// Why a spawn failed, in words for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpawnError(pub String);

pub fn spawn(spec: &Spec) -> Result<Spawned, SpawnError> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| SpawnError("empty command".into()))?;
    if !spec.cwd.is_dir() {
        return Err(SpawnError(format!(
            "working directory {} does not exist or is not a directory",
            spec.cwd.display()
        )));
    }
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: spec.size.1,
            cols: spec.size.0,
            pixel_width: 0,
            pixel_height: 0,
        })
        .map_err(|e| SpawnError(format!("cannot open a pty: {e}")))?;
    let child_path = child_path(spec);
    let mut cmd = match &spec.shim {
        Some(hearth) => {
            // The shim execs the program by path: find it as exec would, to fail here.
            let resolved = resolve(program, &child_path, &spec.cwd)?;
            let mut cmd = CommandBuilder::new(hearth);
            cmd.arg(super::procs::EXEC_SHIM);
            cmd.arg(std::process::id().to_string());
            cmd.arg(resolved);
            cmd.arg(program);
            cmd
        }
        None => CommandBuilder::new(program),
    };
    cmd.args(args);
    cmd.cwd(&spec.cwd);
    cmd.env("TERM", "xterm-256color");
    cmd.env("PATH", &child_path);
    // The program can address itself and its siblings: `hearth send $HEARTH_SESSION ...`.
    if let Some(id) = &spec.session_id {
        cmd.env("HEARTH_SESSION", id);
    }
    if let Some(socket) = &spec.socket {
        cmd.env("HEARTH_SOCKET", socket);
    }
    for (k, v) in &spec.env {
        if k != "PATH" {
            cmd.env(k, v);
        }
    }
    let slave = pair.slave;
    let shown = program.clone();
    // On the spawner thread (the parent-death signal follows the forking thread), with
    // the pid registered before the orphan reaper can see it.
    let (_, pid) = super::procs::spawn_owned(move || {
        let child = slave
            .spawn_command(cmd)
            .map_err(|e| SpawnError(format!("cannot start {shown:?}: {e}")))?;
        // The reader only sees EOF once every handle on the slave is closed.
        drop(slave);
        let pid = child
            .process_id()
            .ok_or_else(|| SpawnError("the child has no pid".into()))?;
        // We reap with waitpid ourselves (to read the signal number); dropping the std
        // Child neither kills nor reaps.
        drop(child);
        Ok((pid, pid as libc::pid_t))
    })?;
    let leader = Arc::new(Leader {
        pid: pid as u32,
        reaped: parking_lot::Mutex::new(false),
    });
    let reader = pair
        .master
        .try_clone_reader()
        .map_err(|e| SpawnError(format!("cannot read the pty: {e}")))?;
    let writer = pair
        .master
        .take_writer()
        .map_err(|e| SpawnError(format!("cannot write the pty: {e}")))?;
    Ok(Spawned {
        master: pair.master,
        reader,
        writer,
        leader,
    })
}

/// The `PATH` the program gets: the caller's (`spec.env`), else the daemon's, after the
/// shadow directory.
fn child_path(spec: &Spec) -> String {
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    match &spec.shadow_dir {
        Some(dir) => format!("{}:{path}", dir.display()),
        None => path,
    }
}

/// Whether `command` would start under `spec` (its program found as exec would): a restart
/// command is checked when the session starts, not first when it is needed.
pub fn check_program(spec: &Spec, command: &[String]) -> Result<(), SpawnError> {
    let program = command
        .first()
        .ok_or_else(|| SpawnError("empty command".into()))?;
    resolve(program, &child_path(spec), &spec.cwd).map(drop)
}

/// Where `program` is, as `execvp` would find it with `path` (relative entries and
/// relative programs from `cwd`).
fn resolve(program: &str, path: &str, cwd: &std::path::Path) -> Result<PathBuf, SpawnError> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = cwd.join(program);
        return if runnable(&p) {
            Ok(p)
        } else {
            Err(SpawnError(format!(
                "cannot start {program:?}: no such executable file"
            )))
        };
    }
    path.split(':')
        .map(|dir| {
            cwd.join(if dir.is_empty() { "." } else { dir })
                .join(program)
        })
        .find(|p| runnable(p))
        .ok_or_else(|| {
            SpawnError(format!(
                "cannot start {program:?}: not found in PATH={path} (the PATH of the command \
                 that started the session, or --env PATH=...)"
            ))
        })
}

/// One run's side of the PTY writer thread: where to write, and the flags its waiter uses
/// to stop a write once the child is gone.
pub struct RunWriter {
    writer: Box<dyn Write + Send>,
    /// The run's child is gone: stop writing, drop the writer (its pty fd goes now).
    dead: Arc<std::sync::atomic::AtomicBool>,
    /// A write is in progress (the waiter may have to release it).
    writing: Arc<std::sync::atomic::AtomicBool>,
}

/// Start the session's PTY writer thread (one for its life: it drains the input channel
/// into the current run's pty, taking each new run's writer from `runs`).
pub fn start_writer(
    session: &Session,
    mut input: mpsc::Receiver<super::Queued>,
    runs: std::sync::mpsc::Receiver<RunWriter>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("pty-write-{}", session.id))
        .spawn(move || {
            use std::sync::atomic::Ordering;
            let mut batch = Vec::with_capacity(4096);
            // The budget shares of what is in `batch`: released once it is written.
            let mut shares = Vec::new();
            let mut current: Option<RunWriter> = None;
            while let Some((first, share)) = input.blocking_recv() {
                // A new run (the first, or a restart) takes what is typed from now on.
                while let Ok(run) = runs.try_recv() {
                    current = Some(run);
                }
                batch.clear();
                shares.clear();
                batch.extend_from_slice(&first);
                shares.push(share);
                while batch.len() < 64 * 1024 {
                    match input.try_recv() {
                        Ok((more, share)) => {
                            batch.extend_from_slice(&more);
                            shares.push(share);
                        }
                        Err(_) => break,
                    }
                }
                // In pieces, so a stop is seen between them; after the child is gone (or a
                // write failed) input is drained and dropped, so senders never block.
                for piece in batch.chunks(WRITE_PIECE) {
                    let Some(run) = current.as_mut() else { break };
                    if run.dead.load(Ordering::Acquire) {
                        current = None;
                        break;
                    }
                    run.writing.store(true, Ordering::Release);
                    let ok = run
                        .writer
                        .write_all(piece)
                        .and_then(|()| run.writer.flush())
                        .is_ok();
                    run.writing.store(false, Ordering::Release);
                    if !ok {
                        current = None;
                    }
                }
                if current
                    .as_ref()
                    .is_some_and(|r| r.dead.load(Ordering::Acquire))
                {
                    // Its pty fd goes now, not when the session is dropped.
                    current = None;
                }
            }
        })?;
    Ok(())
}

/// Start one run of the program: hand its writer to the writer thread (through `writers`),
/// and start its reader and waiter threads. The waiter reports the exit to
/// `Session::run_exited` once the reader has drained the output.
pub fn start_run(
    session: &Arc<Session>,
    mut reader: Box<dyn Read + Send>,
    writer: Box<dyn Write + Send>,
    leader: Arc<Leader>,
    writers: &std::sync::mpsc::Sender<RunWriter>,
) -> std::io::Result<()> {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // Once the child is gone nothing reads what the writer writes: it stops writing, and a
    // write already blocked on a full pty is released by flushing that input (below).
    let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slave_path = session.pty.lock().master.tty_name();
    // The writer thread outlives every run; it is gone only if the session is.
    let _ = writers.send(RunWriter {
        writer,
        dead: Arc::clone(&dead),
        writing: Arc::clone(&writing),
    });
    let s = Arc::clone(session);
    std::thread::Builder::new()
        .name(format!("pty-read-{}", session.id))
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => s.on_output(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO once the child side is gone reads as EOF.
                    Err(_) => break,
                }
            }
            let _ = done_tx.send(());
        })?;

    let s = Arc::clone(session);
    std::thread::Builder::new()
        .name(format!("pty-wait-{}", session.id))
        .spawn(move || {
            let code = leader.wait();
            release_writer(&dead, &writing, slave_path.as_deref());
            // Let the reader deliver the last output; a background job holding the tty
            // open must not keep the session from reporting its exit.
            let _ = done_rx.recv_timeout(Duration::from_millis(1500));
            s.run_exited(code);
        })?;
    Ok(())
}

/// Largest write to the pty at once: between pieces the writer thread checks whether the
/// child is gone.
const WRITE_PIECE: usize = 4096;

/// The child is gone: tell the writer thread to stop, and while it is blocked in a write
/// (the pty full, nobody reading), read what it wrote from the pty's other side, which
/// wakes the write (flushing from the master side does not). Bounded: 2 s at most.
fn release_writer(
    dead: &std::sync::atomic::AtomicBool,
    writing: &std::sync::atomic::AtomicBool,
    slave: Option<&std::path::Path>,
) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::Ordering;
    dead.store(true, Ordering::Release);
    if !writing.load(Ordering::Acquire) {
        return;
    }
    let Some(Ok(tty)) = slave.map(|p| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(p)
    }) else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..200 {
        if !writing.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: tcflush and read on a descriptor we own for the length of the call; the
        // buffer outlives the read. TCIFLUSH drops a partial line a canonical read would
        // wait on; reading wakes the master's writer.
        unsafe {
            libc::tcflush(tty.as_raw_fd(), libc::TCIFLUSH);
            libc::read(tty.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reap `pid`; its exit code, or 128 + signal number.
fn wait_pid(pid: libc::pid_t) -> i32 {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: plain syscall on our own child; `status` outlives the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        // Someone else reaped it (should not happen): report an unknown failure.
        return 255;
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Every process the session started, beyond its leader: those in its process group or
/// tty session (while the leader is unreaped, so those ids are still its), and every
/// process (of ours) that carries `HEARTH_SESSION=<id>` in its environment: children that
/// left the group and session (`setsid`, daemons, double forks the daemon adopted as
/// subreaper). Hooks (`HEARTH_HOOK` in their environment) are not the session's. Blocking
/// (reads /proc): call off the runtime.
pub fn session_processes(id: &str, leader: &Leader) -> Vec<libc::pid_t> {
    let lead = leader.pid as libc::pid_t;
    let by_ids = !leader.reaped();
    super::procs::processes()
        .into_iter()
        .filter(|(pid, _)| *pid != lead)
        .filter(|(pid, stat)| {
            let Some(marked) = session_of(*pid) else {
                return false;
            };
            let grouped = by_ids && (stat.pgrp == lead || stat.session == lead);
            grouped || marked.as_deref() == Some(id)
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Processes (of ours) whose environment names one of `ids` as their `HEARTH_SESSION`
/// (hooks excepted): what sessions of a daemon that died left behind.
pub fn marked_processes(ids: &std::collections::HashSet<String>) -> Vec<libc::pid_t> {
    super::procs::processes()
        .into_iter()
        .map(|(pid, ..)| pid)
        .filter(|pid| {
            session_of(*pid)
                .flatten()
                .is_some_and(|id| ids.contains(&id))
        })
        .collect()
}

/// For a process other than the daemon: `None` if it is a hook's (or unreadable: not
/// ours); else the `HEARTH_SESSION` its environment carries, if any.
fn session_of(pid: libc::pid_t) -> Option<Option<String>> {
    if pid == std::process::id() as libc::pid_t {
        return None;
    }
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut session = None;
    for var in env.split(|b| *b == 0) {
        if var.starts_with(b"HEARTH_HOOK=") {
            return None;
        }
        if let Some(id) = var.strip_prefix(b"HEARTH_SESSION=") {
            session = Some(String::from_utf8_lossy(id).into_owned());
        }
    }
    Some(session)
}

/// Whether a process still exists (a zombie counts as gone).
pub fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}
