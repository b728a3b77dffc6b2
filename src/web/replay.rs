//! The web page's timeline over a session's recording: the screen at any moment
//! (`/at?t=`), and playback from a moment at a speed (`/play`, Server-Sent Events like the
//! live view). The screen is rebuilt from the cast with the session's own screen model, so
//! a moment looks exactly as `hearth screen` showed it then.
//!
//! A jump is fast because of keyframes: one pass over the recording keeps a copy of the
//! screen model every so often (at most [`MAX_KEYS`], at least [`KEY_SPACING`] bytes of
//! output apart), so a jump replays at most that much output. Memory: the keyframes of at
//! most [`CACHED`] recordings; playback holds one screen and one line of the file. Runs on
//! blocking threads (file reads, parsing), at most [`MAX_PLAYERS`] at once.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::render;
use super::sse;
use crate::session::cast::{self, Event};
use crate::session::screen::Screen;

/// Keyframes per recording, at most.
pub const MAX_KEYS: usize = 16;
/// Output bytes between two keyframes, at least.
pub const KEY_SPACING: u64 = 4 << 20;
/// Recordings whose keyframes are kept.
pub const CACHED: usize = 2;
/// Readers of recordings at once (playbacks, jumps, timelines), daemon-wide.
pub const MAX_PLAYERS: usize = 32;
/// Markers a timeline lists, at most.
const MAX_MARKERS: usize = 500;
/// The longest pause playback keeps (a recording's idle hours play as this).
const MAX_PAUSE: Duration = Duration::from_secs(2);

struct Key {
    t: f64,
    /// Where the next line starts.
    offset: u64,
    screen: Screen,
}

/// What one pass over a recording found.
pub struct Timeline {
    /// Bytes of the file when it was read.
    len: u64,
    pub started_unix: u64,
    /// The last event's time.
    pub duration: f64,
    pub markers: Vec<(f64, String)>,
    header: (u16, u16),
    keys: Vec<Key>,
}

impl Timeline {
    /// One pass over `path`.
    fn build(path: &Path) -> std::io::Result<Timeline> {
        let len = std::fs::metadata(path)?.len();
        let mut r = Reader::open(path, None)?;
        let (cols, rows) = r.header;
        let mut screen = Screen::new(rows, cols);
        let spacing = KEY_SPACING.max(len / MAX_KEYS as u64);
        let mut since_key = 0u64;
        let mut keys = Vec::new();
        let mut markers = Vec::new();
        let mut duration = 0.0f64;
        while let Some((e, next)) = r.next() {
            duration = duration.max(time_of(&e));
            if let Event::Marker(t, text) = &e
                && markers.len() < MAX_MARKERS
            {
                markers.push((*t, crate::text::safe_string(text)));
            }
            since_key += apply(&mut screen, &e);
            if since_key >= spacing && keys.len() < MAX_KEYS {
                keys.push(Key {
                    t: time_of(&e),
                    offset: next,
                    screen: screen.snapshot(),
                });
                since_key = 0;
            }
        }
        markers.extend(audit_markers(&path.with_extension("audit.jsonl")));
        markers.sort_by(|a, b| a.0.total_cmp(&b.0));
        markers.truncate(MAX_MARKERS);
        Ok(Timeline {
            len,
            started_unix: r.started_unix,
            duration,
            markers,
            header: (cols, rows),
            keys,
        })
    }

    /// The screen at `t` seconds into `path`, and where the reader stopped (the offset of
    /// the first event after `t`).
    fn screen_at(&self, path: &Path, t: f64) -> std::io::Result<(Screen, u64)> {
        let key = self.keys.iter().rev().find(|k| k.t <= t);
        let (mut screen, from) = match key {
            Some(k) => (k.screen.snapshot(), Some(k.offset)),
            None => (Screen::new(self.header.1, self.header.0), None),
        };
        let mut r = Reader::open(path, from)?;
        let mut at = r.offset;
        while let Some((e, next)) = r.next() {
            if time_of(&e) > t {
                break;
            }
            apply(&mut screen, &e);
            at = next;
        }
        Ok((screen, at))
    }
}

/// Joins, leaves, kicks and restarts from the session's audit trail (beside its
/// recording, same clock), as markers.
fn audit_markers(path: &Path) -> Vec<(f64, String)> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let (Some(t), Some(event)) = (v["t"].as_f64(), v["event"].as_str()) else {
            continue;
        };
        let who = v["client"].as_str().unwrap_or("");
        let text = match event {
            "joined" => format!("{who} joined ({})", v["role"].as_str().unwrap_or("")),
            "left" => format!("{who} left"),
            "kicked" => format!("{who} kicked"),
            "restarting" | "restarted" => format!("program {event}"),
            _ => continue,
        };
        out.push((t, crate::text::safe_string(&text)));
        if out.len() >= MAX_MARKERS {
            break;
        }
    }
    out
}

