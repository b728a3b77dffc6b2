//! Agent profiles and the states they read from a rendered screen (issue #28, the engine):
//! a profile says how to recognise an agent (its command, a banner on screen, its title) and,
//! per state, an ordered list of screen rules (a regex on the whole screen or its bottom N
//! lines, with an optional quiet time); named captures become fields (`resets_at`...).
//! [`read`] is pure: the caller hands it the screen's text, the title, how long the output
//! has been quiet, the terminal signals that came with it (a notification, a bell, the last
//! OSC 133 mark) and whether the program runs, when output settles (never per byte), and
//! gets a [`Reading`]: the state, why, the matched line and the captures. [`watch`] is the
//! session's task that calls it at the right moments and reports each change once.
//!
//! Owns the profile format (`[[profiles]]` in the config file, and the profiles hearth
//! ships, `profiles.toml`), its checks (unknown keys and bad regexes are errors naming the
//! profile, rule and line) and the evaluation; it must not touch the clock or any I/O
//! outside [`watch`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::Deserialize;

/// Output quiet for this long (and no rule matched) reads as "waiting for input"; before
/// that the agent is working. The same spell as busy/idle.
pub const SETTLED: Duration = super::activity::BUSY_WITHIN;

/// What an agent is doing, as its screen shows (`unknown`: no profile applies, busy/idle
/// as before). Its serde and schema names are its `name`s (MCP's `wait_for` takes them).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
#[schemars(inline)]
pub enum AgentState {
    Working,
    WaitingInput,
    NeedsApproval,
    RateLimited,
    Error,
    Exited,
    // (No per-variant docs: the schema stays one plain enum.)
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
    /// Spanned: an error names the line the rule is on.
    #[serde(default)]
    pub rules: Vec<toml::Spanned<RuleSpec>>,
    /// Type this once a rate limit resets (off unless given).
    pub on_rate_limit: Option<OnRateLimitSpec>,
    /// The command a restart policy runs instead of the original (`claude --continue`).
    pub resume: Option<Vec<String>>,
}

/// `on_rate_limit = { send = "continue\r", after = "resets_at", margin = "1m" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnRateLimitSpec {
    pub send: String,
    /// The capture holding the reset time (default `resets_at`).
    pub after: Option<String>,
    /// Waited past the reset time (default 1 minute).
    pub margin: Option<String>,
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
    /// What to type once a rate limit resets.
    pub on_rate_limit: Option<super::resume::OnRateLimit>,
    /// The command a restart policy runs instead of the original (`server --restart`).
    pub resume: Option<Vec<String>>,
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
    pub why: Why,
    /// The line the rule matched on, or the notification's text.
    pub line: Option<String>,
    /// The rule's named captures.
    pub fields: BTreeMap<String, String>,
}

impl Reading {
    /// A state with nothing matched or captured.
    fn plain(state: AgentState, why: Why) -> Reading {
        Reading {
            state,
            why,
            line: None,
            fields: BTreeMap::new(),
        }
    }
}

/// What decided a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A profile's rule matched the screen.
    Rule,
    /// The program asked for a desktop notification (OSC 9, OSC 777).
    Notification,
    /// The program rang the bell (counts only for a program a profile applies to).
    Bell,
    /// A shell said its prompt is up (OSC 133 `A`/`B`).
    Prompt,
    /// A shell said a command runs (OSC 133 `C`).
    Command,
    /// Output flows.
    Output,
    /// Output has settled.
    Settled,
    /// The program exited.
    Exited,
}

impl Why {
    fn describe(self) -> &'static str {
        match self {
            Why::Rule => "a rule matched",
            Why::Notification => "a notification",
            Why::Bell => "a bell",
            Why::Prompt => "a shell prompt (OSC 133)",
            Why::Command => "a command runs (OSC 133)",
            Why::Output => "output",
            Why::Settled => "output settled",
            Why::Exited => "the program exited",
        }
    }
}

