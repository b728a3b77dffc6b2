//! The screen model: a terminal emulator (the `vt100` crate) fed with everything the
//! program prints, so the session always knows the current screen. It paints late joiners
//! and lagging clients, answers terminal queries, and renders `screen` as text.
//!
//! Program output is hostile input: a panic inside the emulator is caught and the model
//! is reset rather than taking the session down. Pure: no I/O, no locking.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Rows of scrollback kept in the model (used by rewind views, not by repaints).
const SCROLLBACK: usize = 1000;

/// Sequences that switch to the alternate screen (xterm's three flavours).
const ENTER_ALT: [&[u8]; 3] = [b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h"];

/// What the emulator reports besides the screen: the title programs set (OSC 0/2), bells,
/// desktop notifications (OSC 9 as iTerm2 has it, OSC 777 `notify` as urxvt has it: what
/// agents send when they want a human) and shell-integration marks (OSC 133, FinalTerm's:
/// where a prompt starts and a command runs and ends). Program output is hostile input:
/// texts are cut and cleaned.
#[derive(Debug, Default, Clone)]
pub struct Signals {
    pub title: Option<String>,
    pub bells: u64,
    /// Notifications so far, and the last one's text.
    pub notes: u64,
    pub note: Option<String>,
    /// The last OSC 133 mark, and how many prompts (A) and finished commands (D) so far.
    pub mark: Option<Mark>,
    pub prompts: u64,
    pub commands: u64,
    /// The exit status the last finished command reported (`133;D;status`), if it did.
    pub exit_code: Option<i32>,
}

/// Where a shell that speaks OSC 133 says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// `A` (the prompt starts) or `B` (the prompt ends, the user types): waiting for input.
    Prompt,
    /// `C`: a command runs (its output follows).
    Running,
    /// `D`: the command finished.
    Done,
}

/// Text from a program, for a human: no control characters, at most `max` characters.
fn clean(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect()
}

/// Longest title kept, in characters.
const MAX_TITLE: usize = 200;

impl vt100::Callbacks for Signals {
    fn audible_bell(&mut self, _: &mut vt100::Screen) {
        self.bells += 1;
    }
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        let clean = clean(title, MAX_TITLE);
        self.title = (!clean.is_empty()).then_some(clean);
    }
    fn unhandled_osc(&mut self, _: &mut vt100::Screen, params: &[&[u8]]) {
        if let [b"133", kind, rest @ ..] = params {
            match kind.first() {
                Some(b'A') => {
                    self.prompts += 1;
                    self.mark = Some(Mark::Prompt);
                }
                Some(b'B') => self.mark = Some(Mark::Prompt),
                Some(b'C') => self.mark = Some(Mark::Running),
                Some(b'D') => {
                    self.commands += 1;
                    self.mark = Some(Mark::Done);
                    self.exit_code = rest
                        .first()
                        .and_then(|c| std::str::from_utf8(c).ok())
                        .and_then(|c| c.parse().ok());
                }
                _ => {}
            }
            return;
        }
        let text = match params {
            // OSC 9 ; text (iTerm2). `9;4;...` and other numbers are ConEmu's progress and
            // friends, not notifications.
            [b"9", rest @ ..] if !rest.is_empty() && !rest[0].iter().all(u8::is_ascii_digit) => {
                clean(&rest.join(&b';'), MAX_TITLE)
            }
            // OSC 777 ; notify ; title ; body (urxvt).
            [b"777", b"notify", title, body @ ..] => {
                let body = clean(&body.join(&b';'), MAX_TITLE);
                let title = clean(title, MAX_TITLE);
                if body.is_empty() {
                    title
                } else {
                    format!("{title}: {body}").chars().take(MAX_TITLE).collect()
                }
            }
            _ => return,
        };
        self.notes += 1;
        self.note = Some(text.trim().to_string());
    }
}

pub struct Screen {
    parser: vt100::Parser<Signals>,
    /// The main screen as it was when the program switched to the alternate one (it cannot
    /// change meanwhile). A late joiner gets it painted first, so when the program leaves
    /// the alternate screen, the joiner's terminal shows what everyone else's does.
    main_before_alt: Option<Vec<u8>>,
    /// Times the emulator panicked and the model was reset (tests assert zero).
    resets: u64,
}

impl Screen {
    pub fn new(rows: u16, cols: u16) -> Self {
        Screen {
            parser: vt100::Parser::new_with_callbacks(
                rows.max(1),
                cols.max(1),
                SCROLLBACK,
                Signals::default(),
            ),
            main_before_alt: None,
            resets: 0,
        }
    }

