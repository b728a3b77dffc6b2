//! The session recorder: asciicast v2 (`<id>.cast`, playable by `asciinema play`) with "o"
//! events for output, "r" for resizes and "m" markers for gaps, plus the audit trail
//! ([`super::audit`], `<id>.audit.jsonl`: who typed what, who joined, left, was kicked or
//! changed roles; `adr/0003`, `adr/0004`), which has its own queue, thread and cap.
//!
//! Recording never blocks the session: events go through a bounded queue to a recorder
//! thread (which lets output gather 2 ms before it waits again: one wake-up per batch, not
//! per PTY read); when the queue is full the bytes are counted and a marker says how many
//! were not recorded; a disk error stops the recording with a visible status, never the
//! session.
//! A size cap per recording stops the cast with a marker (the audit goes on); a total cap
//! prunes the oldest recordings of ended sessions at start (their text indexes, `grep`'s,
//! count and go too). Resizes are recorded when the
//! size really changes, at most every [`RESIZE_EVERY`] (the latest wins). The cast is
//! written out at least every second while output flows. Files are 0600 in a 0700
//! directory. `finish` flushes and syncs, so `kill` and shutdown lose nothing queued.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use serde_json::json;

/// Where and how much to record.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub dir: PathBuf,
    /// Bytes of the cast before it stops with a marker.
    pub max_bytes: u64,
    /// Bytes of the audit trail before typed input stops being recorded in it.
    pub max_audit_bytes: u64,
    /// Bytes of all recordings; the oldest of ended sessions are removed first.
    pub max_total_bytes: u64,
}

impl RecordConfig {
    pub fn new(dir: PathBuf) -> Self {
        RecordConfig {
            dir,
            max_bytes: 256 * 1024 * 1024,
            max_audit_bytes: 64 * 1024 * 1024,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
        }
    }

    pub fn cast_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.cast"))
    }

    pub fn audit_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.audit.jsonl"))
    }
}

/// Events queued before output is dropped (counted and marked) instead of waiting.
const QUEUE: usize = 4096;

/// Output bytes queued before more is dropped (counted and marked): bounds the memory a
/// slow disk can pin, whatever the size of each read.
const QUEUE_BYTES: u64 = 16 * 1024 * 1024;

/// Idle time after which buffered events are written out...
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(500);
/// ...and the longest they stay buffered while output keeps flowing.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long output may gather in the queue before the recorder thread waits on it.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// Shortest time between two recorded resizes (a window-change storm is one event).
pub const RESIZE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

enum Event {
    Output(Instant, bytes::Bytes),
    /// The size changed: see the shared latest-size slot.
    Resize,
    /// A marker hearth adds (a trigger matched).
    Marker(Instant, String),
    Finish,
}

/// The latest size not yet recorded: a resize storm overwrites one slot instead of
/// filling the queue, and one [`Event::Resize`] at most is queued for it (in order with
/// the output around it).
#[derive(Default)]
struct SizeSlot {
    latest: Mutex<Option<(Instant, u16, u16)>>,
    queued: std::sync::atomic::AtomicBool,
}

/// What the header says.
pub struct Header<'a> {
    pub cols: u16,
    pub rows: u16,
    pub command: &'a [String],
    pub title: Option<&'a str>,
}

pub struct Recorder {
    tx: SyncSender<Event>,
    /// Output bytes sent and not yet written.
    queued: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dropped: Arc<AtomicU64>,
    status: Arc<Mutex<Option<String>>>,
    /// The audit trail, beside the cast.
    pub audit: super::audit::Audit,
    size: Arc<SizeSlot>,
    pub path: PathBuf,
}

