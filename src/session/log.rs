//! The bounded output log of one session, addressed by byte offset.
//!
//! The PTY reader appends; every reader (a client's writer task, `tail`, `logs --follow`)
//! keeps its own cursor, so nobody waits for anybody. When the log exceeds its capacity the
//! oldest chunks are dropped; a reader whose cursor fell behind the retained start learns
//! it (`LogRead::Lagged`) and is repainted from the screen model instead. It owns bytes and
//! offsets only: no parsing, no I/O, no locking (the caller holds the lock).

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

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
    /// When each chunk arrived (parallel to `chunks`), for `--since`.
    times: VecDeque<Instant>,
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
        self.times.push_back(Instant::now());
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

    /// Up to `max` bytes from `from` (at least one chunk's worth when `max` is smaller).
    /// Consecutive small chunks are joined so a reader sends few, large packets.
    pub fn read(&self, from: u64, max: usize) -> LogRead {
        if from >= self.end {
            return LogRead::UpToDate;
        }
        if from < self.start {
            return LogRead::Lagged(self.start);
        }
        // Index of the chunk holding `from`.
        let idx = match self.chunks.binary_search_by(|(off, _)| off.cmp(&from)) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let (off, chunk) = &self.chunks[idx];
        let first = chunk.slice((from - off) as usize..);
        if first.len() >= max || idx + 1 == self.chunks.len() {
            let next = from + first.len() as u64;
            return LogRead::Data(first, next);
        }
        let mut buf = BytesMut::with_capacity(max.min(self.retained));
        buf.extend_from_slice(&first);
        for (_, chunk) in self.chunks.iter().skip(idx + 1) {
            if buf.len() + chunk.len() > max {
                break;
            }
            buf.extend_from_slice(chunk);
        }
        let next = from + buf.len() as u64;
        LogRead::Data(buf.freeze(), next)
    }

    /// The offset of the first retained output that arrived at or after `t` (the end if
    /// none did).
    pub fn offset_since(&self, t: Instant) -> u64 {
        let i = self.times.partition_point(|&at| at < t);
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
        let log = log_of(&["abc", "de", "fgh"], 100);
        assert_eq!(log.read(0, 100), LogRead::Data(Bytes::from("abcdefgh"), 8));
        assert_eq!(log.read(4, 100), LogRead::Data(Bytes::from("efgh"), 8));
        assert_eq!(log.read(1, 4), LogRead::Data(Bytes::from("bcde"), 5));
        assert_eq!(log.read(8, 100), LogRead::UpToDate);
    }

    #[test]
    fn a_reader_behind_the_retained_start_is_told_it_lagged() {
        let log = log_of(&["aaaa", "bbbb", "cccc"], 8);
        assert_eq!(log.start(), 4);
        assert_eq!(log.read(0, 100), LogRead::Lagged(4));
        assert_eq!(log.read(4, 100), LogRead::Data(Bytes::from("bbbbcccc"), 12));
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
