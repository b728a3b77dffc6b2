//! The text index of one recording, beside it in the recordings directory:
//! - `<id>.search.txt`: its output as plain lines ([`super::extract`]), in order;
//! - `<id>.search.map`: (byte offset in the text, seconds into the recording) pairs, one
//!   whenever a tenth of a second has passed since the last, 16 bytes each, looked up by
//!   binary search on the file (never loaded whole);
//! - `<id>.search.json`: how far the recording was read, and the extractor's state there,
//!   so a live session's index is extended with what it printed since, not rebuilt.
//!
//! The index is a cache: rebuilt when missing, of another version or longer than its
//! recording (a new file under the same name); cut back to what its metadata vouches for
//! (a crash mid-write); removed with its recording (`record::prune` counts it in the total
//! cap). Nothing needs it for correctness. Files are 0600 like the recordings. It must not
//! touch a live session: it reads the `.cast` the recorder writes (complete lines only).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::extract::Extractor;

/// Bumped when the files change shape or the extractor's output changes: indexes of
/// another version are rebuilt.
const VERSION: u32 = 1;
/// A map entry at most this often (seconds): a hit's time is this close.
const MAP_EVERY: f64 = 0.1;
const ENTRY: u64 = 16;
/// The suffixes of an index's files (for pruning).
pub const SUFFIXES: [&str; 3] = [".search.txt", ".search.map", ".search.json"];

/// What the index's metadata says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    version: u32,
    /// Bytes of the recording read into the index (whole lines).
    pub cast_read: u64,
    /// When the recording started (its header), seconds since the Unix epoch.
    pub started_unix: u64,
    /// Bytes of text and map entries the index vouches for.
    pub txt_len: u64,
    pub map_len: u64,
    /// The time of the last event read, and of the last map entry.
    pub last_t: f64,
    last_entry_t: Option<f64>,
    /// Lines of the recording that could not be read (skipped).
    pub bad_lines: u64,
    /// Where the line being written stands.
    pub extractor: Extractor,
}

/// The files of `id`'s index in `dir`.
pub struct Files {
    pub txt: PathBuf,
    pub map: PathBuf,
    pub meta: PathBuf,
}

pub fn files(dir: &Path, id: &str) -> Files {
    Files {
        txt: dir.join(format!("{id}.search.txt")),
        map: dir.join(format!("{id}.search.map")),
        meta: dir.join(format!("{id}.search.json")),
    }
}

/// Why a recording could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{0} is not an asciicast v2 recording")]
    NotACast(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Bring `id`'s index up to date with its recording `cast`, reading at most about
/// `max_bytes` of it now; the metadata, and whether the index covers all of the recording.
pub fn update(
    dir: &Path,
    id: &str,
    cast: &Path,
    max_bytes: u64,
) -> Result<(Meta, bool), IndexError> {
    let f = files(dir, id);
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| IndexError::Io(what, e)
    };
    let cast_len = std::fs::metadata(cast).map_err(io(cast))?.len();
    let mut meta = match read_meta(&f.meta) {
        Some(m) if m.cast_read <= cast_len => m,
        _ => fresh(cast)?,
    };
    if meta.cast_read >= cast_len {
        return Ok((meta, true));
    }
    let mut txt = open_at(&f.txt, meta.txt_len).map_err(io(&f.txt))?;
    let mut map = open_at(&f.map, meta.map_len * ENTRY).map_err(io(&f.map))?;
    let mut reader = BufReader::with_capacity(1 << 20, File::open(cast).map_err(io(cast))?);
    reader
        .seek(SeekFrom::Start(meta.cast_read))
        .map_err(io(cast))?;
    let mut line = Vec::new();
    let mut read = 0u64;
    let mut done = false;
    // The lines an event ends, as they go into the text file.
    let mut out: Vec<u8> = Vec::new();
    while read < max_bytes {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io(cast))? as u64;
        if n == 0 || line.last() != Some(&b'\n') {
            // The end, or a line still being written (or torn by a crash): not yet.
            done = true;
            break;
        }
        read += n;
        meta.cast_read += n;
        type Event<'a> = (f64, &'a str, String);
        let Ok((t, kind, data)) = serde_json::from_slice::<Event>(&line) else {
            meta.bad_lines += 1;
            continue;
        };
        meta.last_t = t;
        if kind != "o" {
            continue;
        }
        out.clear();
        meta.extractor.feed(&data, &mut |l| {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        });
        if out.is_empty() {
            continue;
        }
        if meta.last_entry_t.is_none_or(|e| t - e >= MAP_EVERY) {
            let mut entry = [0u8; ENTRY as usize];
            entry[..8].copy_from_slice(&meta.txt_len.to_le_bytes());
            entry[8..].copy_from_slice(&t.to_le_bytes());
            map.write_all(&entry).map_err(io(&f.map))?;
            meta.map_len += 1;
            meta.last_entry_t = Some(t);
        }
        txt.write_all(&out).map_err(io(&f.txt))?;
        meta.txt_len += out.len() as u64;
    }
    done |= meta.cast_read >= cast_len;
    txt.flush().map_err(io(&f.txt))?;
    map.flush().map_err(io(&f.map))?;
    write_meta(&f.meta, &meta).map_err(io(&f.meta))?;
    Ok((meta, done))
}

