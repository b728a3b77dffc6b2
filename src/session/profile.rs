//! Agent profiles and the states they read from a rendered screen (issue #28, the engine):
//! a profile says how to recognise an agent (its command, a banner on screen, its title) and,
//! per state, an ordered list of screen rules (a regex on the whole screen or its bottom N
//! lines, with an optional quiet time); named captures become fields (`resets_at`...).
//! [`Profile::read`] is pure: the caller hands it the screen's text, the title, how long the
//! output has been quiet and whether the program runs, when output settles (never per
//! byte), and gets a [`Reading`]: the state, the matched line and the captures.
//!
//! Owns the profile format (`[[profiles]]` in the config file), its checks (unknown keys and
//! bad regexes are errors naming the profile and rule) and the evaluation; it must not
//! touch the session, the clock or any I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::Deserialize;

/// Output quiet for this long (and no rule matched) reads as "waiting for input"; before
/// that the agent is working. The same spell as busy/idle.
pub const SETTLED: Duration = super::activity::BUSY_WITHIN;

/// What an agent is doing, as its screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentState {
    Working,
    WaitingInput,
    NeedsApproval,
    RateLimited,
    Error,
    Exited,
    /// No profile applies: busy/idle as before.
    Unknown,
}

impl AgentState {
    pub fn name(self) -> &'static str {
        match self {
            AgentState::Working => "working",
            AgentState::WaitingInput => "waiting_input",
            AgentState::NeedsApproval => "needs_approval",
            AgentState::RateLimited => "rate_limited",
            AgentState::Error => "error",
            AgentState::Exited => "exited",
            AgentState::Unknown => "unknown",
        }
    }

    pub fn parse(name: &str) -> Option<AgentState> {
        [
            AgentState::Working,
            AgentState::WaitingInput,
            AgentState::NeedsApproval,
            AgentState::RateLimited,
            AgentState::Error,
            AgentState::Exited,
            AgentState::Unknown,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether a human is needed.
    pub fn attention(self) -> bool {
        matches!(
            self,
            AgentState::NeedsApproval
                | AgentState::WaitingInput
                | AgentState::RateLimited
                | AgentState::Error
        )
    }
}

/// `[[profiles]]` as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    pub name: String,
    #[serde(default)]
    pub detect: DetectSpec,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// How a profile recognises its agent: any one that is given and matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectSpec {
    /// A regex on the program's name (the command's first word, without its directory).
    pub command: Option<String>,
    /// A regex on the screen (an agent's banner).
    pub banner: Option<String>,
    /// A regex on the title the program set.
    pub title: Option<String>,
}

/// One screen rule: when `pattern` matches in `region`, the agent is in `state`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub state: String,
    pub pattern: String,
    /// Only the bottom this many lines of the screen (default: all of it).
    pub bottom: Option<usize>,
    /// Only once output has been quiet this long, in ms (default 0).
    #[serde(default)]
    pub quiet_ms: u64,
}

/// A checked profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    command: Option<Regex>,
    banner: Option<Regex>,
    title: Option<Regex>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    state: AgentState,
    pattern: Regex,
    bottom: Option<usize>,
    quiet: Duration,
}

/// What one look at the screen says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub state: AgentState,
    /// The line the rule matched on, if a rule decided.
    pub line: Option<String>,
    /// The rule's named captures.
    pub fields: BTreeMap<String, String>,
}

/// What the session shows when it looks.
pub struct Seen<'a> {
    pub screen: &'a str,
    pub title: Option<&'a str>,
    /// Time since the last output.
    pub quiet: Duration,
    pub exited: bool,
}

/// What a session's agent is doing now, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: AgentState,
    pub since: SystemTime,
    /// The profile that reads it, once one applies.
    pub profile: Option<String>,
    /// The deciding rule's captures.
    pub fields: BTreeMap<String, String>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: AgentState::Unknown,
            since: SystemTime::now(),
            profile: None,
            fields: BTreeMap::new(),
        }
    }
}

