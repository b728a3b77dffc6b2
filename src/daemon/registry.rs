//! The daemon's sessions: each [`Hosted`] pairs a transport-free session with its SSH
//! listener (a session in this process); a [`super::remote::Remote`] is a session served by
//! its own process. [`Registry`] holds either kind: lookup by id, unique id prefix or name,
//! names and slots claimed atomically. Plain data under a short-held lock.

use std::net::IpAddr;
use std::sync::Arc;

use hearth_rpc::{Access, Activity, ApiError, ErrorKind, SessionInfo, SessionState};

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
use parking_lot::Mutex;

use crate::session::{Role, Session};
use crate::ssh;

pub struct Hosted {
    pub session: Arc<Session>,
    pub bind: IpAddr,
    pub port: u16,
    pub shared: Arc<ssh::SessionServer>,
    /// `Some` while `up`.
    pub listener: Mutex<Option<ssh::Listener>>,
    /// What started it (with the port it got), for `restart`.
    pub request: hearth_rpc::CreateRequest,
    /// The session this one restarted, if any.
    pub restarted_from: Option<String>,
}

impl Hosted {
    pub fn state(&self) -> SessionState {
        if self.session.exit_code().is_some() {
            SessionState::Exited
        } else if self.listener.lock().is_some() {
            SessionState::Up
        } else {
            SessionState::Down
        }
    }

    pub fn info(&self) -> SessionInfo {
        let s = &self.session;
        let created_unix = s
            .created_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let act = s.activity.snapshot();
        let (title, bells) = s.title_and_bells();
        let (cols, rows) = s.pty_size();
        let agent = s.agent.lock().clone();
        let (restarts, waiting) = s.restarts();
        SessionInfo {
            id: s.id.clone(),
            name: s.name(),
            port: self.port,
            bind: self.bind.to_string(),
            state: self.state(),
            pid: s.pid(),
            exit_code: s.exit_code(),
            clients: s.client_count(),
            command: s.command(),
            cwd: s.spec.cwd.display().to_string(),
            created_at: humantime::format_rfc3339_seconds(s.created_at).to_string(),
            created_unix,
            join: crate::join::join_command(self.bind, self.port),
            locked: s.is_locked(),
            access: match self.shared.access.open {
                None => Access::Keys,
                Some(Role::Viewer) => Access::Open,
                Some(_) => Access::OpenCollaborator,
            },
            viewers_only: self.shared.access.viewers_only,
            recording: s.recording().map(|p| p.display().to_string()),
            recording_error: s.recording_error(),
            activity: if s.exit_code().is_some() {
                Activity::Exited
            } else if act.busy {
                Activity::Busy
            } else {
                Activity::Idle
            },
            idle_ms: act.idle.as_millis() as u64,
            last_output_at: act.last_output_at.map(rfc3339),
            last_input_at: act.last_input_at.map(rfc3339),
            last_input_by: act.last_input_by,
            title,
            cols,
            rows,
            output_bytes: s.output_end(),
            bell_count: bells,
            host_key_fingerprint: self
                .shared
                .config
                .keys
                .first()
                .map(|k| ssh::keys::fingerprint_of(k.public_key().key_data()))
                .unwrap_or_default(),
            restarted_from: self.restarted_from.clone(),
            agent_state: agent.state.name().to_string(),
            agent_state_since: agent.profile.as_ref().map(|_| rfc3339(agent.since)),
            attention: agent.state.attention(),
            profile: agent.profile,
            agent_fields: agent.fields,
            restart: self.request.restart.clone(),
            restarts,
            restarting: waiting.map(|w| hearth_rpc::Restarting {
                attempt: w.attempt,
                exit_code: w.exit_code,
                at: rfc3339(w.at),
            }),
        }
    }

    /// Close the listener (no new joins). Returns whether it was open.
    pub fn close_listener(&self) -> bool {
        match self.listener.lock().take() {
            Some(l) => {
                l.close();
                true
            }
            None => false,
        }
    }
}