impl Recorder {
    /// Create the files and start the recorder thread. Fails (and the session runs without
    /// a recording) when the directory or files cannot be written.
    pub fn start(
        config: &RecordConfig,
        id: &str,
        header: Header<'_>,
        keep: &HashSet<String>,
    ) -> std::io::Result<Recorder> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.dir)?;
        prune(&config.dir, config.max_total_bytes, keep);
        let path = config.cast_path(id);
        let open = |p: &Path| {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
        };
        let mut cast = BufWriter::with_capacity(64 * 1024, open(&path)?);
        let start = Instant::now();
        let audit_path = config.audit_path(id);
        let audit = super::audit::Audit::start(
            &audit_path,
            open(&audit_path)?,
            start,
            config.max_audit_bytes,
        )?;
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut head = json!({
            "version": 2,
            "width": header.cols,
            "height": header.rows,
            "timestamp": timestamp,
            "command": header.command.join(" "),
            "env": {"TERM": "xterm-256color"},
        });
        if let Some(t) = header.title {
            head["title"] = json!(t);
        }
        writeln!(cast, "{head}")?;
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let status = Arc::new(Mutex::new(None));
        let size_slot = Arc::new(SizeSlot::default());
        let mut w = CastWriter {
            cast,
            start,
            size: (header.cols, header.rows),
            slot: Arc::clone(&size_slot),
            pending_resize: None,
            last_resize: None,
            last_t: 0.0,
            written: 0,
            max: config.max_bytes,
            carry: Vec::new(),
            dropped: Arc::clone(&dropped),
            queued: Arc::clone(&queued),
            status: Arc::clone(&status),
            stopped: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("record-{id}"))
            .spawn(move || w.run(rx))?;
        Ok(Recorder {
            tx,
            queued,
            thread: Mutex::new(Some(thread)),
            dropped,
            status,
            audit,
            size: size_slot,
            path,
        })
    }

    /// Record output (a cheap clone of the log's own bytes).
    pub fn output(&self, at: Instant, bytes: bytes::Bytes) {
        let len = bytes.len() as u64;
        if self.queued.load(Ordering::Relaxed) + len > QUEUE_BYTES {
            self.dropped.fetch_add(len, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        if self.tx.try_send(Event::Output(at, bytes)).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.dropped.fetch_add(len, Ordering::Relaxed);
        }
    }

    pub fn resize(&self, at: Instant, cols: u16, rows: u16) {
        *self.size.latest.lock() = Some((at, cols, rows));
        // One wake-up in the queue is enough: the writer reads the latest size.
        if !self.size.queued.swap(true, Ordering::AcqRel)
            && self.tx.try_send(Event::Resize).is_err()
        {
            self.size.queued.store(false, Ordering::Release);
        }
    }

    /// An "m" marker in the cast (best effort: dropped if the queue is full).
    pub fn marker(&self, at: Instant, text: &str) {
        let text: String = text.chars().take(500).collect();
        let _ = self.tx.try_send(Event::Marker(at, text));
    }

    /// `None` while recording fine; otherwise why the cast or the audit stopped.
    pub fn status(&self) -> Option<String> {
        self.status.lock().clone().or_else(|| self.audit.status())
    }

    /// Flush everything queued and stop. Blocks until written (call off the runtime).
    pub fn finish(&self) {
        self.audit.finish();
        // A blocking send: everything queued before it is written first.
        let _ = self.tx.send(Event::Finish);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

struct CastWriter {
    cast: BufWriter<File>,
    start: Instant,
    /// The size last recorded.
    size: (u16, u16),
    slot: Arc<SizeSlot>,
    /// A resize taken from the slot and held back by the rate limit (written before the
    /// next output, or once the limit allows).
    pending_resize: Option<(Instant, u16, u16)>,
    /// When the last resize was written (the writer's clock).
    last_resize: Option<Instant>,
    /// The largest time written so far.
    last_t: f64,
    written: u64,
    max: u64,
    carry: Vec<u8>,
    dropped: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
    status: Arc<Mutex<Option<String>>>,
    stopped: bool,
}

impl CastWriter {
    fn run(&mut self, rx: Receiver<Event>) {
        // Written out when idle, and at least every second while output flows, so a live
        // recording can be followed and a crash loses little.
        let mut dirty = false;
        let mut flushed_at = Instant::now();
        // After output, an empty queue is given [`GATHER`] to fill before the thread waits
        // on it: during a flood it then wakes a few hundred times a second instead of once
        // per read of the PTY (each wake-up a futex call on the PTY reader's side).
        let mut gathered = true;
        loop {
            let received = match rx.try_recv() {
                Ok(e) => Ok(e),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) if !gathered => {
                    gathered = true;
                    std::thread::sleep(GATHER);
                    continue;
                }
                // Something to write out later: wake for it. Nothing: sleep until an event
                // (an idle session costs no wake-ups).
                Err(TryRecvError::Empty) if dirty || self.pending_resize.is_some() => {
                    rx.recv_timeout(FLUSH_AFTER)
                }
                Err(TryRecvError::Empty) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            gathered = !matches!(received, Ok(Event::Output(..)));
            let event = match received {
                Ok(Event::Finish) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(e) => Some(e),
                Err(RecvTimeoutError::Timeout) => None,
            };
            if let Some(Event::Output(_, b)) = &event {
                self.queued.fetch_sub(b.len() as u64, Ordering::Relaxed);
            }
            if self.stopped {
                continue;
            }
            let timed_out = event.is_none();
            let before = self.written;
            let result = match event {
                Some(e) => self.write(e),
                None => self.write_pending_resize(),
            };
            dirty |= self.written != before;
            if let Err(e) = result {
                self.stop(format!("recording stopped: write error: {e}"));
                continue;
            }
            if dirty && (timed_out || flushed_at.elapsed() >= FLUSH_EVERY) {
                dirty = false;
                flushed_at = Instant::now();
                if let Err(e) = self.cast.flush() {
                    self.stop(format!("recording stopped: write error: {e}"));
                }
            }
        }
        if !self.stopped {
            let flushed = self
                .write_pending_resize()
                .and_then(|_| self.cast.flush())
                .and_then(|_| self.cast.get_ref().sync_all());
            if let Err(e) = flushed {
                self.stop(format!("recording incomplete: flush failed: {e}"));
            }
        }
    }

    fn stop(&mut self, why: String) {
        tracing::warn!("{why}");
        *self.status.lock() = Some(why);
        self.stopped = true;
    }

    /// Seconds since the start for an event at `at`: never less than the last time
    /// written (a resize taken from its slot can be older than output already written, and
    /// time must not go backwards in a cast).
    fn t(&mut self, at: Instant) -> f64 {
        let t = (at.saturating_duration_since(self.start).as_micros() as f64) / 1e6;
        self.last_t = self.last_t.max(t);
        self.last_t
    }

    fn line(&mut self, v: serde_json::Value) -> std::io::Result<()> {
        let text = v.to_string();
        self.written += text.len() as u64 + 1;
        writeln!(self.cast, "{text}")
    }

    /// Write the resize held back by the rate limit, if the size really changed.
    fn write_pending_resize(&mut self) -> std::io::Result<()> {
        if let Some((at, cols, rows)) = self.pending_resize.take()
            && (cols, rows) != self.size
        {
            let t = self.t(at);
            self.line(json!([t, "r", format!("{cols}x{rows}")]))?;
            self.size = (cols, rows);
            self.last_resize = Some(Instant::now());
        }
        Ok(())
    }

    /// Whether the rate limit lets a resize be written now.
    fn resize_due(&self) -> bool {
        self.last_resize.is_none_or(|l| l.elapsed() >= RESIZE_EVERY)
    }

    fn write(&mut self, event: Event) -> std::io::Result<()> {
        let lost = self.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let at = match &event {
                Event::Output(t, _) | Event::Marker(t, _) => *t,
                Event::Resize | Event::Finish => Instant::now(),
            };
            let t = self.t(at);
            tracing::warn!(lost, "recorder fell behind; output not recorded");
            self.line(json!([
                t,
                "m",
                format!("hearth: {lost} bytes of output not recorded (recorder fell behind)")
            ]))?;
        }
        match event {
            Event::Output(at, bytes) => {
                // The size this output was drawn at comes first, within the rate limit (a
                // storm of resizes between outputs is a few events, not one per output).
                if self.resize_due() {
                    self.write_pending_resize()?;
                }
                let text = decode_utf8(&mut self.carry, &bytes);
                if !text.is_empty() {
                    let t = self.t(at);
                    self.line(json!([t, "o", text]))?;
                }
            }
            Event::Resize => {
                self.slot.queued.store(false, Ordering::Release);
                if let Some(latest) = self.slot.latest.lock().take() {
                    self.pending_resize = Some(latest);
                }
                if self.resize_due() {
                    self.write_pending_resize()?;
                }
            }
            Event::Marker(at, text) => {
                let t = self.t(at);
                self.line(json!([t, "m", text]))?;
            }
            Event::Finish => {}
        }
        if self.written > self.max {
            let t = self.t(Instant::now());
            self.line(json!([
                t,
                "m",
                format!(
                    "hearth: recording size cap ({} bytes) reached; recording stopped",
                    self.max
                )
            ]))?;
            self.cast.flush()?;
            self.stop(format!(
                "recording stopped at its size cap ({} bytes); the audit trail goes on",
                self.max
            ));
        }
        Ok(())
    }
}

/// Decode a stream of bytes as UTF-8: an incomplete sequence at the end is carried to the
/// next call; invalid bytes become U+FFFD.
pub fn decode_utf8(carry: &mut Vec<u8>, input: &[u8]) -> String {
    let mut buf = std::mem::take(carry);
    buf.extend_from_slice(input);
    let mut out = String::with_capacity(buf.len());
    let mut rest: &[u8] = &buf;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let (ok, bad) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `ok` was just validated.
                out.push_str(std::str::from_utf8(ok).unwrap_or_default());
                match e.error_len() {
                    None => {
                        carry.extend_from_slice(bad);
                        break;
                    }
                    Some(n) => {
                        out.push('\u{fffd}');
                        rest = &bad[n..];
                    }
                }
            }
        }
    }
    out
}