/// Output quiet this long is "settled" enough to read the screen (a redraw in progress is
/// not read half-way).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Read the session's screen with the first of `profiles` that applies to it, whenever
/// output settles (and again when a rule's quiet time or [`SETTLED`] passes), and report
/// each change of state as an event, once. While output flows the task sleeps on the
/// activity clock (a flood costs it nothing per chunk) and says `working` once. Ends with
/// the program (reporting `exited`) or `stop`.
pub async fn watch(
    session: Arc<super::Session>,
    profiles: Arc<Vec<Profile>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut output = session.output_watch();
    let mut exit = session.exit_watch();
    let mut chosen: Option<usize> = None;
    // Output from before this task subscribed is read at once (a banner, a first prompt).
    let mut pending = session.output_end() > 0;
    loop {
        // Settled: wait for output (one wake-up), the program's end, or the stop.
        output.borrow_and_update();
        if !std::mem::take(&mut pending) {
            tokio::select! {
                r = output.changed() => if r.is_err() { return },
                _ = exit.wait_for(|c| c.is_some()) => break,
                _ = stop.cancelled() => return,
            }
        }
        if let Some(i) = chosen {
            let name = profiles[i].name.clone();
            set(
                &session,
                AgentState::Working,
                format!("profile {name}: output"),
                None,
                BTreeMap::new(),
                &name,
            );
        }
        // Read at each threshold of quiet: the debounce, each rule's quiet time, settled.
        let thresholds = match chosen {
            Some(i) => profiles[i].thresholds(),
            None => vec![DEBOUNCE, SETTLED],
        };
        for threshold in thresholds {
            // Sleep on the activity clock until output has been quiet this long.
            loop {
                let quiet = session.activity.idle();
                if quiet >= threshold {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(threshold - quiet) => {}
                    _ = exit.wait_for(|c| c.is_some()) => break,
                    _ = stop.cancelled() => return,
                }
            }
            if exit.borrow().is_some() {
                break;
            }
            let (screen, title) = (session.screen_text(), session.title_and_bells().0);
            if chosen.is_none() {
                chosen = profiles
                    .iter()
                    .position(|p| p.applies(&session.spec.command, &screen, title.as_deref()));
            }
            let Some(i) = chosen else { continue };
            let profile = &profiles[i];
            let reading = profile.read(&Seen {
                screen: &screen,
                title: title.as_deref(),
                quiet: session.activity.idle(),
                exited: false,
            });
            let reason = match &reading.line {
                Some(_) => format!("profile {}: a rule matched", profile.name),
                None => format!("profile {}: output settled", profile.name),
            };
            set(
                &session,
                reading.state,
                reason,
                reading.line,
                reading.fields,
                &profile.name,
            );
        }
        if exit.borrow().is_some() {
            break;
        }
    }
    if let Some(i) = chosen {
        let name = profiles[i].name.clone();
        set(
            &session,
            AgentState::Exited,
            format!("profile {name}: the program exited"),
            None,
            BTreeMap::new(),
            &name,
        );
    }
}

/// Record a state and report it if it changed.
fn set(
    session: &super::Session,
    state: AgentState,
    reason: String,
    text: Option<String>,
    fields: BTreeMap<String, String>,
    profile: &str,
) {
    let from = {
        let mut status = session.agent.lock();
        if status.state == state && status.fields == fields {
            return;
        }
        let from = status.state;
        *status = Status {
            state,
            since: if from == state {
                status.since
            } else {
                SystemTime::now()
            },
            profile: Some(profile.to_string()),
            fields,
        };
        from
    };
    session.agent_state.send_replace(state);
    if from != state {
        session.emit(super::SessionEvent::State {
            from,
            to: state,
            reason,
            text,
        });
    }
}

/// Regexes are bounded: a profile cannot make a look cost more than this much automaton.
const REGEX_SIZE: usize = 1 << 20;

/// Patterns see the screen as lines: `^` and `$` match at each line's start and end.
fn compile(what: &str, pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .multi_line(true)
        .size_limit(REGEX_SIZE)
        .build()
        .map_err(|e| format!("{what}: {e}"))
}

