//! The daemon-wide event ring: sessions and the daemon publish typed events; every consumer
//! (the `events` RPC, the hooks runner, later the dashboard and MCP) reads from a sequence
//! number. Publishing never waits: the ring is bounded and drops its oldest events, and a
//! reader that fell behind is told how many it missed (`skipped`). Nothing in the output
//! path waits for a consumer.
//!
//! Owns the ring and sequence numbers only; it knows nothing of sessions' internals (the
//! daemon maps session events into [`EventKind`]s).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use hearth_rpc::{Event, EventKind};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::session::SessionEvent;
use crate::session::boundary::peer_role;

/// Default number of events kept.
pub const DEFAULT_CAPACITY: usize = 10_000;

pub struct EventRing {
    ring: Mutex<Ring>,
    /// The next sequence number to be assigned (wakes long polls).
    next: watch::Sender<u64>,
}

struct Ring {
    events: VecDeque<Event>,
    capacity: usize,
    next_seq: u64,
}

impl EventRing {
    pub fn new(capacity: usize) -> EventRing {
        EventRing {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                capacity: capacity.max(1),
                next_seq: 1,
            }),
            next: watch::channel(1).0,
        }
    }

    /// Append an event (never waits; the oldest goes when the ring is full).
    pub fn publish(&self, session: &str, name: Option<&str>, kind: EventKind) {
        self.publish_event(Event {
            seq: 0,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            session: session.to_string(),
            name: name.map(str::to_string),
            kind,
        });
    }

    /// Append an event that happened elsewhere (a session host's), keeping its time; it
    /// gets this ring's next sequence number.
    pub fn publish_event(&self, mut event: Event) {
        let next = {
            let mut r = self.ring.lock();
            event.seq = r.next_seq;
            r.next_seq += 1;
            if r.events.len() >= r.capacity {
                r.events.pop_front();
            }
            r.events.push_back(event);
            r.next_seq
        };
        self.next.send_replace(next);
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        *self.next.borrow()
    }

    /// Up to `max` events from `since` on that `keep` accepts, and where to continue. A
    /// `since` older than the ring yields a `skipped` event first.
    pub fn read(&self, since: u64, max: usize, keep: impl Fn(&Event) -> bool) -> (Vec<Event>, u64) {
        let r = self.ring.lock();
        let oldest = r.events.front().map_or(r.next_seq, |e| e.seq);
        let mut out = Vec::new();
        if since < oldest && since > 0 {
            out.push(Event {
                seq: oldest.saturating_sub(1),
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                session: String::new(),
                name: None,
                kind: EventKind::Skipped {
                    count: oldest - since,
                },
            });
        }
        let start = since.max(oldest);
        // Continue after the last event handed out, or from the end when all were seen.
        let mut next = r.next_seq;
        for e in r.events.iter().skip((start - oldest) as usize) {
            if keep(e) {
                if out.len() >= max {
                    next = e.seq;
                    break;
                }
                out.push(e.clone());
            }
        }
        (out, next)
    }

    /// Wait until an event with sequence number >= `seq` exists, or `limit` passes.
    pub async fn wait_for(&self, seq: u64, limit: Duration) {
        let mut rx = self.next.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|next| *next > seq)).await;
    }
}

/// A session's way into the ring. Events that happen before the session is registered
/// (output, even the exit of a quick command, can come first) are held, in order, and
/// published right after `created`, so a reader never sees them before it.
pub struct SessionSink {
    ring: Arc<EventRing>,
    id: String,
    name: Option<String>,
    /// `None` once open; until then, what happened (bounded).
    early: Mutex<Option<Vec<EventKind>>>,
}

/// Events held before `created` at most (a program that floods before then loses the rest).
const EARLY: usize = 1000;

impl SessionSink {
    pub fn new(ring: Arc<EventRing>, id: &str, name: Option<&str>) -> Arc<SessionSink> {
        Arc::new(SessionSink {
            ring,
            id: id.to_string(),
            name: name.map(str::to_string),
            early: Mutex::new(Some(Vec::new())),
        })
    }

