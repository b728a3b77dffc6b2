//! Keys: the daemon's host key (created once, 0600, reused across sessions and restarts)
//! and the owner's keys in `~/.ssh` ([`OwnerKeys`]: checked at every auth, parsed again only
//! when a file changes). Lines are parsed, and files checked (StrictModes), by
//! [`crate::authorized_keys`]. Key material never reaches the logs: only SHA-256
//! fingerprints.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parking_lot::Mutex;
use russh::keys::ssh_key::LineEnding;
pub use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, PrivateKey};

use crate::authorized_keys::{self as authorized, Entry, Rule, check_path_strict, owner_key_files};

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

/// A key's SHA-256 fingerprint (the one rule, in `authorized_keys`).
pub use crate::authorized_keys::fingerprint as fingerprint_of;

/// What identifies one version of a file: re-read only when it changes.
type Stamp = (u64, u64, i64, i64, u64);

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.len(),
    )
}

/// The owner's keys (`~/.ssh`), re-checked at every auth (so a key added there works at
/// once and a removed one stops) but parsed only when a file changes. Problems (unsafe
/// modes, lines that do not parse, restricted keys) are logged once per change of the
/// file, not once per connection: a stranger's attempts must not grow the log.
#[derive(Debug, Default)]
pub struct OwnerKeys {
    home: PathBuf,
    cache: Mutex<OwnerCache>,
}

#[derive(Debug, Default)]
struct OwnerCache {
    files: HashMap<PathBuf, (Stamp, Arc<Vec<Entry>>)>,
    /// The last problem logged per file (logged again only when it changes).
    warned: HashMap<PathBuf, String>,
}

impl OwnerKeys {
    pub fn new(home: PathBuf) -> OwnerKeys {
        OwnerKeys {
            home,
            cache: Mutex::new(OwnerCache::default()),
        }
    }

    /// Every usable owner key line now. Blocking file I/O: call off the runtime.
    pub fn entries(&self) -> Vec<Arc<Vec<Entry>>> {
        let files = owner_key_files(&self.home);
        let mut cache = self.cache.lock();
        cache.files.retain(|p, _| files.contains(p));
        let mut out = Vec::with_capacity(files.len());
        for file in files {
            match self.load(&mut cache, &file) {
                Ok(entries) => {
                    cache.warned.remove(&file);
                    out.push(entries);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    cache.files.remove(&file);
                    if cache.warned.get(&file) != Some(&msg) {
                        tracing::warn!(error = %msg, "ignoring owner key file");
                        cache.warned.insert(file, msg);
                    }
                }
            }
        }
        out
    }

    fn load(&self, cache: &mut OwnerCache, file: &Path) -> anyhow::Result<Arc<Vec<Entry>>> {
        let meta = check_path_strict(file, &self.home)?;
        let st = stamp(&meta);
        if let Some((s, entries)) = cache.files.get(file)
            && *s == st
        {
            return Ok(Arc::clone(entries));
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let (entries, errors) = authorized::parse_text(&text);
        for (line, why) in errors {
            tracing::warn!(file = %file.display(), line, "skipping a line that is not a key: {why}");
        }
        for (line, e) in &entries {
            if let Rule::Refuse(option) = &e.rule {
                tracing::warn!(
                    file = %file.display(),
                    line,
                    fingerprint = %fingerprint_of(&e.key),
                    option = %option,
                    "this key is not admitted to hearth: its option restricts what it may do"
                );
            }
        }
        let entries = Arc::new(entries.into_iter().map(|(_, e)| e).collect::<Vec<_>>());
        cache
            .files
            .insert(file.to_path_buf(), (st, Arc::clone(&entries)));
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host";

    #[test]
    fn unsafe_directories_above_an_owner_file_refuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let ssh = home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let set =
            |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        set(&home, 0o755);
        set(&ssh, 0o700);
        let file = ssh.join("authorized_keys");
        std::fs::write(&file, format!("{ED}\n")).unwrap();
        set(&file, 0o600);
        let keys = OwnerKeys::new(home.clone());
        assert_eq!(keys.entries().len(), 1);
        for (path, bad) in [(&file, 0o664), (&ssh, 0o770), (&home, 0o777)] {
            set(path, bad);
            assert!(
                keys.entries().is_empty(),
                "{} at {bad:o} admitted",
                path.display()
            );
            let err = check_path_strict(&file, &home).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            set(path, if path == &file { 0o600 } else { 0o755 });
        }
        assert_eq!(keys.entries().len(), 1);
    }

    #[test]
    fn a_bad_line_in_an_owner_file_skips_that_line_only() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let file = ssh.join("authorized_keys");
        std::fs::write(
            &file,
            format!("command=\"echo hi\" {ED}\nthis is garbage\n{ED}\n"),
        )
        .unwrap();
        let keys = OwnerKeys::new(dir.path().to_path_buf());
        let entries: Vec<Entry> = keys
            .entries()
            .iter()
            .flat_map(|v| v.iter().cloned())
            .collect();
        assert_eq!(entries.len(), 2);
        assert!(matches!(entries[0].rule, Rule::Refuse(_)));
        assert!(matches!(entries[1].rule, Rule::Allow { .. }));
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
