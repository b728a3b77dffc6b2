//! `grep`: search everything any session printed, live or ended, in about a second.
//!
//! Each recording gets a text index beside it ([`index`]: the output as plain lines, as a
//! terminal showed them ([`extract`]), and a time map), built the first time it is
//! searched and extended with what a live session printed since; the search itself is a
//! ripgrep-style scan of those lines ([`scan`]). Sessions are searched most recently
//! written first, and a call returns its hits after a fraction of a second with a cursor
//! to go on from, so the first hit shows at once and memory stays one chunk whatever the
//! store's size.
//!
//! Owns the index files and the search; reads recordings and history records, and must
//! not touch a live session (it reads the `.cast` its recorder writes).

pub mod extract;
pub mod index;
pub mod scan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth_rpc::{ApiError, SearchBatch, SearchCursor, SearchHit, SearchRequest, SearchScope};
use regex::bytes::{Regex, RegexBuilder};

/// A call returns once it has hits and has run this long...
const FIRST_HITS: Duration = Duration::from_millis(30);
/// ...or after this long in any case (with a cursor).
const CALL_BUDGET: Duration = Duration::from_millis(300);
/// Hits in one batch at most.
const BATCH: usize = 500;
/// Bytes of hits (lines and context) in one batch at most: a reply stays far below the
/// transport's 16 MiB frame, even JSON-escaped.
const BATCH_BYTES: usize = 2 << 20;
/// Recording bytes indexed between two looks at the clock.
const INDEX_STEP: u64 = 32 << 20;
/// The longest pattern, and the most context.
const MAX_PATTERN: usize = 4096;
const MAX_CONTEXT: u32 = 20;
/// Regexes are bounded like profiles' (a search cannot make the daemon build a huge
/// automaton).
const REGEX_SIZE: usize = 4 << 20;
/// A repeat of the last hit's line within this many seconds is the same hit.
const REPEAT_WITHIN: f64 = 60.0;

/// Indexes are written one at a time (two searches never extend one index at once).
static UPDATING: parking_lot::Mutex<()> = parking_lot::const_mutex(());

/// A recording that may be searched.
#[derive(Debug, Clone)]
struct Candidate {
    id: String,
    name: Option<String>,
    live: bool,
    cast: PathBuf,
}

/// Compile `grep`'s pattern: bounded, multi-line (`^`/`$` at line ends).
pub fn compile(pattern: &str, ignore_case: bool) -> Result<Regex, ApiError> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN {
        return Err(ApiError::invalid(format!(
            "the pattern must be 1 to {MAX_PATTERN} bytes"
        )));
    }
    RegexBuilder::new(pattern)
        .multi_line(true)
        .case_insensitive(ignore_case)
        .size_limit(REGEX_SIZE)
        .build()
        .map_err(|e| ApiError::invalid(format!("not a valid regex: {e}")))
}

/// One call's worth of search in the recordings directory `dir`: `live` maps running
/// sessions to their names now, `names` every recorded session to the name it had.
pub fn run(
    dir: &Path,
    req: &SearchRequest,
    cursor: Option<SearchCursor>,
    live: &HashMap<String, Option<String>>,
    names: &HashMap<String, Option<String>>,
) -> Result<SearchBatch, ApiError> {
    let started = Instant::now();
    let re = compile(&req.pattern, req.ignore_case)?;
    if req.context > MAX_CONTEXT {
        return Err(ApiError::invalid(format!(
            "context: at most {MAX_CONTEXT} lines"
        )));
    }
    if req.max == Some(0) {
        return Err(ApiError::invalid("max: at least 1"));
    }
    let all = candidates(dir, req, live, names)?;
    let mut cursor = cursor.unwrap_or_else(|| SearchCursor {
        sessions: all.iter().map(|c| c.id.clone()).collect(),
        offset: 0,
        found: 0,
        last: None,
    });
    let by_id: HashMap<&str, &Candidate> = all.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut batch = SearchBatch {
        hits: Vec::new(),
        next: None,
        warnings: Vec::new(),
    };
    // Bytes of the hits in the batch.
    let mut size = 0usize;
    while let Some(id) = cursor.sessions.first().cloned() {
        // Gone since the search started (pruned): nothing to search.
        let Some(c) = by_id.get(id.as_str()) else {
            cursor.sessions.remove(0);
            cursor.offset = 0;
            continue;
        };
        let enough = |b: &SearchBatch, c: &SearchCursor, size: usize| {
            full(b, size)
                || req.max.is_some_and(|m| c.found >= m)
                || (!b.hits.is_empty() && started.elapsed() >= FIRST_HITS)
                || started.elapsed() >= CALL_BUDGET
        };
        match search_one(
            dir,
            c,
            req,
            &re,
            &mut cursor,
            (&mut batch, &mut size),
            started,
        ) {
            Ok(true) => {
                cursor.sessions.remove(0);
                cursor.offset = 0;
            }
            Ok(false) => {}
            Err(why) => {
                batch.warnings.push(format!("skipped session {id}: {why}"));
                cursor.sessions.remove(0);
                cursor.offset = 0;
            }
        }
        if req.max.is_some_and(|m| cursor.found >= m) {
            return Ok(batch);
        }
        if enough(&batch, &cursor, size) {
            break;
        }
    }
    if !cursor.sessions.is_empty() {
        batch.next = Some(cursor);
    }
    Ok(batch)
}

