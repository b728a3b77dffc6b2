//! The dashboard's state: the sessions as the control API lists them, kept current by the
//! event stream (badges change on `busy`/`idle`/`exited`/`locked`... without a new list),
//! the filter, and the selection (by id, so it survives reordering). Pure: no I/O.

use hearth_rpc::{Activity, Event, EventKind, SessionInfo, SessionState};

/// What a row's badge says, and how it is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Its agent needs a human (a profile reads its screen).
    Attention,
    Busy,
    Idle,
    Exited,
    Failed,
    Down,
    Locked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    pub text: String,
    pub tone: Tone,
}

#[derive(Debug, Default)]
pub struct Model {
    sessions: Vec<SessionInfo>,
    /// When each idle session went quiet (Unix ms, from the list or the `idle` event), so
    /// its idle time is computed at draw time instead of frozen at what was reported.
    idle_since: std::collections::HashMap<String, u64>,
    /// Rows shown must contain this (name, id or command; case-insensitive).
    pub filter: String,
    selected: Option<String>,
}

impl Model {
    /// Replace the list (a fresh `list` call); the selection stays on the same session if
    /// it still exists.
    pub fn set_sessions(&mut self, sessions: Vec<SessionInfo>) {
        let now = now_ms();
        self.idle_since = sessions
            .iter()
            .filter(|s| s.activity == Activity::Idle)
            .map(|s| (s.id.clone(), now.saturating_sub(s.idle_ms)))
            .collect();
        self.sessions = sessions;
        self.keep_selection();
    }

    /// A row's badge now: an idle session's idle time counts on between events.
    pub fn badge(&self, s: &SessionInfo, now_ms: u64) -> Badge {
        let idle_ms = self
            .idle_since
            .get(&s.id)
            .map_or(s.idle_ms, |since| now_ms.saturating_sub(*since));
        badge_idle(s, idle_ms)
    }

    /// Apply one event; `true` when the list must be fetched again (a session appeared,
    /// or the reader missed events).
    pub fn apply(&mut self, e: &Event) -> bool {
        let Some(s) = self.sessions.iter_mut().find(|s| s.id == e.session) else {
            // An event of a session we do not know: it is new (or we missed it).
            return !matches!(e.kind, EventKind::Exited { .. });
        };
        match &e.kind {
            EventKind::Created
            | EventKind::Skipped { .. }
            | EventKind::Lost { .. }
            | EventKind::Restarting { .. }
            | EventKind::Restarted { .. } => {
                return true;
            }
            EventKind::Busy => {
                s.activity = Activity::Busy;
                s.idle_ms = 0;
                self.idle_since.remove(&e.session);
            }
            EventKind::Idle { idle_ms } => {
                s.activity = Activity::Idle;
                s.idle_ms = *idle_ms;
                let at = humantime::parse_rfc3339(&e.time)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or_else(now_ms, |d| d.as_millis() as u64);
                self.idle_since
                    .insert(e.session.clone(), at.saturating_sub(*idle_ms));
            }
            EventKind::Exited { exit_code } => {
                s.activity = Activity::Exited;
                s.state = SessionState::Exited;
                s.exit_code = Some(*exit_code);
            }
            EventKind::Up => s.state = SessionState::Up,
            EventKind::Down => s.state = SessionState::Down,
            EventKind::Locked { .. } => s.locked = true,
            EventKind::Unlocked { .. } => s.locked = false,
            EventKind::Joined { .. } => s.clients += 1,
            EventKind::Left { .. } | EventKind::Kicked { .. } => {
                s.clients = s.clients.saturating_sub(1)
            }
            EventKind::Title { title } => s.title = Some(title.clone()),
            EventKind::Bell => s.bell_count += 1,
            EventKind::RecordingError { error } => s.recording_error = Some(error.clone()),
            EventKind::State { to, .. } => {
                s.attention = crate::session::profile::AgentState::parse(to)
                    .is_some_and(crate::session::profile::AgentState::attention);
                s.agent_state = to.clone();
            }
            EventKind::Renamed { to, .. } => s.name = Some(to.clone()),
            EventKind::Notify { .. }
            | EventKind::Pruned { .. }
            | EventKind::Prompt
            | EventKind::Command { .. }
            | EventKind::Resume { .. } => {}
            EventKind::Role { .. }
            | EventKind::Match { .. }
            | EventKind::Message { .. }
            | EventKind::Input { .. } => {}
        }
        false
    }

