//! Ended sessions, on disk: one small record per session, `<id>.session.json` beside its
//! recording (0600, written whole to a temporary file and renamed). It is written when the
//! session starts (so a session that dies with the daemon is still known) and again when it
//! ends (exit code, end time). `history`, `ps --all`, and `logs`/`tail`/`screen`/`replay`/
//! `restart` of an ended session read these records and the recordings, so they survive
//! daemon restarts.
//!
//! Retention: records go with their recordings when the total recording cap prunes them,
//! and at most [`MAX_RECORDS`] are kept (oldest first out). A record larger than
//! `MAX_RECORD_BYTES` or that does not parse is ignored, never trusted. This module owns
//! those files only; it must not touch a live session.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hearth_rpc::{ApiError, CreateRequest, EndedSession, SessionInfo};
use serde::{Deserialize, Serialize};

/// Records kept in the directory.
pub const MAX_RECORDS: usize = 1000;
/// Larger files are not records hearth wrote.
const MAX_RECORD_BYTES: u64 = 256 * 1024;
const SUFFIX: &str = ".session.json";

/// What is kept of a session once it has ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: Option<String>,
    pub command: Vec<String>,
    pub cwd: String,
    pub created_at: String,
    pub created_unix: u64,
    pub ended_unix: Option<u64>,
    pub exit_code: Option<i32>,
    /// It ended with a daemon that could not note it (a crash): the end time is the last
    /// write of its recording, the exit code unknown.
    #[serde(default)]
    pub lost: bool,
    pub recording: Option<String>,
    /// How many times its program was started again (`server --restart`).
    #[serde(default)]
    pub restarts: u32,
    /// What started it, for `restart` after the daemon restarted.
    pub request: CreateRequest,
}

impl Record {
    pub fn new(info: &SessionInfo, request: &CreateRequest) -> Record {
        Record {
            id: info.id.clone(),
            name: info.name.clone(),
            command: info.command.clone(),
            cwd: info.cwd.clone(),
            created_at: info.created_at.clone(),
            created_unix: info.created_unix,
            ended_unix: None,
            exit_code: None,
            lost: false,
            recording: info.recording.clone(),
            restarts: info.restarts,
            request: request.clone(),
        }
    }

    /// The end: when the program exited (`at`), or now (a session killed while its
    /// program still ran ends when it is killed).
    pub fn ended(mut self, exit_code: Option<i32>, at: Option<std::time::SystemTime>) -> Record {
        self.ended_unix = Some(
            at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or_else(now_unix, |d| d.as_secs()),
        );
        self.exit_code = exit_code;
        self
    }

    /// As the API reports it.
    pub fn info(&self) -> EndedSession {
        let recording = self
            .recording
            .as_ref()
            .filter(|p| Path::new(p).is_file())
            .cloned();
        let recording_bytes = recording
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        EndedSession {
            id: self.id.clone(),
            name: self.name.clone(),
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            created_at: self.created_at.clone(),
            created_unix: self.created_unix,
            ended_at: self.ended_unix.map(|t| {
                humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(t))
                    .to_string()
            }),
            ended_unix: self.ended_unix,
            exit_code: self.exit_code,
            lost: self.lost,
            recording,
            recording_bytes,
            restarts: self.restarts,
        }
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}{SUFFIX}"))
}

/// Write (or rewrite) a record. Errors are logged: history is best effort, never a reason
/// for a session to fail.
pub fn write(dir: &Path, record: &Record) {
    let result = crate::paths::write_private(
        &path(dir, &record.id),
        &serde_json::to_vec(record).unwrap_or_default(),
    );
    if let Err(e) = result {
        tracing::warn!(session = %record.id, error = %e, "cannot write the session's history record");
    }
}

