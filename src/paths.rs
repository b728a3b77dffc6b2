//! Where hearth keeps its files, following the XDG base directories:
//! host key under the data dir, daemon log and recordings under the state dir; and how a
//! small private file is written whole ([`write_private`]). The control socket's path is
//! `hearth_rpc::socket`'s business.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Write `bytes` to `target` whole: a hidden temporary file beside it (0600, unique even
/// when two writers race), fsync, rename; the temporary file is removed if the rename
/// fails. The directory is created if needed.
pub fn write_private(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).create(dir)?;
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(fallback))
        .join("hearth")
}

/// The daemon user's home (where `~/.ssh` lives).
pub fn home_dir() -> PathBuf {
    home()
}

/// `$XDG_DATA_HOME/hearth` (`~/.local/share/hearth`).
pub fn data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share")
}

/// `$XDG_STATE_HOME/hearth` (`~/.local/state/hearth`).
pub fn state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state")
}

pub fn host_key() -> PathBuf {
    data_dir().join("host_ed25519_key")
}

/// Session recordings (`<id>.cast` and `<id>.audit.jsonl`).
pub fn recordings_dir() -> PathBuf {
    state_dir().join("recordings")
}

pub fn daemon_log() -> PathBuf {
    state_dir().join("daemon.log")
}

/// `$XDG_CONFIG_HOME/hearth/config.toml` (`~/.config/hearth/config.toml`).
pub fn config_file() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config").join("config.toml")
}
