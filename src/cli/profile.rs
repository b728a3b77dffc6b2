//! `hearth profile test NAME FILE.cast`: replay a recording through a profile and print the
//! state timeline, reading the screen at the same moments a live session would (each
//! threshold of quiet after the latest output; `working` when output starts again after it
//! settled). The way to check and share a profile, and to check one against a recording.
//! Reads the config file and the recording only; no daemon.

use std::path::Path;

use hearth_rpc::ApiError;
use serde_json::json;

use super::Failure;
use super::output::Out;
use crate::session::cast::{Cast, Event};
use crate::session::profile::{AgentState, Profile, Seen};
use crate::session::screen::Screen;

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
            "no profile named '{}' in the config file (it has: {})",
            crate::text::safe(name),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
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
    let command: Vec<String> = Vec::new();
    let mut screen = Screen::new(cast.header.rows.max(1), cast.header.cols.max(1));
    let thresholds = profile.thresholds();
    let mut state = AgentState::Unknown;
    let mut steps = Vec::new();
    let mut detected = false;
    // The latest output's time, and the next threshold to read at after it.
    let mut last: Option<f64> = None;
    let mut next = 0;
    let mut read_until = |screen: &Screen,
                          state: &mut AgentState,
                          steps: &mut Vec<Step>,
                          last: Option<f64>,
                          next: &mut usize,
                          now: Option<f64>| {
        let Some(last) = last else { return };
        while *next < thresholds.len() {
            let at = last + thresholds[*next].as_secs_f64();
            if now.is_some_and(|now| at >= now) {
                return;
            }
            let text = screen.text();
            let title = screen.signals().title.clone();
            detected |= profile.applies(&command, &text, title.as_deref());
            let reading = profile.read(&Seen {
                screen: &text,
                title: title.as_deref(),
                quiet: thresholds[*next],
                exited: false,
            });
            if reading.state != *state {
                steps.push(Step {
                    at,
                    from: *state,
                    to: reading.state,
                    text: reading.line,
                });
                *state = reading.state;
            }
            *next += 1;
        }
    };
    while let Some(e) = cast.next_event() {
        match e {
            Event::Output(t, text) => {
                read_until(&screen, &mut state, &mut steps, last, &mut next, Some(t));
                // Output after the screen settled: working again.
                if last.is_some() && next >= thresholds.len() && state != AgentState::Working {
                    steps.push(Step {
                        at: t,
                        from: state,
                        to: AgentState::Working,
                        text: None,
                    });
                    state = AgentState::Working;
                }
                if last.is_none() || next >= thresholds.len() {
                    next = 0;
                }
                screen.process(text.as_bytes());
                last = Some(t);
            }
            Event::Resize(_, cols, rows) => screen.resize(rows.max(1), cols.max(1)),
            Event::Marker(..) => {}
        }
    }
    read_until(&screen, &mut state, &mut steps, last, &mut next, None);
    Ok((steps, detected))
}
