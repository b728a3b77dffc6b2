//! The DVR commands: `tail`, `logs [--follow] [--since]`, `screen [--ansi]` (through the
//! control API) and `replay` (reads an asciicast file and plays it with its timing; space
//! pauses, q quits).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_rpc::{ApiError, HearthClient, OutputChunk, ReadFrom};
use serde_json::json;

use super::{Failure, call, ctx, output::Out};

/// Longest pause `replay` keeps between two events (idle gaps are capped).
const MAX_GAP: Duration = Duration::from_secs(2);

async fn read(
    client: &HearthClient,
    target: &str,
    from: ReadFrom,
    wait_ms: u32,
) -> Result<OutputChunk, Failure> {
    call(client.read(ctx(), target.to_string(), from, 1 << 20, wait_ms)).await
}

pub async fn tail(
    client: &HearthClient,
    out: Out,
    target: String,
    bytes: u64,
) -> Result<(), Failure> {
    let chunk = read(client, &target, ReadFrom::Tail(bytes), 0).await?;
    if out.json {
        out.value(
            json!({"data": String::from_utf8_lossy(&chunk.data), "next": chunk.next}),
            String::new,
        );
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&chunk.data)
            .context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
    }
    Ok(())
}

/// How `logs` reads.
pub struct LogsArgs {
    pub follow: bool,
    pub since: Option<Duration>,
    /// Only the last this many lines first.
    pub lines: Option<usize>,
    /// Stop following after this long.
    pub timeout: Option<Duration>,
}

pub async fn logs(
    client: &HearthClient,
    out: Out,
    target: String,
    how: LogsArgs,
) -> Result<(), Failure> {
    let follow = how.follow;
    if follow && out.json {
        return Err(ApiError::invalid("--follow streams text; use it without --json").into());
    }
    let deadline = how.timeout.map(|d| std::time::Instant::now() + d);
    let mut from = match how.since {
        Some(d) => ReadFrom::SinceSecs(d.as_secs().max(1)),
        None => ReadFrom::Start,
    };
    let mut strip = AnsiStrip::default();
    let mut text = Vec::new();
    let mut stdout = std::io::stdout().lock();
    if let Some(n) = how.lines {
        let (last, next) = last_lines(client, &target, n).await?;
        if out.json {
            text = last;
        } else {
            stdout.write_all(&last).context("cannot write to stdout")?;
            stdout.flush().context("cannot write to stdout")?;
        }
        from = ReadFrom::Offset(next);
    }
    // Without --follow: what was there when we asked, not a flood that keeps coming.
    let mut stop_at: Option<u64> = None;
    loop {
        let wait_ms = match (follow, deadline) {
            (false, _) => 0,
            (true, None) => 10_000,
            (true, Some(d)) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                left.as_millis().min(10_000) as u32
            }
        };
        let chunk = read(client, &target, from, wait_ms).await?;
        if !follow {
            stop_at = stop_at.or(chunk.end);
        }
        if chunk.skipped > 0 && !out.json {
            eprintln!(
                "[hearth] {} bytes of output are no longer retained",
                chunk.skipped
            );
        }
        let plain = strip.feed(&chunk.data);
        if out.json {
            text.extend_from_slice(&plain);
        } else {
            stdout.write_all(&plain).context("cannot write to stdout")?;
            stdout.flush().context("cannot write to stdout")?;
        }
        from = ReadFrom::Offset(chunk.next);
        let done = if follow {
            chunk.data.is_empty() && chunk.exited
        } else {
            chunk.data.is_empty() || stop_at.is_some_and(|end| chunk.next >= end)
        };
        if done {
            if out.json {
                out.value(
                    json!({"text": String::from_utf8_lossy(&text), "next": chunk.next,
                           "exited": chunk.exited, "exit_code": chunk.exit_code}),
                    String::new,
                );
            }
            return Ok(());
        }
    }
}

/// The last `n` lines of what a session printed so far (escape sequences stripped), and
/// the offset after them: reads back from the end, more each time, until it holds more
/// than `n` lines or all that is retained.
async fn last_lines(
    client: &HearthClient,
    target: &str,
    n: usize,
) -> Result<(Vec<u8>, u64), Failure> {
    let mut back: u64 = 64 * 1024;
    loop {
        // Everything from `back` bytes before the end to the end as it is now.
        let first = read(client, target, ReadFrom::Tail(back), 0).await?;
        let end = first.end.unwrap_or(first.next);
        let mut data = first.data;
        let mut next = first.next;
        let mut at_start = first.skipped == 0 && (data.len() as u64) < back.min(1 << 20);
        while next < end {
            let more = read(client, target, ReadFrom::Offset(next), 0).await?;
            if more.data.is_empty() {
                break;
            }
            data.extend_from_slice(&more.data);
            next = more.next;
        }
        at_start |= next <= back;
        let plain = AnsiStrip::default().feed(&data);
        let lines: Vec<&[u8]> = plain.split_inclusive(|&b| b == b'\n').collect();
        // A line cut at the front is not one of them unless it is the very start.
        if lines.len() > n || at_start || back >= MAX_BACK {
            let keep = lines.len().min(n);
            let text = lines[lines.len() - keep..].concat();
            return Ok((text, next));
        }
        back *= 4;
    }
}