/// Search one recording from the cursor's offset: whether it is done with.
/// Whether a batch holds as many hits, or as many bytes of them, as one reply takes.
fn full(batch: &SearchBatch, size: usize) -> bool {
    batch.hits.len() >= BATCH || size >= BATCH_BYTES
}

fn search_one(
    dir: &Path,
    c: &Candidate,
    req: &SearchRequest,
    re: &Regex,
    cursor: &mut SearchCursor,
    (batch, size): (&mut SearchBatch, &mut usize),
    started: Instant,
) -> Result<bool, index::IndexError> {
    // Bring its index up to date, a step at a time (a call has a budget).
    let meta = loop {
        let (meta, done) = {
            let _one = UPDATING.lock();
            index::update(dir, &c.id, &c.cast, INDEX_STEP)?
        };
        if done {
            break meta;
        }
        if started.elapsed() >= CALL_BUDGET {
            return Ok(false);
        }
    };
    if cursor.offset == 0 && meta.bad_lines > 0 {
        batch.warnings.push(format!(
            "session {}: {} line(s) of its recording could not be read and were skipped",
            c.id, meta.bad_lines
        ));
    }
    let map = index::TimeMap::open(dir, &c.id, &meta);
    let since = req.since_unix.map(|s| s as f64 - meta.started_unix as f64);
    let until = req.until_unix.map(|u| u as f64 - meta.started_unix as f64);
    let from = since.map_or(0, |s| map.offset_at(s)).max(cursor.offset);
    let to = until.map_or(meta.txt_len, |u| map.offset_at(u).max(from));
    let to = if until.is_some_and(|u| u > meta.last_t) {
        meta.txt_len
    } else {
        to
    };
    let files = index::files(dir, &c.id);
    let deadline = started + CALL_BUDGET;
    let context = req.context as usize;
    let mut on_hit = |h: scan::Hit| {
        let t = map.time_at(h.offset);
        if since.is_some_and(|s| t < s) || until.is_some_and(|u| t >= u) {
            return true;
        }
        report(c, &meta, t, h, cursor, batch, size);
        !(full(batch, *size)
            || req.max.is_some_and(|m| cursor.found >= m)
            || started.elapsed() >= FIRST_HITS)
    };
    match scan::scan(&files.txt, (from, to), re, context, deadline, &mut on_hit) {
        Ok(scan::Stopped::At(at)) => {
            cursor.offset = at;
            return Ok(false);
        }
        Ok(scan::Stopped::End) => {}
        Err(e) => return Err(index::IndexError::Io(files.txt.display().to_string(), e)),
    }
    // The line it is writing now (a prompt, a progress line) counts too.
    let pending = meta.extractor.pending();
    if !pending.is_empty()
        && to == meta.txt_len
        && until.is_none_or(|u| meta.last_t < u)
        && since.is_none_or(|s| meta.last_t >= s)
        && re.is_match(pending.as_bytes())
    {
        let before = scan::last_lines(&files.txt, meta.txt_len, context)
            .map_err(|e| index::IndexError::Io(files.txt.display().to_string(), e))?;
        let hit = scan::Hit {
            offset: meta.txt_len,
            line: pending,
            before,
            after: Vec::new(),
        };
        report(c, &meta, meta.last_t, hit, cursor, batch, size);
    }
    Ok(true)
}

