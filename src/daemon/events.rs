//! The daemon-wide event ring: sessions and the daemon publish typed events; every consumer
//! (the `events` RPC, the hooks runner, later the dashboard and MCP) reads from a sequence
//! number. Publishing never waits: the ring is bounded and drops its oldest events, and a
//! reader that fell behind is told how many it missed (`skipped`). Nothing in the output
//! path waits for a consumer.
//!
//! Owns the ring and sequence numbers only; it knows nothing of sessions' internals (the
//! daemon maps session events into [`EventKind`]s).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use hearth_rpc::{Event, EventKind};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::session::SessionEvent;
use crate::session::boundary::peer_role;

/// Default number of events kept.
pub const DEFAULT_CAPACITY: usize = 10_000;

pub struct EventRing {
    ring: Mutex<Ring>,
    /// The next sequence number to be assigned (wakes long polls).
    next: watch::Sender<u64>,
    /// Names this ring's numbering: the same after a daemon restart that continued it from
    /// its journal, a new one otherwise (a reader's cursor is good only for the same epoch).
    pub epoch: String,
}

struct Ring {
    events: VecDeque<Event>,
    capacity: usize,
    next_seq: u64,
    journal: Option<Journal>,
    /// Per session served by a host: the host's sequence number of the last event taken
    /// from it, so a new daemon continues each host where the ring ends.
    host_seqs: HashMap<String, u64>,
}

/// The ring on disk (`events.jsonl` beside the control socket, 0600), so the next daemon
/// continues it: every event is written before any reader can see it, and the file is
/// rewritten with the ring's contents once it holds twice as many lines (disk bounded).
/// Writes are small page-cache writes under the ring's lock, never synced.
struct Journal {
    path: PathBuf,
    file: std::fs::File,
    lines: usize,
}

/// One journal line: the epoch header, or an event (with the host's own sequence number
/// when it came from a session host).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Epoch { epoch: String },
    Event { event: Event, host_seq: Option<u64> },
}

/// A journal larger than this is not read back (it cannot be one this code wrote).
const MAX_JOURNAL: u64 = 256 * 1024 * 1024;

impl EventRing {
    pub fn new(capacity: usize) -> EventRing {
        EventRing {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                capacity: capacity.max(1),
                next_seq: 1,
                journal: None,
                host_seqs: HashMap::new(),
            }),
            next: watch::channel(1).0,
            epoch: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// A ring kept in the journal at `path`: continued from it when one is there (same
    /// epoch, the next sequence number after its last event), else a new one. A journal
    /// that cannot be written leaves the ring in memory only (logged).
    pub fn journaled(capacity: usize, path: &Path) -> EventRing {
        let mut ring = EventRing::new(capacity);
        let (epoch, events, host_seqs) = read_journal(path, ring.capacity());
        if let Some(epoch) = epoch {
            ring.epoch = epoch;
        }
        let next_seq = events.back().map_or(1, |e| e.seq + 1);
        {
            let mut r = ring.ring.lock();
            r.events = events;
            r.next_seq = next_seq;
            r.host_seqs = host_seqs;
            match write_journal(path, &ring.epoch, &r.events, &r.host_seqs) {
                Ok(journal) => r.journal = Some(journal),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot keep the event journal; events stay in memory")
                }
            }
        }
        ring.next.send_replace(next_seq);
        ring
    }

    fn capacity(&self) -> usize {
        self.ring.lock().capacity
    }

    /// The host sequence number of the last event taken from session `id`'s host, if any.
    pub fn host_seq(&self, id: &str) -> Option<u64> {
        self.ring.lock().host_seqs.get(id).copied()
    }

    /// Append an event (never waits; the oldest goes when the ring is full).
    pub fn publish(&self, session: &str, name: Option<&str>, kind: EventKind) {
        self.publish_event(
            Event {
                seq: 0,
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                session: session.to_string(),
                name: name.map(str::to_string),
                kind,
            },
            None,
        );
    }

    /// Append an event that happened elsewhere (a session host's, numbered `host_seq`
    /// there), keeping its time; it gets this ring's next sequence number.
    pub fn publish_event(&self, mut event: Event, host_seq: Option<u64>) {
        let next = {
            let mut r = self.ring.lock();
            event.seq = r.next_seq;
            r.next_seq += 1;
            if let Some(h) = host_seq {
                r.host_seqs.insert(event.session.clone(), h);
            }
            if r.events.len() >= r.capacity {
                r.events.pop_front();
            }
            // On disk before any reader sees it: readers wait on this lock.
            r.journal_append(&self.epoch, &event, host_seq);
            r.events.push_back(event);
            r.next_seq
        };
        self.next.send_replace(next);
    }

    /// A session that is gone: its host's numbering is forgotten.
    pub fn forget_host(&self, id: &str) {
        self.ring.lock().host_seqs.remove(id);
    }

    /// Whether an event in the ring names a session `target` (its id or name).
    pub fn mentions(&self, target: &str) -> bool {
        self.ring
            .lock()
            .events
            .iter()
            .any(|e| e.session == target || e.name.as_deref() == Some(target))
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        *self.next.borrow()
    }

    /// Up to `max` events from `since` on that `keep` accepts, and where to continue. A
    /// `since` older than the ring yields a `skipped` event first.
    pub fn read(&self, since: u64, max: usize, keep: impl Fn(&Event) -> bool) -> (Vec<Event>, u64) {
        let r = self.ring.lock();
        let oldest = r.events.front().map_or(r.next_seq, |e| e.seq);
        let mut out = Vec::new();
        if since < oldest && since > 0 {
            out.push(Event {
                seq: oldest.saturating_sub(1),
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                session: String::new(),
                name: None,
                kind: EventKind::Skipped {
                    count: oldest - since,
                },
            });
        }
        let start = since.max(oldest);
        // Continue after the last event handed out, or from the end when all were seen.
        let mut next = r.next_seq;
        for e in r.events.iter().skip((start - oldest) as usize) {
            if keep(e) {
                if out.len() >= max {
                    next = e.seq;
                    break;
                }
                out.push(e.clone());
            }
        }
        (out, next)
    }

    /// Wait until an event with sequence number >= `seq` exists, or `limit` passes.
    pub async fn wait_for(&self, seq: u64, limit: Duration) {
        let mut rx = self.next.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|next| *next > seq)).await;
    }
}

