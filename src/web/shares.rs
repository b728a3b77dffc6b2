//! Share links: capability tokens for the read-only web view of one session. A token is
//! 160 random bits, shown once (`hearth share` prints the link) and kept only as its
//! SHA-256 digest, in `shares.json` in the state directory (0600, written whole through a
//! temporary file), so a new daemon honours the links an earlier one gave and a copy of the
//! file lets nobody in. Each link expires (default 24 h, at most a year); revoking or expiring
//! one cancels its token, which ends its viewers' streams. At most [`MAX_SHARES`] links
//! live at once. Owns nothing but the table and its file; knows nothing of HTTP.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Links alive at once, at most.
pub const MAX_SHARES: usize = 1000;
/// The longest a link may live.
pub const MAX_EXPIRY: Duration = Duration::from_secs(366 * 24 * 3600);
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// One link, as kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Share {
    /// The first 12 hex digits of the digest: names the link in `share --list`/`--revoke`.
    pub id: String,
    /// SHA-256 of the token, hex.
    pub digest: String,
    pub session: String,
    pub created_unix: u64,
    pub expires_unix: u64,
    /// The page has a timeline over the recording too (`share --replay`); a link to a
    /// session that has ended always has.
    #[serde(default)]
    pub replay: bool,
}

#[derive(Default)]
struct Table {
    shares: Vec<Share>,
    /// Cancelled when a link is revoked or expires: its viewers' streams end.
    cuts: HashMap<String, CancellationToken>,
}

pub struct Shares {
    file: Option<PathBuf>,
    table: Mutex<Table>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

impl Shares {
    /// The links kept in `file` (none when it is missing; an unreadable file is logged
    /// and starts empty: links are lost, never widened). `None`: kept in memory only.
    pub fn load(file: Option<PathBuf>) -> Shares {
        let mut shares: Vec<Share> = match &file {
            Some(f) => match std::fs::read(f) {
                Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    tracing::warn!(file = %f.display(), error = %e, "share links unreadable: none kept");
                    Vec::new()
                }),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        let now = now_unix();
        shares.retain(|s| s.expires_unix > now);
        shares.truncate(MAX_SHARES);
        Shares {
            file,
            table: Mutex::new(Table {
                shares,
                cuts: HashMap::new(),
            }),
        }
    }

    /// A new link to `session` for `expires`: (the token, shown once; the link). Writes the
    /// file: call it off the async runtime.
    pub fn create(
        &self,
        session: &str,
        expires: Duration,
        replay: bool,
    ) -> Result<(String, Share), String> {
        if expires.is_zero() || expires > MAX_EXPIRY {
            return Err("expires: give a duration from 1s to 366 days".into());
        }
        let token = hex(&rand::random::<[u8; 20]>());
        let digest = digest(&token);
        let now = now_unix();
        let share = Share {
            id: digest[..12].to_string(),
            digest,
            session: session.to_string(),
            created_unix: now,
            expires_unix: now + expires.as_secs(),
            replay,
        };
        let mut t = self.table.lock();
        self.expire(&mut t);
        if t.shares.len() >= MAX_SHARES {
            return Err(format!(
                "{MAX_SHARES} links are live already: revoke some (`hearth share --revoke`)"
            ));
        }
        t.shares.push(share.clone());
        self.save(&t.shares);
        Ok((token, share))
    }

    /// The live links, oldest first.
    pub fn list(&self) -> Vec<Share> {
        let mut t = self.table.lock();
        self.expire(&mut t);
        t.shares.clone()
    }

    /// The link `token` opens, if it is live, and the token that ends its viewers.
    pub fn check(&self, token: &str) -> Option<(Share, CancellationToken)> {
        // A token is 40 hex digits; anything else is not one (and costs no hashing).
        if token.len() != 40 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let d = digest(token);
        let mut t = self.table.lock();
        self.expire(&mut t);
        let share = t.shares.iter().find(|s| s.digest == d)?.clone();
        let cut = t.cuts.entry(share.id.clone()).or_default().clone();
        Some((share, cut))
    }

