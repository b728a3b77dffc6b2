//! The audit trail: `<id>.audit.jsonl`, one JSON object per line, saying who typed what and
//! who joined, left, was kicked, had a role changed or locked the session, and when
//! (`adr/0004`). Times are seconds since the recording started, as in the `.cast`.
//!
//! It has its own queue, its own writer thread and its own size cap, so nothing the
//! program prints can fill it, delay it or switch it off: an output flood that stops the
//! `.cast` at its cap leaves the audit running.
//!
//! Who typed, when and how much is never lost. Typed content is recorded in full up to
//! [`CONTENT_RATE`] (with a burst of [`CONTENT_BURST`]); beyond that rate, and for good
//! once the file reaches its cap (`max_audit_bytes`, for content only), input is counted
//! per client instead and written as `input_summary` lines (how many writes, how many
//! bytes, the first and last bytes, from when to when), one per client per burst: a burst
//! ends
//! after [`QUIET`] without input, or after [`WINDOW`] (a minute once capped). The counting
//! happens before the queue, so a paste flood costs neither memory nor queue slots. Joins,
//! leaves, kicks, roles, locks and summaries go on past the cap within [`RESERVE`]. Like the
//! recorder it never blocks the session: a full queue counts what it lost and says so.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::SessionEvent;

/// Events queued before they are counted as lost.
const QUEUE: usize = 4096;
/// Bytes past the cap kept for joins, leaves, kicks, roles, locks and input summaries.
pub const RESERVE: u64 = 16 * 1024 * 1024;
/// Typed content recorded in full, per second and client...
pub const CONTENT_RATE: f64 = 256.0 * 1024.0;
/// ...with this much at once.
pub const CONTENT_BURST: f64 = 1024.0 * 1024.0;
/// A client's summarised burst ends after this long without input from it...
pub const QUIET: Duration = Duration::from_secs(1);
/// ...or after this long (a minute once the content cap is reached).
pub const WINDOW: Duration = Duration::from_secs(1);
const CAPPED_WINDOW: Duration = Duration::from_secs(60);
/// Bytes of a summarised burst kept as they were typed.
const FIRST: usize = 64;

/// Input counted instead of recorded: one client's burst.
#[derive(Debug)]
struct Summary {
    uid: Option<u32>,
    from: Instant,
    to: Instant,
    count: u64,
    bytes: u64,
    first: Vec<u8>,
    /// The last [`FIRST`] bytes (what was typed at the end of a paste).
    last: std::collections::VecDeque<u8>,
}

/// Each client's content budget, and the bursts being counted (shared by senders and the
/// writer). Bounded by the clients a session has (and a reset past [`MAX_BUDGETS`]).
#[derive(Debug, Default)]
struct Meter {
    /// Per client: (tokens, when last refilled).
    budgets: std::collections::HashMap<String, (f64, Instant)>,
    counting: BTreeMap<String, Summary>,
}

/// Budgets kept before all are forgotten (fresh budgets for everyone: harmless).
const MAX_BUDGETS: usize = 4096;

impl Meter {
    /// Whether `len` bytes from `client` may be recorded in full now (spending its budget).
    fn allow(&mut self, client: &str, len: usize, at: Instant, capped: bool) -> bool {
        if self.budgets.len() >= MAX_BUDGETS && !self.budgets.contains_key(client) {
            self.budgets.clear();
        }
        let (tokens, refilled) = self
            .budgets
            .entry(client.to_string())
            .or_insert((CONTENT_BURST, at));
        let elapsed = at.saturating_duration_since(*refilled).as_secs_f64();
        *tokens = (*tokens + elapsed * CONTENT_RATE).min(CONTENT_BURST);
        *refilled = (*refilled).max(at);
        // A burst being counted stays counted until it ends: no content in its middle.
        if capped || self.counting.contains_key(client) || *tokens < len as f64 {
            return false;
        }
        *tokens -= len as f64;
        true
    }

