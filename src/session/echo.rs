//! What was typed or sent into a session lately, and the echo rule: a terminal shows what
//! it is given (a shell, a line editor, an agent's input box), so text that went in comes
//! back out as output, and a `wait --match` or a trigger must not take that echo for the
//! program's answer.
//!
//! [`Typed`] keeps the most recent input (bounded: [`KEEP`] bytes) with the output offset
//! at the moment it was written. [`Echo`] is that input as lines, and decides per output
//! line:
//! - a line that contains a whole typed line of [`SHORT`] characters or more has it cut
//!   out before matching (`$ fix the test, then say DONE` cannot match `DONE`; the reply
//!   `DONE` can);
//! - a line whose content (spaces and prompt or frame characters such as `>`, `$`, `│`
//!   trimmed) is part of a typed line and longer than the match is the echo of a wrapped
//!   input box (`│ say DONE │`);
//! - a shorter typed line (`y`, `q12`, `make test`) is an echo only as a whole line (with
//!   the prompt): a reply that quotes it (`answer: q12`) is output.
//!
//! Pure data and rules: no locks, no I/O. The session owns one [`Typed`] under a lock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use regex::Regex;

use super::wait::Lines;

/// Input kept for the echo rule, in bytes (the newest; each piece at most this much).
pub const KEEP: usize = 16 * 1024;

/// Typed lines shorter than this are an echo only as a whole line (`y`, `q12`): short
/// input is often quoted in the reply.
pub const SHORT: usize = 12;

/// Characters around an echoed line that are the program's prompt or frame, not text.
const FRAME: &[char] = &[
    '│', '┃', '║', '|', '>', '$', '#', '%', '❯', '›', '»', '▌', '╭', '╰', '─', '*', '•', ':',
];

/// One piece of input.
#[derive(Debug, Clone)]
struct Piece {
    at: Instant,
    /// The output offset when it was written: its echo can only come after.
    offset: u64,
    /// Typed by a client (false: sent over the API).
    client: bool,
    data: Bytes,
}

/// The most recent input of a session.
#[derive(Debug, Default)]
pub struct Typed {
    pieces: VecDeque<Piece>,
    total: usize,
    /// Bumped on every change, so a reader can keep its [`Echo`] until it is stale.
    generation: u64,
}

impl Typed {
    /// Remember input written when the output stood at `offset`.
    pub fn remember(&mut self, offset: u64, data: &Bytes, client: bool) {
        if data.is_empty() {
            return;
        }
        // A long paste echoes in full, but its tail is what sits next to the answer.
        let data = data.slice(data.len().saturating_sub(KEEP)..);
        self.total += data.len();
        self.pieces.push_back(Piece {
            at: Instant::now(),
            offset,
            client,
            data,
        });
        while self.total > KEEP {
            match self.pieces.pop_front() {
                Some(p) => self.total -= p.data.len(),
                None => break,
            }
        }
        self.generation += 1;
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `text` is within what clients typed in the last `window` (the triggers'
    /// rule: API input is a program's own, e.g. a trigger's reply).
    pub fn typed_recently(&self, text: &str, window: Duration) -> bool {
        let typed: Vec<u8> = self
            .pieces
            .iter()
            .filter(|p| p.client && p.at.elapsed() < window)
            .flat_map(|p| p.data.iter().copied())
            .collect();
        !text.is_empty() && String::from_utf8_lossy(&typed).contains(text)
    }

    /// The input written at or before output offset `upto`, as lines (`u64::MAX`: all).
    pub fn echo(&self, upto: u64) -> Echo {
        let mut lines = Lines::new(0);
        let mut out = Vec::new();
        let mut included = 0;
        for p in self.pieces.iter().filter(|p| p.offset <= upto) {
            included += 1;
            lines.each_line(&p.data, 0, |line, _| {
                out.push(line.trim().to_string());
                false
            });
        }
        if let Some(rest) = lines.pending() {
            out.push(rest.trim().to_string());
        }
        out.retain(|l| !l.is_empty());
        out.sort();
        out.dedup();
        Echo {
            lines: out,
            key: (self.generation, included),
        }
    }
}

/// Input as lines, for telling an echo from output.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    lines: Vec<String>,
    /// (generation, pieces included): equal keys mean an equal echo.
    key: (u64, usize),
}

impl Echo {
    /// No input at all: every line is output.
    pub fn none() -> Echo {
        Echo::default()
    }

