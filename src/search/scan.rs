//! Scanning an index's text for a regex, the way ripgrep does: big reads, the regex run
//! over many lines at once (its literal prefilter skips what cannot match), line bounds
//! found only around a match. A match may not cross a line's end: one that does is checked
//! again within its line. Memory is one chunk and the context lines, whatever the size.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

use regex::bytes::Regex;

/// Bytes read at once.
const CHUNK: usize = 4 << 20;
/// The most of a line a hit carries (bytes, around the match).
pub const MAX_HIT_LINE: usize = 1000;

/// A matching line, with its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Where the line starts in the text.
    pub offset: u64,
    pub line: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

/// Why a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It reached `to`.
    End,
    /// `on_hit` said enough, or the deadline passed: go on from this offset.
    At(u64),
}

/// Scan the text file `txt` from byte `from` to `to` (both at line starts) for `re`, with
/// `context` lines around each hit; `on_hit` returns whether to go on.
pub fn scan(
    txt: &Path,
    (from, to): (u64, u64),
    re: &Regex,
    context: usize,
    deadline: Instant,
    on_hit: &mut dyn FnMut(Hit) -> bool,
) -> std::io::Result<Stopped> {
    if from >= to {
        return Ok(Stopped::End);
    }
    // The last `context` lines before `buf` (a scan that resumes mid-text starts with the
    // lines before it).
    let mut tail: VecDeque<String> = last_lines(txt, from, context)?.into();
    let mut file = File::open(txt)?;
    file.seek(SeekFrom::Start(from))?;
    let mut file = file.take(to - from);
    let mut pos = from;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 64 * 1024);
    let mut eof = false;
    loop {
        if !eof {
            let room = CHUNK.saturating_sub(buf.len()).max(64 * 1024);
            let n = (&mut file).take(room as u64).read_to_end(&mut buf)?;
            eof = n == 0 || pos + buf.len() as u64 >= to;
        }
        if buf.is_empty() {
            return Ok(Stopped::End);
        }
        // Whole lines, and of those the ones to search now: the last `context` lines wait
        // for the next round (unless the text ends), so a hit's after-context never stops
        // at a chunk's end.
        let (whole, end) = if eof {
            (buf.len(), buf.len())
        } else {
            let Some(i) = memchr::memrchr(b'\n', &buf) else {
                continue;
            };
            let whole = i + 1;
            match memchr::memrchr_iter(b'\n', &buf[..whole]).nth(context) {
                Some(j) => (whole, j + 1),
                None => continue,
            }
        };
        let lookahead = &buf[..whole];
        let chunk = &buf[..end];
        let mut at = 0;
        while at < chunk.len() {
            let Some(m) = re.find_at(chunk, at) else {
                break;
            };
            let start = memchr::memrchr(b'\n', &chunk[..m.start()]).map_or(0, |i| i + 1);
            let stop =
                memchr::memchr(b'\n', &chunk[m.start()..]).map_or(chunk.len(), |i| m.start() + i);
            let line = &chunk[start..stop];
            // Found across a line's end: only a match within the line counts.
            let within = if m.end() > stop || (m.start() == stop && m.is_empty() && start < stop) {
                re.find(line).map(|w| w.start())
            } else {
                Some(m.start() - start)
            };
            if let Some(at_in_line) = within {
                let hit = Hit {
                    offset: pos + start as u64,
                    line: window(line, at_in_line),
                    before: before(chunk, start, context, &tail),
                    after: after(lookahead, stop, context),
                };
                if !on_hit(hit) {
                    return Ok(Stopped::At(pos + (stop + 1).min(chunk.len()) as u64));
                }
            }
            at = stop + 1;
        }
        keep_tail(&mut tail, chunk, context);
        pos += end as u64;
        buf.drain(..end);
        if eof && buf.is_empty() {
            return Ok(Stopped::End);
        }
        if Instant::now() >= deadline {
            return Ok(Stopped::At(pos));
        }
    }
}

/// At most [`MAX_HIT_LINE`] bytes of `line` around `at`, on character boundaries.
fn window(line: &[u8], at: usize) -> String {
    let text = String::from_utf8_lossy(line);
    if text.len() <= MAX_HIT_LINE {
        return text.into_owned();
    }
    let at = at.min(text.len());
    let mut start = at.saturating_sub(MAX_HIT_LINE / 4);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + MAX_HIT_LINE).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}{}{}",
        if start > 0 { "…" } else { "" },
        &text[start..end],
        if end < text.len() { "…" } else { "" }
    )
}

/// The last `n` whole lines of the first `len` bytes of `txt` (the context before a line
/// that is not in the text yet). Lines are at most [`super::extract::MAX_LINE`] characters,
/// so this reads a bounded tail, whatever the file's size.
pub fn last_lines(txt: &Path, len: u64, n: usize) -> std::io::Result<Vec<String>> {
    if n == 0 || len == 0 {
        return Ok(Vec::new());
    }
    let most = (n as u64 + 1) * (super::extract::MAX_LINE as u64 * 4 + 1);
    let start = len.saturating_sub(most);
    let mut file = File::open(txt)?;
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(len - start).read_to_end(&mut buf)?;
    // A partial first line (the tail did not reach the file's start) is no line.
    let from = if start > 0 {
        memchr::memchr(b'\n', &buf).map_or(buf.len(), |i| i + 1)
    } else {
        0
    };
    Ok(before(&buf[from..], buf.len() - from, n, &VecDeque::new()))
}

