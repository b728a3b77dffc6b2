//! Waiting on a session, in the daemon, on the output cursor: for a line of output that
//! matches a regex (ANSI sequences stripped, lines joined across reads), for the rendered
//! screen to match, for the program to be idle, or for it to exit. Each call is bounded in
//! time and, when it runs out, says where to resume, so a caller can loop over bounded
//! waits without ever missing output.
//!
//! Uses the session's [`Reader`] like every other reader; knows nothing of transports.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use tokio::time::Instant;

use super::echo::Echo;
use super::reader::{Next, Reader};
use super::{ReadFrom, Session};

/// Longest line kept for matching (longer lines are matched on their first part).
const MAX_LINE: usize = 64 * 1024;

/// What to wait for.
#[derive(Debug, Clone)]
pub enum Until {
    /// A line of output (or of the screen, with `screen`) matching the regex. Unless
    /// `echo`, text that was typed or sent in is not output (see [`super::echo`]).
    Match {
        regex: Regex,
        screen: bool,
        echo: bool,
    },
    /// No output for this long.
    Idle(Duration),
    /// The program exits.
    Exit,
    /// Its agent is in one of these states.
    State(Vec<super::profile::AgentState>),
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// `text` matched within `line`; `offset` is the output offset just after that line.
    Match {
        text: String,
        line: String,
        offset: u64,
    },
    Idle {
        idle: Duration,
        offset: u64,
    },
    Exit {
        code: i32,
        offset: u64,
    },
    /// The program ended before the condition happened.
    Ended {
        code: i32,
        offset: u64,
    },
    /// Time ran out; continue from `resume` (the start of a line not yet complete).
    Timeout {
        resume: u64,
    },
    /// The agent reached `state`.
    State {
        state: super::profile::AgentState,
        offset: u64,
    },
}

/// Wait until `until` holds, at most `limit`. A stream match starts at `from` (default:
/// the current end of output).
pub async fn wait(
    session: &Arc<Session>,
    until: &Until,
    from: Option<u64>,
    limit: Duration,
) -> Waited {
    let deadline = Instant::now() + limit;
    match until {
        Until::Exit => {
            let mut exit = session.exit_watch();
            match tokio::time::timeout_at(deadline, exit.wait_for(|c| c.is_some())).await {
                Ok(Ok(code)) => Waited::Exit {
                    code: code.unwrap_or(-1),
                    offset: session.output_end(),
                },
                _ => Waited::Timeout {
                    resume: session.output_end(),
                },
            }
        }
        Until::Idle(quiet) => idle(session, *quiet, deadline).await,
        Until::State(states) => agent_state(session, states, deadline).await,
        Until::Match {
            regex,
            screen: true,
            echo,
        } => screen_match(session, regex, *echo, deadline).await,
        Until::Match {
            regex,
            screen: false,
            echo,
        } => stream_match(session, regex, *echo, from, deadline).await,
    }
}

/// Until the agent is in one of `states` (at once if it is), the program ends, or the
/// deadline.
async fn agent_state(
    session: &Arc<Session>,
    states: &[super::profile::AgentState],
    deadline: Instant,
) -> Waited {
    let mut state = session.agent_state.subscribe();
    let mut exit = session.exit_watch();
    tokio::select! {
        reached = tokio::time::timeout_at(deadline, state.wait_for(|s| states.contains(s))) => {
            match reached {
                Ok(Ok(s)) => Waited::State { state: *s, offset: session.output_end() },
                _ => Waited::Timeout { resume: session.output_end() },
            }
        }
        // An exit that the profile does not turn into a state waited for ends the wait.
        code = exit.wait_for(|c| c.is_some()), if !states.contains(&super::profile::AgentState::Exited) => {
            let code = code.ok().and_then(|c| *c).unwrap_or(-1);
            Waited::Ended { code, offset: session.output_end() }
        }
    }
}

