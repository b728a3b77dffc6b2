//! The heart of hearth, transport-free: one PTY, its output log, its screen model and the
//! table of attached clients.
//!
//! Output flows one way: PTY reader thread → [`QueryFilter`] (terminal queries are answered
//! here, once) → log → a `watch` wakes every reader, each of which reads from its own
//! cursor under the log's own lock → then the screen model parses the same bytes. The
//! reader holds the model lock from before the append until the parse is done, so a
//! snapshot (repaint + log offset, taken under the model lock) is always consistent, and a
//! writer streaming output never waits for a parse. Input flows the other way through one
//! bounded channel to the PTY writer thread.
//!
//! This module must not know about russh, tarpc or ratatui: the SSH and RPC adapters call
//! it, never the reverse. Locks here are std/parking_lot locks held for short, synchronous
//! sections and never across `.await`.

pub mod activity;
pub mod audit;
pub mod boundary;
pub mod cast;
mod client;
pub mod echo;
pub mod keys;
pub mod log;
pub mod procs;
pub mod profile;
pub mod pty;
pub mod query;
pub mod reader;
pub mod record;
pub mod restart;
pub mod resume;
pub mod screen;
pub mod size;
pub mod trigger;
pub mod wait;

pub use client::{Attachment, ClientKind, ClientSpec, Direct, Notice, Peer, Role, Stats};
use client::{ClientEntry, smallest_free_name};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use portable_pty::{MasterPty, PtySize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use log::LogRead;
pub use pty::{SpawnError, Spawned, Spec};
use query::{Piece, QueryFilter};
use screen::Screen;

/// Tunables of one session.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Output bytes retained for readers that lag (and for `tail`).
    pub log_bytes: usize,
    /// Input messages queued for the PTY before typists wait.
    pub input_queue: usize,
    /// Input bytes queued for the PTY (a program that does not read its input holds them):
    /// beyond this typists wait and `send` fails with `busy`.
    pub input_bytes: usize,
    /// Clients attached at once.
    pub max_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            log_bytes: 8 * 1024 * 1024,
            input_queue: 256,
            input_bytes: 8 * 1024 * 1024,
            max_clients: 1000,
        }
    }
}

/// The query filter and the screen model, changed by the PTY reader thread (and resizes).
/// The log is not here: writers read it under its own lock and never wait for a parse.
struct Model {
    filter: QueryFilter,
    screen: Screen,
    /// The title and bells last reported as events, and when (at most one a second: a
    /// program that rings or retitles in a loop must not flood the event ring).
    seen: screen::Signals,
    seen_at: Option<std::time::Instant>,
}

/// Why a client could not attach.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("the session has ended")]
    Exited,
    #[error("the session is full ({0} clients)")]
    Full(usize),
    #[error("the session is locked by its owner: no new joins")]
    Locked,
}

/// What a session reports as it happens: one stream that feeds both the audit trail (the
/// events about clients, `audit::event_line`) and the daemon's event ring (all of them,
/// as the wire's `EventKind`, `daemon::events::from_session`). The sink never blocks: it
/// only appends to a bounded ring.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    Exited(i32),
    Joined {
        client: String,
        role: Role,
        addr: String,
        /// The key it authenticated with (the audit keeps it; the ring does not).
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
        role: Role,
        by: String,
    },
    Lock {
        locked: bool,
        by: String,
    },
    Title(String),
    Bell,
    Message {
        by: String,
        /// What it said (the audit keeps it; the ring does not).
        text: String,
    },
    /// A client typed (at most once per client per second).
    Input {
        client: String,
    },
    /// A trigger matched the program's output.
    Match {
        trigger: String,
        text: String,
    },
    /// Output started after a quiet spell (`activity::report`).
    Busy,
    /// No output for [`activity::BUSY_WITHIN`]; quiet for `idle`.
    Idle {
        idle: Duration,
    },
    /// The recording stopped with this error (said once).
    RecordingError(String),
    /// The program asked for a desktop notification (OSC 9, OSC 777): its text, cleaned.
    Notify(String),
    /// A shell showed its prompt (OSC 133 `A`).
    Prompt,
    /// A command finished (OSC 133 `D`), with the status it reported.
    Command {
        exit_code: Option<i32>,
    },
    /// The program exited and is started again after `after` (its restart policy).
    Restarting {
        attempt: u32,
        exit_code: i32,
        after: Duration,
    },
    /// The program was started again, running `command`.
    Restarted {
        attempt: u32,
        pid: u32,
        command: Vec<String>,
    },
    /// A step of typing after a rate limit resets (`resume`).
    Resume(resume::Step),
    /// It was given another name.
    Renamed {
        from: Option<String>,
        to: String,
    },
    /// Its agent's state changed (`profile::watch`): from, to, why, the line it matched.
    State {
        from: profile::AgentState,
        to: profile::AgentState,
        reason: String,
        text: Option<String>,
    },
}

/// Where a session's events go.
pub type EventSink = Box<dyn Fn(SessionEvent) + Send + Sync>;

/// Why input from the control API was refused.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the session has exited; it takes no more input")]
    Exited,
    #[error(
        "its program exited and starts again in {in_secs} s (restart {attempt}): nothing \
         was sent; send once it runs (`hearth wait --state` or the `restarted` event)"
    )]
    Restarting { attempt: u32, in_secs: u64 },
    #[error(
        "busy: {queued} bytes of input are still waiting for the program to read them; try \
         again later"
    )]
    Busy { queued: usize },
}

/// Input on its way to the PTY writer thread, with its share of the byte budget (released
/// once written; `None` for the session's own replies to terminal queries).
pub type Queued = (Bytes, Option<tokio::sync::OwnedSemaphorePermit>);

