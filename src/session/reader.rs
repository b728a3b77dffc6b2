//! The one way anything reads a session's output: a [`Reader`] with its own cursor into
//! the log. It reads what is there without waiting ([`Reader::read`]), waits for more
//! ([`Reader::changed`]), says when the cursor fell behind what the log retains (or, for a
//! terminal, too far behind to be worth streaming: [`SKIP_BEHIND`]), repaints from the
//! screen model, and reports the exit only once everything the program printed was read.
//!
//! Users: each SSH client's writer task, the `read` RPC (`tail`, `logs --follow`), and
//! later `wait`, events and triggers. The policy for terminals (skip-ahead, batch sizes,
//! clipped frames, pacing, coalescing) lives here too, so the adapters only move bytes. It
//! knows nothing of transports and holds no lock across an await (the session's locks are
//! taken inside synchronous calls only).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::log::LogRead;
use super::{ReadFrom, Session};

/// A terminal this far behind the output skips to the current screen instead of being sent
/// the backlog (nobody reads megabytes scrolling by; the log and recording keep them). Well
/// above a screenful or a typical burst, well below the log's capacity.
pub const SKIP_BEHIND: u64 = 1024 * 1024;

/// How long a terminal lets fresh output gather before sending it, while bulk output keeps
/// coming (see [`BURST`]): a flood goes out in fewer, larger packets, and the typist's own
/// echo is not slowed by N viewers' sends (a small read wakes the last typist at once).
/// Far below what a watcher can perceive.
pub const COALESCE: Duration = Duration::from_millis(4);

/// Output that comes within this long of the last piece sent to a terminal is "still
/// coming" and, unless it is small ([`SMALL`]), gathers for [`COALESCE`]. Output after a
/// quiet spell goes out at once.
pub const BURST: Duration = Duration::from_millis(20);

/// Output this small (a keystroke's echo, a line, a prompt's redraw) goes out at once to
/// everyone, so viewers see a keystroke as soon as the typist; only bulk (a flood comes in
/// PTY reads of about 4 KiB) gathers.
pub const SMALL: u64 = 512;

/// Least time between two clipped frames (about 30 per second).
pub const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// Largest batch a terminal is sent at once.
pub const MAX_BATCH: usize = 32 * 1024;

/// With more than [`CROWD`] clients on the session, a terminal's batches are this small
/// instead: what each client has in flight (its batch plus the transport's queue of a few,
/// see `ssh::server_config`) is what a flood costs in memory per client, and a thousand
/// clients times 32 KiB batches made the peak. Few clients keep large batches: less work
/// per byte.
pub const CROWD_BATCH: usize = 8 * 1024;

/// See [`CROWD_BATCH`].
pub const CROWD: usize = 64;

/// What one read gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Output from the cursor on; the cursor moved past it.
    Data(Bytes),
    /// The cursor was behind the oldest retained byte (or, for a terminal, more than
    /// [`SKIP_BEHIND`] behind the end): this many bytes are lost to this reader. A
    /// terminal repaints; a byte reader continues from [`Reader::cursor`].
    Behind(u64),
    /// Nothing new yet; the program still runs.
    UpToDate,
    /// The program exited and everything it printed was read.
    Exited(i32),
}

pub struct Reader {
    session: Arc<Session>,
    cursor: u64,
    output: watch::Receiver<u64>,
    exit: watch::Receiver<Option<i32>>,
    /// Terminals skip ahead when this far behind; byte readers never do.
    skip_behind: Option<u64>,
}

impl Reader {
    /// A byte reader (the control API) starting at `from`; also returns how many bytes
    /// before the requested start are no longer retained.
    pub fn bytes(session: &Arc<Session>, from: ReadFrom) -> (Reader, u64) {
        let (cursor, skipped) = session.start_offset(from);
        (Reader::new(session, cursor, None), skipped)
    }

    /// A reader for a terminal; call [`Reader::repaint`] (or [`Reader::clipped`]) first.
    pub fn terminal(session: &Arc<Session>) -> Reader {
        Reader::new(session, session.output_end(), Some(SKIP_BEHIND))
    }

    fn new(session: &Arc<Session>, cursor: u64, skip_behind: Option<u64>) -> Reader {
        Reader {
            output: session.output_watch(),
            exit: session.exit_watch(),
            session: Arc::clone(session),
            cursor,
            skip_behind,
        }
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The log offset this reader has read up to.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Bytes of output past the cursor.
    pub fn pending(&self) -> u64 {
        self.session.output_end().saturating_sub(self.cursor)
    }

    /// How much a terminal should read at once now ([`MAX_BATCH`], or [`CROWD_BATCH`] on a
    /// crowded session).
    pub fn batch(&self) -> usize {
        if self.session.client_count() > CROWD {
            CROWD_BATCH
        } else {
            MAX_BATCH
        }
    }

    /// Whether there is output past the cursor.
    pub fn has_more(&self) -> bool {
        self.cursor < self.session.output_end()
    }

    /// Read up to `max` bytes from the cursor, without waiting.
    pub fn read(&mut self, max: usize) -> Next {
        self.output.borrow_and_update();
        let exited = *self.exit.borrow_and_update();
        if let Some(limit) = self.skip_behind {
            let behind = self.session.output_end().saturating_sub(self.cursor);
            if behind > limit {
                return Next::Behind(behind);
            }
        }
        match self.session.read(self.cursor, max) {
            LogRead::Data(bytes, next) => {
                self.cursor = next;
                Next::Data(bytes)
            }
            LogRead::Lagged(start) => {
                let lost = start - self.cursor;
                self.cursor = start;
                Next::Behind(lost)
            }
            // The exit is published only after the PTY reader drained, so once it is
            // seen, the cursor at the end means nothing more will come.
            LogRead::UpToDate => match exited {
                Some(code) if !self.has_more() => Next::Exited(code),
                _ => Next::UpToDate,
            },
        }
    }

    /// Resolves when output arrives or the program exits, after the last [`Reader::read`].
    pub async fn changed(&mut self) {
        tokio::select! {
            r = self.output.changed() => { if r.is_err() { std::future::pending::<()>().await } }
            r = self.exit.changed() => { if r.is_err() { std::future::pending::<()>().await } }
        }
    }

    /// The whole current screen (clear, contents, colours, cursor); the cursor moves to the
    /// offset it shows, so the stream that follows neither overlaps nor leaves a gap.
    pub fn repaint(&mut self) -> Bytes {
        let (bytes, at) = self.session.snapshot();
        self.cursor = at;
        Bytes::from(bytes)
    }

    /// A frame of the current screen clipped to `cols` x `rows`; the cursor moves to the
    /// offset it shows.
    pub fn clipped(&mut self, cols: u16, rows: u16, fresh: bool) -> Bytes {
        let (bytes, at) = self.session.clipped_snapshot(cols, rows, fresh);
        self.cursor = at;
        Bytes::from(bytes)
    }
}