/// What the session shows when it looks.
pub struct Seen<'a> {
    pub screen: &'a str,
    pub title: Option<&'a str>,
    /// Time since the last output.
    pub quiet: Duration,
    pub exited: bool,
    /// A notification that came with the latest output (its text), else a bell's `"bell"`.
    pub note: Option<&'a str>,
    /// Whether that is a bell.
    pub bell: bool,
    /// The last OSC 133 mark the program wrote.
    pub mark: Option<super::screen::Mark>,
}

impl<'a> Seen<'a> {
    /// A screen and no signals.
    pub fn screen(screen: &'a str, title: Option<&'a str>, quiet: Duration) -> Seen<'a> {
        Seen {
            screen,
            title,
            quiet,
            exited: false,
            note: None,
            bell: false,
            mark: None,
        }
    }
}

/// The state `seen` shows, as `profile` (if one applies) reads it: its first matching rule;
/// else a notification (or, with a profile, a bell) that came with the latest output means a
/// human is wanted; else an OSC 133 mark says prompt or command; else output flowing is
/// `working` and settled output `waiting_input`. Without a profile, a program that never
/// signalled (`speaks` false) has no state: `None`.
pub fn read(profile: Option<&Profile>, seen: &Seen, speaks: bool) -> Option<Reading> {
    let plain = Reading::plain;
    if profile.is_none() && !speaks {
        return None;
    }
    if seen.exited {
        return Some(plain(AgentState::Exited, Why::Exited));
    }
    if let Some(r) = profile.and_then(|p| p.rule(seen)) {
        return Some(r);
    }
    if let Some(note) = seen.note.filter(|_| !seen.bell || profile.is_some()) {
        return Some(Reading {
            line: (!seen.bell).then(|| note.to_string()),
            ..plain(
                AgentState::WaitingInput,
                if seen.bell {
                    Why::Bell
                } else {
                    Why::Notification
                },
            )
        });
    }
    use super::screen::Mark;
    Some(match seen.mark {
        Some(Mark::Prompt) => plain(AgentState::WaitingInput, Why::Prompt),
        Some(Mark::Running) => plain(AgentState::Working, Why::Command),
        Some(Mark::Done) | None if seen.quiet < SETTLED => plain(AgentState::Working, Why::Output),
        Some(Mark::Done) | None => plain(AgentState::WaitingInput, Why::Settled),
    })
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

/// Read the session's screen with the first of `profiles` that applies to it (and the
/// terminal signals its program sends), whenever output settles (and again when a rule's
/// quiet time or [`SETTLED`] passes), and report each change of state as an event, once.
/// While output flows the task sleeps on the activity clock (a flood costs it nothing per
/// chunk) and says `working` once. Ends with the program (reporting `exited`) or `stop`.
pub async fn watch(
    session: Arc<super::Session>,
    profiles: Arc<Vec<Profile>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut output = session.output_watch();
    let mut exit = session.exit_watch();
    let mut chosen: Option<usize> = None;
    // Whether the program has sent a notification or an OSC 133 mark: then it has a state
    // even when no profile applies.
    let mut speaks = false;
    // The signals as they were when the latest output started: a notification since then
    // came with it.
    let mut before = super::screen::Signals::default();
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
        // Read at each threshold of quiet: the debounce, each rule's quiet time, settled.
        // Output after a read starts the spell again (working, then the first threshold).
        let mut signals = before.clone();
        let mut thresholds = vec![DEBOUNCE, SETTLED];
        let mut next = 0;
        let mut restart = true;
        while next < thresholds.len() {
            if std::mem::take(&mut restart) {
                output.borrow_and_update();
                before = signals.clone();
                if let Some(i) = chosen {
                    thresholds = profiles[i].thresholds();
                }
                next = 0;
                if chosen.is_some() || speaks {
                    let working = Reading::plain(AgentState::Working, Why::Output);
                    set(&session, working, chosen.map(|i| profiles[i].name.as_str()));
                }
            }
            let threshold = thresholds[next];
            // After a read, output wakes it: a new spell.
            match quiet_for(&session, threshold, next > 0, &mut output, &mut exit, &stop).await {
                Woke::Stop => return,
                Woke::Output => restart = true,
                Woke::Quiet | Woke::Exit => {}
            }
            if exit.borrow().is_some() {
                break;
            }
            if restart || (next > 0 && output.has_changed().unwrap_or(false)) {
                restart = true;
                continue;
            }
            output.borrow_and_update();
            let screen = session.screen_lines();
            signals = session.signals();
            if chosen.is_none() {
                chosen = profiles.iter().position(|p| {
                    p.applies(&session.spec.command, &screen, signals.title.as_deref())
                });
                // Its rules' quiet times from here on.
                if let Some(i) = chosen {
                    thresholds = profiles[i].thresholds();
                    next = thresholds.iter().take_while(|t| **t <= threshold).count();
                } else {
                    next += 1;
                }
            } else {
                next += 1;
            }
            speaks |= signals.notes > 0 || signals.mark.is_some();
            let profile = chosen.map(|i| &profiles[i]);
            report(&session, profile, &screen, (&before, &signals), speaks);
        }
        before = signals;
        if exit.borrow().is_some() {
            break;
        }
    }
    if chosen.is_some() || speaks {
        let exited = Reading::plain(AgentState::Exited, Why::Exited);
        set(&session, exited, chosen.map(|i| profiles[i].name.as_str()));
    }
}