/// A new index's metadata, from the recording's header (the text and map start empty).
fn fresh(cast: &Path) -> Result<Meta, IndexError> {
    let not_a_cast = || IndexError::NotACast(cast.display().to_string());
    let mut first = Vec::new();
    BufReader::new(File::open(cast).map_err(|e| IndexError::Io(cast.display().to_string(), e))?)
        .take(64 * 1024)
        .read_until(b'\n', &mut first)
        .map_err(|e| IndexError::Io(cast.display().to_string(), e))?;
    let head: serde_json::Value = serde_json::from_slice(&first).map_err(|_| not_a_cast())?;
    if head["version"] != 2 || first.last() != Some(&b'\n') {
        return Err(not_a_cast());
    }
    Ok(Meta {
        version: VERSION,
        cast_read: first.len() as u64,
        started_unix: head["timestamp"].as_u64().unwrap_or(0),
        txt_len: 0,
        map_len: 0,
        last_t: 0.0,
        last_entry_t: None,
        bad_lines: 0,
        extractor: Extractor::default(),
    })
}

fn read_meta(path: &Path) -> Option<Meta> {
    let bytes = std::fs::read(path).ok()?;
    let meta: Meta = serde_json::from_slice(&bytes).ok()?;
    (meta.version == VERSION).then_some(meta)
}

fn write_meta(path: &Path, meta: &Meta) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(meta).map_err(std::io::Error::other)?)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// `path` opened for appending after its first `len` bytes (what the metadata vouches
/// for: anything after them was written by an update that did not finish).
fn open_at(path: &Path, len: u64) -> std::io::Result<BufWriter<File>> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    f.set_len(len)?;
    f.seek(SeekFrom::Start(len))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

/// The time map of an index, read by binary search on its file.
pub struct TimeMap {
    file: Option<File>,
    entries: u64,
}

impl TimeMap {
    pub fn open(dir: &Path, id: &str, meta: &Meta) -> TimeMap {
        TimeMap {
            file: File::open(files(dir, id).map).ok(),
            entries: meta.map_len,
        }
    }

    fn entry(&self, i: u64) -> Option<(u64, f64)> {
        let mut b = [0u8; ENTRY as usize];
        self.file.as_ref()?.read_exact_at(&mut b, i * ENTRY).ok()?;
        let offset = u64::from_le_bytes(b[..8].try_into().ok()?);
        let t = f64::from_le_bytes(b[8..].try_into().ok()?);
        Some((offset, t))
    }