impl Ring {
    /// Write `event` to the journal (before anyone can read it); rewrite the journal from
    /// the ring when it has grown to twice the ring. A write that fails turns the journal
    /// off (logged once): the ring goes on in memory.
    fn journal_append(&mut self, epoch: &str, event: &Event, host_seq: Option<u64>) {
        use std::io::Write as _;
        let Some(journal) = self.journal.as_ref() else {
            return;
        };
        if journal.lines >= 2 * self.capacity {
            let path = journal.path.clone();
            match write_journal(&path, epoch, &self.events, &self.host_seqs) {
                Ok(fresh) => self.journal = Some(fresh),
                Err(e) => return self.journal_failed(&e),
            }
        }
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let line = Line::Event {
            event: event.clone(),
            host_seq,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        journal.lines += 1;
        if let Err(e) = journal.file.write_all(text.as_bytes()) {
            self.journal_failed(&e);
        }
    }

    fn journal_failed(&mut self, e: &std::io::Error) {
        tracing::warn!(error = %e, "cannot write the event journal; events stay in memory from now on");
        self.journal = None;
    }
}

/// Read a journal back: its epoch, its last `capacity` events, and each host's last
/// sequence number. Lines that do not parse are skipped; a missing or oversized file
/// yields nothing.
fn read_journal(
    path: &Path,
    capacity: usize,
) -> (Option<String>, VecDeque<Event>, HashMap<String, u64>) {
    let mut epoch = None;
    let mut events = VecDeque::new();
    let mut host_seqs = HashMap::new();
    let fits = std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_JOURNAL);
    let text = if fits {
        std::fs::read_to_string(path).unwrap_or_default()
    } else {
        String::new()
    };
    for line in text.lines() {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Epoch { epoch: e }) => epoch = Some(e),
            Ok(Line::Event { event, host_seq }) => {
                if let Some(h) = host_seq {
                    host_seqs.insert(event.session.clone(), h);
                }
                // Numbers only ever grow (0 carries a host's number alone).
                if event.seq == 0 || events.back().is_some_and(|b: &Event| b.seq >= event.seq) {
                    continue;
                }
                if events.len() >= capacity {
                    events.pop_front();
                }
                events.push_back(event);
            }
            Err(_) => {}
        }
    }
    (epoch, events, host_seqs)
}

