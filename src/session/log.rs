//! The bounded output log of one session, addressed by byte offset.
//!
//! The PTY reader appends; every reader (a client's writer task, `tail`, `logs --follow`)
//! keeps its own cursor, so nobody waits for anybody. When the log exceeds its capacity the
//! oldest chunks are dropped; a reader whose cursor fell behind the retained start learns
//! it (`LogRead::Lagged`) and is repainted from the screen model instead. It owns bytes and
//! offsets only: no parsing, no I/O, no locking (the caller holds the lock).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// Output that arrived within this long is joined into one chunk when read (a flood's
/// reads are microseconds apart); `--since` is as precise as this.
pub const JOIN_WINDOW: Duration = Duration::from_millis(50);

/// What a reader gets for its cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum LogRead {
    /// Bytes from the cursor on, and the cursor after them.
    Data(Bytes, u64),
    /// The cursor is at the end: nothing new yet.
    UpToDate,
    /// The bytes at the cursor are gone; the oldest retained offset is given.
    Lagged(u64),
}

#[derive(Debug)]
pub struct OutputLog {
    /// Each chunk with the offset of its first byte.
    chunks: VecDeque<(u64, Bytes)>,
    /// When each chunk's first and last parts arrived (parallel to `chunks`; the same
    /// instant until reads join chunks), for `--since`.
    times: VecDeque<(Instant, Instant)>,
    start: u64,
    end: u64,
    retained: usize,
    capacity: usize,
}

impl OutputLog {
    /// A log keeping at least the last `capacity` bytes (never less than one chunk).
    pub fn new(capacity: usize) -> Self {
        OutputLog {
            chunks: VecDeque::new(),
            times: VecDeque::new(),
            start: 0,
            end: 0,
            retained: 0,
            capacity: capacity.max(1),
        }
    }