    /// Feed program output. (The query filter upstream never splits a CSI sequence
    /// across calls, so a switch to the alternate screen is always seen whole.)
    pub fn process(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(at) = find_enter_alt(rest) {
            let (before, after) = rest.split_at(at);
            self.feed(before);
            if !self.parser.screen().alternate_screen() {
                self.main_before_alt = Some(self.parser.screen().state_formatted());
            }
            // Feed the switch itself, then go on after it.
            let len = ENTER_ALT
                .iter()
                .find(|s| after.starts_with(s))
                .map_or(1, |s| s.len());
            self.feed(&after[..len]);
            rest = &after[len..];
        }
        self.feed(rest);
        if !self.parser.screen().alternate_screen() {
            self.main_before_alt = None;
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let parser = &mut self.parser;
        if catch_unwind(AssertUnwindSafe(|| parser.process(bytes))).is_err() {
            let (rows, cols) = self.parser.screen().size();
            tracing::warn!("terminal emulator panicked on program output; screen model reset");
            let signals = self.parser.callbacks().clone();
            self.parser = vt100::Parser::new_with_callbacks(rows, cols, SCROLLBACK, signals);
            self.main_before_alt = None;
            self.resets += 1;
        }
    }

    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.parser.screen_mut().set_size(rows.max(1), cols.max(1));
    }

    /// (rows, cols).
    pub fn size(&self) -> (u16, u16) {
        self.parser.screen().size()
    }

    /// The title and bell count so far.
    pub fn signals(&self) -> &Signals {
        self.parser.callbacks()
    }

    /// (application cursor keys, bracketed paste): how the program wants keys sent.
    pub fn input_modes(&self) -> (bool, bool) {
        let s = self.parser.screen();
        (s.application_cursor(), s.bracketed_paste())
    }

    /// Whether the program is on the alternate screen.
    pub fn on_alternate_screen(&self) -> bool {
        self.parser.screen().alternate_screen()
    }

    /// 0-based (row, col) of the cursor.
    pub fn cursor(&self) -> (u16, u16) {
        self.parser.screen().cursor_position()
    }

    /// Bytes that turn any terminal into this screen: leave or enter the alternate
    /// screen as the program is, reset attributes and scroll region, clear, then draw the
    /// contents, cursor and input modes.
    pub fn repaint(&self) -> Vec<u8> {
        let screen = self.parser.screen();
        let mut out = Vec::with_capacity(8 * 1024);
        if let (true, Some(main)) = (screen.alternate_screen(), &self.main_before_alt) {
            // The main screen first, so leaving the alternate one later shows it.
            out.extend_from_slice(b"\x1b[?1049l\x1b[0m\x1b[r\x1b[H\x1b[2J");
            out.extend_from_slice(main);
        }
        out.extend_from_slice(if screen.alternate_screen() {
            b"\x1b[?1049h"
        } else {
            b"\x1b[?1049l"
        });
        out.extend_from_slice(b"\x1b[0m\x1b[r\x1b[H\x1b[2J");
        out.extend_from_slice(&screen.state_formatted());
        out
    }

    /// A frame of the screen clipped to a smaller terminal (`cols` x `rows`): the top-left
    /// part, row by row, without letting long rows wrap. `fresh` first selects the
    /// program's screen (normal or alternate) and clears.
    pub fn clipped(&self, cols: u16, rows: u16, fresh: bool) -> Vec<u8> {
        use std::io::Write;
        let screen = self.parser.screen();
        let mut out = Vec::with_capacity(cols as usize * rows as usize + 256);
        if fresh {
            out.extend_from_slice(if screen.alternate_screen() {
                b"\x1b[?1049h"
            } else {
                b"\x1b[?1049l"
            });
            out.extend_from_slice(b"\x1b[0m\x1b[r\x1b[H\x1b[2J");
        }
        out.extend_from_slice(b"\x1b[?25l");
        write_rows(&mut out, screen, cols, rows);
        out.extend_from_slice(b"\x1b[0m");
        out.extend_from_slice(&screen.input_mode_formatted());
        let (r, c) = screen.cursor_position();
        if r < rows && c < cols {
            let _ = write!(out, "\x1b[{};{}H", r + 1, c + 1);
            if !screen.hide_cursor() {
                out.extend_from_slice(b"\x1b[?25h");
            }
        }
        out
    }

    /// A copy of the whole state (screen, scrollback, signals), for a recording's keyframes:
    /// exact between whole escape sequences, as recorded events are.
    pub fn snapshot(&self) -> Screen {
        Screen {
            parser: self.parser.snapshot(),
            main_before_alt: self.main_before_alt.clone(),
            resets: self.resets,
        }
    }