async fn idle(session: &Arc<Session>, quiet: Duration, deadline: Instant) -> Waited {
    let mut output = session.output_watch();
    let mut exit = session.exit_watch();
    loop {
        output.borrow_and_update();
        if let Some(code) = *exit.borrow_and_update() {
            return Waited::Ended {
                code,
                offset: session.output_end(),
            };
        }
        let idle = session.activity.idle();
        if idle >= quiet {
            return Waited::Idle {
                idle,
                offset: session.output_end(),
            };
        }
        let due = Instant::now() + (quiet - idle);
        if due > deadline {
            // Not idle long enough before the deadline, unless output stops right now:
            // sleep to the deadline, or until something happens.
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Waited::Timeout { resume: session.output_end() };
                }
                _ = output.changed() => {}
                _ = exit.changed() => {}
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = output.changed() => {}
            _ = exit.changed() => {}
        }
    }
}

async fn screen_match(
    session: &Arc<Session>,
    regex: &Regex,
    with_echo: bool,
    deadline: Instant,
) -> Waited {
    let mut output = session.output_watch();
    let mut exit = session.exit_watch();
    loop {
        output.borrow_and_update();
        let ended = *exit.borrow_and_update();
        let text = session.screen_text();
        let echo = if with_echo {
            Echo::none()
        } else {
            session.echo(u64::MAX, None).unwrap_or_default()
        };
        if let Some((text, line)) = text
            .lines()
            .find_map(|l| echo.find(regex, l).map(|m| (m.into_owned(), l.to_string())))
        {
            return Waited::Match {
                text,
                line,
                offset: session.output_end(),
            };
        }
        if let Some(code) = ended {
            return Waited::Ended {
                code,
                offset: session.output_end(),
            };
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                return Waited::Timeout { resume: session.output_end() };
            }
            _ = output.changed() => {
                // Let a burst of redraws land before rendering the screen again.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = exit.changed() => {}
        }
    }
}