/// How long `send` waits for room in the input queue before it says `busy`.
pub const SEND_WAIT: Duration = Duration::from_secs(5);

/// Why a role change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("no client named '{0}'")]
    NoSuchClient(String),
    #[error("'{0}' is an owner; owners keep their role")]
    Owner(String),
    #[error("a client's role can be changed to viewer or collaborator only")]
    Invalid,
}

/// The PTY's handle and the size last applied to it: they change together.
struct Pty {
    size: (u16, u16),
    master: Box<dyn MasterPty + Send>,
}

/// The client that typed last, by its key; its writer is woken before everyone else's.
struct Typist {
    key: u64,
    wake: Arc<tokio::sync::Notify>,
}

/// One session. Its locks are parking_lot mutexes held for short synchronous sections,
/// never across an await. Lock order, outermost first: `pty` -> `clients` -> `model` -> `log`.
/// `typist` and `runs` are leaves: never held while taking another lock.
pub struct Session {
    pub id: String,
    /// Its name (`rename` changes it; read it with [`Session::name`]).
    name: Mutex<Option<String>>,
    pub spec: Spec,
    pub created_at: SystemTime,
    /// The program's runs: the child now (signalled only until reaped), restarts, the wait
    /// for the next one. A leaf lock.
    runs: Mutex<restart::Runs>,
    /// Wakes a run's waiter thread from its wait before a restart (`terminate`).
    restart_wake: parking_lot::Condvar,
    /// Each run's writer goes to the PTY writer thread here.
    writers: std::sync::mpsc::Sender<pty::RunWriter>,
    limits: Limits,
    /// Filter and screen model. The PTY reader holds it from before a read's bytes enter
    /// the log until they are parsed, so a snapshot (taken under it: repaint + log end) is
    /// always consistent. Never held by a writer reading output.
    model: Mutex<Model>,
    /// The output log; innermost, held only to append, read or look up offsets.
    log: Mutex<log::OutputLog>,
    output_end: watch::Sender<u64>,
    exit: watch::Sender<Option<i32>>,
    /// When the child exited (set once, before `exit`).
    exited_at: std::sync::OnceLock<std::time::SystemTime>,
    input: mpsc::Sender<Queued>,
    /// Bytes the input queue may hold; a queued message carries its share.
    input_budget: Arc<tokio::sync::Semaphore>,
    input_bytes: usize,
    /// Attached clients by key (a key is never reused; names are).
    clients: Mutex<BTreeMap<u64, ClientEntry>>,
    /// How many clients are attached (for waiting until everyone has left).
    client_count: watch::Sender<usize>,
    next_client: AtomicU64,
    /// Serialises size computation and its application (PTY, then screen): outermost.
    pty: Mutex<Pty>,
    /// How many times the PTY was resized: a writer that saw fewer repaints its client,
    /// so every terminal shows what the screen model now holds (rows pulled back from
    /// the scrollback, rows cut at a new width).
    resizes: AtomicU64,
    notices: tokio::sync::broadcast::Sender<Notice>,
    /// How many notices were sent: a writer looks at its receiver only when this moved (the
    /// receiver's check locks the channel's tail, shared by every client, and writers look
    /// at every event), and each client's `wake` is rung after a send.
    notices_sent: AtomicU64,
    /// No new joins except owners.
    locked: std::sync::atomic::AtomicBool,
    /// Monotonic origin for idle times.
    epoch: std::time::Instant,
    /// When it last printed and was typed into (busy/idle are derived from it).
    pub activity: activity::Activity,
    /// `None` with `--no-record`, or when the recording could not start.
    recorder: Option<record::Recorder>,
    /// Why there is no recording although one was asked for.
    record_error: Option<String>,
    /// The client that typed last: its writer is woken before everyone else's, so the
    /// typist's echo does not queue behind N viewers' sends.
    typist: Mutex<Option<Typist>>,
    /// Where events go, from the first byte of output on (given to `start`).
    events: std::sync::OnceLock<EventSink>,
    /// Input lately (bounded), so waits and triggers can tell an echo from output.
    typed: Mutex<echo::Typed>,
    /// What its agent is doing, as a profile reads its screen (`profile::watch`).
    pub agent: Mutex<profile::Status>,
    /// The same state, for waiters.
    pub agent_state: watch::Sender<profile::AgentState>,
}

