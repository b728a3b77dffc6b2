//! Where tracing output goes, bounded: every line is capped at [`MAX_LINE`] bytes (so no
//! peer-supplied text, such as a bad control frame echoed in a decode error, can make one
//! huge line), and the background daemon's log file is size-capped and rotated
//! (`daemon.log`, `daemon.log.1`, ...), so nothing a stranger sends grows the disk without
//! bound.
//!
//! While a full-screen view (`hearth top`) owns the terminal, lines meant for stderr are
//! held back (the last [`MAX_HELD`], with a count of the rest) and written once it gives the
//! terminal back: a warning printed over the dashboard would garble it.
//!
//! Owns the writers only; what is logged, and how often, is the callers' business (see
//! `ssh::preauth` for the per-source gate).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;

/// Longest line written, in bytes (longer ones are cut, with a note).
pub const MAX_LINE: usize = 1024;

/// Size cap and rotation of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Bytes per file before it is rotated.
    pub max_bytes: u64,
    /// Files kept in all, the live one included.
    pub files: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 * 1024 * 1024,
            files: 3,
        }
    }
}

/// `line`, cut to [`MAX_LINE`] bytes on a character boundary, newline kept.
pub fn cap_line(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if line.len() <= MAX_LINE {
        return line.into();
    }
    let note = format!(" [... {} bytes cut]\n", line.len() - MAX_LINE);
    let mut end = MAX_LINE - note.len();
    // Back up to a UTF-8 character boundary.
    while end > 0 && (line[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    let mut out = line[..end].to_vec();
    out.extend_from_slice(note.as_bytes());
    out.into()
}

/// Lines held back while the terminal is taken, at most.
pub const MAX_HELD: usize = 100;

/// Lines kept for later: the newest [`MAX_HELD`], and how many older ones went.
#[derive(Debug, Default)]
struct Held {
    lines: VecDeque<Vec<u8>>,
    dropped: usize,
}

impl Held {
    fn push(&mut self, line: Vec<u8>) {
        if self.lines.len() == MAX_HELD {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }

    fn write_to(self, out: &mut impl Write) -> io::Result<()> {
        if self.dropped > 0 {
            writeln!(out, "({} earlier log lines dropped)", self.dropped)?;
        }
        for line in self.lines {
            out.write_all(&line)?;
        }
        out.flush()
    }
}

/// `Some` while stderr is held back.
static HELD: Mutex<Option<Held>> = Mutex::new(None);

/// Holds stderr's log lines back until dropped, then writes them (see the module doc).
#[must_use = "lines are held only while the guard lives"]
pub struct StderrHold(());

/// Holds tracing's stderr lines back while the returned guard lives.
pub fn hold_stderr() -> StderrHold {
    HELD.lock().get_or_insert_with(Held::default);
    StderrHold(())
}

impl Drop for StderrHold {
    fn drop(&mut self) {
        if let Some(held) = HELD.lock().take() {
            let _ = held.write_to(&mut io::stderr().lock());
        }
    }
}

/// Standard error, one capped line per write (tracing writes each event whole).
pub struct CappedStderr;

impl Write for CappedStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = cap_line(buf);
        if let Some(held) = HELD.lock().as_mut() {
            held.push(line.into_owned());
            return Ok(buf.len());
        }
        io::stderr().write_all(&line)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for CappedStderr {
    type Writer = CappedStderr;
    fn make_writer(&'a self) -> CappedStderr {
        CappedStderr
    }
}

/// A log file that rotates when it reaches its cap: `path` -> `path.1` -> ... and the
/// oldest is removed. Files are 0600.
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    rotation: Rotation,
    file: Option<File>,
    size: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl RotatingFile {
    pub fn open(path: PathBuf, rotation: Rotation) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            inner: Arc::new(Mutex::new(Inner {
                path,
                rotation,
                file: Some(file),
                size,
            })),
        })
    }
}