/// Every readable record in `dir` (unordered).
fn load_all(dir: &Path) -> Vec<(SystemTime, PathBuf, Record)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(SUFFIX)))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            if !meta.is_file() || meta.len() > MAX_RECORD_BYTES {
                return None;
            }
            let record: Record = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            let named = e.file_name().to_str()? == format!("{}{SUFFIX}", record.id);
            named.then(|| (meta.modified().unwrap_or(UNIX_EPOCH), e.path(), record))
        })
        .collect()
}

/// Every recorded session's id and the name it had (its record's: the last written).
pub fn names(dir: &Path) -> std::collections::HashMap<String, Option<String>> {
    load_all(dir)
        .into_iter()
        .map(|(_, _, r)| (r.id, r.name))
        .collect()
}

/// Records of sessions not in `live`, newest first (by end, else start).
fn ended(dir: &Path, live: &HashSet<String>) -> Vec<Record> {
    let mut records: Vec<Record> = load_all(dir)
        .into_iter()
        .map(|(_, _, r)| r)
        .filter(|r| !live.contains(&r.id))
        .collect();
    records.sort_by_key(|r| {
        std::cmp::Reverse((r.ended_unix.unwrap_or(r.created_unix), r.created_unix))
    });
    records
}

/// Ended sessions (not in `live`), newest first; `since` keeps those that ended (or, when
/// the end is unknown, started) at or after it.
pub fn list(dir: &Path, live: &HashSet<String>, since: Option<u64>) -> Vec<EndedSession> {
    ended(dir, live)
        .iter()
        .filter(|r| since.is_none_or(|s| r.ended_unix.unwrap_or(r.created_unix) >= s))
        .map(Record::info)
        .collect()
}

/// One ended session: its exact id, its name (the newest of that name), or a unique id
/// prefix.
pub fn find(dir: &Path, live: &HashSet<String>, target: &str) -> Result<Record, ApiError> {
    let records = ended(dir, live);
    if let Some(r) = records.iter().find(|r| r.id == target) {
        return Ok(r.clone());
    }
    if let Some(r) = records.iter().find(|r| r.name.as_deref() == Some(target)) {
        return Ok(r.clone());
    }
    let prefixed: Vec<&Record> = records
        .iter()
        .filter(|r| !target.is_empty() && r.id.starts_with(target))
        .collect();
    match prefixed.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ApiError::not_found(format!(
            "no session '{target}', running or ended (see `hearth ps --all`)"
        ))),
        many => Err(ApiError::invalid(format!(
            "'{target}' matches {} ended sessions; give more of the id",
            many.len()
        ))),
    }
}

/// At daemon start (only the session hosts it adopted, `live`, are alive): records of
/// other sessions that never got their end noted ended with the previous daemon. Mark them
/// lost, with the last write of their recording as the end; their ids, so what they left
/// running can be ended.
pub fn settle_lost(dir: &Path, live: &HashSet<String>) -> HashSet<String> {
    settle(dir, |r| !live.contains(&r.id))
}

/// A session whose own process went away without noting its end: mark its record lost.
pub fn mark_lost(dir: &Path, id: &str) {
    settle(dir, |r| r.id == id);
}

fn settle(dir: &Path, which: impl Fn(&Record) -> bool) -> HashSet<String> {
    let mut lost = HashSet::new();
    for (modified, _, mut record) in load_all(dir) {
        if record.ended_unix.is_some() || !which(&record) {
            continue;
        }
        let last = record
            .recording
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok()?.modified().ok())
            .unwrap_or(modified);
        record.ended_unix = Some(
            last.duration_since(UNIX_EPOCH)
                .map_or(record.created_unix, |d| d.as_secs()),
        );
        record.lost = true;
        write(dir, &record);
        lost.insert(record.id);
    }
    lost
}

