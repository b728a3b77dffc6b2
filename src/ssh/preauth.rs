//! Pre-auth defences shared by every listener of the daemon, modelled on OpenSSH's
//! `MaxStartups`, `PerSourceMaxStartups` and `PerSourcePenalties`:
//!
//! - a daemon-wide cap on unauthenticated connections, and a smaller cap per source (an
//!   IPv4 address, or an IPv6 /64, or wider blocks as configured: OpenSSH's
//!   `PerSourceNetBlockSize`), so one source cannot take every slot;
//! - random early drop (`MaxStartups start:rate:full`): past [`PreAuth`]'s `start` a new
//!   connection is refused with a probability that rises from 30 % to 100 % at the cap, so
//!   a flood thins out instead of meeting a wall that keeps everyone out;
//! - penalties per source: every connection that ends without logging in (keys refused, no
//!   SSH version line in time, the login grace reached, or closed by the client: OpenSSH's
//!   `noauth`) counts; past [`FREE_FAILURES`] they earn a back-off that doubles from 1 s
//!   to 60 s, during which the source's connections are closed before the SSH banner. A
//!   successful login clears the source's record;
//! - a log gate: lines about unauthenticated connections and refusals are written at most
//!   once per source per minute (with a count of what was left out), and at most
//!   [`LOG_LINES_PER_MINUTE`] such lines a minute in all, so a stranger cannot grow the log.
//!
//! Every table is bounded: penalty records by evicting the oldest, never by clearing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Failed connections from one source before the back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Penalty records kept; past this the oldest are evicted.
const MAX_RECORDS: usize = 10_000;
/// Sources the log gate remembers.
const MAX_LOG_SOURCES: usize = 4096;
/// The log gate's period per source.
pub const LOG_PERIOD: Duration = Duration::from_secs(60);
/// Gated lines per minute over all sources.
pub const LOG_LINES_PER_MINUTE: u32 = 120;

/// What limits apply to: an IPv4 address, or an IPv6 /64 (one host's usual allocation), or
/// a wider block ([`Prefixes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr, u8);

/// The network block sizes that make one source: IPv4 and IPv6 prefix lengths (OpenSSH's
/// `PerSourceNetBlockSize`, default 32:64 here; OpenSSH's is 32:128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefixes {
    pub v4: u8,
    pub v6: u8,
}

impl Default for Prefixes {
    fn default() -> Self {
        Prefixes { v4: 32, v6: 64 }
    }
}

impl Source {
    /// The source of `ip` with the default blocks (an address, an IPv6 /64).
    pub fn of(ip: IpAddr) -> Source {
        Source::within(ip, Prefixes::default())
    }

    pub fn within(ip: IpAddr, p: Prefixes) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let bits = p.v4.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                Source(IpAddr::V4((u32::from(a) & mask).into()), bits)
            }
            IpAddr::V6(a) => {
                let bits = p.v6.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                Source(IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)), bits)
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0, self.1) {
            (IpAddr::V4(a), 32) => write!(f, "{a}"),
            (a, bits) => write!(f, "{a}/{bits}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

/// Why a connection was closed before the banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The source is backing off after failed logins.
    Penalty(Duration),
    /// The source holds its share of unauthenticated connections.
    SourceFull,
    /// Every unauthenticated slot is taken.
    Full,
    /// Random early drop: many unauthenticated connections are open.
    Crowded,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Penalty(d) => write!(
                f,
                "backing off after failed logins ({}s left)",
                d.as_secs() + 1
            ),
            Refused::SourceFull => f.write_str("too many unauthenticated connections from it"),
            Refused::Full => f.write_str("too many unauthenticated connections (daemon-wide)"),
            Refused::Crowded => f.write_str(
                "many unauthenticated connections (daemon-wide): dropped at random, early",
            ),
        }
    }
}

/// One unauthenticated connection's place; dropping it frees the place.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    source: Source,
    starts: Arc<Mutex<HashMap<Source, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut starts = self.starts.lock();
        if let Some(n) = starts.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                starts.remove(&self.source);
            }
        }
    }
}

