//! The menu trigger detector: a pure state machine over one client's input bytes.
//!
//! The trigger (default `!>`) typed within a window (default 250 ms, measured from its first
//! byte) opens the menu, and its bytes are swallowed. Anything else is forwarded unchanged
//! and in order: a partial trigger is held back only until the next byte shows it is not
//! the trigger, or until the window expires ([`Detector::expire`]). Inside a bracketed
//! paste (`ESC[200~` … `ESC[201~`) the trigger is literal text. No I/O, no clock: the caller
//! passes `now`.

use std::time::{Duration, Instant};

const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes for the PTY.
    Forward(Vec<u8>),
    /// The trigger was typed: open the menu.
    Open,
    /// Bytes that followed the trigger in the same read: they belong to the menu.
    Menu(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Detector {
    trigger: Vec<u8>,
    window: Duration,
    held: Vec<u8>,
    held_since: Option<Instant>,
    in_paste: bool,
    /// The last few bytes seen, to spot paste brackets split across reads.
    recent: Vec<u8>,
}

impl Detector {
    /// `trigger` must not be empty.
    pub fn new(trigger: &[u8], window: Duration) -> Detector {
        assert!(!trigger.is_empty(), "empty menu trigger");
        Detector {
            trigger: trigger.to_vec(),
            window,
            held: Vec::new(),
            held_since: None,
            in_paste: false,
            recent: Vec::with_capacity(PASTE_START.len()),
        }
    }

    /// When held bytes must be released if nothing else arrives.
    pub fn deadline(&self) -> Option<Instant> {
        self.held_since.map(|t| t + self.window)
    }

    /// Release held bytes whose window has passed.
    pub fn expire(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.deadline() {
            Some(d) if now >= d => {
                self.held_since = None;
                Some(std::mem::take(&mut self.held))
            }
            _ => None,
        }
    }

    pub fn feed(&mut self, now: Instant, input: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        let mut out = self.expire(now).unwrap_or_default();
        for (i, &b) in input.iter().enumerate() {
            self.track_paste(b);
            if self.in_paste {
                out.append(&mut self.held);
                self.held_since = None;
                out.push(b);
                continue;
            }
            if b == self.trigger[self.held.len()] {
                if self.held.is_empty() {
                    self.held_since = Some(now);
                }
                self.held.push(b);
                if self.held.len() == self.trigger.len() {
                    self.held.clear();
                    self.held_since = None;
                    if !out.is_empty() {
                        events.push(Event::Forward(std::mem::take(&mut out)));
                    }
                    events.push(Event::Open);
                    let rest = &input[i + 1..];
                    if !rest.is_empty() {
                        events.push(Event::Menu(rest.to_vec()));
                    }
                    return events;
                }
                continue;
            }
            // Not the trigger after all: release what was held, then look at `b` afresh.
            out.append(&mut self.held);
            self.held_since = None;
            if b == self.trigger[0] {
                self.held.push(b);
                self.held_since = Some(now);
            } else {
                out.push(b);
            }
        }
        if !out.is_empty() {
            events.push(Event::Forward(out));
        }
        events
    }

    fn track_paste(&mut self, b: u8) {
        if self.recent.len() == PASTE_START.len() {
            self.recent.remove(0);
        }
        self.recent.push(b);
        if self.recent == PASTE_START {
            self.in_paste = true;
        } else if self.recent == PASTE_END {
            self.in_paste = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: Duration = Duration::from_millis(250);

    fn run(d: &mut Detector, packets: &[(u64, &[u8])]) -> Vec<Event> {
        let t0 = Instant::now();
        let mut all = Vec::new();
        for (ms, p) in packets {
            all.extend(d.feed(t0 + Duration::from_millis(*ms), p));
        }
        all
    }

    #[test]
    fn trigger_within_the_window_opens_and_is_swallowed() {
        let mut d = Detector::new(b"!>", W);
        let ev = run(&mut d, &[(0, b"ab!"), (100, b">jk")]);
        assert_eq!(
            ev,
            vec![
                Event::Forward(b"ab".to_vec()),
                Event::Open,
                Event::Menu(b"jk".to_vec())
            ]
        );
    }

    #[test]
    fn bang_then_other_is_forwarded_in_order() {
        let mut d = Detector::new(b"!>", W);
        let ev = run(&mut d, &[(0, b"!"), (10, b"x")]);
        assert_eq!(ev, vec![Event::Forward(b"!x".to_vec())]);
        let ev = run(&mut d, &[(0, b"!!>")]);
        assert_eq!(ev, vec![Event::Forward(b"!".to_vec()), Event::Open]);
    }

    #[test]
    fn a_lone_bang_is_released_when_the_window_expires() {
        let mut d = Detector::new(b"!>", W);
        let t0 = Instant::now();
        assert!(d.feed(t0, b"!").is_empty());
        assert_eq!(d.deadline(), Some(t0 + W));
        assert_eq!(d.expire(t0 + W / 2), None);
        assert_eq!(d.expire(t0 + W), Some(b"!".to_vec()));
        // And a late `>` is just text.
        let ev = run(&mut d, &[(0, b"!"), (300, b">")]);
        assert_eq!(ev, vec![Event::Forward(b"!>".to_vec())]);
    }

    #[test]
    fn inside_a_bracketed_paste_the_trigger_is_literal() {
        let mut d = Detector::new(b"!>", W);
        let ev = run(&mut d, &[(0, b"\x1b[200~echo a!"), (1, b">b\x1b[201~")]);
        let fwd: Vec<u8> = ev
            .iter()
            .flat_map(|e| match e {
                Event::Forward(b) => b.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(fwd, b"\x1b[200~echo a!>b\x1b[201~".to_vec());
        // After the paste the trigger works again.
        assert_eq!(run(&mut d, &[(0, b"!>")]), vec![Event::Open]);
    }

    fn reassemble(events: &[Event], trigger: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            match e {
                Event::Forward(b) | Event::Menu(b) => out.extend(b),
                Event::Open => out.extend(trigger),
            }
        }
        out
    }

    proptest! {
        /// Apart from the swallowed trigger, no byte is lost, reordered or duplicated,
        /// whatever the packet split and the timing.
        #[test]
        fn no_byte_is_lost_reordered_or_duplicated(
            input in proptest::collection::vec(
                prop_oneof![Just(b'!'), Just(b'>'), Just(b'a'), Just(0x1bu8), Just(b'['), Just(b'2'), Just(b'0'), Just(b'~'), any::<u8>()],
                0..200),
            cuts in proptest::collection::vec(0usize..200, 0..20),
            gaps in proptest::collection::vec(0u64..600, 0..21),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort();
            cuts.dedup();
            let mut d = Detector::new(b"!>", W);
            let t0 = Instant::now();
            let mut now = t0;
            let mut events = Vec::new();
            let mut start = 0;
            let mut bounds = cuts.clone();
            bounds.push(input.len());
            for (i, end) in bounds.into_iter().enumerate() {
                now += Duration::from_millis(*gaps.get(i).unwrap_or(&0));
                if let Some(b) = d.expire(now) {
                    events.push(Event::Forward(b));
                }
                let packet = &input[start..end];
                start = end;
                let ev = d.feed(now, packet);
                // After an Open the menu owns the rest; model a menu that closes at once.
                events.extend(ev);
            }
            if let Some(b) = d.expire(now + Duration::from_secs(10)) {
                events.push(Event::Forward(b));
            }
            prop_assert_eq!(reassemble(&events, b"!>"), input);
        }
    }
}
