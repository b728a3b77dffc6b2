//! Plain text from a program's output, line by line, as a terminal shows it: escape
//! sequences dropped, `\r` and backspace overwriting, erase-in-line honoured, wide
//! characters kept whole, a long line kept as one line however the terminal wrapped it.
//! A cursor move to another row (or a screen switch, or a clear) ends the line being
//! written, so a full-screen program's redrawn rows come out as lines too.
//!
//! Fast and stateful across chunks (a sequence or a character split between two writes
//! is joined), with a state that serialises, so an index can be extended later from where
//! it stopped. Pure: no I/O.

use serde::{Deserialize, Serialize};
use unicode_width::UnicodeWidthChar;

/// The longest line kept (cells): beyond it the line is cut into pieces (memory is bounded
/// whatever a program prints).
pub const MAX_LINE: usize = 4096;
/// The longest escape sequence parameters kept (longer ones are ignored as garbage).
const MAX_PARAMS: usize = 64;
/// The second cell of a wide character.
const TAIL: char = '\u{0}';

/// Where the parser is in an escape sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Esc {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// After ESC [: parameters until a final byte.
    Csi,
    /// OSC, DCS, APC, PM, SOS: text until BEL or ST.
    Text,
    /// ESC inside a text sequence: `\` ends it.
    TextEscape,
    /// ESC and an intermediate (`(`, `#`...): one more byte.
    Charset,
}

/// The extractor's state between chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extractor {
    /// The row being written, as cells.
    line: Vec<char>,
    col: usize,
    esc: Esc,
    params: String,
}

impl Extractor {
    /// Take `data` in; `emit` gets every line that is done (trailing blanks trimmed, empty
    /// lines skipped).
    pub fn feed(&mut self, data: &str, emit: &mut impl FnMut(&str)) {
        for c in data.chars() {
            match self.esc {
                // The common case first: printable ASCII written at the cursor.
                Esc::Ground if (' '..='~').contains(&c) && self.col < MAX_LINE => {
                    match self.col.cmp(&self.line.len()) {
                        std::cmp::Ordering::Equal => self.line.push(c),
                        std::cmp::Ordering::Less => self.line[self.col] = c,
                        std::cmp::Ordering::Greater => {
                            self.line.resize(self.col, ' ');
                            self.line.push(c);
                        }
                    }
                    self.col += 1;
                }
                Esc::Ground => self.ground(c, emit),
                Esc::Escape => self.escape(c, emit),
                Esc::Csi => {
                    if ('\x40'..='\x7e').contains(&c) {
                        self.esc = Esc::Ground;
                        self.csi(c, emit);
                    } else if self.params.len() < MAX_PARAMS {
                        self.params.push(c);
                    }
                }
                Esc::Text => match c {
                    '\x07' => self.esc = Esc::Ground,
                    '\x1b' => self.esc = Esc::TextEscape,
                    _ => {}
                },
                Esc::TextEscape => {
                    self.esc = if c == '\\' { Esc::Ground } else { Esc::Text };
                }
                Esc::Charset => self.esc = Esc::Ground,
            }
        }
    }

    /// The line being written (not yet ended), trimmed.
    pub fn pending(&self) -> String {
        text(&self.line)
    }

    /// End the line being written.
    pub fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        let t = text(&self.line);
        if !t.is_empty() {
            emit(&t);
        }
        self.line.clear();
        self.col = 0;
    }

    fn ground(&mut self, c: char, emit: &mut impl FnMut(&str)) {
        match c {
            '\x1b' => {
                self.esc = Esc::Escape;
                self.params.clear();
            }
            '\n' | '\x0b' | '\x0c' => {
                // The column stays (a bare LF), so what follows lines up as it would.
                let col = self.col;
                self.flush(emit);
                self.col = col.min(MAX_LINE);
            }
            '\r' => self.col = 0,
            '\x08' => self.col = self.col.saturating_sub(1),
            '\t' => self.col = ((self.col / 8 + 1) * 8).min(MAX_LINE),
            c if c.is_control() => {}
            c => self.put(c, emit),
        }
    }

    fn put(&mut self, c: char, emit: &mut impl FnMut(&str)) {
        let width = c.width().unwrap_or(0);
        if width == 0 {
            // A combining mark joins the cell before it.
            if self.col > 0 && self.col <= self.line.len() {
                let at = self.col - 1;
                if self.line[at] != TAIL {
                    self.line.insert(self.col, c);
                    self.col += 1;
                }
            }
            return;
        }
        if self.col + width > MAX_LINE {
            self.flush(emit);
        }
        if self.col > self.line.len() {
            self.line.resize(self.col, ' ');
        }
        for (i, cell) in [c, TAIL].into_iter().take(width).enumerate() {
            let at = self.col + i;
            if at < self.line.len() {
                self.line[at] = cell;
            } else {
                self.line.push(cell);
            }
        }
        self.col += width;
    }

    fn escape(&mut self, c: char, emit: &mut impl FnMut(&str)) {
        self.esc = Esc::Ground;
        match c {
            '[' => self.esc = Esc::Csi,
            ']' | 'P' | '_' | '^' | 'X' => self.esc = Esc::Text,
            '(' | ')' | '*' | '+' | '#' | '%' | ' ' => self.esc = Esc::Charset,
            // Index, next line, reverse index, restore cursor: another row.
            'D' | 'E' | 'M' | '8' => self.flush(emit),
            'c' => {
                self.flush(emit);
            }
            _ => {}
        }
    }

    fn csi(&mut self, final_byte: char, emit: &mut impl FnMut(&str)) {
        let private = self.params.starts_with(['?', '>', '<', '=']);
        let mut nums = self
            .params
            .trim_start_matches(['?', '>', '<', '='])
            .split(';')
            .map(|p| p.parse::<usize>().unwrap_or(0));
        let first = nums.next().unwrap_or(0);
        let second = nums.next().unwrap_or(1);
        let n = first.max(1);
        match final_byte {
            // Cursor forward / back / to a column: the same row.
            'C' if !private => self.col = (self.col + n).min(MAX_LINE),
            'D' if !private => self.col = self.col.saturating_sub(n),
            'G' | '`' if !private => self.col = (n - 1).min(MAX_LINE),
            // Erase in line.
            'K' if !private => match first {
                0 => self.line.truncate(self.col),
                1 => {
                    let upto = (self.col + 1).min(self.line.len());
                    self.line[..upto].fill(' ');
                }
                _ => self.line.clear(),
            },
            // Erase characters: blanks from the cursor.
            'X' if !private => {
                let end = (self.col + n).min(self.line.len());
                if self.col < end {
                    self.line[self.col..end].fill(' ');
                }
            }
            // Delete characters: the rest of the line moves left.
            'P' if !private && self.col < self.line.len() => {
                let end = (self.col + n).min(self.line.len());
                self.line.drain(self.col..end);
            }
            // Another row, a clear, scrolling: the row being written is done.
            'A' | 'B' | 'E' | 'F' | 'd' | 'J' | 'S' | 'T' | 'L' | 'M' if !private => {
                self.flush(emit);
            }
            'H' | 'f' if !private => {
                self.flush(emit);
                self.col = (second.max(1) - 1).min(MAX_LINE);
            }
            // A screen switch (1049, 47, 1047).
            'h' | 'l' if private && matches!(first, 47 | 1047 | 1049) => self.flush(emit),
            _ => {}
        }
    }
}