/// Read `screen` with `profile` (and the terminal signals, `now` against those from
/// `before` the latest output) and report the state it gives, if any.
fn report(
    session: &super::Session,
    profile: Option<&Profile>,
    screen: &str,
    (before, now): (&super::screen::Signals, &super::screen::Signals),
    speaks: bool,
) {
    let (note, bell) = fresh_note(before, now);
    let seen = Seen {
        screen,
        title: now.title.as_deref(),
        quiet: session.activity.idle(),
        exited: false,
        note,
        bell,
        mark: now.mark,
    };
    if let Some(reading) = read(profile, &seen, speaks) {
        set(session, reading, profile.map(|p| p.name.as_str()));
    }
}

/// Why [`quiet_for`] returned.
enum Woke {
    Quiet,
    /// Output came (only when asked to wake for it).
    Output,
    Exit,
    Stop,
}

/// Sleep on the activity clock until output has been quiet for `threshold` (no wake-up per
/// chunk), the program exits, `stop`, or (with `wake_on_output`) output comes.
async fn quiet_for(
    session: &super::Session,
    threshold: Duration,
    wake_on_output: bool,
    output: &mut tokio::sync::watch::Receiver<u64>,
    exit: &mut tokio::sync::watch::Receiver<Option<i32>>,
    stop: &tokio_util::sync::CancellationToken,
) -> Woke {
    loop {
        let quiet = session.activity.idle();
        if quiet >= threshold {
            return Woke::Quiet;
        }
        tokio::select! {
            _ = tokio::time::sleep(threshold - quiet) => {}
            r = output.changed(), if wake_on_output => {
                return if r.is_err() { Woke::Stop } else { Woke::Output };
            }
            _ = exit.wait_for(|c| c.is_some()) => return Woke::Exit,
            _ = stop.cancelled() => return Woke::Stop,
        }
    }
}

/// A notification (its text) or a bell in `now` that was not in `before`, and whether it
/// is the bell.
pub fn fresh_note<'a>(
    before: &super::screen::Signals,
    now: &'a super::screen::Signals,
) -> (Option<&'a str>, bool) {
    if now.notes > before.notes {
        (Some(now.note.as_deref().unwrap_or("")), false)
    } else if now.bells > before.bells {
        (Some("bell"), true)
    } else {
        (None, false)
    }
}

/// Record a reading and report it if the state changed.
fn set(session: &super::Session, reading: Reading, profile: Option<&str>) {
    let Reading {
        state,
        why,
        line,
        fields,
    } = reading;
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
            profile: profile.map(str::to_string),
            fields,
        };
        from
    };
    session.agent_state.send_replace(state);
    if from != state {
        let reason = match profile {
            Some(p) => format!("profile {p}: {}", why.describe()),
            None => why.describe().to_string(),
        };
        // A marker in the recording too: the web timeline shows where the state changed.
        session.mark(&format!("hearth: state {}", state.name()));
        session.emit(super::SessionEvent::State {
            from,
            to: state,
            reason,
            text: line,
        });
    }
}