/// Whether `file` is what `path` names now (same device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Inner {
    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let keep = self.rotation.files.max(1);
        let _ = std::fs::remove_file(self.rotated(keep - 1));
        for n in (1..keep.saturating_sub(1)).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        if keep > 1 {
            std::fs::rename(&self.path, self.rotated(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        self.file = Some(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        // The daemon and its session hosts share the file: one of them may have rotated it
        // (follow the path), and the size is the file's, not what this process wrote.
        if let Some(f) = &self.file
            && !same_file(f, &self.path)
        {
            self.file = None;
        }
        if self.file.is_none() {
            self.file = Some(open_append(&self.path)?);
        }
        self.size = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(self.size, |m| m.len());
        if self.size > 0 && self.size + line.len() as u64 > self.rotation.max_bytes {
            self.rotate_once()?;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(line)?;
            self.size += line.len() as u64;
        }
        Ok(())
    }

    /// Rotate, unless another process just did (checked under a lock file, so two writers
    /// never rotate the same file twice).
    fn rotate_once(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(PathBuf::from(lock_path))?;
        // SAFETY: flock on a descriptor we own; released when `lock` closes.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        if self.file.as_ref().is_some_and(|f| same_file(f, &self.path)) {
            self.rotate()
        } else {
            // Someone else rotated: write to the new file.
            self.file = Some(open_append(&self.path)?);
            self.size = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
            Ok(())
        }
    }
}

/// One event's writer: writes the capped line under the file's lock.
pub struct RotatingWriter(Arc<Mutex<Inner>>);

impl Write for RotatingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().write_line(&cap_line(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = RotatingWriter;
    fn make_writer(&'a self) -> RotatingWriter {
        RotatingWriter(Arc::clone(&self.inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_with_a_note() {
        assert_eq!(&*cap_line(b"short\n"), b"short\n");
        let long = "é".repeat(5000) + "\n";
        let cut = cap_line(long.as_bytes());
        assert!(cut.len() <= MAX_LINE);
        let text = std::str::from_utf8(&cut).expect("valid UTF-8");
        assert!(text.ends_with("bytes cut]\n"), "{text}");
    }

    #[test]
    fn held_lines_keep_the_newest_and_count_the_rest() {
        let mut held = Held::default();
        for n in 0..MAX_HELD + 5 {
            held.push(format!("line {n}\n").into_bytes());
        }
        let mut out = Vec::new();
        held.write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "(5 earlier log lines dropped)");
        assert_eq!(lines[1], "line 5");
        assert_eq!(
            lines.last(),
            Some(&format!("line {}", MAX_HELD + 4).as_str())
        );
        assert_eq!(lines.len(), MAX_HELD + 1);
    }

    #[test]
    fn two_processes_share_the_file_and_rotate_it_once_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let rotation = Rotation {
            max_bytes: 1000,
            files: 3,
        };
        // The daemon and a session host: two writers on one path.
        let a = RotatingFile::open(path.clone(), rotation.clone()).unwrap();
        let b = RotatingFile::open(path.clone(), rotation).unwrap();
        for n in 0..500 {
            let (log, who) = if n % 2 == 0 { (&a, 'a') } else { (&b, 'b') };
            let line = format!("{who}{n:05}{}\n", "x".repeat(93));
            log.make_writer().write_all(line.as_bytes()).unwrap();
        }
        let mut kept = String::new();
        for name in ["daemon.log", "daemon.log.1", "daemon.log.2"] {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.len() <= 1000, "{name}: {} bytes", text.len());
            kept.push_str(&text);
        }
        // Three files of ten lines: the newest 25 lines are all there (a second rotation
        // of the same file by the other writer would have thrown recent ones away).
        for n in 475..500 {
            let who = if n % 2 == 0 { 'a' } else { 'b' };
            assert!(kept.contains(&format!("{who}{n:05}")), "line {n} lost");
        }
        assert!(!dir.path().join("daemon.log.3").exists());
    }

    #[test]
    fn the_file_rotates_at_its_cap_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let log = RotatingFile::open(
            path.clone(),
            Rotation {
                max_bytes: 1000,
                files: 3,
            },
        )
        .unwrap();
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for _ in 0..1000 {
            log.make_writer().write_all(&line).unwrap();
        }
        let mut total = 0;
        for name in ["daemon.log", "daemon.log.1", "daemon.log.2"] {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len <= 1000, "{name}: {len}");
            total += len;
        }
        assert!(total >= 2000);
        assert!(!dir.path().join("daemon.log.3").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
