//! The audit trail: `<id>.audit.jsonl`, one JSON object per line, saying who typed what and
//! who joined, left, was kicked, had a role changed or locked the session, and when
//! (`adr/0004`). Times are seconds since the recording started, as in the `.cast`.
//!
//! It has its own queue, its own writer thread and its own size cap, so nothing the
//! program prints can fill it, delay it or switch it off: an output flood that stops the
//! `.cast` at its cap leaves the audit running. When the audit reaches its own cap, typed
//! bytes are no longer recorded (a marker line says so) but joins, leaves, kicks, role and
//! lock changes still are, within a small reserve. Like the recorder it never blocks the
//! session: a full queue counts what it lost and says so in the file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{Value, json};

/// Events queued before they are counted as lost.
const QUEUE: usize = 4096;
/// Bytes past the cap kept for joins, leaves, kicks, roles and locks.
pub const RESERVE: u64 = 1024 * 1024;

/// What the audit records (besides typed input).
#[derive(Debug, Clone)]
pub enum AuditEvent {
    Joined {
        client: String,
        role: &'static str,
        addr: String,
        fingerprint: String,
    },
    Left {
        client: String,
    },
    Kicked {
        client: String,
        by: String,
    },
    Role {
        client: String,
        role: &'static str,
        by: String,
    },
    Lock {
        locked: bool,
        by: String,
    },
}

impl AuditEvent {
    fn json(&self, t: f64) -> Value {
        match self {
            AuditEvent::Joined {
                client,
                role,
                addr,
                fingerprint,
            } => json!({"t": t, "event": "joined", "client": client, "role": role,
                        "addr": addr, "fingerprint": fingerprint}),
            AuditEvent::Left { client } => json!({"t": t, "event": "left", "client": client}),
            AuditEvent::Kicked { client, by } => {
                json!({"t": t, "event": "kicked", "client": client, "by": by})
            }
            AuditEvent::Role { client, role, by } => {
                json!({"t": t, "event": "role", "client": client, "role": role, "by": by})
            }
            AuditEvent::Lock { locked, by } => json!({"t": t,
                "event": if *locked { "locked" } else { "unlocked" }, "by": by}),
        }
    }
}

enum Msg {
    /// Typed by a client (its name), or sent over the control API (`uid`).
    Input(Instant, String, Option<u32>, Vec<u8>),
    Event(Instant, AuditEvent),
    Finish,
}

pub struct Audit {
    tx: SyncSender<Msg>,
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
        let mut w = AuditWriter {
            out: BufWriter::new(file),
            start,
            written: 0,
            max,
            capped: false,
            stopped: false,
            lost: Arc::clone(&lost),
            status: Arc::clone(&status),
        };
        let thread = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || w.run(rx))?;
        Ok(Audit {
            tx,
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
        self.send(Msg::Input(at, client.to_string(), None, bytes.to_vec()));
    }

    /// Input sent over the control API by the user `uid` (recorded as client `api`).
    pub fn input_from_api(&self, at: Instant, uid: u32, bytes: &[u8]) {
        self.send(Msg::Input(at, "api".into(), Some(uid), bytes.to_vec()));
    }

    pub fn event(&self, at: Instant, event: AuditEvent) {
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
    /// Past the cap: typed bytes are no longer recorded.
    capped: bool,
    /// Past the cap and the reserve, or a write failed: nothing more is recorded.
    stopped: bool,
    lost: Arc<AtomicU64>,
    status: Arc<Mutex<Option<String>>>,
}

impl AuditWriter {
    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            // Block for the next message; write out whenever the queue runs dry, so the
            // file is current within moments (audit lines are few and small).
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    self.flush();
                    match rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                }
                Err(TryRecvError::Disconnected) => break,
            };
            match msg {
                Msg::Finish => break,
                Msg::Input(at, client, uid, bytes) => {
                    // Past the cap, typed bytes are left out (the marker says so).
                    if !self.capped {
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
                    let line = e.json(self.t(at));
                    self.line(&line);
                }
            }
        }
        self.flush();
        if !self.stopped {
            let _ = self.out.get_ref().sync_all();
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
        if !self.capped && self.written > self.max {
            self.capped = true;
            let note = json!({"t": self.t(Instant::now()), "event": "audit_cap",
                "message": format!("audit size cap ({} bytes) reached: typed input is no longer \
                    recorded; joins, leaves, kicks, role and lock changes still are", self.max)});
            self.write(&note);
            *self.status.lock() = Some(format!(
                "audit at its size cap ({} bytes): typed input no longer recorded",
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