/// Cells as text: wide characters' second cells dropped, trailing blanks trimmed.
fn text(cells: &[char]) -> String {
    let mut s = String::with_capacity(cells.len());
    s.extend(cells.iter().filter(|c| **c != TAIL));
    let end = s.trim_end().len();
    s.truncate(end);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&str]) -> (Vec<String>, String) {
        let mut x = Extractor::default();
        let mut out = Vec::new();
        for c in chunks {
            x.feed(c, &mut |l| out.push(l.to_string()));
        }
        (out, x.pending())
    }

    #[test]
    fn escapes_go_and_text_split_across_chunks_is_joined() {
        let (out, pending) = lines(&[
            "\x1b[1;31mbuild \x1b[0mfa",
            "iled\x1b",
            "[0m\r\n\x1b]0;title\x07next\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\r\n",
            "prompt$ ",
        ]);
        assert_eq!(out, ["build failed", "nextlink"]);
        assert_eq!(pending, "prompt$");
    }

    #[test]
    fn redrawn_lines_read_as_the_terminal_shows_them() {
        let (out, _) = lines(&[
            "progress 10%\rprogress 100%\r\n",
            "abc\x08\x08X\r\n",
            "old text\r\x1b[Knew\r\n",
            "keep this\x1b[5Gzz\x1b[0K\r\n",
            "tab\there\r\n",
        ]);
        assert_eq!(
            out,
            ["progress 100%", "aXc", "new", "keepzz", "tab     here"]
        );
    }

    #[test]
    fn wide_characters_and_combining_marks_stay_whole() {
        let (out, _) = lines(&["日本語 ok\r\n", "e\u{301}t\u{e9}\r\n", "日本\r日\r\n"]);
        assert_eq!(out, ["日本語 ok", "e\u{301}t\u{e9}", "日本"]);
    }

    #[test]
    fn a_full_screen_redraw_gives_its_rows_as_lines() {
        let (out, pending) = lines(&[
            "\x1b[?1049h\x1b[H\x1b[2J\x1b[1;1Htop row\x1b[2;1Hsecond row\x1b[3;5Hindented",
            "\x1b[2A\x1b[1Gredrawn top\x1b[?1049l",
        ]);
        assert_eq!(
            out,
            ["top row", "second row", "    indented", "redrawn top"]
        );
        assert_eq!(pending, "");
    }

    #[test]
    fn a_line_longer_than_the_cap_is_cut_and_garbage_is_harmless() {
        let long = "x".repeat(MAX_LINE + 10);
        let (out, pending) = lines(&[&long, "\r\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE);
        assert!(pending.is_empty());
        let garbage = format!(
            "\x1b[{}m\x1b[99999999999Gok\x1b[999999999C!",
            "9;".repeat(10_000)
        );
        let (out, pending) = lines(&[&garbage, "\x1b"]);
        assert!(out.is_empty() || out.iter().all(|l| l.len() <= MAX_LINE));
        assert!(
            pending.ends_with('!') && pending.len() <= MAX_LINE,
            "{pending:?}"
        );
    }

    #[test]
    fn the_state_survives_serialisation_mid_sequence() {
        let mut x = Extractor::default();
        let mut out = Vec::new();
        x.feed("half a li\x1b[3", &mut |l| out.push(l.to_string()));
        let saved = serde_json::to_string(&x).unwrap();
        let mut y: Extractor = serde_json::from_str(&saved).unwrap();
        y.feed("1mne\r\n", &mut |l| out.push(l.to_string()));
        assert_eq!(out, ["half a line"]);
    }
}
