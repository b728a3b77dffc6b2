//! The PTY and the three threads around it (portable-pty is blocking):
//! - the reader hands every read to the session (`Session::on_output`);
//! - the writer drains the bounded input channel, batching what is queued into one write;
//! - the waiter reaps the child with `waitpid` and reports its exit status once the
//!   reader has seen EOF (or shortly after, when a background job keeps the tty open).
//!
//! Nothing here runs on the tokio runtime. It must not know about clients or transports.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::mpsc;

use super::Session;

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Spec {
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
}

pub struct Spawned {
    pub master: Box<dyn MasterPty + Send>,
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
    pub pid: u32,
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
    let mut cmd = CommandBuilder::new(program);
    cmd.args(args);
    cmd.cwd(&spec.cwd);
    cmd.env("TERM", "xterm-256color");
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    if let Some(dir) = &spec.shadow_dir {
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    // The program can address itself and its siblings: `hearth send $HEARTH_SESSION ...`.
    if let Some(id) = &spec.session_id {
        cmd.env("HEARTH_SESSION", id);
    }
    if let Some(socket) = &spec.socket {
        cmd.env("HEARTH_SOCKET", socket);
    }
    for (k, v) in &spec.env {
        if let (true, Some(dir)) = (k == "PATH", &spec.shadow_dir) {
            cmd.env("PATH", format!("{}:{v}", dir.display()));
            continue;
        }
        cmd.env(k, v);
    }
    let child = pair
        .slave
        .spawn_command(cmd)
        .map_err(|e| SpawnError(format!("cannot start {program:?}: {e}")))?;
    // The reader only sees EOF once every handle on the slave is closed.
    drop(pair.slave);
    let pid = child
        .process_id()
        .ok_or_else(|| SpawnError("the child has no pid".into()))?;
    // We reap with waitpid ourselves (to read the signal number); dropping the std Child
    // neither kills nor reaps.
    drop(child);
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
        pid,
    })
}

/// Start the reader, writer and waiter threads for `session`.
pub fn start_threads(
    session: &Arc<Session>,
    mut reader: Box<dyn Read + Send>,
    mut writer: Box<dyn Write + Send>,
    mut input: mpsc::Receiver<Bytes>,
) -> std::io::Result<()> {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
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

    std::thread::Builder::new()
        .name(format!("pty-write-{}", session.id))
        .spawn(move || {
            let mut batch = Vec::with_capacity(4096);
            let mut broken = false;
            while let Some(first) = input.blocking_recv() {
                batch.clear();
                batch.extend_from_slice(&first);
                while batch.len() < 64 * 1024 {
                    match input.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                // After the child is gone writes fail; keep draining so senders never block.
                if !broken && (writer.write_all(&batch).is_err() || writer.flush().is_err()) {
                    broken = true;
                }
            }
            // The writer is dropped only here, when the session itself is gone.
            drop(writer);
        })?;

    let s = Arc::clone(session);
    let pid = session.pid;
    std::thread::Builder::new()
        .name(format!("pty-wait-{}", session.id))
        .spawn(move || {
            let code = wait_pid(pid);
            // Let the reader deliver the last output; a background job holding the tty
            // open must not keep the session from reporting its exit.
            let _ = done_rx.recv_timeout(Duration::from_millis(1500));
            s.on_exit(code);
        })?;
    Ok(())
}

/// Block until `pid` ends; its exit code, or 128 + signal number.
fn wait_pid(pid: u32) -> i32 {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: plain syscall on our own child; `status` outlives the call.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r == pid as libc::pid_t {
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

/// Send `sig` to the child's process group (it is a session leader, so pgid = pid),
/// and to the child itself in case it changed group.
/// Every process (of ours) that carries `HEARTH_SESSION=<id>` in its environment: what the
/// session started, including children that left its process group and session (`setsid`,
/// daemons) or were reparented. Blocking (reads /proc): call off the runtime.
pub fn session_processes(id: &str) -> Vec<libc::pid_t> {
    let needle = format!("HEARTH_SESSION={id}\0").into_bytes();
    let me = std::process::id() as libc::pid_t;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_slice()))
        })
        .collect()
}

/// Whether a process still exists (a zombie counts as gone).
pub fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: plain syscalls; failure (already gone) is fine.
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
        libc::kill(pid as libc::pid_t, sig);
    }
}