    /// A session the daemon no longer has (killed): drop it.
    pub fn remove(&mut self, id: &str) {
        self.sessions.retain(|s| s.id != id);
        self.keep_selection();
    }

    /// The rows shown: filtered by name, id or command (case-insensitive), grouped by host
    /// (ids are `host/id` when several daemons are shown), sessions whose agent needs a
    /// human first, then running ones, each group by name then id (a stable order: rows do
    /// not jump when a session turns busy).
    pub fn visible(&self) -> Vec<&SessionInfo> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&SessionInfo> = self
            .sessions
            .iter()
            .filter(|s| {
                needle.is_empty()
                    || s.id.contains(&needle)
                    || s.name
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains(&needle))
                    || s.command.join(" ").to_lowercase().contains(&needle)
            })
            .collect();
        rows.sort_by(|a, b| {
            (
                host_of(&a.id),
                !a.attention,
                a.exit_code.is_some(),
                a.name.is_none(),
                &a.name,
                &a.id,
            )
                .cmp(&(
                    host_of(&b.id),
                    !b.attention,
                    b.exit_code.is_some(),
                    b.name.is_none(),
                    &b.name,
                    &b.id,
                ))
        });
        rows
    }

    pub fn selected(&self) -> Option<&SessionInfo> {
        let id = self.selected.as_deref()?;
        self.visible().into_iter().find(|s| s.id == id)
    }

    /// Index of the selection among the visible rows.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_deref()?;
        self.visible().iter().position(|s| s.id == id)
    }

    /// Move the selection by `delta` rows (clamped).
    pub fn step(&mut self, delta: isize) {
        let rows = self.visible();
        if rows.is_empty() {
            self.selected = None;
            return;
        }
        let at = self
            .selected
            .as_deref()
            .and_then(|id| rows.iter().position(|s| s.id == id))
            .unwrap_or(0) as isize;
        let to = (at + delta).clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(rows[to].id.clone());
    }

    pub fn set_filter(&mut self, filter: String) {
        self.filter = filter;
        self.keep_selection();
    }

    /// The selection stays if still visible, else moves to the first visible row.
    fn keep_selection(&mut self) {
        let rows = self.visible();
        let keep = self
            .selected
            .as_deref()
            .is_some_and(|id| rows.iter().any(|s| s.id == id));
        if !keep {
            self.selected = rows.first().map(|s| s.id.clone());
        }
    }
}

/// `busy`, `idle 3m`, `exited 0`, `failed 2`, `down`, `locked`.
/// The host part of a `host/id` session id ("" for a plain id).
pub fn host_of(id: &str) -> &str {
    id.split_once('/').map_or("", |(h, _)| h)
}

/// The session part of a `host/id` session id.
pub fn short_id(id: &str) -> &str {
    id.split_once('/').map_or(id, |(_, i)| i)
}

pub fn badge(s: &SessionInfo) -> Badge {
    badge_idle(s, s.idle_ms)
}

