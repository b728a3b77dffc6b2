//! Restart policies (`server --restart`): whether a program that exited is started again
//! in its session, after how long, and with which command. The session keeps its id, name,
//! port, clients, screen and recording; only the program (and its PTY) is new.
//!
//! This module is the pure part: the policy, the back-off, the bookkeeping of runs and the
//! lines shown on the screen. The waiting and the spawning are the session's
//! (`Session::run_exited`, on the run's waiter thread). It must not know about clients or
//! transports.

use std::time::{Duration, Instant, SystemTime};

use hearth_rpc::RestartWhen;

/// The wait before the first restart in a row; each next one waits twice as long...
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// ...up to this.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long was healthy: the next exit starts the count (and the back-off) over.
pub const HEALTHY: Duration = Duration::from_secs(10 * 60);

/// A session's restart policy, checked (`plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub when: RestartWhen,
    /// Restarts in a row before the session is left ended; `None`: no limit.
    pub max: Option<u32>,
    /// `--resume`: the command for every restart.
    pub resume: Option<Vec<String>>,
    /// The agent profiles' `resume` commands, by profile name: used when no `--resume`
    /// was given and the session's program was read by that profile.
    pub profile_resume: Vec<(String, Vec<String>)>,
    /// The first profile with a `resume` whose `detect.command` matches the program: used
    /// when no profile has read the screen yet (a program that dies at once).
    pub command_resume: Option<(String, Vec<String>)>,
}

impl Policy {
    /// The command a restart runs: `--resume`, else the resume of the profile that reads
    /// the session (`profile`), else of the profile its command matches, else `original`.
    pub fn command(&self, original: &[String], profile: Option<&str>) -> Vec<String> {
        if let Some(r) = &self.resume {
            return r.clone();
        }
        let by_profile = profile.and_then(|p| {
            self.profile_resume
                .iter()
                .find(|(name, _)| name == p)
                .map(|(_, c)| c)
        });
        by_profile
            .or(self.command_resume.as_ref().map(|(_, c)| c))
            .cloned()
            .unwrap_or_else(|| original.to_vec())
    }
}

/// The runs of a session's program: what is running, how many restarts there were, and
/// the wait for the next one.
pub struct Runs {
    /// The program now (the last one, once it has exited).
    pub leader: std::sync::Arc<super::pty::Leader>,
    /// Its command (a restart may run another: `--resume`).
    pub command: Vec<String>,
    /// When that run started.
    pub started: Instant,
    /// Restarts since the last healthy run.
    pub in_a_row: u32,
    /// Restarts since the session started.
    pub total: u32,
    /// The program exited and waits to be started again.
    pub waiting: Option<Waiting>,
    /// The session is being ended (`terminate`): no more restarts.
    pub stopping: bool,
}

/// A restart that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub attempt: u32,
    pub exit_code: i32,
    pub at: SystemTime,
}

impl Runs {
    pub fn new(leader: std::sync::Arc<super::pty::Leader>, command: Vec<String>) -> Runs {
        Runs {
            leader,
            command,
            started: Instant::now(),
            in_a_row: 0,
            total: 0,
            waiting: None,
            stopping: false,
        }
    }
}

/// The back-off before the `attempt`th restart in a row (1-based): 1 s, 2 s, 4 s... 60 s.
pub fn delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    (FIRST_DELAY * (1u32 << doublings)).min(MAX_DELAY)
}

/// Whether a program that exited with `code` after running `ran` is started again, given
/// `in_a_row` restarts since the last healthy run: the attempt's number and its delay.
pub fn decide(policy: &Policy, in_a_row: u32, code: i32, ran: Duration) -> Option<(u32, Duration)> {
    if policy.when == RestartWhen::OnFailure && code == 0 {
        return None;
    }
    let attempt = if ran >= HEALTHY { 1 } else { in_a_row + 1 };
    if policy.max.is_some_and(|max| attempt > max) {
        return None;
    }
    Some((attempt, delay(attempt)))
}

/// Where the cursor was when the program exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// On the alternate screen (leaving it shows what was on the main one).
    pub alternate: bool,
    /// At the start of a line (no new line is needed before hearth's).
    pub line_start: bool,
}