    /// Offset one past the last byte ever appended.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Offset of the oldest retained byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn append(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let len = data.len();
        self.chunks.push_back((self.end, data));
        let now = Instant::now();
        self.times.push_back((now, now));
        self.end += len as u64;
        self.retained += len;
        while self.retained > self.capacity && self.chunks.len() > 1 {
            if let Some((_, old)) = self.chunks.pop_front() {
                self.retained -= old.len();
                self.times.pop_front();
            }
            self.start = self.chunks.front().map_or(self.end, |(off, _)| *off);
        }
    }

    /// Up to `max` bytes from `from` (at least one byte).
    ///
    /// Consecutive small chunks are joined so a reader sends few, large packets, and the
    /// joined chunk replaces them in the log: every other reader at the same place (a
    /// crowd of viewers behind a flood reads the same offsets) gets a slice of the same
    /// buffer instead of a copy of its own. Joins start at a chunk's first byte and stay
    /// within `max`, so a byte is copied at most a few times however many read it; and
    /// only output that arrived within [`JOIN_WINDOW`] is joined, so `--since` keeps that
    /// precision.
    pub fn read(&mut self, from: u64, max: usize) -> LogRead {
        if from >= self.end {
            return LogRead::UpToDate;
        }
        if from < self.start {
            return LogRead::Lagged(self.start);
        }
        let max = max.max(1);
        let idx = self.index_of(from);
        let (off, chunk) = &self.chunks[idx];
        if chunk.len() - ((from - off) as usize) < max {
            self.join(idx, max);
        }
        let (off, chunk) = &self.chunks[idx];
        let at = (from - off) as usize;
        let first = chunk.slice(at..at + (chunk.len() - at).min(max));
        if first.len() == max || !self.after_window(idx) {
            let next = from + first.len() as u64;
            return LogRead::Data(first, next);
        }
        // Room left, and what follows arrived later than a join spans: this reader's own
        // copy (an API read of many lines, a client catching up on slow output).
        let mut buf = BytesMut::with_capacity(max.min(self.retained));
        buf.extend_from_slice(&first);
        for (_, chunk) in self.chunks.iter().skip(idx + 1) {
            let room = max - buf.len();
            if room == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let next = from + buf.len() as u64;
        LogRead::Data(buf.freeze(), next)
    }

    /// Index of the chunk holding retained offset `at`.
    fn index_of(&self, at: u64) -> usize {
        match self.chunks.binary_search_by(|(off, _)| off.cmp(&at)) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    /// Whether a chunk follows chunk `idx` and arrived too long after it to be joined.
    fn after_window(&self, idx: usize) -> bool {
        self.times
            .get(idx + 1)
            .is_some_and(|&(_, next)| next - self.times[idx].0 > JOIN_WINDOW)
    }

    /// Join chunk `idx` with as many of the chunks after it as fit in `max` bytes in all
    /// and arrived within [`JOIN_WINDOW`] of its first part, in place (nothing to do if
    /// not even the next one qualifies). The joined chunk counts as arriving with its last
    /// part, so `--since` never starts after output it asked for.
    fn join(&mut self, idx: usize, max: usize) {
        let mut total = self.chunks[idx].1.len();
        let (first, _) = self.times[idx];
        let mut end = idx + 1;
        while let Some((_, next)) = self.chunks.get(end) {
            if total + next.len() > max || self.times[end].1 - first > JOIN_WINDOW {
                break;
            }
            total += next.len();
            end += 1;
        }
        if end == idx + 1 {
            return;
        }
        let mut buf = BytesMut::with_capacity(total);
        for (_, chunk) in self.chunks.range(idx..end) {
            buf.extend_from_slice(chunk);
        }
        self.chunks[idx].1 = buf.freeze();
        self.chunks.drain(idx + 1..end);
        self.times[idx].1 = self.times[end - 1].1;
        self.times.drain(idx + 1..end);
    }

    /// The offset of the first retained output that arrived at or after `t` (the end if
    /// none did; a chunk joined from several reads counts as arriving with its last).
    pub fn offset_since(&self, t: Instant) -> u64 {
        let i = self.times.partition_point(|&(_, last)| last < t);
        self.chunks.get(i).map_or(self.end, |(off, _)| *off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(chunks: &[&str], cap: usize) -> OutputLog {
        let mut log = OutputLog::new(cap);
        for c in chunks {
            log.append(Bytes::copy_from_slice(c.as_bytes()));
        }
        log
    }

    #[test]
    fn reads_resume_from_any_offset_and_join_small_chunks() {
        let mut log = log_of(&["abc", "de", "fgh"], 100);
        assert_eq!(log.read(0, 100), LogRead::Data(Bytes::from("abcdefgh"), 8));
        assert_eq!(log.read(4, 100), LogRead::Data(Bytes::from("efgh"), 8));
        assert_eq!(log.read(1, 4), LogRead::Data(Bytes::from("bcde"), 5));
        assert_eq!(log.read(8, 100), LogRead::UpToDate);
    }

    #[test]
    fn a_reader_behind_the_retained_start_is_told_it_lagged() {
        let mut log = log_of(&["aaaa", "bbbb", "cccc"], 8);
        assert_eq!(log.start(), 4);
        assert_eq!(log.read(0, 100), LogRead::Lagged(4));
        assert_eq!(log.read(4, 100), LogRead::Data(Bytes::from("bbbbcccc"), 12));
    }

    #[test]
    fn a_join_is_kept_and_shared_by_every_reader_at_that_place() {
        let mut log = log_of(&["aaaa", "bbbb", "cccc"], 100);
        let LogRead::Data(first, 8) = log.read(0, 9) else {
            panic!("one join of the two chunks that fit in 9 bytes");
        };
        assert_eq!(first, Bytes::from("aaaabbbb"));
        // The next reader there gets the same buffer, not a copy of its own.
        let LogRead::Data(second, 8) = log.read(0, 9) else {
            panic!("the same read");
        };
        assert_eq!(second.as_ptr(), first.as_ptr());
        // Inside the joined chunk: a slice of it, at most `max` long.
        let LogRead::Data(inner, 6) = log.read(2, 4) else {
            panic!("four bytes from offset 2");
        };
        assert_eq!(inner, Bytes::from("aabb"));
        assert_eq!(inner.as_ptr(), first[2..].as_ptr());
        // A larger read joins the joined chunk with the rest.
        assert_eq!(
            log.read(0, 100),
            LogRead::Data(Bytes::from("aaaabbbbcccc"), 12)
        );
        assert_eq!(log.read(8, 100), LogRead::Data(Bytes::from("cccc"), 12));
        assert_eq!(log.chunks.len(), 1);
        assert_eq!(log.retained, 12);
    }

    #[test]
    fn a_read_never_exceeds_max_and_a_cursor_inside_a_full_chunk_gets_its_rest() {
        let mut log = log_of(&["aaaaaa", "bb"], 100);
        assert_eq!(log.read(0, 4), LogRead::Data(Bytes::from("aaaa"), 4));
        // "aaaaaa" + "bb" does not fit in 4: the rest of the chunk alone, no copy.
        assert_eq!(log.read(4, 4), LogRead::Data(Bytes::from("aa"), 6));
        assert_eq!(log.read(6, 4), LogRead::Data(Bytes::from("bb"), 8));
        assert_eq!(log.read(7, 0), LogRead::Data(Bytes::from("b"), 8));
    }

    #[test]
    fn a_joined_chunk_arrives_with_its_last_part_and_only_close_output_is_joined() {
        let mut log = OutputLog::new(100);
        log.append(Bytes::from("old"));
        let mid = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        log.append(Bytes::from("new"));
        assert_eq!(log.read(0, 100), LogRead::Data(Bytes::from("oldnew"), 6));
        // "new" arrived after `mid`: `--since mid` must still show it (and "old" with it).
        assert_eq!(log.offset_since(mid), 0);
        assert_eq!(log.offset_since(Instant::now()), 6);
        // Output a moment later stays a chunk of its own: `--since` can tell it apart.
        std::thread::sleep(JOIN_WINDOW + std::time::Duration::from_millis(5));
        let later = Instant::now();
        log.append(Bytes::from("later"));
        assert_eq!(log.read(6, 100), LogRead::Data(Bytes::from("later"), 11));
        assert_eq!(log.offset_since(later), 6);
        // A read still gets all it asks for: this reader's own copy across the gap.
        assert_eq!(
            log.read(0, 100),
            LogRead::Data(Bytes::from("oldnewlater"), 11)
        );
        assert_eq!(log.read(4, 4), LogRead::Data(Bytes::from("ewla"), 8));
        assert_eq!(log.offset_since(later), 6);
    }

    #[test]
    fn offsets_by_arrival_time() {
        let mut log = OutputLog::new(100);
        log.append(Bytes::from("old"));
        let mid = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        log.append(Bytes::from("new"));
        assert_eq!(log.offset_since(mid), 3);
        assert_eq!(log.offset_since(Instant::now()), 6);
    }

    #[test]
    fn memory_stays_bounded_by_capacity_plus_one_chunk() {
        let mut log = OutputLog::new(1000);
        for _ in 0..10_000 {
            log.append(Bytes::from(vec![b'x'; 300]));
        }
        assert!(log.retained <= 1300);
        assert_eq!(log.end(), 3_000_000);
    }
}