/// Keep at most `keep` records: the oldest (by last write) go first. The common case (not
/// over) only counts file names; the records are read when some must go.
pub fn prune(dir: &Path, keep: usize, live: &HashSet<String>) {
    let named = std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(SUFFIX)))
            .count()
    });
    if named <= keep {
        return;
    }
    let mut all = load_all(dir);
    if all.len() <= keep {
        return;
    }
    all.sort_by_key(|(modified, ..)| *modified);
    let excess = all.len() - keep;
    for (_, path, record) in all
        .into_iter()
        .filter(|(.., r)| !live.contains(&r.id))
        .take(excess)
    {
        if std::fs::remove_file(&path).is_ok() {
            tracing::debug!(session = %record.id, "removed an old history record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: Option<&str>, created: u64, ended: Option<u64>) -> Record {
        Record {
            id: id.into(),
            name: name.map(Into::into),
            command: vec!["sh".into()],
            cwd: "/".into(),
            created_at: String::new(),
            created_unix: created,
            ended_unix: ended,
            exit_code: ended.map(|_| 0),
            lost: false,
            recording: None,
            restarts: 0,
            request: CreateRequest::default(),
        }
    }

    #[test]
    fn records_survive_as_files_newest_first_and_are_found_by_id_name_or_prefix() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &record("aaaa1111", Some("web"), 10, Some(20)));
        write(dir.path(), &record("bbbb2222", Some("web"), 30, Some(40)));
        write(dir.path(), &record("cccc3333", None, 50, None));
        let live = HashSet::from(["cccc3333".to_string()]);
        let ids: Vec<String> = list(dir.path(), &HashSet::new(), None)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["cccc3333", "bbbb2222", "aaaa1111"]);
        assert_eq!(
            list(dir.path(), &live, None).len(),
            2,
            "live sessions are not history"
        );
        assert_eq!(list(dir.path(), &live, Some(35)).len(), 1);
        assert_eq!(find(dir.path(), &live, "web").unwrap().id, "bbbb2222");
        assert_eq!(find(dir.path(), &live, "aaaa").unwrap().id, "aaaa1111");
        assert!(find(dir.path(), &live, "cccc3333").is_err());
        assert!(find(dir.path(), &live, "nope").is_err());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path(dir.path(), "aaaa1111"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // The next daemon finds cccc3333 never ended: it ended with the daemon.
        assert_eq!(
            settle_lost(dir.path(), &HashSet::new()),
            HashSet::from(["cccc3333".to_string()])
        );
        let lost = find(dir.path(), &HashSet::new(), "cccc3333").unwrap();
        assert!(lost.lost && lost.ended_unix.is_some() && lost.exit_code.is_none());
        assert!(
            settle_lost(dir.path(), &HashSet::new()).is_empty(),
            "settled once"
        );
    }

    #[test]
    fn garbage_and_oversized_files_are_ignored_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("junk{SUFFIX}")), "{not json").unwrap();
        std::fs::write(
            dir.path().join(format!("big{SUFFIX}")),
            vec![b' '; MAX_RECORD_BYTES as usize + 1],
        )
        .unwrap();
        // A record under another id's file name is not trusted either.
        std::fs::write(
            dir.path().join(format!("dddd4444{SUFFIX}")),
            serde_json::to_vec(&record("eeee5555", None, 1, Some(2))).unwrap(),
        )
        .unwrap();
        assert!(list(dir.path(), &HashSet::new(), None).is_empty());
        for i in 0..5u64 {
            write(
                dir.path(),
                &record(&format!("0000000{i}"), None, i, Some(i)),
            );
            // Distinct modification times.
            let t = std::fs::FileTimes::new()
                .set_modified(UNIX_EPOCH + std::time::Duration::from_secs(1000 + i));
            std::fs::File::options()
                .write(true)
                .open(path(dir.path(), &format!("0000000{i}")))
                .unwrap()
                .set_times(t)
                .unwrap();
        }
        prune(dir.path(), 3, &HashSet::new());
        let ids: Vec<String> = list(dir.path(), &HashSet::new(), None)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["00000004", "00000003", "00000002"]);
    }
}