    fn count(&mut self, client: &str, uid: Option<u32>, bytes: &[u8], at: Instant) {
        let s = self.counting.entry(client.to_string()).or_insert(Summary {
            uid,
            from: at,
            to: at,
            count: 0,
            bytes: 0,
            first: Vec::new(),
            last: std::collections::VecDeque::with_capacity(FIRST),
        });
        s.count += 1;
        s.bytes += bytes.len() as u64;
        s.to = s.to.max(at);
        let room = FIRST.saturating_sub(s.first.len());
        s.first.extend_from_slice(&bytes[..bytes.len().min(room)]);
        for &b in &bytes[bytes.len().saturating_sub(FIRST)..] {
            if s.last.len() == FIRST {
                s.last.pop_front();
            }
            s.last.push_back(b);
        }
    }

    /// The bursts that ended by `now` (all of them with `all`).
    fn ended(&mut self, now: Instant, window: Duration, all: bool) -> Vec<(String, Summary)> {
        let done: Vec<String> = self
            .counting
            .iter()
            .filter(|(_, s)| {
                all || now.saturating_duration_since(s.to) >= QUIET
                    || now.saturating_duration_since(s.from) >= window
            })
            .map(|(c, _)| c.clone())
            .collect();
        done.into_iter()
            .filter_map(|c| self.counting.remove(&c).map(|s| (c, s)))
            .collect()
    }
}

/// A session event's line in the trail, or `None` for those the trail does not keep
/// (the exit, titles, bells, typing marks and trigger matches: the daemon's events carry
/// them; typed input is recorded as itself).
fn event_line(e: &SessionEvent, t: f64) -> Option<Value> {
    Some(match e {
        SessionEvent::Joined {
            client,
            role,
            addr,
            fingerprint,
        } => json!({"t": t, "event": "joined", "client": client, "role": role.as_str(),
                    "addr": addr, "fingerprint": fingerprint}),
        SessionEvent::Left { client } => json!({"t": t, "event": "left", "client": client}),
        SessionEvent::Kicked { client, by } => {
            json!({"t": t, "event": "kicked", "client": client, "by": by})
        }
        SessionEvent::Role { client, role, by } => {
            json!({"t": t, "event": "role", "client": client, "role": role.as_str(), "by": by})
        }
        SessionEvent::Lock { locked, by } => json!({"t": t,
            "event": if *locked { "locked" } else { "unlocked" }, "by": by}),
        SessionEvent::Message { by, text } => {
            json!({"t": t, "event": "message", "by": by, "text": text})
        }
        SessionEvent::Renamed { from, to } => {
            json!({"t": t, "event": "renamed", "from": from, "to": to})
        }
        SessionEvent::Restarting {
            attempt,
            exit_code,
            after,
        } => json!({"t": t, "event": "restarting", "attempt": attempt, "exit_code": exit_code,
                    "after_ms": after.as_millis() as u64}),
        SessionEvent::Restarted {
            attempt,
            pid,
            command,
        } => json!({"t": t, "event": "restarted", "attempt": attempt, "pid": pid,
                    "command": command}),
        SessionEvent::Resume(step) => {
            let (step, at, reason) = super::resume::describe(step);
            json!({"t": t, "event": "resume", "step": step, "at": at, "reason": reason})
        }
        SessionEvent::Exited(_)
        | SessionEvent::Title(_)
        | SessionEvent::Bell
        | SessionEvent::Input { .. }
        | SessionEvent::Match { .. }
        | SessionEvent::Busy
        | SessionEvent::Idle { .. }
        | SessionEvent::RecordingError(_)
        | SessionEvent::Notify(_)
        | SessionEvent::Prompt
        | SessionEvent::Command { .. }
        | SessionEvent::State { .. } => return None,
    })
}

enum Msg {
    /// Typed by a client (its name), or sent over the control API (`uid`).
    Input(Instant, String, Option<u32>, Vec<u8>),
    Event(Instant, SessionEvent),
    /// Input is being counted (a burst began): the thread wakes to write its summary.
    Counting,
    Finish,
}

