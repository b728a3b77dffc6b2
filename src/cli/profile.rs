//! `hearth profile test NAME FILE.cast`: replay a recording through a profile and print the
//! state timeline, reading the screen at the same moments a live session would (each
//! threshold of quiet after the latest output; `working` when output comes again after a
//! reading). The way to check and share a profile, and to check one against a recording.
//! Reads the config file and the recording only; no daemon.

use std::path::Path;

use hearth_rpc::ApiError;
use serde_json::json;

use super::Failure;
use super::output::Out;
use crate::session::cast::{Cast, Event};
use crate::session::profile::{self, AgentState, Profile, Seen};
use crate::session::screen::{Screen, Signals};

/// One change of state, `at` seconds into the recording.
struct Step {
    at: f64,
    from: AgentState,
    to: AgentState,
    text: Option<String>,
}

pub fn test(name: &str, cast: &Path, out: Out) -> Result<(), Failure> {
    let profiles = crate::daemon::config_file::load_profiles(&crate::paths::config_file())
        .map_err(|e| ApiError::invalid(format!("{e:#}")))?;
    let Some(profile) = profiles.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        return Err(ApiError::not_found(format!(
            "no profile named '{}' (there are: {}; yours in the config file come first)",
            crate::text::safe(name),
            names.join(", ")
        ))
        .into());
    };
    let (steps, detected) = timeline(profile, cast).map_err(|e| {
        ApiError::invalid(format!(
            "cannot read {}: {e}",
            crate::text::safe(&cast.display().to_string())
        ))
    })?;
    let steps_json: Vec<_> = steps
        .iter()
        .map(|s| json!({"at": s.at, "from": s.from.name(), "to": s.to.name(), "text": s.text}))
        .collect();
    out.value(
        json!({"profile": profile.name, "detected": detected, "steps": steps_json}),
        || {
            let mut lines: Vec<String> = steps
                .iter()
                .map(|s| {
                    let text = s
                        .text
                        .as_deref()
                        .map(|t| format!("  {t}"))
                        .unwrap_or_default();
                    crate::text::safe(&format!(
                        "{:>9.2}s  {} -> {}{text}",
                        s.at,
                        s.from.name(),
                        s.to.name()
                    ))
                    .into_owned()
                })
                .collect();
            if !detected {
                lines.push(format!(
                    "(its detect never matched this recording: a live session would not pick \
                     profile {})",
                    profile.name
                ));
            }
            if steps.is_empty() {
                lines.push("no state changes".into());
            }
            lines.join("\n")
        },
    );
    Ok(())
}

/// The states `profile` reads from the recording at `path`, and whether its detect
/// matched at some point.
fn timeline(profile: &Profile, path: &Path) -> std::io::Result<(Vec<Step>, bool)> {
    let mut cast = Cast::open(path)?;
    let mut screen = Screen::new(cast.header.rows.max(1), cast.header.cols.max(1));
    let mut replay = Replay {
        profile,
        thresholds: profile.thresholds(),
        state: AgentState::Unknown,
        steps: Vec::new(),
        detected: false,
        before: Signals::default(),
        last: None,
        next: 0,
    };
    while let Some(e) = cast.next_event() {
        match e {
            Event::Output(t, text) => {
                replay.read_until(&screen, Some(t));
                replay.output(t, &screen);
                screen.process(text.as_bytes());
            }
            Event::Resize(_, cols, rows) => screen.resize(rows.max(1), cols.max(1)),
            Event::Marker(..) => {}
        }
    }
    replay.read_until(&screen, None);
    Ok((replay.steps, replay.detected))
}

/// A live session's reading schedule, played over recorded times.
struct Replay<'a> {
    profile: &'a Profile,
    thresholds: Vec<std::time::Duration>,
    state: AgentState,
    steps: Vec<Step>,
    detected: bool,
    /// The signals when the latest output started.
    before: Signals,
    /// The latest output's time, and the next threshold to read at after it.
    last: Option<f64>,
    next: usize,
}

impl Replay<'_> {
    fn settled(&self) -> bool {
        self.next >= self.thresholds.len()
    }

    fn change(&mut self, at: f64, to: AgentState, text: Option<String>) {
        if to != self.state {
            self.steps.push(Step {
                at,
                from: self.state,
                to,
                text,
            });
            self.state = to;
        }
    }

    /// Read `screen` at each threshold after the latest output that comes before `now`
    /// (all of them at the end of the recording).
    fn read_until(&mut self, screen: &Screen, now: Option<f64>) {
        let Some(last) = self.last else { return };
        while !self.settled() {
            let quiet = self.thresholds[self.next];
            let at = last + quiet.as_secs_f64();
            if now.is_some_and(|now| at >= now) {
                return;
            }
            let text = screen.lines();
            let signals = screen.signals();
            let title = signals.title.as_deref();
            self.detected |= self.profile.applies(&[], &text, title);
            let (note, bell) = profile::fresh_note(&self.before, signals);
            let seen = Seen {
                note,
                bell,
                mark: signals.mark,
                ..Seen::screen(&text, title, quiet)
            };
            if let Some(reading) = profile::read(Some(self.profile), &seen, true) {
                self.change(at, reading.state, reading.line);
            }
            self.next += 1;
        }
    }

    /// Output at `t`: working again if the screen was read since the last output; a new
    /// spell of readings.
    fn output(&mut self, t: f64, screen: &Screen) {
        if self.next > 0 {
            self.change(t, AgentState::Working, None);
            self.next = 0;
            self.before = screen.signals().clone();
        }
        self.last = Some(t);
    }
}