/// The wall clock, in Unix ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn badge_idle(s: &SessionInfo, idle_ms: u64) -> Badge {
    let (text, tone) = match (s.exit_code, s.state, s.activity) {
        (Some(0), ..) => ("exited 0".to_string(), Tone::Exited),
        (Some(c), ..) => (format!("exited {c}"), Tone::Failed),
        (None, SessionState::Down, _) => ("down".into(), Tone::Down),
        (None, _, _) if s.locked => ("locked".into(), Tone::Locked),
        // An agent a profile reads: its state, and a mark when it needs a human.
        (None, ..) if s.attention => (attention_badge(&s.agent_state), Tone::Attention),
        (None, ..) if s.agent_state != "unknown" => (s.agent_state.clone(), Tone::Busy),
        (None, _, Activity::Busy) => ("busy".into(), Tone::Busy),
        (None, ..) => (format!("idle {}", short_age(idle_ms / 1000)), Tone::Idle),
    };
    Badge { text, tone }
}

/// A state that needs a human, short enough for the badge column.
fn attention_badge(state: &str) -> String {
    let short = match state {
        "needs_approval" => "approve",
        "waiting_input" => "input",
        "rate_limited" => "limit",
        other => other,
    };
    format!("! {short}")
}

/// `5s`, `3m`, `2h`, `4d`.
pub fn short_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn info(id: &str, name: Option<&str>) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            name: name.map(Into::into),
            port: 2222,
            bind: "127.0.0.1".into(),
            state: SessionState::Up,
            pid: Some(1),
            exit_code: None,
            clients: 0,
            command: vec!["claude".into()],
            cwd: "/work".into(),
            created_at: "2026-11-22T00:00:00Z".into(),
            created_unix: 0,
            join: "ssh -p 2222 127.0.0.1".into(),
            locked: false,
            access: hearth_rpc::Access::Keys,
            viewers_only: false,
            recording: None,
            recording_error: None,
            activity: Activity::Idle,
            idle_ms: 200_000,
            last_output_at: None,
            last_input_at: None,
            last_input_by: None,
            title: None,
            cols: 80,
            rows: 24,
            output_bytes: 0,
            bell_count: 0,
            host_key_fingerprint: String::new(),
            restarted_from: None,
            agent_state: "unknown".into(),
            agent_state_since: None,
            attention: false,
            profile: None,
            agent_fields: Default::default(),
            restart: None,
            restarts: 0,
            restarting: None,
        }
    }

    pub fn event(session: &str, kind: EventKind) -> Event {
        Event {
            seq: 1,
            time: String::new(),
            session: session.into(),
            name: None,
            kind,
        }
    }

    #[test]
    fn rows_sort_running_first_by_name_and_filter_by_name_id_or_command() {
        let mut m = Model::default();
        let mut done = info("cccc0003", Some("alpha"));
        done.exit_code = Some(0);
        let mut shell = info("dddd0004", None);
        shell.command = vec!["bash".into()];
        m.set_sessions(vec![
            info("aaaa0001", Some("web")),
            done,
            shell,
            info("bbbb0002", Some("api")),
        ]);
        let ids = |m: &Model| m.visible().iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&m), ["bbbb0002", "aaaa0001", "dddd0004", "cccc0003"]);
        assert_eq!(
            m.selected().unwrap().id,
            "bbbb0002",
            "the first row is selected"
        );
        m.set_filter("WE".into());
        assert_eq!(ids(&m), ["aaaa0001"]);
        assert_eq!(
            m.selected().unwrap().id,
            "aaaa0001",
            "selection follows the filter"
        );
        m.set_filter("bash".into());
        assert_eq!(ids(&m), ["dddd0004"]);
        m.set_filter("cccc".into());
        assert_eq!(ids(&m), ["cccc0003"]);
        m.set_filter(String::new());
        m.step(-10);
        m.step(2);
        assert_eq!(m.selected().unwrap().id, "dddd0004");
        m.step(10);
        assert_eq!(m.selected().unwrap().id, "cccc0003", "clamped");
        // A new list keeps the selection on the same session.
        m.set_sessions(vec![
            info("cccc0003", Some("alpha")),
            info("eeee0005", None),
        ]);
        assert_eq!(m.selected().unwrap().id, "cccc0003");
        m.remove("cccc0003");
        assert_eq!(m.selected().unwrap().id, "eeee0005");
    }

    /// The idle badge counts on between events (it froze at the reported value).
    #[test]
    fn idle_time_is_computed_when_drawn() {
        let mut m = Model::default();
        let mut s = info("aaaa0001", None);
        s.idle_ms = 28_000;
        m.set_sessions(vec![s]);
        let now = now_ms();
        let row = m.visible()[0].clone();
        assert_eq!(m.badge(&row, now).text, "idle 28s");
        assert_eq!(m.badge(&row, now + 20_000).text, "idle 48s");
        assert_eq!(m.badge(&row, now + 120_000).text, "idle 2m");
        // After activity: counted from the idle event's own time.
        m.apply(&event("aaaa0001", EventKind::Busy));
        assert_eq!(m.badge(&m.visible()[0].clone(), now + 5_000).text, "busy");
        let mut idle = event("aaaa0001", EventKind::Idle { idle_ms: 2_000 });
        idle.time = humantime::format_rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(now),
        )
        .to_string();
        m.apply(&idle);
        let row = m.visible()[0].clone();
        assert_eq!(m.badge(&row, now).text, "idle 2s");
        assert_eq!(m.badge(&row, now + 30_000).text, "idle 32s");
    }

    #[test]
    fn an_agent_that_needs_a_human_is_marked_and_listed_first() {
        let mut m = Model::default();
        m.set_sessions(vec![
            info("aaaa0001", Some("alpha")),
            info("bbbb0002", Some("beta")),
        ]);
        assert_eq!(m.visible()[0].id, "aaaa0001");
        let state = |to: &str| EventKind::State {
            from: "working".into(),
            to: to.into(),
            reason: "profile x".into(),
            text: None,
        };
        m.apply(&event("bbbb0002", state("needs_approval")));
        let rows = m.visible();
        assert_eq!(rows[0].id, "bbbb0002", "attention first");
        assert_eq!(
            badge(rows[0]),
            Badge {
                text: "! approve".into(),
                tone: Tone::Attention
            }
        );
        m.apply(&event("bbbb0002", state("working")));
        assert_eq!(m.visible()[0].id, "aaaa0001", "back in its place");
        assert_eq!(badge(m.visible()[1]).text, "working");
    }

    #[test]
    fn badges_follow_events() {
        let mut m = Model::default();
        m.set_sessions(vec![info("aaaa0001", Some("agent"))]);
        let badge_of = |m: &Model| badge(m.visible()[0]);
        assert_eq!(badge_of(&m).text, "idle 3m");
        assert!(!m.apply(&event("aaaa0001", EventKind::Busy)));
        assert_eq!(
            badge_of(&m),
            Badge {
                text: "busy".into(),
                tone: Tone::Busy
            }
        );
        m.apply(&event("aaaa0001", EventKind::Idle { idle_ms: 5000 }));
        assert_eq!(badge_of(&m).text, "idle 5s");
        m.apply(&event("aaaa0001", EventKind::Locked { by: "cli".into() }));
        assert_eq!(badge_of(&m).tone, Tone::Locked);
        m.apply(&event("aaaa0001", EventKind::Down));
        assert_eq!(badge_of(&m).text, "down");
        m.apply(&event(
            "aaaa0001",
            EventKind::Joined {
                client: "al-1".into(),
                role: hearth_rpc::PeerRole::Owner,
                addr: String::new(),
            },
        ));
        assert_eq!(m.visible()[0].clients, 1);
        m.apply(&event("aaaa0001", EventKind::Exited { exit_code: 2 }));
        assert_eq!(
            badge_of(&m),
            Badge {
                text: "exited 2".into(),
                tone: Tone::Failed
            }
        );
        // A session the model does not know, or a gap: fetch the list again.
        assert!(m.apply(&event("ffff0009", EventKind::Busy)));
        assert!(m.apply(&event("aaaa0001", EventKind::Skipped { count: 3 })));
    }
}
