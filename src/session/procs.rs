//! The daemon's processes, beyond one session: who spawns them, who reaps them, and what
//! happens to them when the daemon dies.
//!
//! - **One spawner thread** forks every session's program. A child's parent-death signal
//!   fires when the *thread* that forked it ends, so that thread must live as long as the
//!   daemon: a tokio blocking thread retires after 10 s idle and would take the session
//!   with it.
//! - **The exec shim** (`hearth __session-exec PPID PATH ARGV0 ARGS...`) runs in the child
//!   between fork and the program: it sets `PR_SET_PDEATHSIG` (portable-pty has no
//!   pre-exec hook) so a session's leader ends with the daemon, even one that ignores the
//!   SIGHUP of its tty going away, then execs the program (same pid).
//! - **A child subreaper**: the daemon adopts what its sessions orphan (a double fork, a
//!   `setsid` daemon), so `kill` can find them by parentage and nothing escapes to init
//!   while the daemon lives. Adopted processes are reaped here when they end; pids that
//!   another waiter owns (session leaders, hook children) are registered in `OWNED`
//!   under `SPAWN`, so the orphan reaper never steals their exit status.
//!
//! This module owns process bookkeeping only; it must not know about sessions' clients.

use std::collections::HashSet;
use std::ffi::OsString;
use std::sync::mpsc;

use parking_lot::Mutex;

/// The argument that makes `hearth` a session's exec shim.
pub const EXEC_SHIM: &str = "__session-exec";

/// Held while a child is forked and its pid registered, and while the orphan reaper scans:
/// a child that dies at once is never mistaken for an orphan.
static SPAWN: Mutex<()> = Mutex::new(());
/// Pids reaped by someone else (a session's waiter thread, tokio for hooks).
static OWNED: Mutex<Option<HashSet<libc::pid_t>>> = Mutex::new(None);

type Job = Box<dyn FnOnce() + Send>;
static SPAWNER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);

/// Run `spawn` on the spawner thread (started on first use; it never ends), holding the
/// spawn lock, and register the pid it returns as owned.
pub fn spawn_owned<T: Send + 'static, E: Send + 'static>(
    spawn: impl FnOnce() -> Result<(T, libc::pid_t), E> + Send + 'static,
) -> Result<(T, libc::pid_t), E> {
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _g = SPAWN.lock();
        let result = spawn();
        if let Ok((_, pid)) = &result {
            own(*pid);
        }
        let _ = tx.send(result);
    });
    let mut spawner = SPAWNER.lock();
    let sender = spawner.get_or_insert_with(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the spawner thread");
        }
        tx
    });
    if let Err(mpsc::SendError(job)) = sender.send(job) {
        // The thread could not start: spawn here rather than not at all.
        *spawner = None;
        drop(spawner);
        job();
    } else {
        drop(spawner);
    }
    rx.recv().expect("the spawner thread answers every job")
}

/// Register a pid someone else reaps (call with the spawn lock held: see [`with_spawn_lock`]).
fn own(pid: libc::pid_t) {
    OWNED.lock().get_or_insert_with(HashSet::new).insert(pid);
}

/// The pid was reaped by its owner.
pub fn disown(pid: libc::pid_t) {
    if let Some(set) = OWNED.lock().as_mut() {
        set.remove(&pid);
    }
}

/// Spawn something reaped elsewhere (a hook through tokio): the pid is registered before
/// the orphan reaper can see it.
pub fn with_spawn_lock<T>(spawn: impl FnOnce() -> Option<(T, libc::pid_t)>) -> Option<T> {
    let _g = SPAWN.lock();
    let (value, pid) = spawn()?;
    own(pid);
    Some(value)
}

/// Make the daemon a child subreaper: orphans of its sessions are reparented to it.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reap every ended child nobody else owns (adopted orphans); how many. Blocking (reads
/// /proc): call off the runtime.
pub fn reap_orphans() -> usize {
    if !a_child_has_ended() {
        // Nothing to reap: no need to read /proc.
        return 0;
    }
    let me = std::process::id() as libc::pid_t;
    let _g = SPAWN.lock();
    let owned = OWNED.lock().clone().unwrap_or_default();
    let mut reaped = 0;
    for (pid, stat) in processes() {
        if stat.ppid != me || stat.state != 'Z' || owned.contains(&pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: plain syscall on our own zombie child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            reaped += 1;
        }
    }
    // Owned pids whose owner reaped them and that are gone.
    if let Some(set) = OWNED.lock().as_mut() {
        set.retain(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
    }
    reaped
}

/// Whether some child of this process has ended and waits to be reaped (asked without
/// reaping it: its owner, if any, still gets its status).
fn a_child_has_ended() -> bool {
    // SAFETY: waitid with a zeroed siginfo we own; WNOWAIT leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() != 0
    }
}

/// Every process with its `/proc/<pid>/stat` fields.
pub fn processes() -> Vec<(libc::pid_t, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// The fields of `/proc/<pid>/stat` hearth uses.
pub struct Stat {
    pub state: char,
    pub ppid: libc::pid_t,
    pub pgrp: libc::pid_t,
    pub session: libc::pid_t,
}

pub fn stat(pid: libc::pid_t) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: parse after the last ')'.
    let mut f = text.rsplit_once(')')?.1.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        pgrp,
        session,
    })
}

/// `hearth __session-exec PPID PATH ARGV0 ARGS...`: in a session's child, before its
/// program: die with the daemon (`PPID`), then become the program. Never returns.
pub fn exec_shim(args: Vec<OsString>) -> ! {
    use std::os::unix::process::CommandExt;
    let fail = |why: String| -> ! {
        eprintln!("hearth: {why}");
        std::process::exit(127)
    };
    let [parent, path, argv0, rest @ ..] = args.as_slice() else {
        fail(format!(
            "usage: hearth {EXEC_SHIM} PPID PATH ARGV0 [ARGS...]"
        ));
    };
    let parent: libc::pid_t = parent
        .to_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| fail("bad parent pid".into()));
    // SAFETY: prctl with integer arguments; getppid has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // The daemon died before the line above: nobody will signal us, so go now.
        if libc::getppid() != parent {
            std::process::exit(129);
        }
        // Rust ignores SIGPIPE; the program gets the default, as from a shell.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let e = std::process::Command::new(path)
        .arg0(argv0)
        .args(rest)
        .exec();
    fail(format!("cannot run {}: {e}", path.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_reads_parent_group_and_session() {
        let me = std::process::id() as libc::pid_t;
        let s = stat(me).unwrap();
        // SAFETY: plain syscalls.
        assert_eq!(s.ppid, unsafe { libc::getppid() });
        assert_eq!(s.pgrp, unsafe { libc::getpgrp() });
        assert_eq!(s.session, unsafe { libc::getsid(0) });
    }

    #[test]
    fn spawned_children_are_registered_as_owned() {
        let (mut child, pid) = spawn_owned(|| {
            let c = std::process::Command::new("true").spawn()?;
            let pid = c.id() as libc::pid_t;
            Ok::<_, std::io::Error>((c, pid))
        })
        .unwrap();
        assert!(OWNED.lock().as_ref().unwrap().contains(&pid));
        assert!(child.wait().unwrap().success());
        disown(pid);
        assert!(!OWNED.lock().as_ref().unwrap().contains(&pid));
    }
}