impl Profile {
    /// Check a profile as written: every state named exists, every regex compiles.
    pub fn new(spec: &ProfileSpec) -> Result<Profile, String> {
        let name = &spec.name;
        if name.is_empty() {
            return Err("a profile needs a name".into());
        }
        let opt = |what: &str, p: &Option<String>| {
            p.as_deref()
                .map(|p| compile(&format!("profile {name}: detect.{what}"), p))
                .transpose()
        };
        let rules = spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let what = format!("profile {name}: rule {}", i + 1);
                let state = AgentState::parse(&r.state)
                    .filter(|s| !matches!(s, AgentState::Unknown | AgentState::Exited))
                    .ok_or_else(|| {
                        format!(
                            "{what}: state {:?} is not one of working, waiting_input, \
                             needs_approval, rate_limited, error",
                            r.state
                        )
                    })?;
                if r.bottom == Some(0) {
                    return Err(format!("{what}: bottom = 0 looks at nothing"));
                }
                Ok(Rule {
                    state,
                    pattern: compile(&what, &r.pattern)?,
                    bottom: r.bottom,
                    quiet: Duration::from_millis(r.quiet_ms),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Profile {
            name: name.clone(),
            command: opt("command", &spec.detect.command)?,
            banner: opt("banner", &spec.detect.banner)?,
            title: opt("title", &spec.detect.title)?,
            rules,
        })
    }

    /// The quiet times its rules wait for.
    fn quiet_times(&self) -> Vec<Duration> {
        self.rules.iter().map(|r| r.quiet).collect()
    }

    /// The times of quiet at which the session reads the screen with this profile, in
    /// order: the debounce, each rule's quiet time (a shorter one waits for the debounce:
    /// a screen is never read mid-redraw), settled.
    pub fn thresholds(&self) -> Vec<Duration> {
        let mut t: Vec<Duration> = self
            .quiet_times()
            .into_iter()
            .map(|q| q.max(DEBOUNCE))
            .collect();
        t.extend([DEBOUNCE, SETTLED]);
        t.sort();
        t.dedup();
        t
    }

    /// Whether this profile is for the program `command` runs, now that it shows
    /// `screen` with `title`.
    pub fn applies(&self, command: &[String], screen: &str, title: Option<&str>) -> bool {
        let program = command
            .first()
            .map(|c| c.rsplit('/').next().unwrap_or(c))
            .unwrap_or("");
        self.command.as_ref().is_some_and(|r| r.is_match(program))
            || self.banner.as_ref().is_some_and(|r| r.is_match(screen))
            || self
                .title
                .as_ref()
                .zip(title)
                .is_some_and(|(r, t)| r.is_match(t))
    }

    /// The state the screen shows: the first rule (in order) that matches its region once
    /// output has been quiet long enough; else working while output flows and waiting for
    /// input once it has settled; exited once the program has.
    pub fn read(&self, seen: &Seen) -> Reading {
        let plain = |state| Reading {
            state,
            line: None,
            fields: BTreeMap::new(),
        };
        if seen.exited {
            return plain(AgentState::Exited);
        }
        for rule in &self.rules {
            if seen.quiet < rule.quiet {
                continue;
            }
            let region = match rule.bottom {
                Some(n) => bottom_lines(seen.screen, n),
                None => seen.screen,
            };
            if let Some(caps) = rule.pattern.captures(region) {
                let m = caps.get(0).map_or(0..0, |m| m.range());
                let fields = rule
                    .pattern
                    .capture_names()
                    .flatten()
                    .filter_map(|n| Some((n.to_string(), caps.name(n)?.as_str().to_string())))
                    .collect();
                return Reading {
                    state: rule.state,
                    line: Some(line_at(region, m.start).trim().to_string()),
                    fields,
                };
            }
        }
        plain(if seen.quiet < SETTLED {
            AgentState::Working
        } else {
            AgentState::WaitingInput
        })
    }
}

/// The last `n` lines of `text` with something on them (blank rows at the bottom of a
/// screen do not count).
fn bottom_lines(text: &str, n: usize) -> &str {
    let trimmed = text.trim_end();
    let mut start = trimmed.len();
    for _ in 0..n {
        match trimmed[..start].rfind('\n') {
            Some(i) => start = i,
            None => return trimmed,
        }
    }
    &trimmed[start + 1..]
}

/// The whole line of `text` that byte `at` is on.
fn line_at(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(toml_text: &str) -> Result<Profile, String> {
        #[derive(Deserialize)]
        struct File {
            profiles: Vec<ProfileSpec>,
        }
        let file: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Profile::new(&file.profiles[0])
    }

    const AGENT: &str = r#"
        [[profiles]]
        name = "agent"
        detect = { command = "^agent$", banner = "Agent v\\d" }
        [[profiles.rules]]
        state = "rate_limited"
        pattern = 'limit reached.*resets at (?P<resets_at>\d{1,2}(am|pm))'
        [[profiles.rules]]
        state = "needs_approval"
        pattern = 'Do you want to (run|proceed)'
        bottom = 6
        [[profiles.rules]]
        state = "waiting_input"
        pattern = '^>\s*$'
        bottom = 2
        quiet_ms = 500
    "#;

    fn seen(screen: &str, quiet_ms: u64) -> Seen<'_> {
        Seen {
            screen,
            title: None,
            quiet: Duration::from_millis(quiet_ms),
            exited: false,
        }
    }