/// The most `on_rate_limit.send` may type.
const MAX_SEND: usize = 4096;

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
    /// Check a profile as written in `source`: every state named exists, every regex
    /// compiles.
    pub fn new(spec: &ProfileSpec, source: &str) -> Result<Profile, String> {
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
                let line = line_of(source, r.span().start);
                let what = format!("profile {name}: rule {} (line {line})", i + 1);
                let r = r.get_ref();
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
        let on_rate_limit = spec
            .on_rate_limit
            .as_ref()
            .map(|o| {
                let what = format!("profile {name}: on_rate_limit");
                if o.send.is_empty() || o.send.len() > MAX_SEND {
                    return Err(format!("{what}: send must be 1 to {MAX_SEND} bytes"));
                }
                let margin = match &o.margin {
                    None => Duration::from_secs(60),
                    Some(m) => humantime::parse_duration(m)
                        .map_err(|e| format!("{what}: margin {m:?}: {e}"))?,
                };
                Ok(super::resume::OnRateLimit {
                    send: o.send.clone(),
                    after: o.after.clone().unwrap_or_else(|| "resets_at".into()),
                    margin,
                })
            })
            .transpose()?;
        if let Some(r) = &spec.resume
            && (r.first().is_none_or(String::is_empty) || r.len() > 64)
        {
            return Err(format!(
                "profile {name}: resume must be a command: 1 to 64 arguments, the first a \
                 program"
            ));
        }
        Ok(Profile {
            on_rate_limit,
            resume: spec.resume.clone(),
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

    /// Whether `detect.command` names the program `command` runs.
    pub fn is_for_command(&self, command: &[String]) -> bool {
        let program = command
            .first()
            .map(|c| c.rsplit('/').next().unwrap_or(c))
            .unwrap_or("");
        self.command.as_ref().is_some_and(|r| r.is_match(program))
    }

    /// Whether this profile is for the program `command` runs, now that it shows
    /// `screen` with `title`.
    pub fn applies(&self, command: &[String], screen: &str, title: Option<&str>) -> bool {
        self.is_for_command(command)
            || self.banner.as_ref().is_some_and(|r| r.is_match(screen))
            || self
                .title
                .as_ref()
                .zip(title)
                .is_some_and(|(r, t)| r.is_match(t))
    }

    /// The state the screen shows by the first rule (in order) that matches its region once
    /// output has been quiet long enough.
    fn rule(&self, seen: &Seen) -> Option<Reading> {
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
                return Some(Reading {
                    state: rule.state,
                    why: Why::Rule,
                    line: Some(line_at(region, m.start).trim().to_string()),
                    fields,
                });
            }
        }
        None
    }
}

/// The profiles hearth ships (`profiles.toml`, docs/agents.md).
pub const SHIPPED: &str = include_str!("profiles.toml");

/// `[[profiles]]` of a config file (or of [`SHIPPED`]), checked: errors name the profile,
/// rule and line; names are unique.
pub fn parse(source: &str) -> Result<Vec<Profile>, String> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        profiles: Vec<ProfileSpec>,
    }
    let file: File = toml::from_str(source).map_err(|e| e.to_string())?;
    let mut out: Vec<Profile> = Vec::new();
    for spec in &file.profiles {
        let profile = Profile::new(spec, source)?;
        if out.iter().any(|p| p.name == profile.name) {
            return Err(format!("two profiles are named {:?}", profile.name));
        }
        out.push(profile);
    }
    Ok(out)
}