    /// The title the program set (empty if none).
    pub fn title(&self) -> &str {
        self.signals().title.as_deref().unwrap_or("")
    }

    /// The emulator's screen, to read under the model lock (short work only).
    pub fn vt(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// A copy of the emulator's screen (with its scrollback) for slow work off the lock.
    pub fn snapshot_screen(&self) -> vt100::Screen {
        self.parser.screen().clone()
    }

    /// The visible screen as plain text, one line per row, trailing blanks trimmed.
    pub fn text(&self) -> String {
        let screen = self.parser.screen();
        let (_, cols) = screen.size();
        let mut lines: Vec<String> = screen
            .rows(0, cols)
            .map(|r| r.trim_end().to_string())
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines.join("\n")
    }

    /// The screen as lines the way the program wrote them: a row whose text ran over the
    /// right edge (a soft wrap) goes on in the next without a line break. What agent
    /// profiles read, so a long message matches whatever the width.
    pub fn lines(&self) -> String {
        let screen = self.parser.screen();
        let (_, cols) = screen.size();
        let mut out = String::new();
        for (i, row) in screen.rows(0, cols).enumerate() {
            if screen.row_wrapped(i as u16) {
                out.push_str(&row);
            } else {
                out.push_str(row.trim_end());
                out.push('\n');
            }
        }
        let end = out.trim_end().len();
        out.truncate(end);
        out
    }
}

fn find_enter_alt(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|&b| b == 0x1b) {
        let at = from + i;
        if ENTER_ALT.iter().any(|s| bytes[at..].starts_with(s)) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The top-left `cols` x `rows` of `screen`, row by row, each positioned and cleared first
/// (erasing after a full-width row would eat its last cell), so long rows never wrap.
fn write_rows(out: &mut Vec<u8>, screen: &vt100::Screen, cols: u16, rows: u16) {
    use std::io::Write;
    for (i, row) in screen
        .rows_formatted(0, cols)
        .take(rows as usize)
        .enumerate()
    {
        let _ = write!(out, "\x1b[{};1H\x1b[0m\x1b[2K", i + 1);
        out.extend_from_slice(&row);
    }
}

/// What a terminal is given when hearth stops drawing on it (an SSH client leaving a
/// session, `replay` ending), whatever the program left on: attributes reset, cursor
/// shown, mouse reporting (all modes and encodings), focus events, bracketed paste,
/// application cursor keys and keypad off, and the kitty keyboard protocol popped and
/// cleared. Terminals ignore what they do not know. The alternate screen is left too, but
/// only when the terminal is on it ([`LEAVE_ALTERNATE`]): on the main screen, `?1049l`
/// would move the cursor to a stale saved position.
pub const RESTORE: &str = "\x1b[0m\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\
                           \x1b[?1006l\x1b[?1015l\x1b[?1004l\x1b[?2004l\x1b[?1l\x1b>\
                           \x1b[<u\x1b[=0;1u";

/// Back from the alternate screen to the main one.
pub const LEAVE_ALTERNATE: &str = "\x1b[?1049l";

/// A still copy of the screen and its scrollback, taken once when a client opens Rewind,
/// then scrolled and drawn as often as it likes without touching the session's lock.
pub struct History(vt100::Screen);

impl History {
    pub fn new(screen: vt100::Screen) -> History {
        History(screen)
    }

    /// A rewind frame `back` rows into the history at `cols` x `rows`, and the `back`
    /// actually shown; `note` (a search being typed, "not found") replaces the status.
    pub fn frame(
        &mut self,
        back: usize,
        cols: u16,
        rows: u16,
        note: Option<&str>,
    ) -> (Vec<u8>, usize) {
        history_frame(&mut self.0, back, cols, rows, note)
    }

    /// The newest row containing `needle` (case-insensitive) that is more than `older_than`
    /// rows back (`None`: any, the live screen's rows too): the `back` that shows it near
    /// the top of a `rows`-high view.
    pub fn find(&mut self, needle: &str, older_than: Option<usize>, rows: u16) -> Option<usize> {
        let needle = needle.to_lowercase();
        if needle.is_empty() {
            return None;
        }
        let screen = &mut self.0;
        let (height, cols) = screen.size();
        let height = usize::from(height.max(1));
        screen.set_scrollback(usize::MAX);
        let available = screen.scrollback();
        // Views `height` rows apart cover every row once: in view `b`, row `i` (from the
        // top) is the row `b - i` rows back (below zero: lower on the live screen). Newest
        // first: views from the live one up, rows from the bottom up.
        let mut view = 0;
        let found = loop {
            screen.set_scrollback(view);
            let shown = screen.scrollback();
            let rows_text: Vec<String> = screen.rows(0, cols).take(height).collect();
            let hit = rows_text.iter().enumerate().rev().find_map(|(i, text)| {
                let back = shown as isize - i as isize;
                (older_than.is_none_or(|o| back > o as isize)
                    && text.to_lowercase().contains(&needle))
                .then_some(back)
            });
            if hit.is_some() || shown >= available {
                break hit;
            }
            view = shown + height;
        };
        // A few rows above it for context.
        found.map(|back| {
            (back + (usize::from(rows) / 3) as isize).clamp(0, available as isize) as usize
        })
    }
}

/// A rewind frame: `screen` scrolled `back` rows into its history, clipped to `cols` x
/// `rows`, with a status line at the bottom. Returns the frame and the `back` actually
/// shown (clamped to the history there is).
fn history_frame(
    screen: &mut vt100::Screen,
    back: usize,
    cols: u16,
    rows: u16,
    note: Option<&str>,
) -> (Vec<u8>, usize) {
    use std::io::Write;
    let cols = if cols == 0 { 80 } else { cols };
    let rows = if rows == 0 { 24 } else { rows };
    // What history there is: as far back as the screen scrolls (`scrollback_len` is the
    // capacity, not the rows kept).
    screen.set_scrollback(usize::MAX);
    let available = screen.scrollback();
    screen.set_scrollback(back);
    let back = screen.scrollback();
    let mut out = Vec::with_capacity(cols as usize * rows as usize + 256);
    out.extend_from_slice(b"\x1b[?25l\x1b[0m\x1b[H\x1b[2J");
    write_rows(&mut out, screen, cols, rows.saturating_sub(1).max(1));
    let status = match note {
        Some(note) => format!(" REWIND  {note}"),
        None if available == 0 => {
            " REWIND  no history yet: everything is on the screen  ·  Esc: live ".to_string()
        }
        None => format!(
            " REWIND  {back} of {available} rows back  ·  ↑↓ line  PgUp/PgDn page  Home/End  ·  / find  n older  ·  Esc: live "
        ),
    };
    let status: String = status.chars().take(cols as usize).collect();
    let _ = write!(out, "\x1b[{rows};1H\x1b[0;30;43m\x1b[2K{status}\x1b[0m");
    (out, back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_notifications_are_counted_cleaned_and_progress_is_not_one() {
        let mut s = Screen::new(10, 40);
        s.process(b"\x1b]9;Claude needs your permission\x07");
        assert_eq!(s.signals().notes, 1);
        assert_eq!(
            s.signals().note.as_deref(),
            Some("Claude needs your permission")
        );
        // An escape inside ends the string (as in every terminal): no sequence gets in.
        s.process(b"\x1b]777;notify;Codex;approve\x1b[31m this\x07");
        assert_eq!(s.signals().notes, 2);
        assert_eq!(s.signals().note.as_deref(), Some("Codex: approve"));
        // ConEmu/Windows Terminal progress (OSC 9;4) and other OSCs are not notifications.
        s.process(b"\x1b]9;4;1;50\x07\x1b]7;file:///tmp\x07");
        assert_eq!(s.signals().notes, 2);
        let long = format!("\x1b]9;{}\x07", "x".repeat(10_000));
        s.process(long.as_bytes());
        assert_eq!(s.signals().note.as_ref().unwrap().len(), MAX_TITLE);
        // Nothing of them lands on the screen but what followed the cut-off one.
        assert_eq!(s.text().trim(), "this");
    }

    #[test]
    fn shell_integration_marks_are_read_and_leave_the_screen_alone() {
        let mut s = Screen::new(10, 40);
        s.process(b"\x1b]133;A\x07$ \x1b]133;B\x07");
        assert_eq!(s.signals().mark, Some(Mark::Prompt));
        assert_eq!(s.signals().prompts, 1);
        s.process(b"make\r\n\x1b]133;C\x07building\r\n");
        assert_eq!(s.signals().mark, Some(Mark::Running));
        s.process(b"\x1b]133;D;2\x1b\\\x1b]133;A;cl=m\x07$ ");
        let sig = s.signals();
        assert_eq!((sig.commands, sig.exit_code, sig.prompts), (1, Some(2), 2));
        assert_eq!(sig.mark, Some(Mark::Prompt));
        // No status, or garbage for one: none.
        s.process(b"\x1b]133;D\x07\x1b]133;D;x\x07");
        assert_eq!((s.signals().commands, s.signals().exit_code), (3, None));
        assert_eq!(s.text(), "$ make\nbuilding\n$");
    }

    /// The emulator's fast path for printable ASCII (vendor/vt100, HEARTH-PATCH.md) must
    /// leave a wide character it overwrites half of exactly as the general path does.
    #[test]
    fn ascii_over_half_a_wide_character_blanks_the_other_half() {
        let cell = |s: &Screen, col: u16| {
            let c = s.vt().cell(0, col).unwrap();
            (
                c.contents().to_string(),
                c.is_wide(),
                c.is_wide_continuation(),
            )
        };
        let blank = (String::new(), false, false);
        let mut s = Screen::new(3, 10);
        // Over the first half.
        s.process("中x\ra".as_bytes());
        assert_eq!(cell(&s, 0), ("a".to_string(), false, false));
        assert_eq!(cell(&s, 1), blank);
        assert_eq!(cell(&s, 2), ("x".to_string(), false, false));
        // Over the second half.
        s.process("\x1b[2J\x1b[H中x\x1b[1;2Hb".as_bytes());
        assert_eq!(cell(&s, 0), blank);
        assert_eq!(cell(&s, 1), ("b".to_string(), false, false));
        // At the last column the next character wraps (the general path's work).
        s.process(b"\x1b[2J\x1b[1;10Hyz");
        assert_eq!(cell(&s, 9), ("y".to_string(), false, false));
        assert_eq!(s.vt().cell(1, 0).unwrap().contents(), "z");
        assert_eq!(s.text(), "         y\nz");
    }

    /// Scrolling with a full scrollback reuses the row it drops (vendor/vt100): the row
    /// scrolled in must be blank, in the current background, and the scrollback intact.
    #[test]
    fn rows_scrolled_in_after_the_scrollback_is_full_are_blank() {
        let mut s = Screen::new(3, 10);
        for i in 0..SCROLLBACK + 50 {
            s.process(format!("line{i}\r\n").as_bytes());
        }
        s.process(b"\x1b[44m\r\n\x1b[0mlast");
        let vt = s.vt();
        assert_eq!(vt.cell(2, 0).unwrap().contents(), "l");
        assert_eq!(s.text(), format!("line{}\n\nlast", SCROLLBACK + 49));
        // The row the blue line feed brought in (then written on): blank and blue after
        // the text, none of the dropped row's text left.
        let blue = vt.cell(2, 5).unwrap();
        assert_eq!(
            (blue.contents(), blue.bgcolor()),
            ("", vt100::Color::Idx(4))
        );
        // The oldest row kept: the scrollback holds the last SCROLLBACK rows above.
        let mut back = s.snapshot_screen();
        back.set_scrollback(usize::MAX);
        let top = back.rows(0, 10).next().unwrap();
        assert_eq!(top, "line49");
    }

    #[test]
    fn lines_join_the_rows_a_long_line_wrapped_onto() {
        let mut s = Screen::new(5, 10);
        s.process(b"0123456789abcdef\r\nshort  \r\n\x1b[4;1Hhard");
        assert_eq!(s.lines(), "0123456789abcdef\nshort\nhard");
        assert_eq!(s.text(), "0123456789\nabcdef\nshort\nhard");
    }

    #[test]
    fn repaint_reproduces_the_screen_in_a_fresh_emulator() {
        let mut s = Screen::new(10, 40);
        s.process(b"hello\r\n\x1b[31mred\x1b[0m\x1b[5;10Hthere");
        let mut fresh = Screen::new(10, 40);
        fresh.process(&s.repaint());
        assert_eq!(fresh.text(), s.text());
        assert_eq!(fresh.cursor(), s.cursor());
        assert!(s.text().starts_with("hello\nred"));
    }

    #[test]
    fn a_clipped_frame_shows_the_top_left_without_wrapping() {
        let mut s = Screen::new(30, 100);
        s.process(&[b'A'; 100]);
        s.process(b"\x1b[3;1Hthird\x1b[25;1Hbelow");
        let mut small = Screen::new(10, 40);
        small.process(&s.clipped(40, 10, true));
        let text = small.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A".repeat(40));
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "third");
        assert!(!text.contains("below"));
    }

    /// Every cell's text, bold, dim, italic, underline, inverse and colours.
    fn cells(screen: &vt100::Screen) -> Vec<String> {
        let (rows, cols) = screen.size();
        let mut out = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                if let Some(cell) = screen.cell(r, c) {
                    out.push(format!(
                        "{r},{c} {:?} b{} d{} i{} u{} v{} {:?} {:?}",
                        cell.contents(),
                        cell.bold(),
                        cell.dim(),
                        cell.italic(),
                        cell.underline(),
                        cell.inverse(),
                        cell.fgcolor(),
                        cell.bgcolor()
                    ));
                }
            }
        }
        out
    }

