//! A screen as the web page draws it: each row a JSON array of runs of cells that look
//! the same (`[text, fg, bg, flags]`), serialised once per change and shared by every
//! viewer of the session, so a viewer's update is the rows whose text differs from what it
//! was last sent. Pure: reads a `vt100::Screen`, knows nothing of HTTP or sessions.
//!
//! Colours: `null` (the page's default), 0-255 (the xterm palette; the page computes it) or
//! `"#rrggbb"`. Flags: [`BOLD`], [`DIM`], [`ITALIC`], [`UNDERLINE`], [`INVERSE`], [`WIDE`]
//! (the run is one character two cells wide), [`CURSOR`] (the run is the cursor's cell).

use std::sync::Arc;

pub const BOLD: u8 = 1;
pub const ITALIC: u8 = 2;
pub const UNDERLINE: u8 = 4;
pub const INVERSE: u8 = 8;
pub const WIDE: u8 = 16;
pub const CURSOR: u8 = 32;
pub const DIM: u8 = 64;

/// One screen, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub cols: u16,
    pub rows: u16,
    /// Each row's runs as JSON (an array).
    pub lines: Vec<Arc<str>>,
    pub title: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Look {
    fg: vt100::Color,
    bg: vt100::Color,
    flags: u8,
}

fn look(cell: &vt100::Cell) -> Look {
    let mut flags = 0;
    for (on, f) in [
        (cell.bold(), BOLD),
        (cell.dim(), DIM),
        (cell.italic(), ITALIC),
        (cell.underline(), UNDERLINE),
        (cell.inverse(), INVERSE),
    ] {
        if on {
            flags |= f;
        }
    }
    Look {
        fg: cell.fgcolor(),
        bg: cell.bgcolor(),
        flags,
    }
}

fn colour(c: vt100::Color) -> serde_json::Value {
    match c {
        vt100::Color::Default => serde_json::Value::Null,
        vt100::Color::Idx(i) => i.into(),
        vt100::Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}").into(),
    }
}

/// The screen's rows as runs, the cursor's cell marked unless the program hides it.
pub fn frame(screen: &vt100::Screen, title: &str) -> Frame {
    let (rows, cols) = screen.size();
    let cursor = (!screen.hide_cursor()).then(|| screen.cursor_position());
    let lines = (0..rows)
        .map(|r| {
            Arc::from(row(
                screen,
                r,
                cols,
                cursor.filter(|c| c.0 == r).map(|c| c.1),
            ))
        })
        .collect();
    Frame {
        cols,
        rows,
        lines,
        title: crate::text::safe(title).into_owned(),
    }
}

/// One row's runs as JSON. Trailing blank cells with the default look are left out.
fn row(screen: &vt100::Screen, r: u16, cols: u16, cursor: Option<u16>) -> String {
    let mut runs: Vec<serde_json::Value> = Vec::new();
    let mut text = String::new();
    let mut current: Option<Look> = None;
    let flush = |runs: &mut Vec<serde_json::Value>, text: &mut String, l: Look| {
        if !text.is_empty() {
            runs.push(serde_json::json!([
                std::mem::take(text),
                colour(l.fg),
                colour(l.bg),
                l.flags
            ]));
        }
    };
    // Where the row's content ends: the last cell with text, another look, or the cursor.
    let plain = Look {
        fg: vt100::Color::Default,
        bg: vt100::Color::Default,
        flags: 0,
    };
    let end = (0..cols)
        .rev()
        .find(|&c| {
            screen.cell(r, c).is_some_and(|cell| {
                (cell.has_contents() && cell.contents() != " ") || look(cell) != plain
            }) || cursor == Some(c)
        })
        .map_or(0, |c| c + 1);
    let mut c = 0;
    while c < end {
        let Some(cell) = screen.cell(r, c) else {
            break;
        };
        if cell.is_wide_continuation() {
            c += 1;
            continue;
        }
        let mut l = look(cell);
        let single = cell.is_wide() || cursor == Some(c);
        if cell.is_wide() {
            l.flags |= WIDE;
        }
        if cursor == Some(c) {
            l.flags |= CURSOR;
        }
        if current != Some(l) || single {
            if let Some(prev) = current {
                flush(&mut runs, &mut text, prev);
            }
            current = Some(l);
        }
        let s = cell.contents();
        text.push_str(if s.is_empty() { " " } else { s });
        if single {
            flush(&mut runs, &mut text, l);
            current = None;
        }
        c += 1;
    }
    if let Some(l) = current {
        flush(&mut runs, &mut text, l);
    }
    serde_json::Value::Array(runs).to_string()
}

