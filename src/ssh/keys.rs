//! Keys: the daemon's host key (created once, 0600, reused across sessions and restarts)
//! and the public keys that may join, read with OpenSSH semantics (`authorized_keys`
//! lines with options and comments, `.pub` files). Files writable by group or others are
//! refused, as OpenSSH's StrictModes does. Key material never reaches the logs: only
//! SHA-256 fingerprints.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use russh::keys::ssh_key::authorized_keys::Entry;
pub use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{HashAlg, LineEnding};
use russh::keys::{Algorithm, PrivateKey, PublicKey};

/// Load the host key at `path`, creating it (ed25519, mode 0600) on first use.
pub fn load_or_create_host_key(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .with_context(|| format!("cannot read the host key {}", path.display()));
    }
    let dir = path.parent().context("host key path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .context("cannot generate a host key")?;
    let pem = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the host key")?;
    let tmp = dir.join(format!(".host-key-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), fingerprint = %fingerprint_of(key.public_key().key_data()), "created host key");
    Ok(key)
}

pub fn fingerprint_of(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parse public keys from text: `authorized_keys` lines (options allowed), `.pub` lines,
/// comments and blank lines. Fails on the first line that is not a key.
pub fn parse_keys(text: &str) -> Result<Vec<KeyData>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = Entry::from_str(line)
            .or_else(|_| PublicKey::from_openssh(line).map(Entry::from))
            .map_err(|e| format!("line {}: not an OpenSSH public key ({e})", n + 1))?;
        keys.push(entry.public_key().key_data().clone());
    }
    Ok(keys)
}

/// Refuse a key file that others could have written (OpenSSH StrictModes).
pub fn check_file_mode(path: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        bail!(
            "{} is writable by group or others (mode {:o}); refusing it as OpenSSH would: chmod go-w {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Read keys from a file, checking its mode first.
pub fn read_key_file(path: &Path) -> anyhow::Result<Vec<KeyData>> {
    check_file_mode(path)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_keys(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The files holding the daemon user's own keys: `~/.ssh/authorized_keys` and
/// `~/.ssh/id_*.pub`.
pub fn owner_key_files(home: &Path) -> Vec<PathBuf> {
    let ssh = home.join(".ssh");
    let mut files = vec![ssh.join("authorized_keys")];
    if let Ok(dir) = std::fs::read_dir(&ssh) {
        let mut ids: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("id_") && n.ends_with(".pub"))
            })
            .collect();
        ids.sort();
        files.extend(ids);
    }
    files.retain(|p| p.is_file());
    files
}

/// The owner's keys. Unreadable or unsafe files are skipped with a warning (fail closed:
/// a skipped file admits nobody).
pub fn owner_keys(home: &Path) -> Vec<KeyData> {
    let mut keys = Vec::new();
    for file in owner_key_files(home) {
        match read_key_file(&file) {
            Ok(k) => keys.extend(k),
            Err(e) => tracing::warn!(error = %e, "ignoring key file"),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host";

    #[test]
    fn parses_authorized_keys_with_options_comments_and_blanks() {
        let text = format!("# comment\n\n{ED}\nrestrict,pty {ED}\n");
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], keys[1]);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = parse_keys("not a key").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn group_writable_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pub");
        std::fs::write(&p, ED).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = read_key_file(&p).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_key_file(&p).unwrap().len(), 1);
    }

    #[test]
    fn host_key_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/host_ed25519_key");
        let a = load_or_create_host_key(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_host_key(&p).unwrap();
        assert_eq!(a.public_key().key_data(), b.public_key().key_data());
    }
}