fn time_of(e: &Event) -> f64 {
    match e {
        Event::Output(t, _) | Event::Resize(t, ..) | Event::Marker(t, _) => *t,
    }
}

/// Feed one event to the screen: the output bytes it took.
fn apply(screen: &mut Screen, e: &Event) -> u64 {
    match e {
        Event::Output(_, s) => {
            screen.process(s.as_bytes());
            s.len() as u64
        }
        Event::Resize(_, cols, rows) => {
            screen.resize((*rows).max(1), (*cols).max(1));
            0
        }
        Event::Marker(..) => 0,
    }
}

/// A cast read line by line with byte offsets.
struct Reader {
    r: BufReader<File>,
    offset: u64,
    header: (u16, u16),
    started_unix: u64,
}

impl Reader {
    /// Open `path`; read from `from` (a line start after the header) or the first event.
    fn open(path: &Path, from: Option<u64>) -> std::io::Result<Reader> {
        let head = cast::Cast::open(path)?.header;
        let mut r = BufReader::new(File::open(path)?);
        let offset = match from {
            Some(o) => {
                r.seek(SeekFrom::Start(o))?;
                o
            }
            None => {
                let mut line = String::new();
                r.read_line(&mut line)? as u64
            }
        };
        Ok(Reader {
            r,
            offset,
            header: (head.cols, head.rows),
            started_unix: head.timestamp,
        })
    }

    /// The next event and the offset after it; lines that are not events are skipped, a
    /// torn last line ends it.
    fn next(&mut self) -> Option<(Event, u64)> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.r.read_line(&mut line).ok()?;
            if n == 0 || !line.ends_with('\n') {
                return None;
            }
            self.offset += n as u64;
            if let Some(e) = cast::parse_event(line.trim_end()) {
                return Some((e, self.offset));
            }
        }
    }
}

/// Timelines of the last recordings asked for.
pub struct Timelines {
    cache: Mutex<Vec<(PathBuf, Arc<Timeline>)>>,
    players: Arc<tokio::sync::Semaphore>,
}

impl Default for Timelines {
    fn default() -> Timelines {
        Timelines {
            cache: Mutex::default(),
            players: Arc::new(tokio::sync::Semaphore::new(MAX_PLAYERS)),
        }
    }
}

impl Timelines {
    /// `path`'s timeline (built again once the file has grown a keyframe's spacing).
    /// Blocking: call on a blocking thread.
    pub fn get(&self, path: &Path) -> std::io::Result<Arc<Timeline>> {
        let len = std::fs::metadata(path)?.len();
        if let Some((_, t)) = self.cache.lock().iter().find(|(p, _)| p == path)
            && len < t.len + KEY_SPACING
        {
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(Timeline::build(path)?);
        let mut cache = self.cache.lock();
        cache.retain(|(p, _)| p != path);
        cache.insert(0, (path.to_path_buf(), Arc::clone(&t)));
        cache.truncate(CACHED);
        Ok(t)
    }

    /// A place for one reader of a recording (a playback, a jump, a timeline), if there
    /// is one.
    pub fn player(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.players).try_acquire_owned().ok()
    }
}

