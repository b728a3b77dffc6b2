//! Pre-auth defences shared by every listener of the daemon, in the manner of OpenSSH's
//! MaxStartups and of fail2ban: a cap on concurrent unauthenticated connections, and a
//! growing back-off per source address after repeated failed logins (connections from it
//! are closed at once, before the SSH banner, until the back-off passes). A successful
//! login from an address clears its record. Memory is bounded: old records are pruned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Failed connections from one address before the back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Records kept before old ones are pruned.
const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

pub struct Guard {
    unauthenticated: Arc<Semaphore>,
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl Guard {
    pub fn new(max_unauthenticated: usize) -> Guard {
        Guard {
            unauthenticated: Arc::new(Semaphore::new(max_unauthenticated.max(1))),
            records: Mutex::new(HashMap::new()),
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

    /// `Err(remaining)` while `ip` is backing off.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let records = self.records.lock();
        let Some(r) = records.get(&ip) else {
            return Ok(());
        };
        let until = r.last + Self::backoff(r.failures);
        let now = Instant::now();
        if now < until {
            Err(until - now)
        } else {
            Ok(())
        }
    }

    /// A slot for one unauthenticated connection, or `None` when all are taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.unauthenticated).try_acquire_owned().ok()
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut records = self.records.lock();
        if records.len() >= MAX_RECORDS {
            let stale = Instant::now() - MAX_BACKOFF * 10;
            records.retain(|_, r| r.last > stale);
            if records.len() >= MAX_RECORDS {
                records.clear();
            }
        }
        let r = records.entry(ip).or_insert(Record {
            failures: 0,
            last: Instant::now(),
        });
        r.failures = r.failures.saturating_add(1);
        r.last = Instant::now();
        if r.failures >= FREE_FAILURES {
            tracing::warn!(%ip, failures = r.failures, backoff = ?Self::backoff(r.failures), "repeated failed logins; backing off");
        }
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.records.lock().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(Guard::backoff(0), Duration::ZERO);
        assert_eq!(Guard::backoff(FREE_FAILURES - 1), Duration::ZERO);
        assert_eq!(Guard::backoff(FREE_FAILURES), Duration::from_secs(1));
        assert_eq!(Guard::backoff(FREE_FAILURES + 2), Duration::from_secs(4));
        assert_eq!(Guard::backoff(1000), MAX_BACKOFF);
    }

    #[test]
    fn failures_back_off_and_success_clears() {
        let g = Guard::new(2);
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..FREE_FAILURES {
            assert!(g.check(ip).is_ok());
            g.failed(ip);
        }
        assert!(g.check(ip).is_err());
        assert!(g.check([10, 0, 0, 2].into()).is_ok());
        g.succeeded(ip);
        assert!(g.check(ip).is_ok());
        let a = g.admit();
        let b = g.admit();
        assert!(a.is_some() && b.is_some() && g.admit().is_none());
        drop(a);
        assert!(g.admit().is_some());
    }
}