    #[test]
    fn rules_read_in_order_with_their_regions_quiet_times_and_captures() {
        let p = profile(AGENT).unwrap();
        assert!(p.applies(&["/usr/bin/agent".into()], "", None));
        assert!(p.applies(&["node".into()], "welcome to Agent v2", None));
        assert!(!p.applies(&["sh".into()], "$ ", None));

        let approval =
            "step 1\nstep 2\n\n Do you want to run `rm -rf build`?\n 1. Yes\n 2. No\n\n\n";
        let r = p.read(&seen(approval, 0));
        assert_eq!(r.state, AgentState::NeedsApproval);
        assert_eq!(
            r.line.as_deref(),
            Some("Do you want to run `rm -rf build`?")
        );
        assert!(r.state.attention());

        // Scrolled above the bottom 6 lines: no longer the prompt on screen.
        let old = format!("{approval}{}", "more output\n".repeat(10));
        assert_eq!(p.read(&seen(&old, 0)).state, AgentState::Working);
        assert_eq!(p.read(&seen(&old, 3000)).state, AgentState::WaitingInput);

        let limited = "Usage limit reached. It resets at 3pm (Europe/Paris)\n> ";
        // The prompt is on screen too, and quiet long enough for its rule: the earlier
        // rule wins.
        let r = p.read(&seen(limited, 600));
        assert_eq!(r.state, AgentState::RateLimited, "an earlier rule wins");
        assert_eq!(r.fields.get("resets_at").map(String::as_str), Some("3pm"));

        // A rule with a quiet time waits for it.
        let prompt = "done.\n> ";
        assert_eq!(p.read(&seen(prompt, 100)).state, AgentState::Working);
        assert_eq!(p.read(&seen(prompt, 600)).state, AgentState::WaitingInput);
        let ended = Seen {
            exited: true,
            ..seen(prompt, 600)
        };
        assert_eq!(p.read(&ended).state, AgentState::Exited);
    }

    #[test]
    fn bad_profiles_are_errors_that_name_the_profile_and_rule() {
        let bad_regex = r#"
            [[profiles]]
            name = "x"
            [[profiles.rules]]
            state = "error"
            pattern = "(unclosed"
        "#;
        let e = profile(bad_regex).unwrap_err();
        assert!(e.contains("profile x: rule 1"), "{e}");
        let bad_state = r#"
            [[profiles]]
            name = "x"
            [[profiles.rules]]
            state = "sleepy"
            pattern = "z"
        "#;
        let e = profile(bad_state).unwrap_err();
        assert!(e.contains("\"sleepy\""), "{e}");
        let unknown_key = r#"
            [[profiles]]
            name = "x"
            colour = "red"
        "#;
        assert!(profile(unknown_key).unwrap_err().contains("colour"));
        // A regex that never matches is harmless.
        let never = r#"
            [[profiles]]
            name = "x"
            [[profiles.rules]]
            state = "error"
            pattern = 'a\bb'
        "#;
        let p = profile(never).unwrap();
        assert_eq!(p.read(&seen("anything", 0)).state, AgentState::Working);
    }

    #[test]
    fn bottom_lines_skip_the_blank_rows_under_the_text() {
        assert_eq!(bottom_lines("a\nb\nc\n\n\n", 2), "b\nc");
        assert_eq!(bottom_lines("a\nb", 5), "a\nb");
        assert_eq!(line_at("one\ntwo\nthree", 5), "two");
    }
}