/// The 1-based line of byte `at` in `source`.
fn line_of(source: &str, at: usize) -> usize {
    source
        .get(..at)
        .map_or(0, |s| s.bytes().filter(|&b| b == b'\n').count())
        + 1
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
        Ok(parse(toml_text)?.remove(0))
    }

    /// The state `p` reads from `seen`.
    fn state(p: &Profile, seen: &Seen) -> AgentState {
        read(Some(p), seen, false).unwrap().state
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
        Seen::screen(screen, None, Duration::from_millis(quiet_ms))
    }

    #[test]
    fn rules_read_in_order_with_their_regions_quiet_times_and_captures() {
        let p = profile(AGENT).unwrap();
        assert!(p.applies(&["/usr/bin/agent".into()], "", None));
        assert!(p.applies(&["node".into()], "welcome to Agent v2", None));
        assert!(!p.applies(&["sh".into()], "$ ", None));

        let approval =
            "step 1\nstep 2\n\n Do you want to run `rm -rf build`?\n 1. Yes\n 2. No\n\n\n";
        let r = read(Some(&p), &seen(approval, 0), false).unwrap();
        assert_eq!(r.state, AgentState::NeedsApproval);
        assert_eq!(
            r.line.as_deref(),
            Some("Do you want to run `rm -rf build`?")
        );
        assert!(r.state.attention());

        // Scrolled above the bottom 6 lines: no longer the prompt on screen.
        let old = format!("{approval}{}", "more output\n".repeat(10));
        assert_eq!(state(&p, &seen(&old, 0)), AgentState::Working);
        assert_eq!(state(&p, &seen(&old, 3000)), AgentState::WaitingInput);

        let limited = "Usage limit reached. It resets at 3pm (Europe/Paris)\n> ";
        // The prompt is on screen too, and quiet long enough for its rule: the earlier
        // rule wins.
        let r = read(Some(&p), &seen(limited, 600), false).unwrap();
        assert_eq!(r.state, AgentState::RateLimited, "an earlier rule wins");
        assert_eq!(r.fields.get("resets_at").map(String::as_str), Some("3pm"));

        // A rule with a quiet time waits for it.
        let prompt = "done.\n> ";
        assert_eq!(state(&p, &seen(prompt, 100)), AgentState::Working);
        assert_eq!(state(&p, &seen(prompt, 600)), AgentState::WaitingInput);
        let ended = Seen {
            exited: true,
            ..seen(prompt, 600)
        };
        assert_eq!(state(&p, &ended), AgentState::Exited);
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
        assert!(e.contains("profile x: rule 1 (line 4)"), "{e}");
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
        let bad_margin = r#"
            [[profiles]]
            name = "x"
            on_rate_limit = { send = "continue\r", margin = "soon" }
        "#;
        let e = profile(bad_margin).unwrap_err();
        assert!(
            e.contains("profile x: on_rate_limit: margin \"soon\""),
            "{e}"
        );
        for resume in ["[]", "[\"\"]"] {
            let bad = format!("[[profiles]]\nname = \"x\"\nresume = {resume}\n");
            let e = profile(&bad).unwrap_err();
            assert!(e.contains("profile x: resume must be a command"), "{e}");
        }
        let ok = "[[profiles]]\nname = \"x\"\nresume = [\"x\", \"-c\"]\n";
        assert_eq!(profile(ok).unwrap().resume.unwrap(), ["x", "-c"]);
        let p = profile(&bad_margin.replace("soon", "90s")).unwrap();
        let o = p.on_rate_limit.unwrap();
        assert_eq!(
            (o.after.as_str(), o.margin),
            ("resets_at", Duration::from_secs(90))
        );
        // A regex that never matches is harmless.
        let never = r#"
            [[profiles]]
            name = "x"
            [[profiles.rules]]
            state = "error"
            pattern = 'a\bb'
        "#;
        let p = profile(never).unwrap();
        assert_eq!(state(&p, &seen("anything", 0)), AgentState::Working);
    }

    #[test]
    fn bottom_lines_skip_the_blank_rows_under_the_text() {
        assert_eq!(bottom_lines("a\nb\nc\n\n\n", 2), "b\nc");
        assert_eq!(bottom_lines("a\nb", 5), "a\nb");
        assert_eq!(line_at("one\ntwo\nthree", 5), "two");
    }

    #[test]
    fn terminal_signals_read_as_states_when_no_rule_decides() {
        use crate::session::screen::Mark;
        let p = profile(AGENT).unwrap();
        let noted = Seen {
            note: Some("Agent needs your permission"),
            ..seen("working on it", 300)
        };
        let r = read(Some(&p), &noted, false).unwrap();
        assert_eq!(
            (r.state, r.why),
            (AgentState::WaitingInput, Why::Notification)
        );
        assert_eq!(r.line.as_deref(), Some("Agent needs your permission"));
        // Without a profile too: a program that asks for a human wants one.
        assert_eq!(
            read(None, &noted, true).unwrap().state,
            AgentState::WaitingInput
        );
        // A rule still comes first.
        let approval = Seen {
            note: Some("hey"),
            ..seen("Do you want to run `x`?", 300)
        };
        assert_eq!(state(&p, &approval), AgentState::NeedsApproval);
        // A bell means a human only for a program a profile applies to.
        let bell = Seen {
            note: Some("bell"),
            bell: true,
            ..seen("$ ", 300)
        };
        assert_eq!(read(Some(&p), &bell, false).unwrap().why, Why::Bell);
        assert_eq!(read(None, &bell, true).unwrap().state, AgentState::Working);
        // OSC 133: the shell says where it is, without waiting for output to settle.
        let at = |mark| Seen {
            mark: Some(mark),
            ..seen("$ make", 300)
        };
        assert_eq!(state(&p, &at(Mark::Prompt)), AgentState::WaitingInput);
        assert_eq!(state(&p, &at(Mark::Running)), AgentState::Working);
        assert_eq!(state(&p, &at(Mark::Done)), AgentState::Working);
        // A program without a profile that never signalled has no state.
        assert_eq!(read(None, &seen("$ ", 5000), false), None);
        assert_eq!(
            read(None, &seen("$ ", 5000), true).unwrap().state,
            AgentState::WaitingInput
        );
    }

    /// (profile, screen, state, a captured field)
    type Case = (
        &'static str,
        &'static str,
        AgentState,
        Option<(&'static str, &'static str)>,
    );

    /// Each shipped profile's documented text (the same text the fixture agents draw,
    /// tests/fixtures/agent-ui.sh), and what it reads as.
    const SHIPPED_CASES: &[Case] = &[
        (
            "claude-code",
            "● Done.\n\nClaude usage limit reached. Your limit will reset at 3pm (Europe/Paris).\n╭──╮\n│ > │\n╰──╯",
            AgentState::RateLimited,
            Some(("resets_at", "3pm (Europe/Paris)")),
        ),
        (
            "claude-code",
            "5-hour limit reached ∙ resets 11:30am",
            AgentState::RateLimited,
            Some(("resets_at", "11:30am")),
        ),
        (
            "claude-code",
            "╭──╮\n│ Bash command │\n│   make test │\n│ Do you want to proceed? │\n│ ❯ 1. Yes │\n│   2. No │\n╰──╯",
            AgentState::NeedsApproval,
            None,
        ),
        (
            "claude-code",
            "│ Do you want to make this edit to main.rs? │",
            AgentState::NeedsApproval,
            None,
        ),
        (
            "claude-code",
            "> fix it\n✻ Thinking… (3s · esc to interrupt)\n╭──╮\n│ > │\n╰──╯",
            AgentState::Working,
            None,
        ),
        (
            "claude-code",
            "  ⎿  API Error: 529 {\"type\":\"overloaded_error\"}\n╭──╮\n│ > │\n╰──╯",
            AgentState::Error,
            None,
        ),
        (
            "claude-code",
            "● Done.\n╭───────╮\n│ >     │\n╰───────╯\n  ? for shortcuts",
            AgentState::WaitingInput,
            None,
        ),
        (
            "codex",
            "■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again at 3:05 PM.",
            AgentState::RateLimited,
            Some(("resets_at", "3:05 PM")),
        ),
        (
            "codex",
            "Would you like to run the following command?\n\n  $ make test\n\n› 1. Yes, proceed (y)\n  2. No (esc)",
            AgentState::NeedsApproval,
            None,
        ),
        (
            "codex",
            "• Working (12s • esc to interrupt)\n\n› \n  ⏎ send",
            AgentState::Working,
            None,
        ),
        (
            "codex",
            "■ stream error: 500 Internal Server Error\n\n› \n  ⏎ send",
            AgentState::Error,
            None,
        ),
        (
            "codex",
            "• Done.\n\n› Ask Codex to do anything\n  ⏎ send",
            AgentState::WaitingInput,
            None,
        ),
        (
            "gemini",
            "You have reached your daily gemini-2.5-pro quota limit.\n│ >   Type your message or @path/to/file │",
            AgentState::RateLimited,
            None,
        ),
        (
            "gemini",
            "Usage limit reached for gemini-2.5-pro. Access resets at 1:30 AM.",
            AgentState::RateLimited,
            Some(("resets_at", "1:30 AM")),
        ),
        (
            "gemini",
            "│ Allow execution of: 'make'? │\n│ ● 1. Yes, allow once │",
            AgentState::NeedsApproval,
            None,
        ),
        (
            "gemini",
            "⠋ Thinking… (esc to cancel, 5s)\n│ >   Type your message or @path/to/file │",
            AgentState::Working,
            None,
        ),
        (
            "gemini",
            "✕ [API Error: got status: INTERNAL]\n│ >   Type your message or @path/to/file │",
            AgentState::Error,
            None,
        ),
        (
            "gemini",
            "✦ Done.\n│ >   Type your message or @path/to/file │",
            AgentState::WaitingInput,
            None,
        ),
        (
            "aider",
            "litellm.RateLimitError: AnthropicException - rate limit\nThe API provider has rate limited you. Try again later or check your quotas.\nRetrying in 0.5 seconds...",
            AgentState::RateLimited,
            Some(("retry_in", "0.5 seconds")),
        ),
        (
            "aider",
            "Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]:",
            AgentState::NeedsApproval,
            None,
        ),
        (
            "aider",
            "litellm.APIConnectionError: connection refused\n>",
            AgentState::Error,
            None,
        ),
        (
            "aider",
            "Applied edit to main.py\n>",
            AgentState::WaitingInput,
            None,
        ),
        (
            "aider",
            "Applied edit to main.py\narchitect>",
            AgentState::WaitingInput,
            None,
        ),
    ];

    /// Each shipped profile against the text its rules say they key on (the same text the
    /// fixture agents draw, tests/fixtures/agent-ui.sh).
    #[test]
    fn the_shipped_profiles_read_the_text_they_document() {
        let shipped = parse(SHIPPED).unwrap();
        let names: Vec<&str> = shipped.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["claude-code", "codex", "gemini", "aider"]);
        let by = |n: &str| shipped.iter().find(|p| p.name == n).unwrap();
        for (name, screen, want, field) in SHIPPED_CASES {
            let r = read(Some(by(name)), &seen(screen, 600), false).unwrap();
            assert_eq!(r.state, *want, "{name} on {screen:?}: {r:?}");
            assert_eq!(r.why, Why::Rule, "{name} on {screen:?}: {r:?}");
            if let Some((k, v)) = field {
                assert_eq!(r.fields.get(*k).map(String::as_str), Some(*v), "{r:?}");
            }
        }
        // Detection by command and banner.
        assert!(by("claude-code").applies(&["claude".into()], "", None));
        assert!(by("claude-code").applies(&["node".into()], "│ ✻ Welcome to Claude Code! │", None));
        assert!(by("codex").applies(&["sh".into()], ">_ OpenAI Codex (v0.46.0)", None));
        assert!(by("gemini").applies(&["/usr/local/bin/gemini".into()], "", None));
        assert!(by("aider").applies(&["python3".into()], "Aider v0.86.1\nMain model: x", None));
        assert!(
            !shipped
                .iter()
                .any(|p| p.applies(&["bash".into()], "$ ls\nREADME.md", None))
        );
    }
}