    /// Seconds into the recording of the line at text offset `offset`.
    pub fn time_at(&self, offset: u64) -> f64 {
        // The last entry at or before the offset.
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some((o, _)) if o <= offset => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1)
            .and_then(|i| self.entry(i))
            .map_or(0.0, |(_, t)| t)
    }

    /// The text offset of the first line printed at or after `t` seconds.
    pub fn offset_at(&self, t: f64) -> u64 {
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some((_, et)) if et < t => lo = mid + 1,
                _ => hi = mid,
            }
        }
        // The entry before covers lines up to this one's offset: start there.
        lo.checked_sub(1)
            .and_then(|i| self.entry(i))
            .map_or(0, |(o, _)| o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(dir: &Path, events: &[&str]) -> PathBuf {
        let p = dir.join("abc.cast");
        let mut text =
            String::from("{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1000}\n");
        for e in events {
            text.push_str(e);
            text.push('\n');
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    fn text(dir: &Path) -> String {
        std::fs::read_to_string(files(dir, "abc").txt).unwrap()
    }

    #[test]
    fn an_index_grows_with_its_recording_and_maps_lines_to_times() {
        let dir = tempfile::tempdir().unwrap();
        let p = cast(
            dir.path(),
            &[
                r#"[0.5, "o", "first li"]"#,
                r#"[0.55, "o", "ne\r\nsecond\r\n"]"#,
            ],
        );
        let (meta, done) = update(dir.path(), "abc", &p, u64::MAX).unwrap();
        assert!(done);
        assert_eq!(text(dir.path()), "first line\nsecond\n");
        assert_eq!(meta.started_unix, 1000);
        // More output, a torn line at the end (being written): read up to it only.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"[7.25, \"o\", \"third\\r\\n\"]\nnot json\n[9.0, \"o\", \"torn")
            .unwrap();
        let (meta, _) = update(dir.path(), "abc", &p, u64::MAX).unwrap();
        assert_eq!(text(dir.path()), "first line\nsecond\nthird\n");
        assert_eq!(meta.bad_lines, 1);
        let map = TimeMap::open(dir.path(), "abc", &meta);
        assert_eq!(map.time_at(0), 0.55);
        assert_eq!(map.time_at(11), 0.55);
        assert_eq!(map.time_at(18), 7.25);
        // Where lines printed at or after a time start: never later than the first.
        assert_eq!(map.offset_at(5.0), 0);
        assert_eq!(map.offset_at(7.25), 0);
        assert_eq!(map.offset_at(7.3), 18);
        // The torn line completed later is read then.
        f.write_all(b" end\\r\\n\"]\n").unwrap();
        update(dir.path(), "abc", &p, u64::MAX).unwrap();
        assert_eq!(text(dir.path()), "first line\nsecond\nthird\ntorn end\n");
    }

    #[test]
    fn a_half_written_index_is_cut_back_and_a_replaced_recording_rebuilds_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = cast(dir.path(), &[r#"[0.5, "o", "one\r\n"]"#]);
        update(dir.path(), "abc", &p, u64::MAX).unwrap();
        // Text the metadata does not vouch for (a crash mid-update) goes.
        let f = files(dir.path(), "abc");
        let mut t = OpenOptions::new().append(true).open(&f.txt).unwrap();
        t.write_all(b"junk\n").unwrap();
        let mut c = OpenOptions::new().append(true).open(&p).unwrap();
        c.write_all(b"[1.0, \"o\", \"two\\r\\n\"]\n").unwrap();
        update(dir.path(), "abc", &p, u64::MAX).unwrap();
        assert_eq!(text(dir.path()), "one\ntwo\n");
        // A shorter recording under the same name: a new index.
        let p = cast(dir.path(), &[r#"[0.1, "o", "x\r\n"]"#]);
        update(dir.path(), "abc", &p, u64::MAX).unwrap();
        assert_eq!(text(dir.path()), "x\n");
        // Not a recording at all: a clear error.
        std::fs::write(&p, "garbage\n").unwrap();
        std::fs::remove_file(&f.meta).unwrap();
        let e = update(dir.path(), "abc", &p, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("not an asciicast"), "{e}");
    }
}