pub struct PreAuth {
    unauthenticated: Arc<Semaphore>,
    /// The cap (`full`), and where random early drop starts.
    full: usize,
    start: usize,
    per_source: usize,
    prefixes: Prefixes,
    /// Unauthenticated connections per source (entries only while some are open, so at
    /// most as many as the daemon-wide cap).
    starts: Arc<Mutex<HashMap<Source, usize>>>,
    records: Mutex<HashMap<Source, Record>>,
    log: Mutex<LogGate>,
}

impl PreAuth {
    /// `max_unauthenticated` is the cap; random early drop starts at half of it.
    pub fn new(max_unauthenticated: usize, per_source: usize, prefixes: Prefixes) -> PreAuth {
        let full = max_unauthenticated.max(1);
        PreAuth {
            unauthenticated: Arc::new(Semaphore::new(full)),
            full,
            start: full / 2,
            per_source: per_source.max(1),
            prefixes,
            starts: Arc::default(),
            records: Mutex::new(HashMap::new()),
            log: Mutex::new(LogGate::default()),
        }
    }

    /// The back-off after `failures` failed connections.
    pub fn backoff(failures: u32) -> Duration {
        if failures < FREE_FAILURES {
            return Duration::ZERO;
        }
        let exp = (failures - FREE_FAILURES).min(6);
        (Duration::from_secs(1) * 2u32.pow(exp)).min(MAX_BACKOFF)
    }

    fn penalty(&self, source: Source) -> Option<Duration> {
        let records = self.records.lock();
        let r = records.get(&source)?;
        let until = r.last + Self::backoff(r.failures);
        until.checked_duration_since(Instant::now())
    }

    /// How long `ip` must still wait after its failures, if at all.
    pub fn penalty_of(&self, ip: IpAddr) -> Option<Duration> {
        self.penalty(self.source(ip))
    }

    /// A hard wall at the cap only (tests of the other rules).
    #[cfg(test)]
    fn without_early_drop(mut self) -> Self {
        self.start = self.full;
        self
    }

    /// The source `ip` counts as.
    pub fn source(&self, ip: IpAddr) -> Source {
        Source::within(ip, self.prefixes)
    }

    /// Whether random early drop refuses a connection with `open` unauthenticated ones
    /// already: never below `start`, then with a probability from 30 % to 100 % at `full`.
    fn early_drop(&self, open: usize) -> bool {
        if open < self.start || self.full <= self.start {
            return open >= self.full;
        }
        let span = (self.full - self.start) as f64;
        let p = 0.3 + 0.7 * ((open - self.start) as f64 / span).min(1.0);
        rand::random::<f64>() < p
    }

    /// A place for one unauthenticated connection from `ip`, or why not.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, Refused> {
        let source = self.source(ip);
        if let Some(wait) = self.penalty(source) {
            return Err(Refused::Penalty(wait));
        }
        let mut starts = self.starts.lock();
        let n = starts.get(&source).copied().unwrap_or(0);
        if n >= self.per_source {
            return Err(Refused::SourceFull);
        }
        let open = self.full - self.unauthenticated.available_permits();
        if open < self.full && self.early_drop(open) {
            return Err(Refused::Crowded);
        }
        let permit = Arc::clone(&self.unauthenticated)
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        starts.insert(source, n + 1);
        Ok(Slot {
            _permit: permit,
            source,
            starts: Arc::clone(&self.starts),
        })
    }

    /// A connection from `ip` ended without logging in after trying (or holding its place
    /// until the login grace).
    pub fn failed(&self, ip: IpAddr) {
        let source = self.source(ip);
        let now = Instant::now();
        let failures = {
            let mut records = self.records.lock();
            if records.len() >= MAX_RECORDS && !records.contains_key(&source) {
                evict_oldest(&mut records, now);
            }
            let r = records.entry(source).or_insert(Record {
                failures: 0,
                last: now,
            });
            r.failures = r.failures.saturating_add(1);
            r.last = now;
            r.failures
        };
        if failures >= FREE_FAILURES
            && let Some(left_out) = self.log_gate(source)
        {
            tracing::warn!(%source, failures, backoff = ?Self::backoff(failures), left_out, "repeated failed logins; backing off");
        }
    }

    pub fn succeeded(&self, ip: IpAddr) {
        let source = self.source(ip);
        self.records.lock().remove(&source);
    }

    /// Whether a line about `source` may be logged now: `Some(n)` with the number of lines
    /// left out for it since its last one; `None`: leave this one out.
    pub fn log_gate(&self, source: Source) -> Option<u64> {
        self.log.lock().pass(source, Instant::now())
    }

    #[cfg(test)]
    fn records(&self) -> usize {
        self.records.lock().len()
    }
}