    /// Revoke the links `which` names (a token or a link's id), or every link: the ones
    /// revoked. A name that matches none is an error. Writes the file: call it off the
    /// async runtime.
    pub fn revoke(&self, which: Option<&str>) -> Result<Vec<Share>, String> {
        let mut t = self.table.lock();
        let gone: Vec<Share> = match which {
            None => std::mem::take(&mut t.shares),
            Some(w) => {
                let d = digest(w);
                let (gone, kept) = std::mem::take(&mut t.shares)
                    .into_iter()
                    .partition(|s| s.id == w || s.digest == d);
                t.shares = kept;
                gone
            }
        };
        if gone.is_empty() && which.is_some() {
            return Err("no such link (give its token or the id `share --list` shows)".into());
        }
        for s in &gone {
            if let Some(c) = t.cuts.remove(&s.id) {
                c.cancel();
            }
        }
        self.save(&t.shares);
        Ok(gone)
    }

    /// Drop expired links and end their viewers (in memory only: the file drops them at
    /// the next change, and loading skips them, so a lookup never writes).
    fn expire(&self, t: &mut Table) {
        let now = now_unix();
        let (live, dead): (Vec<Share>, Vec<Share>) = std::mem::take(&mut t.shares)
            .into_iter()
            .partition(|s| s.expires_unix > now);
        t.shares = live;
        for s in dead {
            if let Some(c) = t.cuts.remove(&s.id) {
                c.cancel();
            }
        }
    }

    fn save(&self, shares: &[Share]) {
        let Some(file) = &self.file else {
            return;
        };
        if let Err(e) =
            crate::paths::write_private(file, &serde_json::to_vec(shares).unwrap_or_default())
        {
            tracing::warn!(file = %file.display(), error = %e, "cannot keep the share links");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_kept_hashed_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shares.json");
        let s = Shares::load(Some(file.clone()));
        let (token, share) = s.create("abcd1234", DEFAULT_EXPIRY, false).unwrap();
        assert_eq!(token.len(), 40);
        let kept = std::fs::read_to_string(&file).unwrap();
        assert!(!kept.contains(&token), "the token itself is never written");
        assert!(kept.contains(&share.digest));
        let mode = std::fs::metadata(&file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // Another daemon honours it; a near miss opens nothing.
        let again = Shares::load(Some(file));
        assert_eq!(again.check(&token).unwrap().0.session, "abcd1234");
        let mut wrong = token.clone();
        wrong.replace_range(0..1, if token.starts_with('0') { "1" } else { "0" });
        assert!(again.check(&wrong).is_none());
        assert!(again.check("../../etc").is_none());
    }

    #[test]
    fn revoking_or_expiring_ends_the_viewers() {
        let s = Shares::load(None);
        let (a, sa) = s.create("s1", DEFAULT_EXPIRY, false).unwrap();
        let (b, _) = s.create("s1", DEFAULT_EXPIRY, false).unwrap();
        let (_, cut_a) = s.check(&a).unwrap();
        let (_, cut_b) = s.check(&b).unwrap();
        assert_eq!(s.revoke(Some(&sa.id)).unwrap().len(), 1);
        assert!(cut_a.is_cancelled() && !cut_b.is_cancelled());
        assert!(s.check(&a).is_none());
        assert!(s.revoke(Some("nope")).is_err());
        // Expired: gone at the next look, its viewers cut.
        s.table.lock().shares[0].expires_unix = now_unix() - 1;
        assert!(s.check(&b).is_none());
        assert!(cut_b.is_cancelled());
        assert!(s.create("s1", Duration::ZERO, false).is_err());
        assert!(
            s.create("s1", MAX_EXPIRY + Duration::from_secs(1), false)
                .is_err()
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let s = Shares::load(None);
        for _ in 0..MAX_SHARES {
            s.create("s", DEFAULT_EXPIRY, false).unwrap();
        }
        assert!(s.create("s", DEFAULT_EXPIRY, false).is_err());
        assert_eq!(s.revoke(None).unwrap().len(), MAX_SHARES);
        assert!(s.create("s", DEFAULT_EXPIRY, false).is_ok());
    }
}
