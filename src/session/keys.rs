//! Key names for `send --key`, and the bytes a terminal would send for them. Cursor keys
//! follow the program's cursor-key mode (`ESC O A` in application mode, `ESC [ A` in normal
//! mode), as a real terminal does. Pure.

/// The bytes for key `name`; `app_cursor`: the program asked for application cursor keys.
pub fn key_bytes(name: &str, app_cursor: bool) -> Result<Vec<u8>, String> {
    let cursor = |c: u8| {
        if app_cursor {
            vec![0x1b, b'O', c]
        } else {
            vec![0x1b, b'[', c]
        }
    };
    let lower = name.to_ascii_lowercase();
    let bytes = match lower.as_str() {
        "enter" | "return" => b"\r".to_vec(),
        "tab" => b"\t".to_vec(),
        "esc" | "escape" => b"\x1b".to_vec(),
        "backspace" | "bs" => b"\x7f".to_vec(),
        "space" => b" ".to_vec(),
        "up" => cursor(b'A'),
        "down" => cursor(b'B'),
        "right" => cursor(b'C'),
        "left" => cursor(b'D'),
        "home" => cursor(b'H'),
        "end" => cursor(b'F'),
        "pgup" | "pageup" => b"\x1b[5~".to_vec(),
        "pgdn" | "pagedown" => b"\x1b[6~".to_vec(),
        "insert" | "ins" => b"\x1b[2~".to_vec(),
        "delete" | "del" => b"\x1b[3~".to_vec(),
        "f1" => b"\x1bOP".to_vec(),
        "f2" => b"\x1bOQ".to_vec(),
        "f3" => b"\x1bOR".to_vec(),
        "f4" => b"\x1bOS".to_vec(),
        "f5" => b"\x1b[15~".to_vec(),
        "f6" => b"\x1b[17~".to_vec(),
        "f7" => b"\x1b[18~".to_vec(),
        "f8" => b"\x1b[19~".to_vec(),
        "f9" => b"\x1b[20~".to_vec(),
        "f10" => b"\x1b[21~".to_vec(),
        "f11" => b"\x1b[23~".to_vec(),
        "f12" => b"\x1b[24~".to_vec(),
        _ => return modified(name),
    };
    Ok(bytes)
}

/// `C-a`..`C-z`, `C-]` (and the other C0 punctuation), `M-<char>`.
fn modified(name: &str) -> Result<Vec<u8>, String> {
    let unknown = || {
        format!(
            "unknown key '{name}': use enter tab esc backspace space up down left right home \
             end pgup pgdn insert delete f1..f12, C-a..C-z, C-], M-<char>"
        )
    };
    let (prefix, rest) = name.split_at_checked(2).ok_or_else(unknown)?;
    let mut chars = rest.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return Err(unknown());
    };
    match prefix {
        "C-" | "c-" => match c.to_ascii_lowercase() {
            c @ 'a'..='z' => Ok(vec![c as u8 - b'a' + 1]),
            '@' | ' ' => Ok(vec![0]),
            '[' => Ok(vec![0x1b]),
            '\\' => Ok(vec![0x1c]),
            ']' => Ok(vec![0x1d]),
            '^' => Ok(vec![0x1e]),
            '_' => Ok(vec![0x1f]),
            _ => Err(unknown()),
        },
        "M-" | "m-" => {
            let mut v = vec![0x1b];
            let mut buf = [0u8; 4];
            v.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            Ok(v)
        }
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_terminal_bytes_and_cursor_keys_follow_the_mode() {
        assert_eq!(key_bytes("up", true).unwrap(), b"\x1bOA");
        assert_eq!(key_bytes("up", false).unwrap(), b"\x1b[A");
        assert_eq!(key_bytes("Enter", false).unwrap(), b"\r");
        assert_eq!(key_bytes("C-c", false).unwrap(), [3]);
        assert_eq!(key_bytes("C-]", false).unwrap(), [0x1d]);
        assert_eq!(key_bytes("M-x", false).unwrap(), b"\x1bx");
        assert_eq!(key_bytes("f12", false).unwrap(), b"\x1b[24~");
        for bad in ["", "C-", "C-cc", "X-a", "nope", "C-1"] {
            assert!(key_bytes(bad, false).is_err(), "{bad}");
        }
    }
}
