//! Text from programs, clients and files made safe to show a human: a terminal must never
//! take it for control (a command line with `ESC ]0;...BEL` retitles the owner's terminal,
//! `ESC [2J` clears it, U+202E reverses what follows). [`safe`] shows C0, DEL and C1
//! control characters escaped (`\e`, `\x07`, `\u{9b}`) and drops bidi overrides and
//! isolates. Only human output uses it; `--json` carries the exact text.
//!
//! Pure; used by the CLI's tables and messages, the dashboards, events and the menu.

use std::borrow::Cow;

/// Bidi embeddings, overrides and isolates: they reorder what follows on screen.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn needs_care(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// `s` with control characters escaped and bidi controls removed (borrowed when clean).
pub fn safe(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// [`safe`] for text of several lines that we composed (a table, a message): newlines
/// stay, everything else that could drive a terminal is escaped. The last guard before
/// stdout; cells and fields are escaped with [`safe`] first, so a newline in a command
/// line cannot fake a row.
pub fn safe_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !s
        .chars()
        .any(|c| needs_care(c) && !(keep_newlines && c == '\n'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\x1b' => out.push_str("\\e"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_bidi_control(c) => {}
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`safe`], owned.
pub fn safe_string(s: &str) -> String {
    safe(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_bidi_overrides_dropped() {
        assert!(matches!(safe("plain ü 漢"), Cow::Borrowed(_)));
        assert_eq!(safe("a\x1b]0;PWN\x07\x1b[2Jb"), "a\\e]0;PWN\\x07\\e[2Jb");
        assert_eq!(safe("x\u{9b}31m\x7f"), "x\\u{9b}31m\\x7f");
        assert_eq!(safe("evil\u{202E}txt.exe\u{2066}"), "eviltxt.exe");
        assert_eq!(safe("two\nlines\r\t"), "two\\nlines\\r\\t");
        assert_eq!(safe_lines("a\nb\x1b[2J"), "a\nb\\e[2J");
        assert!(matches!(safe_lines("a\nb"), Cow::Borrowed(_)));
    }
}