/// The timeline as the page's JSON: `{started, duration, markers: [[t, text]...]}`.
pub fn timeline_json(t: &Timeline, live: bool) -> String {
    // A live session's recording goes on to now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let duration = if live {
        t.duration.max(now - t.started_unix as f64)
    } else {
        t.duration
    };
    serde_json::json!({
        "started": t.started_unix,
        "duration": duration,
        "live": live,
        "markers": t.markers.iter().map(|(at, text)| serde_json::json!([at, text])).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The screen at `t` as the page's `screen` message (blocking).
pub fn frame_at(timelines: &Timelines, path: &Path, t: f64) -> std::io::Result<String> {
    let tl = timelines.get(path)?;
    let (screen, _) = tl.screen_at(path, t.max(0.0))?;
    Ok(whole_at(&screen, t))
}

fn frame_of(screen: &Screen) -> render::Frame {
    render::frame(screen.vt(), screen.title())
}

fn whole_at(screen: &Screen, t: f64) -> String {
    let w = render::whole(&frame_of(screen));
    // `{"t":...,` + the rest of the frame's object.
    format!("{{\"t\":{t},{}", &w[1..])
}

/// Play `path` from `t` at `speed` into `tx` (blocking; ends at the recording's end, when
/// the page goes away, or when `stop` is set).
pub fn play(
    timelines: &Timelines,
    path: &Path,
    t: f64,
    speed: f64,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    stop: tokio_util::sync::CancellationToken,
) {
    let Ok(tl) = timelines.get(path) else {
        let _ = tx.blocking_send(super::end_event("unreadable"));
        return;
    };
    let Ok((mut screen, at)) = tl.screen_at(path, t) else {
        return;
    };
    let mut last = frame_of(&screen);
    if tx
        .blocking_send(sse("screen", &whole_at(&screen, t)))
        .is_err()
    {
        return;
    }
    let Ok(mut r) = Reader::open(path, Some(at)) else {
        return;
    };
    let gap = Duration::from_millis(1000 / super::live::FRAMES_PER_SECOND);
    let mut now_t = t;
    let mut sent = Instant::now();
    while let Some((e, _)) = r.next() {
        if stop.is_cancelled() || tx.is_closed() {
            return;
        }
        let et = time_of(&e);
        if et > now_t {
            let wait = Duration::from_secs_f64((et - now_t) / speed).min(MAX_PAUSE);
            // Show what is due before a pause.
            if wait >= gap {
                flush(&screen, &mut last, now_t, &tx);
                sent = Instant::now();
            }
            std::thread::sleep(wait);
            now_t = et;
        }
        apply(&mut screen, &e);
        if sent.elapsed() >= gap {
            if !flush(&screen, &mut last, now_t, &tx) {
                return;
            }
            sent = Instant::now();
        }
    }
    flush(&screen, &mut last, now_t, &tx);
    let _ = tx.blocking_send(super::end_event("finished"));
}

/// Send what changed since `last`, and the time: false once the page is gone.
fn flush(
    screen: &Screen,
    last: &mut render::Frame,
    t: f64,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
) -> bool {
    let now = frame_of(screen);
    let msg = if now.cols != last.cols || now.rows != last.rows {
        Some(sse("screen", &whole_at(screen, t)))
    } else {
        render::changed(last, &now).map(|rows| sse("rows", &rows))
    };
    *last = now;
    if let Some(m) = msg
        && tx.blocking_send(m).is_err()
    {
        return false;
    }
    tx.blocking_send(sse("time", &format!("{t}"))).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(lines: &[String]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.cast");
        let mut text =
            String::from("{\"version\":2,\"width\":20,\"height\":4,\"timestamp\":100}\n");
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    fn text_at(tl: &Timeline, p: &Path, t: f64) -> String {
        tl.screen_at(p, t).unwrap().0.text()
    }

    #[test]
    fn the_screen_at_any_moment_with_and_without_keyframes() {
        // Enough output for several keyframes: each second clears and writes its number.
        let big = "x".repeat(1 << 20);
        let mut lines = Vec::new();
        for i in 0..40 {
            lines.push(format!("[{i}.0,\"o\",\"\\u001b[2J\\u001b[H{big}\"]"));
            lines.push(format!("[{i}.5,\"o\",\"\\u001b[2J\\u001b[Hsecond {i}\"]"));
        }
        lines.push("[40.0,\"m\",\"a trigger\"]".into());
        lines.push("[41.0,\"r\",\"30x5\"]".into());
        lines.push("[41.5,\"o\",\"torn".into());
        let (_d, p) = cast(&lines);
        let tl = Timeline::build(&p).unwrap();
        assert!(
            tl.keys.len() >= 4 && tl.keys.len() <= MAX_KEYS,
            "{}",
            tl.keys.len()
        );
        assert_eq!(tl.duration, 41.0);
        assert_eq!(tl.markers, [(40.0, "a trigger".to_string())]);
        assert_eq!(tl.started_unix, 100);
        for i in [0, 7, 23, 39] {
            assert_eq!(text_at(&tl, &p, i as f64 + 0.7), format!("second {i}"));
        }
        assert!(text_at(&tl, &p, 12.2).starts_with("xxxx"));
        // Before anything: blank; after the end: the last screen, at the last size.
        assert_eq!(text_at(&tl, &p, -1.0), "");
        let (end, _) = tl.screen_at(&p, 1e9).unwrap();
        assert_eq!(end.size(), (5, 30));
        // (The taller screen pulled a row back from the scrollback, as tmux does.)
        assert!(end.text().ends_with("second 39"), "{}", end.text());
        // The same as replaying everything into one model.
        let whole = cast::last_screen(&p).unwrap();
        assert_eq!(whole.text(), end.text());
    }
}