/// Write a fresh journal holding `events` (and each host's last number) and open it for
/// appending: a new file renamed into place, so a crash leaves the old one or the new.
fn write_journal(
    path: &Path,
    epoch: &str,
    events: &VecDeque<Event>,
    host_seqs: &HashMap<String, u64>,
) -> std::io::Result<Journal> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("jsonl.new");
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?,
    );
    let header = Line::Epoch {
        epoch: epoch.to_string(),
    };
    writeln!(out, "{}", serde_json::to_string(&header)?)?;
    let mut lines = 0;
    // The hosts' numbers ride on the last event of each session (or stand alone when the
    // ring no longer holds one).
    let mut left: HashMap<&str, u64> = host_seqs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let last_of: HashMap<&str, u64> = events.iter().map(|e| (e.session.as_str(), e.seq)).collect();
    for e in events {
        let host_seq = (last_of.get(e.session.as_str()) == Some(&e.seq))
            .then(|| left.remove(e.session.as_str()))
            .flatten();
        let line = Line::Event {
            event: e.clone(),
            host_seq,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
        lines += 1;
    }
    out.flush()?;
    // No fsync: the journal outlives the daemon, not the machine (it sits in the runtime
    // directory), and rename is atomic for a process that dies.
    drop(out.into_inner().map_err(|e| e.into_error())?);
    std::fs::rename(&tmp, path)?;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    // Host numbers whose sessions have no event left in the ring.
    for (session, seq) in left {
        let line = Line::Event {
            event: Event {
                seq: 0,
                time: String::new(),
                session: session.to_string(),
                name: None,
                kind: EventKind::Skipped { count: 0 },
            },
            host_seq: Some(seq),
        };
        writeln!(file, "{}", serde_json::to_string(&line)?)?;
    }
    Ok(Journal {
        path: path.to_path_buf(),
        file,
        lines,
    })
}

/// A session's way into the ring. Events that happen before the session is registered
/// (output, even the exit of a quick command, can come first) are held, in order, and
/// published right after `created`, so a reader never sees them before it.
pub struct SessionSink {
    ring: Arc<EventRing>,
    id: String,
    /// Its name as events carry it (a `renamed` event changes it).
    name: Mutex<Option<String>>,
    /// `None` once open; until then, what happened (bounded).
    early: Mutex<Option<Vec<EventKind>>>,
}

/// Events held before `created` at most (a program that floods before then loses the rest).
const EARLY: usize = 1000;

impl SessionSink {
    pub fn new(ring: Arc<EventRing>, id: &str, name: Option<&str>) -> Arc<SessionSink> {
        Arc::new(SessionSink {
            ring,
            id: id.to_string(),
            name: Mutex::new(name.map(str::to_string)),
            early: Mutex::new(Some(Vec::new())),
        })
    }

    pub fn emit(&self, e: SessionEvent) {
        if let SessionEvent::Renamed { to, .. } = &e {
            *self.name.lock() = Some(to.clone());
        }
        let kind = from_session(e);
        let mut early = self.early.lock();
        match early.as_mut() {
            Some(held) if held.len() < EARLY => held.push(kind),
            Some(_) => {}
            None => self
                .ring
                .publish(&self.id, self.name.lock().as_deref(), kind),
        }
    }

    /// Publish `created`, then what was held, then go live.
    pub fn open(&self) {
        let mut early = self.early.lock();
        let name = self.name.lock().clone();
        self.ring
            .publish(&self.id, name.as_deref(), EventKind::Created);
        for kind in early.take().unwrap_or_default() {
            self.ring.publish(&self.id, name.as_deref(), kind);
        }
    }
}

