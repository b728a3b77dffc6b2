//! Reading an asciicast v2 recording back, for sessions that have ended: their output as
//! one byte stream with offsets (`logs`, `tail` of an ended session), and their last screen
//! (the output replayed into the screen model at the recorded sizes).
//!
//! A recording cut short by a crash ends in a truncated line: it is skipped, like
//! asciinema's own reader does. Reading streams the file line by line; nothing here holds
//! more than one event and the bytes asked for. It must not write anything.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ReadFrom;
use super::screen::Screen;

/// What the header line says.
#[derive(Debug, Clone)]
pub struct Header {
    pub cols: u16,
    pub rows: u16,
    /// Seconds since the Unix epoch when the recording started.
    pub timestamp: u64,
}

/// One event, times in seconds from the start.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Output(f64, String),
    Resize(f64, u16, u16),
    Marker(f64, String),
}

/// A recording opened for reading, positioned after its header.
pub struct Cast {
    lines: std::io::Lines<BufReader<File>>,
    pub header: Header,
}

impl Cast {
    pub fn open(path: &Path) -> std::io::Result<Cast> {
        let mut lines = BufReader::new(File::open(path)?).lines();
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not an asciicast v2 file", path.display()),
            )
        };
        let first = lines.next().ok_or_else(bad)??;
        let head: serde_json::Value = serde_json::from_str(&first).map_err(|_| bad())?;
        if head["version"] != 2 {
            return Err(bad());
        }
        let dim = |k: &str| {
            head[k]
                .as_u64()
                .and_then(|v| u16::try_from(v).ok())
                .filter(|v| *v > 0)
        };
        let header = Header {
            cols: dim("width").unwrap_or(80),
            rows: dim("height").unwrap_or(24),
            timestamp: head["timestamp"].as_u64().unwrap_or(0),
        };
        Ok(Cast { lines, header })
    }

    /// The next event; lines that do not parse (a truncated last line) are skipped.
    pub fn next_event(&mut self) -> Option<Event> {
        for line in self.lines.by_ref() {
            let Ok(line) = line else {
                return None;
            };
            if let Some(e) = parse_event(&line) {
                return Some(e);
            }
        }
        None
    }
}

/// One line of a recording after its header (`None`: not an event).
pub fn parse_event(line: &str) -> Option<Event> {
    let serde_json::Value::Array(ev) = serde_json::from_str(line).ok()? else {
        return None;
    };
    let t = ev.first()?.as_f64()?;
    let text = ev.get(2)?.as_str()?;
    match ev.get(1)?.as_str()? {
        "o" => Some(Event::Output(t, text.to_string())),
        "m" => Some(Event::Marker(t, text.to_string())),
        "r" => {
            let (c, r) = text.split_once('x')?;
            Some(Event::Resize(t, c.parse().ok()?, r.parse().ok()?))
        }
        _ => None,
    }
}

/// Read the recorded output as one stream, like a live session's log: up to `max` bytes
/// from `from`, and the offset to continue at.
pub fn read_output(path: &Path, from: ReadFrom, max: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let start = match from {
        ReadFrom::Start => 0,
        ReadFrom::Offset(o) => o,
        ReadFrom::End => total(path)?,
        ReadFrom::Tail(n) => total(path)?.saturating_sub(n),
        ReadFrom::Since(ago) => {
            let mut cast = Cast::open(path)?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let cutoff = now.saturating_sub(ago).as_secs_f64()
                - Duration::from_secs(cast.header.timestamp).as_secs_f64();
            let mut pos = 0u64;
            while let Some(e) = cast.next_event() {
                if let Event::Output(t, s) = e {
                    if t >= cutoff {
                        break;
                    }
                    pos += s.len() as u64;
                }
            }
            pos
        }
    };
    let mut cast = Cast::open(path)?;
    let mut pos = 0u64;
    let mut data = Vec::new();
    while data.len() < max {
        let Some(e) = cast.next_event() else { break };
        let Event::Output(_, s) = e else { continue };
        let bytes = s.as_bytes();
        let end = pos + bytes.len() as u64;
        if end > start {
            let skip = start.saturating_sub(pos) as usize;
            let take = (bytes.len() - skip).min(max - data.len());
            data.extend_from_slice(&bytes[skip..skip + take]);
        }
        pos = end;
    }
    let next = start + data.len() as u64;
    Ok((data, next))
}

/// Bytes of output in the recording.
fn total(path: &Path) -> std::io::Result<u64> {
    let mut cast = Cast::open(path)?;
    let mut n = 0u64;
    while let Some(e) = cast.next_event() {
        if let Event::Output(_, s) = e {
            n += s.len() as u64;
        }
    }
    Ok(n)
}

/// The screen as it was at the end of the recording.
pub fn last_screen(path: &Path) -> std::io::Result<Screen> {
    let mut cast = Cast::open(path)?;
    let mut screen = Screen::new(cast.header.rows, cast.header.cols);
    while let Some(e) = cast.next_event() {
        match e {
            Event::Output(_, s) => screen.process(s.as_bytes()),
            Event::Resize(_, cols, rows) => screen.resize(rows.max(1), cols.max(1)),
            Event::Marker(..) => {}
        }
    }
    Ok(screen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cast");
        std::fs::write(&path, lines.join("\n")).unwrap();
        (dir, path)
    }

    #[test]
    fn output_reads_as_one_stream_with_offsets_and_a_torn_last_line_is_skipped() {
        let (_d, path) = write(&[
            r#"{"version":2,"width":20,"height":5,"timestamp":0}"#,
            r#"[0.1,"o","hello "]"#,
            r#"[0.2,"r","30x6"]"#,
            r#"[0.3,"m","a marker"]"#,
            r#"[0.4,"o","world\r\n"]"#,
            r#"[0.5,"o","tor"#,
        ]);
        let (all, next) = read_output(&path, ReadFrom::Start, 1 << 20).unwrap();
        assert_eq!(all, b"hello world\r\n");
        assert_eq!(next, 13);
        let (part, next) = read_output(&path, ReadFrom::Offset(3), 5).unwrap();
        assert_eq!((&part[..], next), (&b"lo wo"[..], 8));
        let (rest, next) = read_output(&path, ReadFrom::Offset(next), 100).unwrap();
        assert_eq!((&rest[..], next), (&b"rld\r\n"[..], 13));
        let (tail, _) = read_output(&path, ReadFrom::Tail(7), 100).unwrap();
        assert_eq!(tail, b"world\r\n");
        let (end, next) = read_output(&path, ReadFrom::End, 100).unwrap();
        assert!(end.is_empty());
        assert_eq!(next, 13);
    }

    #[test]
    fn the_last_screen_replays_output_at_the_recorded_sizes() {
        let (_d, path) = write(&[
            r#"{"version":2,"width":10,"height":3,"timestamp":0}"#,
            r#"[0.1,"o","first\r\n"]"#,
            r#"[0.2,"r","40x4"]"#,
            r#"[0.3,"o","a line longer than ten columns"]"#,
        ]);
        let screen = last_screen(&path).unwrap();
        assert_eq!(screen.size(), (4, 40));
        assert!(screen.text().contains("a line longer than ten columns"));
        assert!(screen.text().contains("first"));
    }

    #[test]
    fn not_a_cast_is_a_clear_error() {
        let (_d, path) = write(&["hello"]);
        let e = read_output(&path, ReadFrom::Start, 10).err().unwrap();
        assert!(e.to_string().contains("not an asciicast v2 file"), "{e}");
    }
}
