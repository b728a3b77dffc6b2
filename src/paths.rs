//! Where hearth keeps its files, following the XDG base directories:
//! host key under the data dir, daemon log and recordings under the state dir. The
//! control socket's path is `hearth_rpc::socket`'s business.

use std::path::PathBuf;

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