/// What the session shows when its program exited and will be started again: first the
/// modes a program that died may have left on (mouse reporting, bracketed paste,
/// application keys, a hidden cursor, colours, the alternate screen) turned off, so the
/// next program and every client's terminal start from a sane state.
pub fn exited_line(
    command: &[String],
    code: i32,
    attempt: u32,
    policy: &Policy,
    after: Duration,
    left: Left,
) -> String {
    use super::screen::{LEAVE_ALTERNATE, RESTORE};
    let of = policy.max.map(|m| format!(" of {m}")).unwrap_or_default();
    format!(
        "{}{RESTORE}{}[hearth] {} exited with status {code}: starting it again in {} \
         (restart {attempt}{of})\r\n",
        if left.alternate { LEAVE_ALTERNATE } else { "" },
        if left.line_start && !left.alternate {
            ""
        } else {
            "\r\n"
        },
        plain(command.first().map_or("the program", String::as_str)),
        seconds(after),
    )
}

/// What the session shows as it starts the program again.
pub fn restarted_line(command: &[String]) -> String {
    format!("[hearth] started again: {}\r\n", plain(&command.join(" ")))
}

/// What the session shows when the program cannot be started again.
pub fn failed_line(why: &str) -> String {
    format!("[hearth] cannot start it again: {}\r\n", plain(why))
}

/// A duration in whole seconds, as the lines say it.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs().max(1))
}

/// Text for the screen with no control characters in it (a command is the owner's, but
/// the screen must only show it).
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(when: RestartWhen, max: Option<u32>) -> Policy {
        Policy {
            when,
            max,
            resume: None,
            profile_resume: vec![("claude-code".into(), vec!["claude".into(), "-c".into()])],
            command_resume: None,
        }
    }

    #[test]
    fn the_delay_doubles_from_one_second_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|a| delay(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn on_failure_restarts_failures_only_and_max_stops_it() {
        let p = policy(RestartWhen::OnFailure, Some(2));
        let quick = Duration::from_secs(1);
        assert_eq!(decide(&p, 0, 0, quick), None, "a clean exit ends it");
        assert_eq!(decide(&p, 0, 1, quick), Some((1, FIRST_DELAY)));
        assert_eq!(decide(&p, 1, 137, quick), Some((2, Duration::from_secs(2))));
        assert_eq!(
            decide(&p, 2, 1, quick),
            None,
            "a third restart in a row is past max"
        );
        let always = policy(RestartWhen::Always, None);
        assert_eq!(decide(&always, 0, 0, quick), Some((1, FIRST_DELAY)));
        assert_eq!(decide(&always, 40, 0, quick), Some((41, MAX_DELAY)));
    }

    #[test]
    fn a_healthy_run_starts_the_count_and_the_back_off_over() {
        let p = policy(RestartWhen::OnFailure, Some(2));
        assert_eq!(decide(&p, 2, 1, HEALTHY - Duration::from_secs(1)), None);
        assert_eq!(decide(&p, 2, 1, HEALTHY), Some((1, FIRST_DELAY)));
    }

    #[test]
    fn the_restart_command_is_resume_then_the_profiles_then_the_original() {
        let original = vec!["claude".to_string(), "--model".into(), "opus".into()];
        let mut p = policy(RestartWhen::Always, None);
        assert_eq!(p.command(&original, None), original);
        assert_eq!(p.command(&original, Some("claude-code")), ["claude", "-c"]);
        assert_eq!(p.command(&original, Some("codex")), original);
        p.command_resume = Some(("claude-code".into(), vec!["claude".into(), "-r".into()]));
        assert_eq!(p.command(&original, None), ["claude", "-r"]);
        p.resume = Some(vec!["sh".into(), "-c".into(), "x".into()]);
        assert_eq!(p.command(&original, Some("claude-code")), ["sh", "-c", "x"]);
    }

    #[test]
    fn the_lines_say_why_and_carry_no_controls_from_the_command() {
        let p = policy(RestartWhen::OnFailure, Some(3));
        let mid_line = Left {
            alternate: false,
            line_start: false,
        };
        let command = ["ag\x1b]0;x\x07ent".to_string()];
        let line = exited_line(&command, 1, 2, &p, Duration::from_secs(2), mid_line);
        let said = "[hearth] ag?]0;x?ent exited with status 1: starting it again in 2 s \
                    (restart 2 of 3)\r\n";
        assert!(line.ends_with(&format!("\r\n{said}")), "{line:?}");
        assert!(!line.contains("\x1b[?1049l"));
        let line_start = Left {
            alternate: false,
            line_start: true,
        };
        let line = exited_line(&command, 1, 2, &p, Duration::from_secs(2), line_start);
        assert!(line.ends_with(&format!("u{said}")), "{line:?}");
        let alternate = Left {
            alternate: true,
            line_start: true,
        };
        assert!(exited_line(&[], 1, 1, &p, FIRST_DELAY, alternate).starts_with("\x1b[?1049l"));
        assert_eq!(
            restarted_line(&["claude".into(), "--continue".into()]),
            "[hearth] started again: claude --continue\r\n"
        );
    }
}