/// How far back `logs --tail` reads at most (the retained output is 8 MiB by default).
const MAX_BACK: u64 = 64 << 20;

pub async fn screen(
    client: &HearthClient,
    out: Out,
    target: String,
    ansi: bool,
) -> Result<(), Failure> {
    let text = call(client.screen(ctx(), target, ansi)).await?;
    if out.json {
        out.value(json!({"screen": text}), String::new);
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .context("cannot write to stdout")?;
        if !ansi {
            stdout.write_all(b"\n").context("cannot write to stdout")?;
        }
    }
    Ok(())
}

/// The recording to replay: a file, or a session's recording.
pub async fn recording_path(client: &HearthClient, arg: &str) -> Result<PathBuf, Failure> {
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let info = match call(client.get(ctx(), arg.to_string())).await {
        // Only the start of a live session's id: an ended session's exact id or name wins
        // (as for `events` and `logs`).
        Ok(info) if info.id != arg && info.name.as_deref() != Some(arg) => {
            let ended = call(client.history(ctx(), Some(arg.to_string()), None))
                .await
                .ok()
                .and_then(|h| h.into_iter().next())
                .filter(|s| s.id == arg || s.name.as_deref() == Some(arg));
            match ended.and_then(|s| s.recording) {
                Some(r) => return Ok(PathBuf::from(r)),
                None => info,
            }
        }
        Ok(info) => info,
        // An ended session: its recording, if kept.
        Err(Failure::Api(e)) if e.kind == hearth_rpc::ErrorKind::NotFound => {
            let ended = call(client.history(ctx(), Some(arg.to_string()), None)).await?;
            let Some(s) = ended.into_iter().next() else {
                return Err(e.into());
            };
            return s.recording.map(PathBuf::from).ok_or_else(|| {
                ApiError::not_found(format!("session {} has ended; no recording is kept", s.id))
                    .into()
            });
        }
        Err(e) => return Err(e),
    };
    match info.recording {
        Some(p) => Ok(PathBuf::from(p)),
        None => Err(ApiError::not_found(format!(
            "session {} has no recording{}",
            info.id,
            info.recording_error
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ))
        .into()),
    }
}

/// Where `replay` starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum From {
    /// This far into the recording.
    Offset(Duration),
    /// At this time.
    At(std::time::SystemTime),
}

/// `--from`: seconds (`62.3`, `62.3s`, `+62.3s`, as `grep` prints them), a duration (`2m`,
/// `1h 5m`), or a time (RFC 3339).
pub fn parse_from(s: &str) -> Result<From, String> {
    let secs = s.trim().trim_start_matches('+');
    if let Ok(n) = secs.strip_suffix('s').unwrap_or(secs).parse::<f64>()
        && n.is_finite()
        && n >= 0.0
    {
        return Ok(From::Offset(Duration::from_secs_f64(n)));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(From::Offset(d));
    }
    humantime::parse_rfc3339_weak(s)
        .map(From::At)
        .map_err(|_| format!("{s:?}: give seconds (62.3s), a duration (2m) or a time (RFC 3339)"))
}