/// Add a hit to the batch, or count it as a repeat of the last one.
fn report(
    c: &Candidate,
    meta: &index::Meta,
    t: f64,
    h: scan::Hit,
    cursor: &mut SearchCursor,
    batch: &mut SearchBatch,
    size: &mut usize,
) {
    if let Some((session, line, at)) = &cursor.last
        && *session == c.id
        && *line == h.line
        && t - at <= REPEAT_WITHIN
    {
        // Counted on the hit it repeats, if that one is still in this batch.
        if let Some(prev) = batch.hits.last_mut()
            && prev.session == c.id
            && prev.line == h.line
        {
            prev.repeats += 1;
        }
        return;
    }
    let when =
        UNIX_EPOCH + Duration::from_secs(meta.started_unix) + Duration::from_secs_f64(t.max(0.0));
    cursor.found += 1;
    cursor.last = Some((c.id.clone(), h.line.clone(), t));
    *size += h.line.len()
        + h.before
            .iter()
            .chain(&h.after)
            .map(String::len)
            .sum::<usize>();
    batch.hits.push(SearchHit {
        session: c.id.clone(),
        name: c.name.clone(),
        live: c.live,
        time: humantime::format_rfc3339_millis(when).to_string(),
        offset_secs: (t * 10.0).round() / 10.0,
        line: h.line,
        before: h.before,
        after: h.after,
        repeats: 0,
    });
}

/// The recordings to search, most recently written first; every session named must be
/// found. Index files whose recording is gone are removed on the way.
fn candidates(
    dir: &Path,
    req: &SearchRequest,
    live: &HashMap<String, Option<String>>,
    names: &HashMap<String, Option<String>>,
) -> Result<Vec<Candidate>, ApiError> {
    let mut found: Vec<(SystemTime, Candidate)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "cannot read {}: {e}",
                dir.display()
            )));
        }
    };
    let mut orphans = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let Some(file) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(id) = index::SUFFIXES.iter().find_map(|s| file.strip_suffix(s)) {
            if !dir.join(format!("{id}.cast")).exists() {
                orphans.push(e.path());
            }
            continue;
        }
        let Some(id) = file.strip_suffix(".cast") else {
            continue;
        };
        let Ok(modified) = e.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        let is_live = live.contains_key(id);
        let keep = match req.scope {
            SearchScope::All => true,
            SearchScope::Live => is_live,
            SearchScope::Ended => !is_live,
        };
        // Written last before `since`: nothing in it is recent enough.
        let recent = req
            .since_unix
            .is_none_or(|s| modified >= UNIX_EPOCH + Duration::from_secs(s));
        if keep && recent {
            found.push((
                modified,
                Candidate {
                    id: id.to_string(),
                    name: live.get(id).or_else(|| names.get(id)).cloned().flatten(),
                    live: is_live,
                    cast: e.path(),
                },
            ));
        }
    }
    for o in orphans {
        let _ = std::fs::remove_file(o);
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let all: Vec<Candidate> = found.into_iter().map(|(_, c)| c).collect();
    if req.sessions.is_empty() {
        return Ok(all);
    }
    let mut picked = Vec::new();
    for want in &req.sessions {
        let matching: Vec<&Candidate> = all
            .iter()
            .filter(|c| c.id == *want || c.name.as_deref() == Some(want.as_str()))
            .collect();
        let matching = if matching.is_empty() {
            all.iter()
                .filter(|c| c.id.starts_with(want.as_str()))
                .collect()
        } else {
            matching
        };
        if matching.is_empty() {
            return Err(ApiError::not_found(format!(
                "no recording of a session '{want}' to search{}",
                match req.scope {
                    SearchScope::All => "",
                    SearchScope::Live => " among running sessions",
                    SearchScope::Ended => " among ended sessions",
                }
            )));
        }
        picked.extend(matching.into_iter().cloned());
    }
    // In the store's order, once each.
    let wanted: std::collections::HashSet<String> = picked.into_iter().map(|c| c.id).collect();
    Ok(all.into_iter().filter(|c| wanted.contains(&c.id)).collect())
}