pub struct Audit {
    tx: SyncSender<Msg>,
    meter: Arc<Mutex<Meter>>,
    /// The content cap was reached: input is only counted.
    capped: Arc<AtomicBool>,
    lost: Arc<AtomicU64>,
    status: Arc<Mutex<Option<String>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub path: PathBuf,
}

impl Audit {
    /// Start writing to `file` (already created, 0600). `start` is the recording's origin.
    pub fn start(path: &Path, file: File, start: Instant, max: u64) -> std::io::Result<Audit> {
        let (tx, rx) = sync_channel(QUEUE);
        let lost = Arc::new(AtomicU64::new(0));
        let status = Arc::new(Mutex::new(None));
        let meter = Arc::new(Mutex::new(Meter::default()));
        let capped = Arc::new(AtomicBool::new(false));
        let mut w = AuditWriter {
            out: BufWriter::new(file),
            start,
            written: 0,
            max,
            meter: Arc::clone(&meter),
            capped: Arc::clone(&capped),
            stopped: false,
            lost: Arc::clone(&lost),
            status: Arc::clone(&status),
        };
        let thread = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || w.run(rx))?;
        Ok(Audit {
            tx,
            meter,
            capped,
            lost,
            status,
            thread: Mutex::new(Some(thread)),
            path: path.to_path_buf(),
        })
    }

    fn send(&self, m: Msg) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(m) {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn input(&self, at: Instant, client: &str, bytes: &[u8]) {
        self.typed(at, client, None, bytes);
    }

    /// Input sent over the control API by the user `uid` (recorded as client `api`).
    pub fn input_from_api(&self, at: Instant, uid: u32, bytes: &[u8]) {
        self.typed(at, "api", Some(uid), bytes);
    }

    /// Record `bytes` in full if the content budget allows, else count them (no copy, no
    /// queue slot).
    fn typed(&self, at: Instant, client: &str, uid: Option<u32>, bytes: &[u8]) {
        let mut meter = self.meter.lock();
        let capped = self.capped.load(Ordering::Relaxed);
        if meter.allow(client, bytes.len(), at, capped) {
            drop(meter);
            self.send(Msg::Input(at, client.to_string(), uid, bytes.to_vec()));
        } else {
            let began = !meter.counting.contains_key(client);
            meter.count(client, uid, bytes, at);
            drop(meter);
            if began {
                // Only a wake-up: when the queue is full the thread is awake anyway.
                let _ = self.tx.try_send(Msg::Counting);
            }
        }
    }

    /// Queue a session event for the trail (those it keeps: see `event_line`).
    pub fn event(&self, at: Instant, event: SessionEvent) {
        if event_line(&event, 0.0).is_none() {
            return;
        }
        self.send(Msg::Event(at, event));
    }

    /// `None` while complete; otherwise what is missing and why.
    pub fn status(&self) -> Option<String> {
        self.status.lock().clone()
    }

    /// Write out everything queued and stop (blocks: call off the runtime).
    pub fn finish(&self) {
        let _ = self.tx.send(Msg::Finish);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

struct AuditWriter {
    out: BufWriter<File>,
    start: Instant,
    written: u64,
    max: u64,
    meter: Arc<Mutex<Meter>>,
    /// Past the cap: typed content is no longer recorded, only counted.
    capped: Arc<AtomicBool>,
    /// Past the cap and the reserve, or a write failed: nothing more is recorded.
    stopped: bool,
    lost: Arc<AtomicU64>,
    status: Arc<Mutex<Option<String>>>,
}

impl AuditWriter {
    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            // Write out whenever the queue runs dry, so the file is current within
            // moments; while input is being counted, wake now and then to write the bursts
            // that ended; otherwise sleep until something comes (an idle session costs
            // no wake-ups).
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(_) => {
                    self.summaries(false);
                    self.flush();
                    if self.meter.lock().counting.is_empty() {
                        match rx.recv() {
                            Ok(m) => m,
                            Err(_) => break,
                        }
                    } else {
                        match rx.recv_timeout(Duration::from_millis(250)) {
                            Ok(m) => m,
                            Err(RecvTimeoutError::Timeout) => continue,
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                }
            };
            match msg {
                Msg::Finish => break,
                Msg::Counting => {}
                Msg::Input(at, client, uid, bytes) => {
                    // Content queued before the cap was reached is counted instead.
                    if self.capped.load(Ordering::Relaxed) {
                        self.meter.lock().count(&client, uid, &bytes, at);
                    } else {
                        let text = String::from_utf8_lossy(&bytes);
                        let mut line = json!({"t": self.t(at), "event": "input",
                                              "client": client, "data": text});
                        if let Some(uid) = uid {
                            line["uid"] = json!(uid);
                        }
                        self.line(&line);
                    }
                }
                Msg::Event(at, e) => {
                    if let Some(line) = event_line(&e, self.t(at)) {
                        self.line(&line);
                    }
                }
            }
        }
        self.summaries(true);
        self.flush();
        if !self.stopped {
            let _ = self.out.get_ref().sync_all();
        }
    }

    /// Write the counted bursts that ended (all of them with `all`).
    fn summaries(&mut self, all: bool) {
        let window = if self.capped.load(Ordering::Relaxed) {
            CAPPED_WINDOW
        } else {
            WINDOW
        };
        let ended = self.meter.lock().ended(Instant::now(), window, all);
        for (client, s) in ended {
            let mut s = s;
            let mut line = json!({"t": self.t(s.from), "event": "input_summary",
                "client": client, "until": self.t(s.to), "count": s.count, "bytes": s.bytes,
                "first": String::from_utf8_lossy(&s.first),
                "last": String::from_utf8_lossy(s.last.make_contiguous())});
            if let Some(uid) = s.uid {
                line["uid"] = json!(uid);
            }
            self.line(&line);
        }
    }

    fn t(&self, at: Instant) -> f64 {
        (at.saturating_duration_since(self.start).as_micros() as f64) / 1e6
    }

    fn flush(&mut self) {
        if !self.stopped
            && let Err(e) = self.out.flush()
        {
            self.stop(format!("audit stopped: write error: {e}"));
        }
    }

    fn stop(&mut self, why: String) {
        tracing::warn!("{why}");
        *self.status.lock() = Some(why);
        self.stopped = true;
    }

    fn line(&mut self, v: &Value) {
        if self.stopped {
            return;
        }
        let lost = self.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let note = json!({"t": self.t(Instant::now()), "event": "lost", "count": lost,
                              "message": "audit events lost (queue full)"});
            self.write(&note);
        }
        self.write(v);
        if !self.capped.load(Ordering::Relaxed) && self.written > self.max {
            self.capped.store(true, Ordering::Relaxed);
            let note = json!({"t": self.t(Instant::now()), "event": "audit_cap",
                "message": format!("audit size cap ({} bytes) reached: typed content is no \
                    longer recorded, only who typed, when and how much (input_summary); \
                    joins, leaves, kicks, role and lock changes still are", self.max)});
            self.write(&note);
            *self.status.lock() = Some(format!(
                "audit at its size cap ({} bytes): typed input summarised",
                self.max
            ));
        }
        if self.written > self.max + RESERVE {
            let note = json!({"t": self.t(Instant::now()), "event": "audit_stopped",
                              "message": "audit reserve used up: nothing more is recorded"});
            self.write(&note);
            self.flush();
            self.stop(format!(
                "audit stopped at its size cap and reserve ({} bytes)",
                self.max + RESERVE
            ));
        }
    }

    fn write(&mut self, v: &Value) {
        let text = v.to_string();
        self.written += text.len() as u64 + 1;
        if let Err(e) = writeln!(self.out, "{text}") {
            self.stop(format!("audit stopped: write error: {e}"));
        }
    }
}