/// Make room: first forget records whose back-off is long over, then (still full) the
/// oldest eighth. Records that matter most (recent failures) are kept.
fn evict_oldest(records: &mut HashMap<Source, Record>, now: Instant) {
    records.retain(|_, r| now.duration_since(r.last) < MAX_BACKOFF * 10);
    if records.len() < MAX_RECORDS {
        return;
    }
    let mut ages: Vec<Instant> = records.values().map(|r| r.last).collect();
    let cut = ages.len() / 8;
    let (_, nth, _) = ages.select_nth_unstable(cut);
    let nth = *nth;
    records.retain(|_, r| r.last > nth);
}

/// At most one line per source per [`LOG_PERIOD`], and [`LOG_LINES_PER_MINUTE`] in all.
#[derive(Default)]
struct LogGate {
    sources: HashMap<Source, (Instant, u64)>,
    minute: Option<Instant>,
    lines: u32,
}

impl LogGate {
    fn pass(&mut self, source: Source, now: Instant) -> Option<u64> {
        if self
            .minute
            .is_none_or(|m| now.duration_since(m) >= LOG_PERIOD)
        {
            self.minute = Some(now);
            self.lines = 0;
        }
        if let Some((since, left_out)) = self.sources.get_mut(&source) {
            if now.duration_since(*since) < LOG_PERIOD || self.lines >= LOG_LINES_PER_MINUTE {
                *left_out += 1;
                return None;
            }
            let n = std::mem::take(left_out);
            *since = now;
            self.lines += 1;
            return Some(n);
        }
        if self.sources.len() >= MAX_LOG_SOURCES {
            self.sources
                .retain(|_, (since, _)| now.duration_since(*since) < LOG_PERIOD);
        }
        if self.sources.len() >= MAX_LOG_SOURCES || self.lines >= LOG_LINES_PER_MINUTE {
            return None;
        }
        self.sources.insert(source, (now, 0));
        self.lines += 1;
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> IpAddr {
        [10, 0, 0, last].into()
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(PreAuth::backoff(0), Duration::ZERO);
        assert_eq!(PreAuth::backoff(FREE_FAILURES - 1), Duration::ZERO);
        assert_eq!(PreAuth::backoff(FREE_FAILURES), Duration::from_secs(1));
        assert_eq!(PreAuth::backoff(FREE_FAILURES + 2), Duration::from_secs(4));
        assert_eq!(PreAuth::backoff(1000), MAX_BACKOFF);
    }

    #[test]
    fn failures_back_off_and_success_clears() {
        let g = PreAuth::new(10, 10, Prefixes::default()).without_early_drop();
        let ip = v4(1);
        for _ in 0..FREE_FAILURES {
            assert!(g.admit(ip).is_ok());
            g.failed(ip);
        }
        assert!(matches!(g.admit(ip), Err(Refused::Penalty(_))));
        assert!(g.admit(v4(2)).is_ok());
        g.succeeded(ip);
        assert!(g.admit(ip).is_ok());
    }

    #[test]
    fn one_source_gets_its_share_and_others_still_get_in() {
        let g = PreAuth::new(6, 2, Prefixes::default()).without_early_drop();
        let a = [g.admit(v4(1)).unwrap(), g.admit(v4(1)).unwrap()];
        assert_eq!(g.admit(v4(1)).err(), Some(Refused::SourceFull));
        let b: Vec<Slot> = (2..6).map(|i| g.admit(v4(i)).unwrap()).collect();
        assert_eq!(g.admit(v4(9)).err(), Some(Refused::Full));
        drop(a);
        assert!(g.admit(v4(1)).is_ok());
        drop(b);
        assert!(g.starts.lock().len() <= 1, "empty sources are forgotten");
    }

    #[test]
    fn early_drop_thins_a_crowd_instead_of_walling_everyone_out() {
        let g = PreAuth::new(1000, 10, Prefixes::default());
        let share = |open: usize| (0..4000).filter(|_| g.early_drop(open)).count() as f64 / 4000.0;
        assert_eq!(share(499), 0.0, "below the start nothing is dropped");
        let at_start = share(500);
        assert!((0.25..0.35).contains(&at_start), "{at_start}");
        let midway = share(750);
        assert!((0.6..0.7).contains(&midway), "{midway}");
        assert!(share(999) > 0.98);
        assert_eq!(share(1000), 1.0, "the cap is a wall");
    }

    #[test]
    fn net_blocks_group_sources_as_configured() {
        let wide = Prefixes { v4: 24, v6: 48 };
        assert_eq!(Source::within(v4(1), wide), Source::within(v4(200), wide));
        assert_eq!(Source::within(v4(1), wide).to_string(), "10.0.0.0/24");
        assert_ne!(Source::of(v4(1)), Source::of(v4(2)));
        assert_eq!(Source::of(v4(1)).to_string(), "10.0.0.1");
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::within(a, wide), Source::within(b, wide));
        let g = PreAuth::new(100, 2, wide).without_early_drop();
        let _held = [g.admit(v4(1)).unwrap(), g.admit(v4(2)).unwrap()];
        assert_eq!(g.admit(v4(3)).err(), Some(Refused::SourceFull));
    }

