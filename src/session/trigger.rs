//! Output triggers: a regex on the program's output (ANSI stripped, whole lines, across
//! reads) that emits a `match` event, marks the recording, and may type a reply. One task
//! per session runs its triggers in order, off the output path (it is one more `Reader`).
//!
//! A trigger must react to the program, never to a human: it stays silent while a client
//! typed within `hold_while_typing`, and a line whose matched text a client typed in the
//! last [`ECHO_WINDOW`] is the terminal's echo of those keys, not output, so it is skipped.
//! After firing, it waits `cooldown` before it may fire again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;
use tokio_util::sync::CancellationToken;

use super::reader::{Next, Reader};
use super::wait::Lines;
use super::{ReadFrom, Session, SessionEvent};

/// Typed text this recent counts as an echo when it shows up in the output.
pub const ECHO_WINDOW: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub regex: Regex,
    /// A glob on the session's name or id; `None`: every session.
    pub session: Option<String>,
    /// Typed into the session on a match (as `send --no-enter`).
    pub send: Option<String>,
    pub cooldown: Duration,
    pub hold_while_typing: Duration,
}

impl Trigger {
    pub fn new(name: &str, pattern: &str) -> Result<Trigger, String> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(format!(
                "trigger '{name}': use 1-64 letters, digits, '-', '_' or '.' for its name"
            ));
        }
        if pattern.is_empty() {
            return Err(format!("trigger {name}: the pattern is empty"));
        }
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("trigger {name}: invalid regex: {e}"))?;
        Ok(Trigger {
            name: name.to_string(),
            regex,
            session: None,
            send: None,
            cooldown: Duration::from_secs(10),
            hold_while_typing: Duration::from_secs(5),
        })
    }

    /// Whether this trigger watches the session with this id and name.
    pub fn applies_to(&self, id: &str, name: Option<&str>) -> bool {
        self.session.as_deref().is_none_or(|g| {
            crate::authorized_keys::glob(g.as_bytes(), id.as_bytes())
                || name.is_some_and(|n| crate::authorized_keys::glob(g.as_bytes(), n.as_bytes()))
        })
    }
}

/// Watch `session`'s output from now on with `triggers` until it exits or `stop`.
pub async fn run(session: Arc<Session>, triggers: Vec<Trigger>, stop: CancellationToken) {
    let (mut reader, _) = Reader::bytes(&session, ReadFrom::End);
    let mut lines = Lines::new(reader.cursor());
    let mut fired: Vec<Option<Instant>> = vec![None; triggers.len()];
    loop {
        match reader.read(64 * 1024) {
            Next::Data(bytes) => {
                let first = reader.cursor() - bytes.len() as u64;
                let mut found = Vec::new();
                lines.each_line(&bytes, first, |line, _| {
                    for (i, t) in triggers.iter().enumerate() {
                        if let Some(m) = t.regex.find(line) {
                            found.push((i, m.as_str().to_string()));
                        }
                    }
                    false
                });
                for (i, text) in found {
                    fire(&session, &triggers[i], &mut fired[i], text).await;
                }
            }
            Next::Behind(_) => lines = Lines::new(reader.cursor()),
            Next::Exited(_) => return,
            Next::UpToDate => {
                tokio::select! {
                    _ = reader.changed() => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

/// One match: unless a human is typing, it is an echo, or the cooldown runs, say so and act.
async fn fire(session: &Session, t: &Trigger, last: &mut Option<Instant>, text: String) {
    if last.is_some_and(|at| at.elapsed() < t.cooldown) {
        return;
    }
    if session
        .activity
        .since_client_input()
        .is_some_and(|d| d < t.hold_while_typing)
    {
        return;
    }
    if session.typed_recently(&text, ECHO_WINDOW) {
        return;
    }
    *last = Some(Instant::now());
    tracing::info!(session = %session.id, trigger = %t.name, "trigger matched");
    session.mark(&format!("hearth: trigger {} matched: {text}", t.name));
    session.emit(SessionEvent::Match {
        trigger: t.name.clone(),
        text,
    });
    if let Some(reply) = &t.send {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let _ = session
            .send(bytes::Bytes::from(reply.clone().into_bytes()), uid)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_patterns_and_session_globs_are_checked() {
        assert!(Trigger::new("", "x").is_err());
        assert!(Trigger::new("a b", "x").is_err());
        assert!(Trigger::new("t", "").is_err());
        assert!(
            Trigger::new("t", "(")
                .unwrap_err()
                .contains("invalid regex")
        );
        let mut t = Trigger::new("limit", "usage limit").unwrap();
        assert!(t.applies_to("abcd1234", None));
        t.session = Some("agent-*".into());
        assert!(t.applies_to("abcd1234", Some("agent-7")));
        assert!(!t.applies_to("abcd1234", Some("build")));
    }
}