/// Remove the oldest recordings (cast, audit trail, history record) of sessions not in `keep` until the
/// directory holds at most `max_total` bytes.
pub fn prune(dir: &Path, max_total: u64, keep: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, u64, PathBuf, String)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_name()?.to_str()?.to_string();
            // A recording's text index (`grep`) counts and goes with it.
            let id = [".cast", ".audit.jsonl", ".session.json"]
                .into_iter()
                .chain(crate::search::index::SUFFIXES)
                .find_map(|suffix| name.strip_suffix(suffix))?
                .to_string();
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), path, id))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort_by_key(|f| f.0);
    for (_, len, path, id) in files {
        if total <= max_total {
            break;
        }
        if keep.contains(&id) {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            tracing::info!(path = %path.display(), "removed old recording (total size cap)");
            total = total.saturating_sub(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_reads_is_joined_and_garbage_replaced() {
        let mut carry = Vec::new();
        let euro = "€".as_bytes();
        assert_eq!(decode_utf8(&mut carry, &[b'a', euro[0], euro[1]]), "a");
        assert_eq!(decode_utf8(&mut carry, &[euro[2], b'b']), "€b");
        assert_eq!(decode_utf8(&mut carry, &[0xff, b'c']), "\u{fffd}c");
        assert!(carry.is_empty());
    }

    fn read_cast(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_recording_is_valid_asciicast_with_provenance_and_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = RecordConfig::new(dir.path().join("rec"));
        let cmd = vec!["sh".to_string()];
        let header = Header {
            cols: 80,
            rows: 24,
            command: &cmd,
            title: Some("demo"),
        };
        let r = Recorder::start(&config, "abcd1234", header, &HashSet::new()).unwrap();
        let t0 = Instant::now();
        r.output(t0, bytes::Bytes::from_static(b"hello "));
        r.audit.input(t0, "alice-1", b"ls\r");
        r.resize(t0, 100, 30);
        r.output(t0, bytes::Bytes::from_static(b"world"));
        r.finish();
        let lines = read_cast(&config.cast_path("abcd1234"));
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["title"], "demo");
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[2], json!([lines[2][0], "r", "100x30"]));
        let audit = std::fs::read_to_string(config.audit_path("abcd1234")).unwrap();
        assert!(audit.contains("\"client\":\"alice-1\""), "{audit}");
        assert!(audit.contains("\"event\":\"input\""), "{audit}");
        let mode = std::fs::metadata(config.cast_path("abcd1234"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(r.status().is_none());
    }

    #[test]
    fn the_size_cap_stops_with_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RecordConfig::new(dir.path().to_path_buf());
        config.max_bytes = 1000;
        let r = start(&config, "cap");
        for _ in 0..100 {
            r.output(Instant::now(), bytes::Bytes::from(vec![b'x'; 100]));
        }
        r.finish();
        let lines = read_cast(&config.cast_path("cap"));
        let last = lines.last().unwrap();
        assert_eq!(last[1], "m");
        assert!(r.status().unwrap().contains("size cap"));
        assert!(lines.len() < 20);
    }

    fn start(config: &RecordConfig, id: &str) -> Recorder {
        let cmd = vec!["sh".to_string()];
        let header = Header {
            cols: 80,
            rows: 24,
            command: &cmd,
            title: None,
        };
        Recorder::start(config, id, header, &HashSet::new()).unwrap()
    }

    fn audit_lines(config: &RecordConfig, id: &str) -> Vec<serde_json::Value> {
        read_cast(&config.audit_path(id))
    }

    #[test]
    fn output_at_its_cap_does_not_stop_the_audit() {
        use crate::session::{Role, SessionEvent};
        let dir = tempfile::tempdir().unwrap();
        let mut config = RecordConfig::new(dir.path().to_path_buf());
        config.max_bytes = 1000;
        let r = start(&config, "flood");
        for _ in 0..100 {
            r.output(Instant::now(), bytes::Bytes::from(vec![b'x'; 100]));
        }
        // Wait until the cast stopped, then type and change a role.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while r.status().is_none() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        r.audit
            .input(Instant::now(), "mallory-1", b"rm -rf ~/work\r");
        r.audit.event(
            Instant::now(),
            SessionEvent::Role {
                client: "bob-1".into(),
                role: Role::Viewer,
                by: "alice-1".into(),
            },
        );
        r.finish();
        let cast = read_cast(&config.cast_path("flood"));
        assert!(
            cast.last().unwrap()[2]
                .as_str()
                .unwrap()
                .contains("size cap")
        );
        let audit = audit_lines(&config, "flood");
        assert!(
            audit
                .iter()
                .any(|l| l["data"] == "rm -rf ~/work\r" && l["client"] == "mallory-1"),
            "{audit:?}"
        );
        assert!(
            audit
                .iter()
                .any(|l| l["event"] == "role" && l["by"] == "alice-1")
        );
    }

    /// Total typed bytes the audit accounts for, in full or counted, per client.
    fn typed_bytes(audit: &[serde_json::Value], client: &str) -> u64 {
        audit
            .iter()
            .filter(|l| l["client"] == client)
            .map(|l| match l["event"].as_str() {
                Some("input") => l["data"].as_str().unwrap().len() as u64,
                Some("input_summary") => l["bytes"].as_u64().unwrap(),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn past_the_audit_cap_input_is_counted_and_joins_and_roles_go_on() {
        use crate::session::SessionEvent;
        let dir = tempfile::tempdir().unwrap();
        let mut config = RecordConfig::new(dir.path().to_path_buf());
        config.max_audit_bytes = 1000;
        let r = start(&config, "acap");
        for _ in 0..50 {
            r.audit.input(Instant::now(), "a-1", &[b'y'; 100]);
        }
        r.audit.event(
            Instant::now(),
            SessionEvent::Left {
                client: "a-1".into(),
            },
        );
        r.finish();
        let audit = audit_lines(&config, "acap");
        let cap = audit
            .iter()
            .position(|l| l["event"] == "audit_cap")
            .unwrap();
        assert!(audit[cap + 1..].iter().all(|l| l["event"] != "input"));
        assert!(audit[cap + 1..].iter().any(|l| l["event"] == "left"));
        // Who typed how much is complete: nothing was dropped.
        assert_eq!(typed_bytes(&audit, "a-1"), 5000, "{audit:?}");
        let summary = audit
            .iter()
            .find(|l| l["event"] == "input_summary")
            .unwrap();
        assert!(summary["first"].as_str().unwrap().starts_with("yyyy"));
        assert!(r.status().unwrap().contains("audit"));
    }

    #[test]
    fn a_paste_beyond_the_content_rate_is_counted_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let config = RecordConfig::new(dir.path().to_path_buf());
        let r = start(&config, "paste");
        let chunk = vec![b'p'; 32 * 1024];
        for _ in 0..200 {
            r.audit.input(Instant::now(), "m-1", &chunk);
        }
        r.audit.input(Instant::now(), "a-1", b"ls\r");
        r.finish();
        let audit = audit_lines(&config, "paste");
        assert_eq!(typed_bytes(&audit, "m-1"), 200 * 32 * 1024);
        let content: u64 = audit
            .iter()
            .filter(|l| l["event"] == "input")
            .map(|l| l["data"].as_str().unwrap().len() as u64)
            .sum();
        assert!(content <= 2 * 1024 * 1024, "{content} bytes of content");
        // Another client's typing is still recorded as typed.
        assert!(
            audit
                .iter()
                .any(|l| l["client"] == "a-1" && l["data"] == "ls\r")
        );
    }

    /// Resizes interleaved with output (a client dragging its window while the program
    /// draws): few resize events, and time never goes backwards (871 resizes in 6 s, some
    /// older than the output before them, got through).
    #[test]
    fn resizes_between_outputs_are_rate_limited_and_time_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let config = RecordConfig::new(dir.path().to_path_buf());
        let r = start(&config, "drag");
        let began = Instant::now();
        for i in 0..3000u16 {
            let at = Instant::now();
            r.resize(at, 80 + i % 40, 24);
            r.output(Instant::now(), bytes::Bytes::from_static(b"x"));
            if i % 300 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }
        let elapsed = began.elapsed();
        r.finish();
        let cast = read_cast(&config.cast_path("drag"));
        let times: Vec<f64> = cast[1..].iter().map(|l| l[0].as_f64().unwrap()).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "time went backwards"
        );
        let resizes = cast.iter().filter(|l| l[1] == "r").count() as u128;
        let allowed = elapsed.as_millis() / RESIZE_EVERY.as_millis() + 3;
        assert!(resizes <= allowed, "{resizes} resizes in {elapsed:?}");
    }

    #[test]
    fn a_resize_storm_records_few_resizes_and_the_last_size() {
        let dir = tempfile::tempdir().unwrap();
        let config = RecordConfig::new(dir.path().to_path_buf());
        let r = start(&config, "storm");
        for i in 0..20_000u16 {
            r.resize(Instant::now(), 80 + i % 2, 24);
        }
        r.resize(Instant::now(), 99, 30);
        // Output once the rate limit allows a resize again: the size comes first.
        std::thread::sleep(RESIZE_EVERY);
        r.output(Instant::now(), bytes::Bytes::from_static(b"after"));
        r.finish();
        let cast = read_cast(&config.cast_path("storm"));
        let resizes: Vec<&serde_json::Value> = cast.iter().filter(|l| l[1] == "r").collect();
        assert!(resizes.len() < 50, "{} resize lines", resizes.len());
        assert_eq!(resizes.last().unwrap()[2], "99x30");
        let o = cast.iter().position(|l| l[1] == "o").unwrap();
        let last_r = cast.iter().rposition(|l| l[1] == "r").unwrap();
        assert!(last_r < o, "the size comes before the output drawn at it");
    }

    #[test]
    fn pruning_removes_the_oldest_ended_recordings_first() {
        let dir = tempfile::tempdir().unwrap();
        for (i, id) in ["old", "mid", "live"].iter().enumerate() {
            let p = dir.path().join(format!("{id}.cast"));
            std::fs::write(&p, vec![b'x'; 1000]).unwrap();
            let t = SystemTime::now() - std::time::Duration::from_secs(100 - i as u64 * 10);
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let keep: HashSet<String> = ["live".to_string()].into();
        prune(dir.path(), 1500, &keep);
        assert!(!dir.path().join("old.cast").exists());
        assert!(!dir.path().join("mid.cast").exists());
        assert!(dir.path().join("live.cast").exists());
    }
}