/// Up to `n` lines before the line starting at `start` (from `tail` when the chunk has too
/// few).
fn before(chunk: &[u8], start: usize, n: usize, tail: &VecDeque<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut end = start;
    while out.len() < n && end > 0 {
        let s = memchr::memrchr(b'\n', &chunk[..end - 1]).map_or(0, |i| i + 1);
        out.push(window(&chunk[s..end - 1], 0));
        end = s;
    }
    let more = n - out.len();
    out.extend(tail.iter().rev().take(more).cloned());
    out.reverse();
    out
}

/// Up to `n` lines after the line ending at `stop`, within the chunk.
fn after(chunk: &[u8], stop: usize, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut s = stop + 1;
    while out.len() < n && s < chunk.len() {
        let e = memchr::memchr(b'\n', &chunk[s..]).map_or(chunk.len(), |i| s + i);
        out.push(window(&chunk[s..e], 0));
        s = e + 1;
    }
    out
}

/// The last `n` lines seen, once `chunk` (whole lines) has been scanned.
fn keep_tail(tail: &mut VecDeque<String>, chunk: &[u8], n: usize) {
    if n > 0 && !chunk.is_empty() {
        *tail = before(chunk, chunk.len(), n, tail).into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hits(text: &str, pattern: &str, context: usize) -> Vec<Hit> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, text).unwrap();
        let re = regex::bytes::RegexBuilder::new(pattern)
            .multi_line(true)
            .build()
            .unwrap();
        let mut out = Vec::new();
        let far = Instant::now() + Duration::from_secs(60);
        let stopped = scan(&p, (0, text.len() as u64), &re, context, far, &mut |h| {
            out.push(h);
            true
        })
        .unwrap();
        assert_eq!(stopped, Stopped::End);
        out
    }

    #[test]
    fn last_lines_reads_only_a_bounded_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("line {i} {}\n", "x".repeat(i % 300)));
        }
        std::fs::write(&p, &text).unwrap();
        let len = text.len() as u64;
        let last = last_lines(&p, len, 3).unwrap();
        assert_eq!(last.len(), 3);
        assert!(last[0].starts_with("line 19997 "), "{last:?}");
        assert!(last[2].starts_with("line 19999 "), "{last:?}");
        // Fewer lines than asked for: all of them; none asked: none.
        std::fs::write(&p, "a\nb\n").unwrap();
        assert_eq!(last_lines(&p, 4, 5).unwrap(), ["a", "b"]);
        assert!(last_lines(&p, 4, 0).unwrap().is_empty());
    }

    #[test]
    fn hits_carry_their_line_offset_and_context() {
        let text = "one\ntwo error\nthree\nfour\nfive error\nsix\n";
        let found = hits(text, "error", 1);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].offset, 4);
        assert_eq!(found[0].line, "two error");
        assert_eq!(
            (found[0].before.clone(), found[0].after.clone()),
            (vec!["one".to_string()], vec!["three".to_string()])
        );
        assert_eq!(found[1].before, ["four"]);
        assert_eq!(found[1].after, ["six"]);
        // ^ and $ at line ends; a match never spans two lines.
        assert_eq!(hits(text, "^three$", 0).len(), 1);
        assert!(hits(text, r"error\nthree", 0).is_empty());
        assert_eq!(hits(text, r"two\s+error", 0).len(), 1);
        // One hit per line, however many matches it has.
        assert_eq!(hits("a a a\nb\n", "a", 0).len(), 1);
    }

    #[test]
    fn a_long_text_is_read_in_chunks_without_losing_a_line() {
        let mut text = String::new();
        for i in 0..400_000 {
            text.push_str(&format!("line {i} of some output\n"));
        }
        let found = hits(&text, r"^line (0|199999|399999) ", 2);
        let lines: Vec<&str> = found.iter().map(|h| h.line.as_str()).collect();
        assert_eq!(
            lines,
            [
                "line 0 of some output",
                "line 199999 of some output",
                "line 399999 of some output"
            ]
        );
        assert_eq!(
            found[1].before,
            ["line 199997 of some output", "line 199998 of some output"]
        );
        assert!(text.len() > 2 * CHUNK);
    }

    #[test]
    fn context_crosses_chunks_and_resumed_scans() {
        let mut text = String::new();
        for i in 0..400_000 {
            text.push_str(&format!("line {i} of some output\n"));
        }
        assert!(text.len() > 2 * CHUNK);
        // Every line: whichever falls at a chunk's end still has all its context.
        let found = hits(&text, "^line", 3);
        assert_eq!(found.len(), 400_000);
        for (i, h) in found.iter().enumerate() {
            assert_eq!(h.before.len(), i.min(3), "line {i}");
            assert_eq!(h.after.len(), (399_999 - i).min(3), "line {i}");
        }
        // A scan resumed mid-text starts with the lines before it.
        let from = text.find("line 10 ").unwrap() as u64;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, &text).unwrap();
        let re = regex::bytes::Regex::new("^line 1[01] ").unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let mut first = None;
        scan(&p, (from, from + 200), &re, 2, far, &mut |h| {
            first.get_or_insert(h);
            true
        })
        .unwrap();
        let first = first.unwrap();
        assert_eq!(first.line, "line 10 of some output");
        assert_eq!(
            first.before,
            ["line 8 of some output", "line 9 of some output"]
        );
    }

    #[test]
    fn a_long_line_is_cut_around_the_match() {
        let line = format!("{}needle{}\n", "é".repeat(2000), "x".repeat(3000));
        let found = hits(&line, "needle", 0);
        assert!(found[0].line.contains("needle"));
        assert!(found[0].line.len() <= MAX_HIT_LINE + 8);
    }
}