/// What the registry needs to know of an entry.
pub trait Entry {
    fn id(&self) -> &str;
    fn name(&self) -> Option<String>;
    /// The port it keeps for itself while it is down (`hearth up` reopens it), if it is.
    fn kept_port(&self) -> Option<u16>;
}

impl Entry for Hosted {
    fn id(&self) -> &str {
        &self.session.id
    }
    fn name(&self) -> Option<String> {
        self.session.name()
    }
    fn kept_port(&self) -> Option<u16> {
        (self.state() == SessionState::Down).then_some(self.port)
    }
}

pub struct Registry<T> {
    sessions: Mutex<Vec<Arc<T>>>,
    /// Names (and slots) taken by creates still under way: checked and taken under the
    /// sessions lock, so two concurrent creates cannot both get a name. Lock order:
    /// `sessions` -> `pending`.
    pending: Mutex<Vec<Option<String>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            sessions: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
        }
    }
}

/// A create's claim on its name and a session slot; dropping it releases the claim (the
/// registered session holds the name from then on).
pub struct Claim<'a> {
    pending: &'a Mutex<Vec<Option<String>>>,
    name: Option<String>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut pending = self.pending.lock();
        if let Some(i) = pending.iter().position(|n| *n == self.name) {
            pending.swap_remove(i);
        }
    }
}

impl<T: Entry> Registry<T> {
    /// Claim `name` and a slot under `max` sessions, atomically against every other create.
    pub fn claim(&self, name: Option<&str>, max: usize) -> Result<Claim<'_>, ApiError> {
        let sessions = self.sessions.lock();
        let mut pending = self.pending.lock();
        if sessions.len() + pending.len() >= max {
            return Err(ApiError::new(
                ErrorKind::Limit,
                format!("the daemon already runs {max} sessions (the limit)"),
            ));
        }
        if let Some(n) = name {
            let taken = sessions.iter().any(|h| h.name().as_deref() == Some(n))
                || pending.iter().any(|p| p.as_deref() == Some(n));
            if taken {
                return Err(ApiError::new(
                    ErrorKind::AlreadyExists,
                    format!("a session named '{n}' already exists"),
                ));
            }
        }
        pending.push(name.map(str::to_string));
        Ok(Claim {
            pending: &self.pending,
            name: name.map(str::to_string),
        })
    }

    /// The `down` session that keeps `port` for itself, if any.
    pub fn port_owner(&self, port: u16) -> Option<Arc<T>> {
        self.sessions
            .lock()
            .iter()
            .find(|h| h.kept_port() == Some(port))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<T>> {
        self.sessions.lock().clone()
    }

    pub fn id_taken(&self, id: &str) -> bool {
        self.sessions.lock().iter().any(|h| h.id() == id)
    }

    pub fn insert(&self, hosted: Arc<T>) {
        self.sessions.lock().push(hosted);
    }

    pub fn remove(&self, id: &str) {
        self.sessions.lock().retain(|h| h.id() != id);
    }

    /// Exact id, then exact name, then unique id prefix.
    pub fn resolve(&self, target: &str) -> Result<Arc<T>, ApiError> {
        let sessions = self.sessions.lock();
        if target.is_empty() {
            return Err(ApiError::invalid("empty session id"));
        }
        if let Some(h) = sessions.iter().find(|h| h.id() == target) {
            return Ok(Arc::clone(h));
        }
        if let Some(h) = sessions
            .iter()
            .find(|h| h.name().as_deref() == Some(target))
        {
            return Ok(Arc::clone(h));
        }
        let matches: Vec<&Arc<T>> = sessions
            .iter()
            .filter(|h| h.id().starts_with(target))
            .collect();
        match matches.as_slice() {
            [one] => Ok(Arc::clone(one)),
            [] => Err(ApiError::not_found(format!(
                "no session matches '{target}' (see `hearth ps`)"
            ))),
            many => Err(ApiError::new(
                ErrorKind::Ambiguous,
                format!(
                    "'{target}' matches several sessions: {}",
                    many.iter().map(|h| h.id()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}