/// A session's event as the ring records it.
pub fn from_session(e: SessionEvent) -> EventKind {
    match e {
        SessionEvent::Exited(exit_code) => EventKind::Exited { exit_code },
        SessionEvent::Joined {
            client, role, addr, ..
        } => EventKind::Joined {
            client,
            role: peer_role(role),
            addr,
        },
        SessionEvent::Left { client } => EventKind::Left { client },
        SessionEvent::Kicked { client, by } => EventKind::Kicked { client, by },
        SessionEvent::Role { client, role, by } => EventKind::Role {
            client,
            role: peer_role(role),
            by,
        },
        SessionEvent::Lock { locked: true, by } => EventKind::Locked { by },
        SessionEvent::Lock { locked: false, by } => EventKind::Unlocked { by },
        SessionEvent::Title(title) => EventKind::Title { title },
        SessionEvent::Bell => EventKind::Bell,
        SessionEvent::Message { by, .. } => EventKind::Message { by },
        SessionEvent::Input { client } => EventKind::Input { client },
        SessionEvent::Match { trigger, text } => EventKind::Match { trigger, text },
        SessionEvent::Busy => EventKind::Busy,
        SessionEvent::Idle { idle } => EventKind::Idle {
            idle_ms: idle.as_millis() as u64,
        },
        SessionEvent::RecordingError(error) => EventKind::RecordingError { error },
        SessionEvent::Notify(text) => EventKind::Notify { text },
        SessionEvent::Prompt => EventKind::Prompt,
        SessionEvent::Renamed { from, to } => EventKind::Renamed { from, to },
        SessionEvent::Restarting {
            attempt,
            exit_code,
            after,
        } => EventKind::Restarting {
            attempt,
            exit_code,
            after_ms: after.as_millis() as u64,
        },
        SessionEvent::Restarted {
            attempt,
            pid,
            command,
        } => EventKind::Restarted {
            attempt,
            pid,
            command,
        },
        SessionEvent::Command { exit_code } => EventKind::Command { exit_code },
        SessionEvent::Resume(step) => {
            let (step, at, reason) = crate::session::resume::describe(&step);
            EventKind::Resume { step, at, reason }
        }
        SessionEvent::State {
            from,
            to,
            reason,
            text,
        } => EventKind::State {
            from: from.name().to_string(),
            to: to.name().to_string(),
            reason,
            text,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.name()).collect()
    }

    #[test]
    fn events_are_numbered_filtered_and_resumable() {
        let ring = EventRing::new(100);
        ring.publish("a", None, EventKind::Created);
        ring.publish("b", Some("bee"), EventKind::Created);
        ring.publish("a", None, EventKind::Bell);
        let (all, next) = ring.read(1, 100, |_| true);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(next, 4);
        let (only_a, next) = ring.read(1, 100, |e| e.session == "a");
        assert_eq!(kinds(&only_a), ["created", "bell"]);
        assert_eq!(next, 4);
        let (two, next) = ring.read(1, 2, |_| true);
        assert_eq!((two.len(), next), (2, 3));
        let (rest, next) = ring.read(next, 10, |_| true);
        assert_eq!((kinds(&rest), next), (vec!["bell"], 4));
        let (none, next) = ring.read(4, 10, |_| true);
        assert!(none.is_empty() && next == 4);
    }

    #[test]
    fn a_reader_behind_the_ring_is_told_what_it_missed() {
        let ring = EventRing::new(3);
        for _ in 0..10 {
            ring.publish("a", None, EventKind::Bell);
        }
        let (events, next) = ring.read(1, 100, |_| true);
        assert_eq!(events[0].kind, EventKind::Skipped { count: 7 });
        assert_eq!(
            events[1..].iter().map(|e| e.seq).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert_eq!(next, 11);
    }

    #[test]
    fn events_serialise_flat_with_their_kind() {
        let ring = EventRing::new(10);
        ring.publish(
            "a",
            Some("agent"),
            EventKind::Joined {
                client: "al-1".into(),
                role: hearth_rpc::PeerRole::Owner,
                addr: "127.0.0.1:1".into(),
            },
        );
        let (e, _) = ring.read(1, 1, |_| true);
        let v = serde_json::to_value(&e[0]).unwrap();
        assert_eq!(v["kind"], "joined");
        assert_eq!(v["client"], "al-1");
        assert_eq!(v["role"], "owner");
        assert_eq!(v["seq"], 1);
    }

    #[test]
    fn the_journal_continues_the_ring_across_restarts_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let ring = EventRing::journaled(3, &path);
        for _ in 0..10 {
            ring.publish("s", None, EventKind::Bell);
        }
        let from_host = Event {
            seq: 0,
            time: String::new(),
            session: "h".into(),
            name: None,
            kind: EventKind::Busy,
        };
        ring.publish_event(from_host, Some(41));
        for _ in 0..10 {
            ring.publish("s", None, EventKind::Bell);
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(
            lines <= 2 * 3 + 2,
            "the journal is rewritten: {lines} lines"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        // A daemon that dies (nothing closed) and the next one that reads the journal.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{half a line\n"))
            .unwrap();
        let again = EventRing::journaled(3, &path);
        assert_eq!(again.epoch, ring.epoch, "the same numbering");
        assert_eq!(again.next_seq(), ring.next_seq());
        assert_eq!(
            again.host_seq("h"),
            Some(41),
            "where to go on with the host"
        );
        let (was, _) = ring.read(1, 100, |e| e.kind != EventKind::Skipped { count: 0 });
        let (is, _) = again.read(1, 100, |e| e.kind != EventKind::Skipped { count: 0 });
        assert_eq!(
            is.iter().map(|e| e.seq).collect::<Vec<_>>(),
            was.iter().map(|e| e.seq).collect::<Vec<_>>()
        );
        again.publish("s", None, EventKind::Bell);
        assert_eq!(again.next_seq(), ring.next_seq() + 1);

        // No journal (or another's): a new numbering.
        let fresh = EventRing::journaled(3, &dir.path().join("other.jsonl"));
        assert_ne!(fresh.epoch, ring.epoch);
        assert_eq!(fresh.next_seq(), 1);
    }
}