impl Session {
    /// Spawn `spec` in a PTY and start its threads.
    /// `record`: where to record, and the ids whose recordings pruning must keep.
    pub fn start(
        id: String,
        name: Option<String>,
        spec: Spec,
        limits: Limits,
        record: Option<(&record::RecordConfig, &std::collections::HashSet<String>)>,
        events: Option<EventSink>,
    ) -> Result<Arc<Session>, SpawnError> {
        if let Some(resume) = spec.restart.as_ref().and_then(|p| p.resume.as_ref()) {
            pty::check_program(&spec, resume).map_err(|e| SpawnError(format!("--resume: {e}")))?;
        }
        let Spawned {
            master,
            reader,
            writer,
            leader,
        } = pty::spawn(&spec)?;
        let (input_tx, input_rx) = mpsc::channel(limits.input_queue.max(1));
        let (writers, runs) = std::sync::mpsc::channel();
        let input_bytes = limits.input_bytes.max(1);
        let (cols, rows) = spec.size;
        let (recorder, record_error) = match record {
            None => (None, None),
            Some((config, keep)) => Self::start_recorder(config, keep, &id, name.as_deref(), &spec),
        };
        let session = Arc::new(Session {
            id,
            name: Mutex::new(name),
            created_at: SystemTime::now(),
            runs: Mutex::new(restart::Runs::new(
                Arc::clone(&leader),
                spec.command.clone(),
            )),
            restart_wake: parking_lot::Condvar::new(),
            writers,
            model: Mutex::new(Model {
                filter: QueryFilter::default(),
                screen: Screen::new(rows, cols),
                seen: screen::Signals::default(),
                seen_at: None,
            }),
            log: Mutex::new(log::OutputLog::new(limits.log_bytes)),
            limits,
            output_end: watch::channel(0).0,
            exit: watch::channel(None).0,
            exited_at: std::sync::OnceLock::new(),
            input: input_tx,
            input_budget: Arc::new(tokio::sync::Semaphore::new(input_bytes)),
            input_bytes,
            clients: Mutex::new(BTreeMap::new()),
            client_count: watch::channel(0).0,
            next_client: AtomicU64::new(1),
            resizes: AtomicU64::new(0),
            pty: Mutex::new(Pty {
                size: (cols, rows),
                master,
            }),
            notices: tokio::sync::broadcast::channel(16).0,
            notices_sent: AtomicU64::new(0),
            locked: std::sync::atomic::AtomicBool::new(false),
            epoch: std::time::Instant::now(),
            activity: activity::Activity::default(),
            recorder,
            record_error,
            typist: Mutex::new(None),
            events: events.map_or_else(std::sync::OnceLock::new, std::sync::OnceLock::from),
            typed: Mutex::new(echo::Typed::default()),
            agent: Mutex::new(profile::Status::default()),
            agent_state: watch::channel(profile::AgentState::Unknown).0,
            spec,
        });
        let started = pty::start_writer(&session, input_rx, runs).and_then(|()| {
            pty::start_run(
                &session,
                reader,
                writer,
                Arc::clone(&leader),
                &session.writers,
            )
        });
        if let Err(e) = started {
            leader.signal(libc::SIGKILL);
            return Err(SpawnError(format!("cannot start pty threads: {e}")));
        }
        Ok(session)
    }

    /// The session's recorder, or why there is none (the session runs either way).
    fn start_recorder(
        config: &record::RecordConfig,
        keep: &std::collections::HashSet<String>,
        id: &str,
        title: Option<&str>,
        spec: &Spec,
    ) -> (Option<record::Recorder>, Option<String>) {
        let (cols, rows) = spec.size;
        let header = record::Header {
            cols,
            rows,
            command: &spec.command,
            title,
        };
        match record::Recorder::start(config, id, header, keep) {
            Ok(r) => (Some(r), None),
            Err(e) => {
                let why = format!(
                    "recording disabled: cannot write {}: {e}",
                    config.dir.display()
                );
                tracing::warn!(session = %id, "{why}");
                (None, Some(why))
            }
        }
    }

    /// Remember input for the echo rule (see [`echo`]): `client` for a client's typing,
    /// false for the API's.
    pub(crate) fn remember_typed(&self, data: &Bytes, client: bool) {
        let offset = self.output_end();
        self.typed.lock().remember(offset, data, client);
    }

    /// Whether `text` is among what clients typed within `window` (the terminal's echo of
    /// typed keys shows up as output; triggers must not take it for the program's).
    pub fn typed_recently(&self, text: &str, window: Duration) -> bool {
        self.typed.lock().typed_recently(text, window)
    }

    /// The input written at or before output offset `upto`, for telling its echo from
    /// output; `None` when `current` (a key from an earlier call) is still right.
    pub fn echo(&self, upto: u64, current: Option<(u64, usize)>) -> Option<echo::Echo> {
        let typed = self.typed.lock();
        let e = typed.echo(upto);
        (Some(e.key()) != current).then_some(e)
    }

    /// A marker in the recording (an "m" event in the cast).
    pub fn mark(&self, text: &str) {
        if let Some(r) = &self.recorder {
            r.marker(std::time::Instant::now(), text);
        }
    }

    pub(crate) fn emit(&self, e: SessionEvent) {
        if let Some(sink) = self.events.get() {
            sink(e);
        }
    }

    /// A title or bell change not yet reported, if one is due (`force`: even within a second
    /// of the last report). Called under the model lock.
    fn signals_to_report(
        out: &mut Model,
        force: bool,
    ) -> Option<(screen::Signals, screen::Signals)> {
        let s = out.screen.signals();
        let due = force
            || out
                .seen_at
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if !due
            || (s.title == out.seen.title
                && s.bells == out.seen.bells
                && s.notes == out.seen.notes
                && s.prompts == out.seen.prompts
                && s.commands == out.seen.commands)
        {
            return None;
        }
        out.seen_at = Some(std::time::Instant::now());
        let before = std::mem::replace(&mut out.seen, s.clone());
        Some((before, out.seen.clone()))
    }

    fn emit_signals(&self, before: screen::Signals, now: screen::Signals) {
        if now.title != before.title
            && let Some(t) = now.title
        {
            self.emit(SessionEvent::Title(t));
        }
        if now.bells > before.bells {
            self.emit(SessionEvent::Bell);
        }
        if now.notes > before.notes {
            self.emit(SessionEvent::Notify(now.note.unwrap_or_default()));
        }
        if now.commands > before.commands {
            self.emit(SessionEvent::Command {
                exit_code: now.exit_code,
            });
        }
        if now.prompts > before.prompts {
            self.emit(SessionEvent::Prompt);
        }
    }