async fn stream_match(
    session: &Arc<Session>,
    regex: &Regex,
    with_echo: bool,
    from: Option<u64>,
    deadline: Instant,
) -> Waited {
    let start = from.map_or(ReadFrom::End, ReadFrom::Offset);
    let (mut reader, _) = Reader::bytes(session, start);
    let mut lines = Lines::new(reader.cursor());
    let mut echo = Echo::none();
    loop {
        match reader.read(64 * 1024) {
            Next::Data(bytes) => {
                let first = reader.cursor() - bytes.len() as u64;
                // Input written before the end of this batch may echo in it.
                if !with_echo && let Some(e) = session.echo(reader.cursor(), Some(echo.key())) {
                    echo = e;
                }
                if let Some(m) = lines.feed(&bytes, first, regex, &echo) {
                    return m;
                }
            }
            // Output the log no longer holds: carry on from what it has.
            Next::Behind(_) => lines = Lines::new(reader.cursor()),
            Next::Exited(code) => {
                return Waited::Ended {
                    code,
                    offset: reader.cursor(),
                };
            }
            Next::UpToDate => {
                if tokio::time::timeout_at(deadline, reader.changed())
                    .await
                    .is_err()
                {
                    return Waited::Timeout {
                        resume: lines.line_start,
                    };
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    Ground,
    Escape,
    Csi,
    /// OSC, DCS and the other strings that end with BEL or ST.
    Str,
    StringEnd,
}

/// Output split into lines with ANSI sequences and control characters removed; `\r` and
/// `\n` both end a line (progress bars redraw with `\r`). Also used by triggers.
pub(crate) struct Lines {
    esc: Esc,
    line: Vec<u8>,
    /// The output offset where the current line began.
    line_start: u64,
}

impl Lines {
    pub(crate) fn new(at: u64) -> Lines {
        Lines {
            esc: Esc::Ground,
            line: Vec::new(),
            line_start: at,
        }
    }

    /// Feed `bytes`, which start at output offset `first`; the first line (complete, or the
    /// one still being written at the end) that matches.
    fn feed(&mut self, bytes: &[u8], first: u64, regex: &Regex, echo: &Echo) -> Option<Waited> {
        let mut found = None;
        self.each_line(bytes, first, |line, end| {
            found = echo.find(regex, line).map(|m| Waited::Match {
                text: m.into_owned(),
                line: line.to_string(),
                offset: end,
            });
            found.is_some()
        });
        if found.is_some() {
            return found;
        }
        // The line still being written (a prompt waits here).
        let end = first + bytes.len() as u64;
        self.matches(regex, end, echo)
    }

    /// The line still being written, if any.
    pub(crate) fn pending(&self) -> Option<String> {
        (!self.line.is_empty()).then(|| String::from_utf8_lossy(&self.line).into_owned())
    }

    /// Feed `bytes` (starting at output offset `first`) and call `f` with each completed,
    /// non-empty line and the offset just past it, until `f` returns true.
    pub(crate) fn each_line(
        &mut self,
        bytes: &[u8],
        first: u64,
        mut f: impl FnMut(&str, u64) -> bool,
    ) {
        for (i, &b) in bytes.iter().enumerate() {
            let at = first + i as u64;
            match self.esc {
                Esc::Ground => match b {
                    0x1b => self.esc = Esc::Escape,
                    b'\r' | b'\n' => {
                        let stop = !self.line.is_empty()
                            && f(&String::from_utf8_lossy(&self.line), at + 1);
                        self.line.clear();
                        self.line_start = at + 1;
                        if stop {
                            // Resume after this line: the rest of `bytes` is not consumed.
                            return;
                        }
                    }
                    b'\t' => self.push(b' '),
                    0..=0x1f | 0x7f => {}
                    _ => self.push(b),
                },
                Esc::Escape => {
                    self.esc = match b {
                        b'[' => Esc::Csi,
                        b']' | b'P' | b'X' | b'^' | b'_' => Esc::Str,
                        _ => Esc::Ground,
                    }
                }
                Esc::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        self.esc = Esc::Ground;
                    }
                }
                Esc::Str => match b {
                    0x07 => self.esc = Esc::Ground,
                    0x1b => self.esc = Esc::StringEnd,
                    _ => {}
                },
                Esc::StringEnd => self.esc = if b == b'\\' { Esc::Ground } else { Esc::Str },
            }
        }
    }

    fn push(&mut self, b: u8) {
        if self.line.len() < MAX_LINE {
            self.line.push(b);
        }
    }

    fn matches(&self, regex: &Regex, offset: u64, echo: &Echo) -> Option<Waited> {
        if self.line.is_empty() {
            return None;
        }
        let line = String::from_utf8_lossy(&self.line);
        echo.find(regex, &line).map(|m| Waited::Match {
            text: m.into_owned(),
            line: line.to_string(),
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]], re: &str) -> Option<Waited> {
        let regex = Regex::new(re).unwrap();
        let mut lines = Lines::new(0);
        let mut at = 0;
        for c in chunks {
            if let Some(m) = lines.feed(c, at, &regex, &Echo::none()) {
                return Some(m);
            }
            at += c.len() as u64;
        }
        None
    }

    #[test]
    fn matches_across_reads_with_colours_stripped() {
        let m = scan(&[b"build \x1b[32mOK", b"\x1b[0m done\r\nnext\n"], "OK done").unwrap();
        assert_eq!(
            m,
            Waited::Match {
                text: "OK done".into(),
                line: "build OK done".into(),
                // Just past the `\r` that ended the line.
                offset: 23
            }
        );
        let m = scan(&[b"\x1b]0;title MATCH\x07plain\n"], "MATCH");
        assert!(m.is_none(), "OSC strings are not output text");
    }

    #[test]
    fn a_prompt_without_a_newline_matches() {
        let m = scan(&[b"thinking...\r", b"ready> "], "^ready> $").unwrap();
        assert!(matches!(m, Waited::Match { ref line, .. } if line == "ready> "));
    }
}
