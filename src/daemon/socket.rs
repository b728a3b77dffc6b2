//! The control socket's file-system side: a private directory (0700), a lock file that
//! makes "one daemon per socket" race-free, a probe that refuses to start while a live
//! daemon answers, replacement of a stale socket file, and mode 0600 on the socket.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::net::UnixListener;

/// A bound control socket. Dropping it removes the socket file and releases the lock.
pub struct ControlSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    _lock: File,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The pid written in the lock file of the daemon holding `path`, if it is a live
/// `hearth` process.
pub fn holder(path: &Path) -> Option<libc::pid_t> {
    let text = std::fs::read_to_string(path.with_extension("lock")).ok()?;
    let pid: libc::pid_t = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_hearth = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == b"daemon" || arg == b"session-host");
    is_hearth.then_some(pid)
}

/// Whether `bind` failed because another daemon holds the lock.
pub fn is_held(e: &anyhow::Error) -> bool {
    e.to_string()
        .starts_with("another hearth daemon is running")
}

pub async fn bind(path: &Path) -> anyhow::Result<ControlSocket> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .context("the socket path has no directory")?;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        bail!(
            "{} belongs to another user (uid {}); refusing to put the control socket there",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }

    let lock_path = path.with_extension("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "another hearth daemon is running on {} (it holds {}); `hearth shutdown` stops it \
             and its sessions",
            path.display(),
            lock_path.display()
        );
    }

    if path.exists() {
        match hearth_rpc::socket::connect(path).await {
            Ok((_, info)) => bail!(
                "a hearth daemon (pid {}, version {}) already answers on {}; `hearth shutdown` \
                 stops it and its sessions",
                info.pid,
                info.version,
                path.display()
            ),
            Err(_) => {
                tracing::info!(path = %path.display(), "replacing stale socket");
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
            }
        }
    }
    // Who holds the lock: `daemon --replace` asks that process to stop when it cannot ask
    // over the socket (another protocol version).
    {
        use std::io::Write;
        let mut l = &lock;
        let _ = l.set_len(0);
        let _ = writeln!(l, "{}", std::process::id());
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(ControlSocket {
        listener,
        path: path.to_path_buf(),
        _lock: lock,
    })
}