    pub fn key(&self) -> (u64, usize) {
        self.key
    }

    /// The first match of `regex` in `line` that is not the echo of input.
    pub fn find<'l>(&self, regex: &Regex, line: &'l str) -> Option<std::borrow::Cow<'l, str>> {
        if self.lines.is_empty() {
            return regex.find(line).map(|m| m.as_str().into());
        }
        let content = line.trim_matches(|c: char| c.is_whitespace() || FRAME.contains(&c));
        // A whole typed line, alone on its line (after the prompt).
        if self.lines.iter().any(|t| t == content) {
            return None;
        }
        // Cut every whole typed line out (a line break in its place, which `.` and the
        // text around it do not cross).
        let mut rest = std::borrow::Cow::Borrowed(line);
        for t in self.lines.iter().filter(|t| t.len() >= SHORT) {
            if rest.contains(t.as_str()) {
                rest = rest.replace(t.as_str(), "\n").into();
            }
        }
        let m = regex.find(&rest)?;
        // Part of a typed line (a wrapped input box), with more of it than the match.
        if content.len() > m.as_str().len() && self.lines.iter().any(|t| t.contains(content)) {
            return None;
        }
        Some(m.as_str().to_string().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_of(inputs: &[&str]) -> Echo {
        let mut t = Typed::default();
        for (i, s) in inputs.iter().enumerate() {
            t.remember(i as u64, &Bytes::from(s.to_string()), false);
        }
        t.echo(u64::MAX)
    }

    fn found(e: &Echo, re: &str, line: &str) -> Option<String> {
        e.find(&Regex::new(re).unwrap(), line)
            .map(|m| m.into_owned())
    }

    #[test]
    fn the_echo_of_a_sent_line_is_not_a_match_and_the_reply_is() {
        let e = echo_of(&["fix the failing test, then say DONE\r"]);
        assert_eq!(
            found(&e, "DONE", "$ fix the failing test, then say DONE"),
            None
        );
        assert_eq!(
            found(&e, "DONE", "> fix the failing test, then say DONE"),
            None
        );
        assert_eq!(found(&e, "DONE", "DONE"), Some("DONE".into()));
        assert_eq!(found(&e, "DONE", "● All green. DONE"), Some("DONE".into()));
        // A wrapped input box shows the line in pieces.
        assert_eq!(found(&e, "DONE", "│ then say DONE       │"), None);
        assert_eq!(found(&e, "DONE", "│ DONE │"), Some("DONE".into()));
        // Without input, everything is output.
        assert_eq!(
            found(&Echo::none(), "DONE", "$ say DONE"),
            Some("DONE".into())
        );
    }

    #[test]
    fn keystrokes_make_lines_and_short_answers_echo_only_whole() {
        let mut t = Typed::default();
        for (i, k) in "echo hi\ry\r".chars().enumerate() {
            t.remember(i as u64, &Bytes::from(k.to_string()), true);
        }
        let e = t.echo(u64::MAX);
        assert_eq!(found(&e, "hi", "$ echo hi"), None);
        assert_eq!(found(&e, "hi", "hi"), Some("hi".into()));
        assert_eq!(found(&e, "^y$", "y"), None);
        // A reply that quotes short input is output.
        assert_eq!(found(&e, "hi$", "said: echo hi"), Some("hi".into()));
        assert_eq!(found(&e, "ready", "ready"), Some("ready".into()));
        // Input written after the output offset cannot have been echoed yet.
        assert_eq!(
            found(&t.echo(0), "hi", "$ echo hi"),
            Some("hi".into()),
            "only the first keystroke was written by offset 0"
        );
    }

    #[test]
    fn input_kept_is_bounded_and_triggers_see_clients_only() {
        let mut t = Typed::default();
        for i in 0..100 {
            t.remember(i, &Bytes::from(vec![b'x'; 1000]), false);
        }
        assert!(t.total <= KEEP);
        t.remember(100, &Bytes::from_static(b"usage limit"), false);
        assert!(!t.typed_recently("usage limit", Duration::from_secs(30)));
        t.remember(101, &Bytes::from_static(b"usage limit"), true);
        assert!(t.typed_recently("usage limit", Duration::from_secs(30)));
    }
}