    /// The repaint gives a late joiner the same cells, attributes and colour encodings as
    /// the live stream gave the first client (vt100 0.18 made bold and dim exclusive and
    /// wrote `38;5;1` back as `31`; adr/0010).
    #[test]
    fn bold_dim_and_256_colour_indexes_survive_the_repaint() {
        let cases: [&[u8]; 3] = [
            b"\x1b[2mdim \x1b[0;1mbold \x1b[0;2m dim2 \x1b[1;2mboth\x1b[0m",
            b"\x1b[2mPress \x1b[1menter\x1b[22m\x1b[2m to continue\x1b[0m",
            b"\x1b[38;5;1mA\x1b[31mB\x1b[48;5;9mC\x1b[101mD\x1b[1;2;3;4;7mE\x1b[22;1mF",
        ];
        for case in cases {
            let mut s = Screen::new(5, 60);
            s.process(case);
            let mut joiner = vt100::Parser::new(5, 60, 0);
            joiner.process(&s.repaint());
            assert_eq!(
                cells(joiner.screen()),
                cells(s.parser.screen()),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        let mut s = Screen::new(5, 60);
        s.process(cases[0]);
        let both = s.parser.screen().cell(0, 15).unwrap();
        assert!(both.bold() && both.dim(), "bold and dim at once");
        let dim2 = s.parser.screen().cell(0, 10).unwrap();
        assert!(dim2.dim() && !dim2.bold());
        let mut s = Screen::new(5, 60);
        s.process(b"\x1b[38;5;1mA\x1b[31mB");
        let paint = String::from_utf8_lossy(&s.repaint()).into_owned();
        assert!(
            paint.contains("38;5;1m") && paint.contains("31m"),
            "{paint:?}"
        );
    }

    /// Erasing and scrolling fill cells with the background alone, as xterm and tmux do
    /// (a status bar drawn with `ESC[44m ESC[K`), and a late joiner gets the same cells;
    /// upstream vt100 kept inverse and underline on erased cells and scrolled in rows
    /// without the background.
    #[test]
    fn erases_and_scrolls_fill_with_the_background_only() {
        let mut s = Screen::new(3, 10);
        // The bar on row 0; rows 1-2 a scroll region, scrolled once on a green background.
        s.process(b"\x1b[44;1;4;7mbar\x1b[K\x1b[2;3r\x1b[3;1H\x1b[0;42m\n");
        let mut joiner = vt100::Parser::new(3, 10, 0);
        joiner.process(&s.repaint());
        for screen in [s.parser.screen(), joiner.screen()] {
            // The erased rest of the bar: background, nothing else.
            let erased = screen.cell(0, 5).unwrap();
            assert_eq!(erased.bgcolor(), vt100::Color::Idx(4));
            assert!(!erased.inverse() && !erased.underline() && !erased.bold());
            // The row the line feed scrolled in has the background then current.
            let scrolled = screen.cell(2, 5).unwrap();
            assert_eq!(
                scrolled.bgcolor(),
                vt100::Color::Idx(2),
                "{:?}",
                cells(screen)
            );
        }
        assert_eq!(cells(joiner.screen()), cells(s.parser.screen()));
    }

    /// Resizing moves rows as tmux does: a shorter screen first drops the empty rows
    /// below the cursor, then moves rows off the top into the scrollback (the prompt
    /// stays in view; upstream cut the bottom off); a taller one pulls them back.
    #[test]
    fn resizing_keeps_the_cursor_row_and_brings_scrolled_rows_back() {
        let mut s = Screen::new(10, 20);
        for i in 0..6 {
            s.process(format!("line-{i}\r\n").as_bytes());
        }
        s.process(b"$ ");
        s.resize(4, 20);
        assert_eq!(
            s.text().lines().collect::<Vec<_>>(),
            ["line-3", "line-4", "line-5", "$"]
        );
        assert_eq!(s.cursor(), (3, 2));
        s.resize(10, 20);
        assert!(s.text().starts_with("line-0\nline-1\n"), "{}", s.text());
        assert_eq!(s.cursor(), (6, 2));
        // Growing while a program is on the alternate screen leaves it alone.
        s.process(b"\x1b[?1049h\x1b[Hfull");
        s.resize(12, 20);
        assert!(s.text().starts_with("full"), "{}", s.text());
    }

    /// Inserting lines (IL), which the differential test leaves out (tmux 3.3a does not
    /// clear rows when an insert outside the region reaches the bottom): inside a scroll
    /// region rows move down within it; outside, down to the screen's bottom.
    #[test]
    fn inserted_lines_stay_within_their_region() {
        let rows = |extra: &[u8]| {
            let mut s = Screen::new(5, 10);
            s.process(b"a\r\nb\r\nc\r\nd\r\ne");
            s.process(extra);
            s.text().split('\n').map(str::to_string).collect::<Vec<_>>()
        };
        assert_eq!(rows(b"\x1b[2;1H\x1b[1L"), ["a", "", "b", "c", "d"]);
        assert_eq!(rows(b"\x1b[2;3r\x1b[2;1H\x1b[1L"), ["a", "", "b", "d", "e"]);
        assert_eq!(rows(b"\x1b[2;3r\x1b[4;1H\x1b[1L"), ["a", "b", "c", "", "d"]);
    }

    #[test]
    fn rewind_shows_rows_that_scrolled_away() {
        let mut s = Screen::new(5, 20);
        for i in 0..30 {
            s.process(format!("line-{i}\r\n").as_bytes());
        }
        let (frame, back) = History::new(s.snapshot_screen()).frame(10, 20, 5, None);
        assert_eq!(back, 10);
        let mut view = Screen::new(5, 20);
        view.process(&frame);
        assert!(view.text().starts_with("line-16"), "{}", view.text());
        assert!(view.text().contains("REWIND"));
        let (_, back) = History::new(s.snapshot_screen()).frame(usize::MAX / 2, 20, 5, None);
        assert_eq!(back, 26);
        let mut status = Screen::new(5, 80);
        status.process(&History::new(s.snapshot_screen()).frame(10, 80, 5, None).0);
        assert!(
            status.text().contains("10 of 26 rows back"),
            "{}",
            status.text()
        );
        // A session with nothing scrolled away says so (it said "0 of 1000").
        let mut short = Screen::new(5, 80);
        short.process(b"one\r\ntwo\r\n");
        let mut view = Screen::new(5, 80);
        view.process(
            &History::new(short.snapshot_screen())
                .frame(0, 80, 5, None)
                .0,
        );
        assert!(view.text().contains("no history yet"), "{}", view.text());
    }

    #[test]
    fn a_joiner_during_a_full_screen_program_returns_to_the_same_main_screen() {
        let mut s = Screen::new(5, 20);
        s.process(b"$ ls\r\nfile-a\r\n$ vim\x1b[?1049h\x1b[H\x1b[2Jvim-buffer");
        // A late joiner: a fresh terminal that gets only the repaint...
        let mut joiner = vt100::Parser::new(5, 20, 0);
        joiner.process(&s.repaint());
        assert!(joiner.screen().contents().contains("vim-buffer"));
        // ...then the program quits the alternate screen.
        s.process(b"\x1b[?1049l");
        joiner.process(b"\x1b[?1049l");
        assert_eq!(joiner.screen().contents(), s.text());
        assert!(s.text().contains("file-a"));
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = Screen::new(5, 5);
        let mut x: u32 = 12345;
        let bytes: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        s.process(&bytes);
        s.resize(0, 0);
        s.process(&bytes);
        let _ = s.repaint();
        let _ = s.clipped(3, 2, true);
        let _ = History::new(s.snapshot_screen()).frame(5, 3, 2, None);
        // The panic guard must not be what saved us: the emulator itself never panicked.
        assert_eq!(s.resets, 0, "the terminal emulator panicked on garbage");
    }

    #[test]
    fn history_finds_the_newest_row_with_text_then_older_ones() {
        let mut s = Screen::new(5, 30);
        for i in 1..=40 {
            s.process(
                format!("row-{i} {}\r\n", if i % 10 == 3 { "Needle" } else { "hay" }).as_bytes(),
            );
        }
        let mut h = History::new(s.snapshot_screen());
        let top = |h: &mut History, back: usize| {
            let (frame, _) = h.frame(back, 30, 6, None);
            let mut v = Screen::new(6, 30);
            v.process(&frame);
            v.text()
        };
        // Newest first (row-33), shown a third of the view below the top; then older ones.
        let back = h.find("needle", None, 6).unwrap();
        let shown = top(&mut h, back);
        assert!(
            shown.lines().nth(2).unwrap().starts_with("row-33"),
            "{shown}"
        );
        let older = h.find("NEEDLE", Some(back - 2), 6).unwrap();
        assert!(
            top(&mut h, older)
                .lines()
                .nth(2)
                .unwrap()
                .starts_with("row-23")
        );
        let oldest = h.find("needle", Some(older - 2), 6).unwrap();
        let oldest = h.find("needle", Some(oldest - 2), 6).unwrap();
        assert!(top(&mut h, oldest).contains("row-3 Needle"));
        assert_eq!(h.find("needle", Some(oldest), 6), None);
        assert_eq!(h.find("absent", None, 6), None);
        // On the live screen too.
        assert_eq!(h.find("row-40", None, 6), Some(0));
        assert!(top(&mut h, 0).contains("row-40"));
    }

    /// The emulator draws printable ASCII in runs (vendor/vt100, HEARTH-PATCH.md): whatever
    /// the output and however it is cut into reads, the screen, the scrollback, the cursor
    /// and the character a REP repeats must be what drawing each character as it comes
    /// gives.
    mod runs {
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                // Runs about the screen's width and the gathering limit (256).
                4 => (1usize..300, any::<u8>()).prop_map(|(n, seed)| {
                    (0..n).map(|i| b' ' + ((i + usize::from(seed)) % 95) as u8).collect()
                }),
                // Short runs that end on half of a wide character.
                3 => (1usize..4).prop_map(|n| b"abc"[..n].to_vec()),
                3 => Just("中中".as_bytes().to_vec()),
                1 => Just("🙂".as_bytes().to_vec()),
                1 => Just("e\u{301}".as_bytes().to_vec()),
                1 => Just("\u{fe0f}".as_bytes().to_vec()),
                1 => Just("é".as_bytes().to_vec()),
                1 => Just(b"\r".to_vec()),
                1 => Just(b"\r\n".to_vec()),
                1 => Just(b"\x08\x08".to_vec()),
                1 => Just(b"\t".to_vec()),
                1 => Just(b"\x1b[3b".to_vec()),
                1 => Just(b"\x1b[2@".to_vec()),
                1 => Just(b"\x1b[3P".to_vec()),
                1 => Just(b"\x1b[K".to_vec()),
                1 => Just(b"\x1b[2J".to_vec()),
                1 => Just(b"\x1b[1;31;44m".to_vec()),
                1 => Just(b"\x1b[0m".to_vec()),
                1 => Just(b"\x1b[2;5r".to_vec()),
                1 => Just(b"\x1b[r".to_vec()),
                1 => Just(b"\x1b[?1049h".to_vec()),
                1 => Just(b"\x1b[?1049l".to_vec()),
                1 => Just(b"\x1b]0;title\x07".to_vec()),
                1 => Just(b"\x1bM".to_vec()),
                1 => Just(b"\x1b7".to_vec()),
                1 => Just(b"\x1b8".to_vec()),
                1 => Just(b"\xff".to_vec()),
                2 => (1u16..8, 1u16..14).prop_map(|(r, c)| format!("\x1b[{r};{c}H").into_bytes()),
            ]
        }

        fn state(p: &vt100::Parser) -> (Vec<u8>, (u16, u16), Vec<String>) {
            let mut screen = p.screen().clone();
            screen.set_scrollback(usize::MAX);
            let back = screen.scrollback();
            let mut rows = Vec::new();
            for top in (0..=back).rev() {
                screen.set_scrollback(top);
                rows.push(screen.rows(0, 200).next().unwrap_or_default());
            }
            (
                p.screen().state_formatted(),
                p.screen().cursor_position(),
                rows,
            )
        }

        proptest! {
            #[test]
            fn drawing_in_runs_matches_one_character_at_a_time(
                pieces in proptest::collection::vec(piece(), 1..40),
                cuts in proptest::collection::vec(0usize..4000, 0..12),
                cols in prop_oneof![Just(12u16), Just(80), Just(300)],
            ) {
                let bytes: Vec<u8> = pieces.concat();
                let mut runs = vt100::Parser::new(6, cols, 20);
                let mut one = vt100::Parser::new(6, cols, 20);
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
                cuts.push(bytes.len());
                cuts.sort_unstable();
                let mut start = 0;
                for end in cuts {
                    runs.process(&bytes[start..end]);
                    one.process_one_by_one(&bytes[start..end]);
                    start = end;
                    // Between reads too: nothing printed is left undrawn.
                    prop_assert_eq!(runs.screen().contents(), one.screen().contents());
                }
                prop_assert_eq!(state(&runs), state(&one));
                // The character REP repeats.
                runs.process(b"\x1b[2b");
                one.process_one_by_one(b"\x1b[2b");
                prop_assert_eq!(state(&runs), state(&one));
            }
        }
    }
}