    /// Report a title or bell change held back by the once-a-second limit (the daemon
    /// calls this when the session goes idle, so the last change is never lost).
    pub fn report_signals(&self) {
        let pending = Self::signals_to_report(&mut self.model.lock(), true);
        if let Some((before, now)) = pending {
            self.emit_signals(before, now);
        }
    }

    /// Called by the PTY reader thread with every read: filter, append to the log and wake
    /// the readers, then parse. Writers stream the new bytes while the screen model takes
    /// them in; a snapshot waits for the parse (it takes the model lock), so it always
    /// matches the log offset it names.
    fn on_output(&self, bytes: &[u8]) {
        let mut replies = Vec::new();
        let mut asks = Vec::new();
        let signals = {
            let mut model = self.model.lock();
            let model = &mut *model;
            let pieces = model.filter.feed(bytes);
            let now = std::time::Instant::now();
            let end = {
                let mut log = self.log.lock();
                for piece in &pieces {
                    if let Piece::Output(data) = piece {
                        if let Some(r) = &self.recorder {
                            r.output(now, data.clone());
                        }
                        log.append(data.clone());
                    }
                }
                log.end()
            };
            // The typist sees a small read (its echo) at once, even while a flood gathers.
            if bytes.len() as u64 <= reader::SMALL
                && let Some(typist) = &*self.typist.lock()
            {
                typist.wake.notify_one();
            }
            // Activity first: whoever the output watch wakes (the busy/idle reporter) must
            // find this output's time already there.
            self.activity.output();
            self.output_end.send_replace(end);
            for piece in pieces {
                match piece {
                    Piece::Output(data) => model.screen.process(&data),
                    Piece::Query(q) => {
                        let reply = q.reply(model.screen.cursor());
                        if !reply.is_empty() {
                            replies.push(reply);
                        }
                    }
                    Piece::Ask(query) => asks.push(query),
                }
            }
            Self::signals_to_report(model, false)
        };
        if let Some((before, now)) = signals {
            self.emit_signals(before, now);
        }
        for query in asks {
            self.ask_one_client(Bytes::from(query));
        }
        for reply in replies {
            // Never block the reader on a full input queue: a reply dropped under an input
            // flood is logged, the output keeps flowing.
            if self.input.try_send((Bytes::from(reply), None)).is_err() {
                tracing::warn!(session = %self.id, "input queue full; terminal query reply dropped");
            }
        }
    }

    /// Send a query only a real terminal can answer to one client: the last typist if it
    /// may type now, else the first client that may. Nobody suitable: nobody answers, as
    /// with no terminal at all (programs time out and use their defaults).
    fn ask_one_client(&self, query: Bytes) {
        let typist = self.typist.lock().as_ref().map(|t| t.key);
        let sender = {
            let clients = self.clients.lock();
            let eligible = || clients.iter().filter(|(_, c)| c.counts_for_size());
            eligible()
                .find(|(key, _)| Some(**key) == typist)
                .or_else(|| eligible().next())
                .map(|(_, c)| Arc::clone(&c.direct))
        };
        match sender {
            Some(direct) => {
                if !direct.try_send(query) {
                    tracing::debug!(session = %self.id, "terminal query not delivered (client busy)");
                }
            }
            None => tracing::debug!(session = %self.id, "terminal query with nobody to answer it"),
        }
    }

    /// Called by a run's waiter thread once its child is reaped and its output drained:
    /// start the program again if the restart policy says so (after its back-off, unless
    /// the session is ended meanwhile), else end the session.
    fn run_exited(self: &Arc<Self>, code: i32) {
        let Some(policy) = &self.spec.restart else {
            return self.on_exit(code);
        };
        let (attempt, after) = {
            let mut runs = self.runs.lock();
            let decided = if runs.stopping {
                None
            } else {
                restart::decide(policy, runs.in_a_row, code, runs.started.elapsed())
            };
            let Some((attempt, after)) = decided else {
                drop(runs);
                return self.on_exit(code);
            };
            runs.in_a_row = attempt;
            runs.waiting = Some(restart::Waiting {
                attempt,
                exit_code: code,
                at: SystemTime::now() + after,
            });
            (attempt, after)
        };
        tracing::info!(session = %self.id, code, attempt, after_ms = after.as_millis() as u64, "program exited: restarting");
        self.report(SessionEvent::Restarting {
            attempt,
            exit_code: code,
            after,
        });
        self.mark(&format!(
            "restarting: exit {code}, restart {attempt} in {} ms",
            after.as_millis()
        ));
        let left = {
            let model = self.model.lock();
            restart::Left {
                alternate: model.screen.on_alternate_screen(),
                line_start: model.screen.cursor().1 == 0,
            }
        };
        let line = restart::exited_line(&self.command(), code, attempt, policy, after, left);
        self.on_output(line.as_bytes());
        // The back-off, cut short by `terminate`.
        let deadline = std::time::Instant::now() + after;
        let mut runs = self.runs.lock();
        while !runs.stopping
            && !self
                .restart_wake
                .wait_until(&mut runs, deadline)
                .timed_out()
        {}
        if runs.stopping {
            drop(runs);
            return self.on_exit(code);
        }
        drop(runs);
        if let Err(e) = self.respawn(attempt, policy) {
            tracing::warn!(session = %self.id, error = %e, "cannot restart the program");
            self.on_output(restart::failed_line(&e.0).as_bytes());
            self.on_exit(code);
        }
    }