/// Play `path` on stdout with its timing at `speed`, starting at `from`.
pub fn replay(path: &Path, speed: f64, from: Option<From>) -> Result<(), Failure> {
    if !(speed > 0.0 && speed <= 1000.0) {
        return Err(ApiError::invalid("--speed must be above 0 and at most 1000").into());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.is_empty() {
        return Err(ApiError::state(format!(
            "nothing recorded in {} yet (a recording is written within a second)",
            path.display()
        ))
        .into());
    }
    let mut lines = text.lines();
    let header: serde_json::Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .filter(|h: &serde_json::Value| h["version"] == 2)
        .ok_or_else(|| {
            ApiError::invalid(format!("{} is not an asciicast v2 file", path.display()))
        })?;
    let from = match from {
        None => Duration::ZERO,
        Some(From::Offset(d)) => d,
        Some(From::At(t)) => {
            let start = std::time::UNIX_EPOCH
                + Duration::from_secs(header["timestamp"].as_u64().unwrap_or(0));
            t.duration_since(start).map_err(|_| {
                ApiError::invalid(format!(
                    "--from: the recording starts at {}, after that time",
                    humantime::format_rfc3339_seconds(start)
                ))
            })?
        }
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let _raw = if interactive { RawMode::enable() } else { None };
    let mut stdout = std::io::stdout().lock();
    // What the replayed program did to this terminal, so the end can undo it.
    let mut model = crate::session::screen::Screen::new(24, 80);
    let result = play(lines, &mut stdout, &mut model, (speed, from), interactive);
    let leave = if model.on_alternate_screen() {
        crate::session::screen::LEAVE_ALTERNATE
    } else {
        ""
    };
    stdout
        .write_all(format!("{leave}{}\r\n", crate::session::screen::RESTORE).as_bytes())
        .context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    result
}

/// Write the recording's output at its pace (space pauses, q stops).
fn play<'a>(
    lines: impl Iterator<Item = &'a str>,
    stdout: &mut impl Write,
    model: &mut crate::session::screen::Screen,
    (speed, from): (f64, Duration),
    interactive: bool,
) -> Result<(), Failure> {
    let mut prev = 0.0f64;
    let mut paused = false;
    for line in lines {
        let Ok(serde_json::Value::Array(ev)) = serde_json::from_str::<serde_json::Value>(line)
        else {
            continue;
        };
        let (Some(t), Some(kind)) = (
            ev.first().and_then(|t| t.as_f64()),
            ev.get(1).and_then(|k| k.as_str()),
        ) else {
            continue;
        };
        if kind != "o" {
            continue;
        }
        let data = ev.get(2).and_then(|d| d.as_str()).unwrap_or_default();
        if t >= from.as_secs_f64() {
            let gap =
                Duration::from_secs_f64(((t - prev).max(0.0) / speed).min(MAX_GAP.as_secs_f64()));
            let until = Instant::now() + gap;
            loop {
                if interactive {
                    match poll_key(
                        until
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(50)),
                    ) {
                        Some(' ') => paused = !paused,
                        Some('q') => return Ok(()),
                        _ => {}
                    }
                } else {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                }
                if !paused && Instant::now() >= until {
                    break;
                }
            }
        }
        prev = t.max(prev);
        model.process(data.as_bytes());
        stdout
            .write_all(data.as_bytes())
            .context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
    }
    Ok(())
}

fn poll_key(wait: Duration) -> Option<char> {
    use ratatui::crossterm::event::{self, Event, KeyCode};
    if event::poll(wait).ok()?
        && let Ok(Event::Key(k)) = event::read()
        && let KeyCode::Char(c) = k.code
    {
        return Some(c);
    }
    None
}

/// Raw terminal mode for `replay`'s keys; restored on drop (also on error paths).
struct RawMode;

impl RawMode {
    fn enable() -> Option<RawMode> {
        ratatui::crossterm::terminal::enable_raw_mode()
            .ok()
            .map(|()| RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = ratatui::crossterm::terminal::disable_raw_mode();
    }
}

/// Turns terminal output into plain text: escape sequences (CSI, OSC, two-byte ones) are
/// dropped, `\r\n` becomes `\n`, other control characters but tab go. Streaming: a
/// sequence split across reads is handled.
#[derive(Debug, Default)]
pub struct AnsiStrip {
    state: StripState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum StripState {
    #[default]
    Text,
    Cr,
    Esc,
    Csi,
    /// OSC/DCS/APC... string, until BEL or ST.
    Str,
    StrEsc,
}

impl AnsiStrip {
    pub fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        use StripState::*;
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            self.state = match (self.state, b) {
                (Text | Cr, 0x1b) => Esc,
                (Text | Cr, b'\r') => Cr,
                (Text | Cr, b'\n') => {
                    out.push(b'\n');
                    Text
                }
                (Text | Cr, b'\t') => {
                    out.push(b'\t');
                    Text
                }
                (Text | Cr, b) if b < 0x20 || b == 0x7f => Text,
                (Text | Cr, b) => {
                    out.push(b);
                    Text
                }
                (Esc, b'[') => Csi,
                (Esc, b']' | b'P' | b'X' | b'^' | b'_') => Str,
                (Esc, b'(' | b')' | b'*' | b'+' | b'#' | b'%') => Esc,
                (Esc, _) => Text,
                (Csi, 0x40..=0x7e) => Text,
                (Csi, _) => Csi,
                (Str, 0x07) => Text,
                (Str, 0x1b) => StrEsc,
                (Str, _) => Str,
                (StrEsc, b'\\') => Text,
                (StrEsc, _) => Str,
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_stripped_across_reads() {
        let mut s = AnsiStrip::default();
        let mut out = s.feed(b"\x1b[31mred\x1b[0m\r\nnext\x1b]0;ti");
        out.extend(s.feed(b"tle\x07 line\x1b[?2004h\x1b>done\r\n"));
        assert_eq!(String::from_utf8(out).unwrap(), "red\nnext linedone\n");
    }
}