    #[test]
    fn ipv6_sources_are_slash_64s_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::of(mapped), Source::of(v4(1)));
    }

    #[test]
    fn the_penalty_table_evicts_the_oldest_and_never_forgets_everyone() {
        let g = PreAuth::new(10, 10, Prefixes::default()).without_early_drop();
        let bad = v4(7);
        for _ in 0..FREE_FAILURES + 3 {
            g.failed(bad);
        }
        // Many other sources fail once each, after `bad`: the table stays bounded...
        for i in 0..(MAX_RECORDS as u32 + 500) {
            g.failed(IpAddr::V4((0x0b00_0000 + i).into()));
        }
        assert!(g.records() <= MAX_RECORDS);
        // ...by evicting the oldest (here `bad`, the first), never by clearing.
        assert!(g.records() > MAX_RECORDS / 2);
        let newest = IpAddr::V4((0x0b00_0000 + MAX_RECORDS as u32 + 499).into());
        assert!(g.records.lock().contains_key(&Source::of(newest)));
    }

    #[test]
    fn the_log_gate_passes_one_line_per_source_per_period_with_a_count() {
        let mut gate = LogGate::default();
        let t0 = Instant::now();
        let s = Source::of(v4(1));
        assert_eq!(gate.pass(s, t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(gate.pass(s, t0 + Duration::from_secs(1)), None);
        }
        assert_eq!(gate.pass(Source::of(v4(2)), t0), Some(0), "other sources");
        assert_eq!(gate.pass(s, t0 + LOG_PERIOD), Some(1000));
        // Many sources: bounded lines per minute.
        let mut passed = 0;
        for i in 0..10_000u32 {
            if gate
                .pass(Source::of(IpAddr::V4(i.into())), t0 + LOG_PERIOD)
                .is_some()
            {
                passed += 1;
            }
        }
        assert!(passed < LOG_LINES_PER_MINUTE, "{passed}");
        assert!(gate.sources.len() <= MAX_LOG_SOURCES);
    }
}