    /// Start the program again in a new PTY at the session's size (its screen, log,
    /// clients and recording stay).
    fn respawn(self: &Arc<Self>, attempt: u32, policy: &restart::Policy) -> Result<(), SpawnError> {
        let profile = self.agent.lock().profile.clone();
        let command = policy.command(&self.spec.command, profile.as_deref());
        let spec = Spec {
            command: command.clone(),
            size: self.pty.lock().size,
            ..self.spec.clone()
        };
        let Spawned {
            master,
            reader,
            writer,
            leader,
        } = pty::spawn(&spec)?;
        self.on_output(restart::restarted_line(&command).as_bytes());
        self.pty.lock().master = master;
        let stopping = {
            let mut runs = self.runs.lock();
            runs.leader = Arc::clone(&leader);
            runs.command = command.clone();
            runs.started = std::time::Instant::now();
            runs.total += 1;
            runs.waiting = None;
            runs.stopping
        };
        if let Err(e) = pty::start_run(self, reader, writer, Arc::clone(&leader), &self.writers) {
            leader.signal(libc::SIGKILL);
            return Err(SpawnError(format!("cannot start pty threads: {e}")));
        }
        // `terminate` came while it started: it signalled the run before.
        if stopping {
            leader.signal(libc::SIGHUP);
        }
        tracing::info!(session = %self.id, pid = leader.pid, attempt, command = ?command, "program started again");
        self.report(SessionEvent::Restarted {
            attempt,
            pid: leader.pid,
            command,
        });
        Ok(())
    }

    /// The command of the program now (the original until a restart ran another).
    pub fn command(&self) -> Vec<String> {
        self.runs.lock().command.clone()
    }

    /// The running program's pid (`None` while it waits to be started again, or once
    /// the session has ended).
    pub fn pid(&self) -> Option<u32> {
        let runs = self.runs.lock();
        (runs.waiting.is_none() && !runs.leader.reaped()).then_some(runs.leader.pid)
    }

    /// Restarts so far, and the one due, if the program waits for it.
    pub fn restarts(&self) -> (u32, Option<restart::Waiting>) {
        let runs = self.runs.lock();
        (runs.total, runs.waiting)
    }

    fn on_exit(&self, code: i32) {
        tracing::info!(session = %self.id, code, "child exited");
        let _ = self.exited_at.set(std::time::SystemTime::now());
        // Clients still attached leave with the session: say so before the audit closes.
        let attached: Vec<String> = self
            .clients
            .lock()
            .values()
            .map(|c| c.name.clone())
            .collect();
        for client in attached {
            self.audit(SessionEvent::Left { client });
        }
        // Flush the recording before anyone can see the exit: `kill` and shutdown wait for
        // the exit, so they lose nothing.
        if let Some(r) = &self.recorder {
            r.finish();
        }
        // The event before the exit, likewise: whoever saw the exit (`kill`, a host's
        // `kill` for the daemon, which then copies the host's last events) finds
        // `exited` among the events.
        self.emit(SessionEvent::Exited(code));
        self.exit.send_replace(Some(code));
    }