    pub fn emit(&self, e: SessionEvent) {
        let kind = from_session(e);
        let mut early = self.early.lock();
        match early.as_mut() {
            Some(held) if held.len() < EARLY => held.push(kind),
            Some(_) => {}
            None => self.ring.publish(&self.id, self.name.as_deref(), kind),
        }
    }

    /// Publish `created`, then what was held, then go live.
    pub fn open(&self) {
        let mut early = self.early.lock();
        self.ring
            .publish(&self.id, self.name.as_deref(), EventKind::Created);
        for kind in early.take().unwrap_or_default() {
            self.ring.publish(&self.id, self.name.as_deref(), kind);
        }
    }
}

/// A session's event as the ring records it.
pub fn from_session(e: SessionEvent) -> EventKind {
    match e {
        SessionEvent::Exited(exit_code) => EventKind::Exited { exit_code },
        SessionEvent::Joined {
            client, role, addr, ..
        } => EventKind::Joined {
            client,
            role: peer_role(role),
            addr,
        },
        SessionEvent::Left { client } => EventKind::Left { client },
        SessionEvent::Kicked { client, by } => EventKind::Kicked { client, by },
        SessionEvent::Role { client, role, by } => EventKind::Role {
            client,
            role: peer_role(role),
            by,
        },
        SessionEvent::Lock { locked: true, by } => EventKind::Locked { by },
        SessionEvent::Lock { locked: false, by } => EventKind::Unlocked { by },
        SessionEvent::Title(title) => EventKind::Title { title },
        SessionEvent::Bell => EventKind::Bell,
        SessionEvent::Message { by, .. } => EventKind::Message { by },
        SessionEvent::Input { client } => EventKind::Input { client },
        SessionEvent::Match { trigger, text } => EventKind::Match { trigger, text },
        SessionEvent::Busy => EventKind::Busy,
        SessionEvent::Idle { idle } => EventKind::Idle {
            idle_ms: idle.as_millis() as u64,
        },
        SessionEvent::RecordingError(error) => EventKind::RecordingError { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.name()).collect()
    }

    #[test]
    fn events_are_numbered_filtered_and_resumable() {
        let ring = EventRing::new(100);
        ring.publish("a", None, EventKind::Created);
        ring.publish("b", Some("bee"), EventKind::Created);
        ring.publish("a", None, EventKind::Bell);
        let (all, next) = ring.read(1, 100, |_| true);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(next, 4);
        let (only_a, next) = ring.read(1, 100, |e| e.session == "a");
        assert_eq!(kinds(&only_a), ["created", "bell"]);
        assert_eq!(next, 4);
        let (two, next) = ring.read(1, 2, |_| true);
        assert_eq!((two.len(), next), (2, 3));
        let (rest, next) = ring.read(next, 10, |_| true);
        assert_eq!((kinds(&rest), next), (vec!["bell"], 4));
        let (none, next) = ring.read(4, 10, |_| true);
        assert!(none.is_empty() && next == 4);
    }

    #[test]
    fn a_reader_behind_the_ring_is_told_what_it_missed() {
        let ring = EventRing::new(3);
        for _ in 0..10 {
            ring.publish("a", None, EventKind::Bell);
        }
        let (events, next) = ring.read(1, 100, |_| true);
        assert_eq!(events[0].kind, EventKind::Skipped { count: 7 });
        assert_eq!(
            events[1..].iter().map(|e| e.seq).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert_eq!(next, 11);
    }

    #[test]
    fn events_serialise_flat_with_their_kind() {
        let ring = EventRing::new(10);
        ring.publish(
            "a",
            Some("agent"),
            EventKind::Joined {
                client: "al-1".into(),
                role: hearth_rpc::PeerRole::Owner,
                addr: "127.0.0.1:1".into(),
            },
        );
        let (e, _) = ring.read(1, 1, |_| true);
        let v = serde_json::to_value(&e[0]).unwrap();
        assert_eq!(v["kind"], "joined");
        assert_eq!(v["client"], "al-1");
        assert_eq!(v["role"], "owner");
        assert_eq!(v["seq"], 1);
    }
}