/// The rows of `now` that differ from `before` (all of them when the size changed), as a
/// JSON object `{"index": runs, ...}`; `None` when nothing changed.
pub fn changed(before: &Frame, now: &Frame) -> Option<String> {
    let mut out = String::from("{");
    for (i, line) in now.lines.iter().enumerate() {
        if before.lines.get(i) != Some(line) || before.cols != now.cols {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&format!("\"{i}\":{line}"));
        }
    }
    (out.len() > 1).then(|| out + "}")
}

/// The whole frame as the page's `screen` message.
pub fn whole(f: &Frame) -> String {
    let mut out = format!(
        "{{\"cols\":{},\"rows\":{},\"title\":{},\"lines\":[",
        f.cols,
        f.rows,
        serde_json::Value::from(f.title.as_str())
    );
    for (i, l) in f.lines.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(l);
    }
    out + "]}"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen_of(bytes: &[u8]) -> vt100::Screen {
        let mut p = vt100::Parser::new(4, 20, 0);
        p.process(bytes);
        p.screen().clone()
    }

    fn runs(f: &Frame, r: usize) -> serde_json::Value {
        serde_json::from_str(&f.lines[r]).unwrap()
    }

    #[test]
    fn rows_are_runs_of_one_look_with_the_cursor_marked() {
        let f = frame(
            &screen_of(b"ab\x1b[1;31mcd\x1b[0m e\r\n\x1b[48;2;1;2;3mx"),
            "t",
        );
        assert_eq!((f.cols, f.rows), (20, 4));
        assert_eq!(
            runs(&f, 0),
            serde_json::json!([
                ["ab", null, null, 0],
                ["cd", 1, null, 1],
                [" e", null, null, 0]
            ])
        );
        // The cursor sits after the x, on a cell of its own (not written: the default look).
        assert_eq!(
            runs(&f, 1),
            serde_json::json!([["x", null, "#010203", 0], [" ", null, null, CURSOR]])
        );
        assert_eq!(runs(&f, 2), serde_json::json!([]));
    }

    #[test]
    fn wide_characters_are_runs_of_their_own_and_hidden_cursors_are_not_drawn() {
        let f = frame(&screen_of("a漢b\x1b[?25l".as_bytes()), "");
        assert_eq!(
            runs(&f, 0),
            serde_json::json!([
                ["a", null, null, 0],
                ["漢", null, null, WIDE],
                ["b", null, null, 0]
            ])
        );
    }

    #[test]
    fn only_changed_rows_are_sent_and_text_cannot_break_the_json() {
        let a = frame(&screen_of(b"one\r\ntwo"), "");
        let b = frame(&screen_of(b"one\r\nt\"</script>\\"), "a \x1b]0;x\x07 title");
        let diff: serde_json::Value = serde_json::from_str(&changed(&a, &b).unwrap()).unwrap();
        let keys: Vec<&String> = diff.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["1"]);
        assert_eq!(diff["1"][0][0], "t\"</script>\\");
        assert!(changed(&b, &b).is_none());
        let w: serde_json::Value = serde_json::from_str(&whole(&b)).unwrap();
        assert_eq!(w["lines"].as_array().unwrap().len(), 4);
        assert!(!w["title"].as_str().unwrap().contains('\x1b'));
    }
}