    pub fn exit_code(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    /// When the child exited, once it has.
    pub fn exited_at(&self) -> Option<std::time::SystemTime> {
        self.exited_at.get().copied()
    }

    /// Resolves when the child has exited (and its output was drained).
    pub fn exit_watch(&self) -> watch::Receiver<Option<i32>> {
        self.exit.subscribe()
    }

    /// The log's end offset now.
    pub fn output_end(&self) -> u64 {
        *self.output_end.borrow()
    }

    /// Changes whenever output is appended; the value is the log's end offset.
    pub fn output_watch(&self) -> watch::Receiver<u64> {
        self.output_end.subscribe()
    }

    /// The repaint of the current screen and the log offset it corresponds to: stream from
    /// there and the client sees exactly what everyone else sees.
    pub fn snapshot(&self) -> (Vec<u8>, u64) {
        let model = self.model.lock();
        (model.screen.repaint(), self.log.lock().end())
    }

    /// A frame of the current screen clipped to `cols` x `rows` (for clients smaller than
    /// the PTY), and the log offset it shows.
    pub fn clipped_snapshot(&self, cols: u16, rows: u16, fresh: bool) -> (Vec<u8>, u64) {
        let model = self.model.lock();
        (
            model.screen.clipped(cols, rows, fresh),
            self.log.lock().end(),
        )
    }

    fn read(&self, from: u64, max: usize) -> LogRead {
        self.log.lock().read(from, max)
    }

    /// The recording's path, if recording.
    pub fn recording(&self) -> Option<PathBuf> {
        self.recorder.as_ref().map(|r| r.path.clone())
    }

    /// Why the recording is missing or stopped, if it is.
    pub fn recording_error(&self) -> Option<String> {
        self.recorder
            .as_ref()
            .and_then(|r| r.status())
            .or_else(|| self.record_error.clone())
    }

    /// Where a read from `from` starts, and how many bytes before it are no longer
    /// retained (an offset older than the log skips to its oldest byte).
    fn start_offset(&self, from: ReadFrom) -> (u64, u64) {
        let log = self.log.lock();
        let at = match from {
            ReadFrom::Start => log.start(),
            ReadFrom::End => log.end(),
            ReadFrom::Offset(o) => o.min(log.end()),
            ReadFrom::Tail(n) => log.end().saturating_sub(n).max(log.start()),
            ReadFrom::Since(d) => std::time::Instant::now()
                .checked_sub(d)
                .map_or(log.start(), |t| log.offset_since(t)),
        };
        (at.max(log.start()), log.start().saturating_sub(at))
    }

    /// A still copy of the screen and its history, for a client's Rewind view: one copy
    /// under the model lock when Rewind opens; scrolling it never takes the lock.
    pub fn history(&self) -> screen::History {
        screen::History::new(self.model.lock().screen.snapshot_screen())
    }

    /// `f` over the current screen and its title, under the model lock: keep it short (the
    /// PTY reader waits for it). The web viewer renders its rows this way.
    pub fn with_screen<R>(&self, f: impl FnOnce(&vt100::Screen, &str) -> R) -> R {
        let model = self.model.lock();
        f(model.screen.vt(), model.screen.title())
    }

    /// The current screen with colours and cursor (what `screen --ansi` prints).
    pub fn screen_ansi(&self) -> Vec<u8> {
        self.model.lock().screen.repaint()
    }

    /// The current screen as text.
    pub fn screen_text(&self) -> String {
        self.model.lock().screen.text()
    }

    /// The screen with soft-wrapped rows joined ([`screen::Screen::lines`]).
    pub fn screen_lines(&self) -> String {
        self.model.lock().screen.lines()
    }

    /// Type `data` into the program for the control API: one message to the PTY writer, so
    /// it is written as one unit and never interleaves with a typist's keys. Returns the
    /// output offset before the write, so a wait from it cannot miss the reply.
    /// Fails with [`SendError::Busy`] when the queue cannot take it within [`SEND_WAIT`]
    /// (the program is not reading its input).
    pub async fn send(&self, data: Bytes, uid: u32) -> Result<u64, SendError> {
        if self.exit_code().is_some() {
            return Err(SendError::Exited);
        }
        if let Some(w) = self.runs.lock().waiting {
            return Err(SendError::Restarting {
                attempt: w.attempt,
                in_secs: w
                    .at
                    .duration_since(SystemTime::now())
                    .map_or(0, |d| d.as_secs_f64().ceil() as u64),
            });
        }
        let busy = || SendError::Busy {
            queued: self.queued_input(),
        };
        let room = async {
            let permit = Arc::clone(&self.input_budget)
                .acquire_many_owned(self.permits(data.len()))
                .await
                .map_err(|_| SendError::Exited)?;
            let slot = self.input.reserve().await.map_err(|_| SendError::Exited)?;
            Ok::<_, SendError>((permit, slot))
        };
        let (permit, slot) = tokio::time::timeout(SEND_WAIT, room)
            .await
            .map_err(|_| busy())??;
        let offset = self.output_end();
        self.activity.input("api");
        self.remember_typed(&data, false);
        if let Some(r) = &self.recorder {
            r.audit
                .input_from_api(std::time::Instant::now(), uid, &data);
        }
        slot.send((data, Some(permit)));
        Ok(offset)
    }

    /// Bytes waiting in the input queue.
    pub fn queued_input(&self) -> usize {
        self.input_bytes
            .saturating_sub(self.input_budget.available_permits())
    }

    /// The share of the input budget `len` bytes take.
    fn permits(&self, len: usize) -> u32 {
        len.clamp(1, self.input_bytes).min(u32::MAX as usize) as u32
    }

    /// Whether the program is on the alternate screen.
    pub fn on_alternate_screen(&self) -> bool {
        self.model.lock().screen.on_alternate_screen()
    }

    /// (application cursor keys, bracketed paste), as the program set them.
    pub fn input_modes(&self) -> (bool, bool) {
        self.model.lock().screen.input_modes()
    }

    /// The title the program set (OSC 0/2), and how many bells it rang.
    /// Its name now.
    pub fn name(&self) -> Option<String> {
        self.name.lock().clone()
    }

    /// Give it another name (the registry checked that no other session has it); a
    /// `renamed` event, in the audit trail too.
    pub fn rename(&self, to: String) {
        let from = self.name.lock().replace(to.clone());
        tracing::info!(session = %self.id, from = ?from, to = %to, "renamed");
        self.report(SessionEvent::Renamed { from, to });
    }

    /// What the program signalled besides the screen (title, bells, notifications, OSC 133).
    pub fn signals(&self) -> screen::Signals {
        self.model.lock().screen.signals().clone()
    }

    pub fn title_and_bells(&self) -> (Option<String>, u64) {
        let model = self.model.lock();
        let s = model.screen.signals();
        (s.title.clone(), s.bells)
    }

    /// Queue input for the PTY; waits (this caller only) while the queue is full, in
    /// messages or in bytes.
    pub async fn input(&self, data: Bytes) {
        // Fails only when the writer thread is gone, i.e. the session is being torn down.
        let Ok(permit) = Arc::clone(&self.input_budget)
            .acquire_many_owned(self.permits(data.len()))
            .await
        else {
            return;
        };
        let _ = self.input.send((data, Some(permit))).await;
    }

    /// The PTY's current (cols, rows).
    pub fn pty_size(&self) -> (u16, u16) {
        self.pty.lock().size
    }

    /// How many times the PTY has been resized (see the field).
    pub fn resizes(&self) -> u64 {
        self.resizes.load(Ordering::Relaxed)
    }

    /// How many clients are attached (without taking the clients lock: writers ask per
    /// batch).
    pub fn client_count(&self) -> usize {
        *self.client_count.borrow()
    }

    /// Resolves once no client is attached (or after `limit`); true if none is.
    pub async fn wait_empty(&self, limit: Duration) -> bool {
        let mut count = self.client_count.subscribe();
        tokio::time::timeout(limit, count.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }

    /// Register a client; the returned guard detaches it when dropped.
    pub fn attach(self: &Arc<Self>, spec: ClientSpec) -> Result<Attachment, AttachError> {
        if self.exit_code().is_some() {
            return Err(AttachError::Exited);
        }
        if self.is_locked() && spec.role != Role::Owner {
            return Err(AttachError::Locked);
        }
        let (key, name, stats, kick, wake, direct) = {
            let mut clients = self.clients.lock();
            if clients.len() >= self.limits.max_clients {
                return Err(AttachError::Full(self.limits.max_clients));
            }
            let key = self.next_client.fetch_add(1, Ordering::Relaxed);
            let name = smallest_free_name(&spec.user, clients.values().map(|c| c.name.as_str()));
            let stats = Arc::new(Stats::default());
            stats
                .last_input_ms
                .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            let kick = CancellationToken::new();
            let wake = Arc::new(tokio::sync::Notify::new());
            let direct = Arc::new(client::Direct::default());
            let size = size::clamp(spec.size.0 as u32, spec.size.1 as u32);
            clients.insert(
                key,
                ClientEntry {
                    name: name.clone(),
                    spec,
                    size,
                    connected_at: SystemTime::now(),
                    stats: Arc::clone(&stats),
                    kick: kick.clone(),
                    in_menu: false,
                    read_only: false,
                    direct: Arc::clone(&direct),
                    wake: Arc::clone(&wake),
                },
            );
            self.client_count.send_replace(clients.len());
            if let Some(e) = clients.get(&key) {
                self.report(SessionEvent::Joined {
                    client: name.clone(),
                    role: e.spec.role,
                    addr: e.spec.address.clone(),
                    fingerprint: e.spec.key_fingerprint.clone(),
                });
            }
            (key, name, stats, kick, wake, direct)
        };
        self.recompute_size();
        Ok(Attachment {
            wake,
            direct,
            session: Arc::clone(self),
            detached: std::sync::atomic::AtomicBool::new(false),
            key,
            name,
            stats,
            kick,
        })
    }

    fn detach(&self, key: u64) {
        {
            let mut clients = self.clients.lock();
            if let Some(c) = clients.remove(&key) {
                self.report(SessionEvent::Left { client: c.name });
            }
            // Under the lock, as in `attach`: a join in between cannot be overwritten by a
            // stale count.
            self.client_count.send_replace(clients.len());
        }
        self.recompute_size();
    }

    pub fn peers(&self) -> Vec<Peer> {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        self.clients
            .lock()
            .iter()
            .map(|(id, c)| Peer {
                id: *id,
                name: c.name.clone(),
                spec: c.spec.clone(),
                size: c.size,
                connected_at: c.connected_at,
                bytes_in: c.stats.bytes_in.load(Ordering::Relaxed),
                bytes_out: c.stats.bytes_out.load(Ordering::Relaxed),
                in_menu: c.in_menu,
                read_only: c.read_only,
                idle: Duration::from_millis(
                    now_ms.saturating_sub(c.stats.last_input_ms.load(Ordering::Relaxed)),
                ),
            })
            .collect()
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    /// Lock (no new joins but owners) or unlock the session; `by` says who (a client's
    /// name, or `cli`), for the log and the audit trail.
    pub fn set_locked(&self, locked: bool, by: &str) {
        self.locked.store(locked, Ordering::Release);
        tracing::info!(session = %self.id, locked, by, "lock changed");
        self.report(SessionEvent::Lock {
            locked,
            by: by.to_string(),
        });
    }

    /// Change a client's role live (viewer <-> collaborator). The new role applies to its
    /// next keystroke and to the size computation at once.
    pub fn set_role(&self, who: Who<'_>, role: Role, by: &str) -> Result<Peer, RoleError> {
        if role == Role::Owner {
            return Err(RoleError::Invalid);
        }
        let (id, name) = {
            let mut clients = self.clients.lock();
            let (id, c) = clients
                .iter_mut()
                .find(|(id, c)| who.is(**id, &c.name))
                .ok_or_else(|| RoleError::NoSuchClient(who.to_string()))?;
            if c.spec.role == Role::Owner {
                return Err(RoleError::Owner(c.name.clone()));
            }
            c.spec.role = role;
            (*id, c.name.clone())
        };
        tracing::info!(session = %self.id, client = %name, role = role.as_str(), by, "role changed");
        self.report(SessionEvent::Role {
            client: name.clone(),
            role,
            by: by.to_string(),
        });
        self.recompute_size();
        self.peers()
            .into_iter()
            .find(|p| p.id == id)
            .ok_or(RoleError::NoSuchClient(name))
    }

    /// Record an event in the audit trail (if recording) only.
    fn audit(&self, event: SessionEvent) {
        if let Some(r) = &self.recorder {
            r.audit.event(std::time::Instant::now(), event);
        }
    }

    /// Report an event: to the audit trail (the ones it keeps) and to the daemon.
    pub(crate) fn report(&self, event: SessionEvent) {
        self.audit(event.clone());
        self.emit(event);
    }

    /// Show `text` to every client but `from` (the writer tasks draw it as a banner).
    pub fn notify_others(&self, from: &str, text: &str) {
        self.report(SessionEvent::Message {
            by: from.to_string(),
            text: text.to_string(),
        });
        let _ = self.notices.send(Notice {
            from: from.to_string(),
            text: text.to_string(),
        });
        self.notices_sent.fetch_add(1, Ordering::AcqRel);
        for c in self.clients.lock().values() {
            c.wake.notify_one();
        }
    }

    pub fn notices(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// How many notices were sent so far (see [`Session::notices`]): counted after each is
    /// in the channel, and every client's `wake` rung.
    pub fn notices_sent(&self) -> u64 {
        self.notices_sent.load(Ordering::Acquire)
    }

    fn update_client(&self, key: u64, f: impl FnOnce(&mut ClientEntry)) {
        if let Some(c) = self.clients.lock().get_mut(&key) {
            f(c);
        }
        self.recompute_size();
    }

    /// Disconnect a client. Returns its last state, or `None` if it is not (or no
    /// longer) attached.
    pub fn kick(&self, who: Who<'_>, by: &str) -> Option<Peer> {
        let peer = self.peers().into_iter().find(|p| who.is(p.id, &p.name))?;
        let found = self.clients.lock().get(&peer.id).map(|c| c.kick.clone());
        let kick = found?;
        kick.cancel();
        tracing::info!(session = %self.id, client = %peer.name, by, "kicked");
        self.report(SessionEvent::Kicked {
            client: peer.name.clone(),
            by: by.to_string(),
        });
        Some(peer)
    }

    /// Disconnect every client.
    pub fn kick_all(&self, by: &str) {
        let names: Vec<String> = {
            let clients = self.clients.lock();
            clients
                .values()
                .map(|c| {
                    c.kick.cancel();
                    c.name.clone()
                })
                .collect()
        };
        if !names.is_empty() {
            tracing::info!(session = %self.id, clients = names.len(), by, "kicked every client");
        }
        for client in names {
            self.report(SessionEvent::Kicked {
                client,
                by: by.to_string(),
            });
        }
    }

    fn set_client_size(&self, key: u64, cols: u32, rows: u32) {
        self.update_client(key, |c| c.size = size::clamp(cols, rows));
    }

    fn recompute_size(&self) {
        let mut pty = self.pty.lock();
        let (cols, rows) = {
            let clients = self.clients.lock();
            size::pty_size(
                pty.size,
                clients
                    .values()
                    .filter(|c| c.counts_for_size())
                    .map(|c| c.size),
            )
        };
        if (cols, rows) == pty.size {
            return;
        }
        let new = PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        };
        if let Err(e) = pty.master.resize(new) {
            tracing::warn!(session = %self.id, error = %e, "pty resize failed");
            return;
        }
        self.model.lock().screen.resize(rows, cols);
        pty.size = (cols, rows);
        self.resizes.fetch_add(1, Ordering::Relaxed);
        for c in self.clients.lock().values() {
            c.wake.notify_one();
        }
        if let Some(r) = &self.recorder {
            r.resize(std::time::Instant::now(), cols, rows);
        }
        tracing::debug!(session = %self.id, cols, rows, "pty resized");
    }

    /// End the child: SIGHUP to its process group, then SIGKILL after `grace`. Returns the
    /// exit code once reaped (or `None` if even SIGKILL did not end it within a second).
    ///
    /// Everything the session started goes too: every process whose environment carries
    /// this session's `HEARTH_SESSION` (children that called `setsid`, ignore SIGHUP or
    /// were reparented) gets the same SIGHUP, grace, SIGKILL.
    pub async fn terminate(&self, grace: Duration) -> Option<i32> {
        let mut exit = self.exit_watch();
        let already = *exit.borrow_and_update();
        // No restart from here on; a wait for one ends now.
        let leader = {
            let mut runs = self.runs.lock();
            runs.stopping = true;
            self.restart_wake.notify_all();
            Arc::clone(&runs.leader)
        };
        if already.is_none() {
            leader.signal(libc::SIGHUP);
        }
        let strays = self.strays().await;
        for p in &strays {
            // SAFETY: a plain syscall; a process already gone is fine.
            unsafe { libc::kill(*p, libc::SIGHUP) };
        }
        let code = match already {
            Some(c) => Some(c),
            None => wait_exit(&mut exit, grace).await,
        };
        if code.is_none() && self.exit_code().is_none() {
            // The run now: one that started while this was signalling is ended too.
            let leader = Arc::clone(&self.runs.lock().leader);
            leader.signal(libc::SIGKILL);
        }
        if !strays.is_empty() {
            // Give the strays the same grace, then SIGKILL what is left.
            let deadline = tokio::time::Instant::now() + grace;
            while strays.iter().any(|p| pty::alive(*p)) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for p in self.strays().await {
                // SAFETY: as above.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        match code {
            Some(c) => Some(c),
            // The waiter reports once the reader drains too (up to 1.5 s).
            None => wait_exit(&mut exit, Duration::from_secs(3)).await,
        }
    }

    /// The session's processes found by their environment (off the runtime).
    async fn strays(&self) -> Vec<libc::pid_t> {
        let (id, leader) = (self.id.clone(), Arc::clone(&self.runs.lock().leader));
        tokio::task::spawn_blocking(move || pty::session_processes(&id, &leader))
            .await
            .unwrap_or_default()
    }
}

async fn wait_exit(exit: &mut watch::Receiver<Option<i32>>, limit: Duration) -> Option<i32> {
    match tokio::time::timeout(limit, exit.wait_for(|c| c.is_some())).await {
        Ok(Ok(code)) => *code,
        _ => None,
    }
}

/// A client, by name (the CLI) or by id (a menu acting on the row it drew: a name can be
/// reused by a newcomer once its client leaves, an id never is).
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    Name(&'a str),
    Id(u64),
}

impl Who<'_> {
    fn is(&self, id: u64, name: &str) -> bool {
        match self {
            Who::Name(n) => *n == name,
            Who::Id(i) => *i == id,
        }
    }
}

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Name(n) => f.write_str(n),
            Who::Id(i) => write!(f, "client #{i}"),
        }
    }
}

/// Where a control-API read starts.
#[derive(Debug, Clone, Copy)]
pub enum ReadFrom {
    Start,
    End,
    Offset(u64),
    /// The last n bytes.
    Tail(u64),
    /// Output that arrived within this long ago.
    Since(Duration),
}
