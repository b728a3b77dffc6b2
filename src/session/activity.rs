//! What a session has been doing: when it last printed, when and by whom it was last typed
//! into. `busy`/`idle` are derived from these here, never polled from outside, and
//! [`report`] turns them into the session's `Busy`/`Idle` events. Lock-free except the
//! typist's name (a short std section).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

/// Output within this long means busy.
pub const BUSY_WITHIN: Duration = Duration::from_secs(2);

const NEVER: u64 = u64::MAX;

pub struct Activity {
    epoch: Instant,
    started: SystemTime,
    /// Milliseconds since `epoch`, or `NEVER`.
    last_output: AtomicU64,
    last_input: AtomicU64,
    last_input_by: Mutex<Option<String>>,
    /// The last input by a client (not the API).
    last_client_input: AtomicU64,
}

/// A snapshot for `status` and `ps`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Output within [`BUSY_WITHIN`].
    pub busy: bool,
    /// Since the last output (or since the start, if none yet).
    pub idle: Duration,
    pub last_output_at: Option<SystemTime>,
    pub last_input_at: Option<SystemTime>,
    pub last_input_by: Option<String>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            epoch: Instant::now(),
            started: SystemTime::now(),
            last_output: AtomicU64::new(NEVER),
            last_input: AtomicU64::new(NEVER),
            last_input_by: Mutex::new(None),
            last_client_input: AtomicU64::new(NEVER),
        }
    }
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn output(&self) {
        self.last_output.store(self.now_ms(), Ordering::Relaxed);
    }

    pub fn input(&self, by: &str) {
        self.last_input.store(self.now_ms(), Ordering::Relaxed);
        if by != "api" {
            self.last_client_input
                .store(self.now_ms(), Ordering::Relaxed);
        }
        let mut last = self.last_input_by.lock();
        if last.as_deref() != Some(by) {
            *last = Some(by.to_string());
        }
    }

    /// Output within [`BUSY_WITHIN`] (a session that never printed is not busy).
    pub fn busy(&self) -> bool {
        self.last_output.load(Ordering::Relaxed) != NEVER && self.idle() < BUSY_WITHIN
    }

    /// Time since anyone (a client or the API) last typed, if one ever did.
    pub fn since_input(&self) -> Option<Duration> {
        let last = self.last_input.load(Ordering::Relaxed);
        (last != NEVER).then(|| Duration::from_millis(self.now_ms().saturating_sub(last)))
    }

    /// Time since a client (not the API) last typed, if one ever did.
    pub fn since_client_input(&self) -> Option<Duration> {
        let last = self.last_client_input.load(Ordering::Relaxed);
        (last != NEVER).then(|| Duration::from_millis(self.now_ms().saturating_sub(last)))
    }

    /// Time since the last output (since the start when there was none).
    pub fn idle(&self) -> Duration {
        let last = self.last_output.load(Ordering::Relaxed);
        let since = if last == NEVER { 0 } else { last };
        Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    fn at(&self, ms: u64) -> Option<SystemTime> {
        (ms != NEVER).then(|| self.started + Duration::from_millis(ms))
    }

    pub fn snapshot(&self) -> Snapshot {
        let out = self.last_output.load(Ordering::Relaxed);
        let idle = self.idle();
        Snapshot {
            busy: out != NEVER && idle < BUSY_WITHIN,
            idle,
            last_output_at: self.at(out),
            last_input_at: self.at(self.last_input.load(Ordering::Relaxed)),
            last_input_by: self.last_input_by.lock().clone(),
        }
    }
}

/// Report `busy` when output starts after a quiet spell, `idle` after [`BUSY_WITHIN`]
/// without output, and a recording that stopped with an error, as the session's events:
/// derived from its own signals, never polled from outside. Ends with the program or
/// `stop`.
pub async fn report(
    session: std::sync::Arc<super::Session>,
    stop: tokio_util::sync::CancellationToken,
) {
    use super::SessionEvent;
    let mut output = session.output_watch();
    let mut exit = session.exit_watch();
    let mut recording_error_told = false;
    loop {
        // Quiet: wait for output (one wake-up, not one per chunk).
        output.borrow_and_update();
        if !session.activity.busy() {
            tokio::select! {
                r = output.changed() => if r.is_err() { return },
                _ = exit.wait_for(|c| c.is_some()) => return,
                _ = stop.cancelled() => return,
            }
        }
        session.emit(SessionEvent::Busy);
        // Busy until BUSY_WITHIN passes without output: sleep on the activity clock, so a
        // flood costs this task nothing per chunk.
        loop {
            if !session.activity.busy() {
                break;
            }
            let idle = session.activity.idle();
            tokio::select! {
                _ = tokio::time::sleep(BUSY_WITHIN - idle) => {}
                _ = exit.wait_for(|c| c.is_some()) => return,
                _ = stop.cancelled() => return,
            }
        }
        // A title or bell held back by the once-a-second limit is reported now.
        session.report_signals();
        session.emit(SessionEvent::Idle {
            idle: session.activity.idle(),
        });
        if !recording_error_told && let Some(error) = session.recording_error() {
            recording_error_told = true;
            session.emit(SessionEvent::RecordingError(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_makes_busy_and_input_is_attributed() {
        let a = Activity::default();
        let s = a.snapshot();
        assert!(!s.busy && s.last_output_at.is_none() && s.last_input_by.is_none());
        a.output();
        a.input("api");
        let s = a.snapshot();
        assert!(s.busy && s.idle < BUSY_WITHIN);
        assert_eq!(s.last_input_by.as_deref(), Some("api"));
        assert!(s.last_output_at.is_some() && s.last_input_at.is_some());
    }
}
