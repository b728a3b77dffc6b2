//! How results and errors are shown: human text on stdout (errors on stderr), or with
//! `--json` exactly one JSON document on stdout, errors as
//! `{"error": {"kind": "...", "message": "..."}}`.

use std::time::{SystemTime, UNIX_EPOCH};

use hearth_rpc::{
    ApiError, DaemonInfo, EndedSession, ErrorKind, PROTOCOL_VERSION, PeerInfo, SessionInfo, VERSION,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::text::safe;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// A typed error (from the daemon, or shaped like one).
    Api(ApiError),
    /// Anything else, with its context chain.
    Other(anyhow::Error),
    /// Not an error: the command already said what happened and exits with this status
    /// (`wait`: 124 on timeout, 3 when the session ended first).
    Exit(u8),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl Failure {
    /// As the socket's error type (for listing it beside results).
    pub fn into_api(self) -> ApiError {
        match self {
            Failure::Api(e) => e,
            Failure::Other(e) => ApiError::internal(format!("{e:#}")),
            Failure::Exit(c) => ApiError::internal(format!("ended with status {c}")),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::Api(e) => e.kind,
            Failure::Other(_) | Failure::Exit(_) => ErrorKind::Internal,
        }
    }

    /// The process exit status.
    pub fn status(&self) -> u8 {
        match self {
            Failure::Exit(code) => *code,
            _ => 1,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Api(e) => e.message.clone(),
            Failure::Other(e) => format!("{e:#}"),
            Failure::Exit(code) => format!("exit status {code}"),
        }
    }

    /// Print the failure the way the output mode wants it.
    pub fn report(&self, json: bool) {
        if matches!(self, Failure::Exit(_)) {
            return;
        }
        if json {
            let v = json!({"error": {"kind": self.kind().as_str(), "message": self.message()}});
            line(&v.to_string());
        } else {
            eprintln!("hearth: {}", crate::text::safe_lines(&self.message()));
        }
    }
}

/// Write one line to stdout. A reader that went away (`hearth screen ID | head -1`) ends the
/// command quietly with status 0, as for ripgrep: nothing is left to say to anyone.
pub fn line(text: &str) {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(b'\n');
    let _ = raw(&bytes);
}

/// Write `bytes` to stdout as they are; a closed pipe ends the command quietly (see
/// [`line()`]), other errors are returned.
pub fn raw(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let r = out.write_all(bytes).and_then(|()| out.flush());
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r,
    }
}

/// Whether `failure` is a closed stdout (see [`line()`]).
pub fn is_broken_pipe(failure: &Failure) -> bool {
    match failure {
        Failure::Other(e) => e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Print `value` as JSON, or `human()` as text.
    pub fn value(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            line(&value.to_string());
        } else {
            // Whatever a program, client or file put in it, it never drives the terminal.
            let text = human();
            if !text.is_empty() {
                line(&crate::text::safe_lines(&text));
            }
        }
    }

    fn emit<T: Serialize>(&self, v: &T, human: impl FnOnce() -> String) {
        self.value(serde_json::to_value(v).unwrap_or(Value::Null), human)
    }

    pub fn session_started(&self, s: &SessionInfo) {
        let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
        v["already_running"] = json!(false);
        self.value(v, || {
            let name = s
                .name
                .as_deref()
                .map(|n| format!(" ({})", safe(n)))
                .unwrap_or_default();
            // A recording that failed is not announced as one (the warning says why).
            let recording = s
                .recording
                .as_deref()
                .filter(|_| s.recording_error.is_none())
                .map(|r| format!("\nrecording: {}", safe(r)))
                .unwrap_or_default();
            format!(
                "session {}{name} started: {}\njoin with: {}\nhost key: {} \
                 (`hearth known-hosts` prints lines for ~/.ssh/known_hosts){recording}",
                s.id,
                safe(&s.command.join(" ")),
                s.join,
                s.host_key_fingerprint
            )
        })
    }

    /// `server --if-absent` found the session running: say so (JSON: the session, with
    /// `"already_running": true`).
    pub fn session_already_running(&self, s: &SessionInfo) {
        let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
        v["already_running"] = json!(true);
        self.value(v, || {
            format!(
                "session {}{} already running: {}\njoin with: {}",
                s.id,
                s.name
                    .as_deref()
                    .map(|n| format!(" ({})", safe(n)))
                    .unwrap_or_default(),
                safe(&s.command.join(" ")),
                s.join
            )
        })
    }

    /// `restart`: the new session (JSON: `restarted_from` is the id it replaces).
    pub fn session_restarted(&self, s: &SessionInfo) {
        if !self.json
            && let Some(old) = &s.restarted_from
        {
            line(&format!("restarted {old} as a new session:"));
        }
        self.session_started(s)
    }

    pub fn session(&self, s: &SessionInfo) {
        self.emit(s, || table(std::slice::from_ref(s)))
    }

    pub fn sessions(&self, list: &[SessionInfo]) {
        self.emit(&list, || {
            if list.is_empty() {
                "no sessions (start one with `hearth server`)".into()
            } else {
                table(list)
            }
        })
    }

    /// `ps --hosts`: one table with a HOST column; hosts that could not be listed under it,
    /// with why. JSON: `{"hosts": [{"host", "sessions", "ended"} or {"host", "error"}]}`.
    #[allow(clippy::type_complexity)]
    pub fn sessions_by_host(
        &self,
        results: &[(
            String,
            Result<(Vec<SessionInfo>, Vec<EndedSession>), ApiError>,
        )],
    ) {
        let doc: Vec<serde_json::Value> = results
            .iter()
            .map(|(host, r)| match r {
                Ok((live, ended)) => json!({"host": host, "sessions": live, "ended": ended}),
                Err(e) => json!({"host": host, "error": e}),
            })
            .collect();
        self.emit(&json!({ "hosts": doc }), || {
            let mut rows = vec![];
            let mut notes = vec![];
            for (host, r) in results {
                match r {
                    Ok((live, ended)) => {
                        let mut t = table_rows(live);
                        let head = t.remove(0);
                        if rows.is_empty() {
                            let mut h = vec!["HOST".to_string()];
                            h.extend(head);
                            rows.push(h);
                        }
                        for mut row in t {
                            row.insert(0, host.clone());
                            rows.push(row);
                        }
                        if !ended.is_empty() {
                            notes.push(format!(
                                "{host}: {} ended (`hearth --host {host} history`)",
                                ended.len()
                            ));
                        }
                    }
                    Err(e) => notes.push(format!("{host}: unreachable: {}", e.message)),
                }
            }
            let mut text = if rows.len() > 1 {
                render(&rows)
            } else {
                "no sessions".to_string()
            };
            for n in notes {
                text.push('\n');
                text.push_str(&n);
            }
            text
        })
    }

    /// `ps --all`: running sessions, then ended ones. JSON: `{"sessions": [...], "ended": [...]}`.
    pub fn all_sessions(&self, live: &[SessionInfo], ended: &[EndedSession]) {
        self.emit(&json!({"sessions": live, "ended": ended}), || {
            if live.is_empty() && ended.is_empty() {
                return "no sessions, running or ended".into();
            }
            let mut text = if live.is_empty() {
                "no running sessions".to_string()
            } else {
                table(live)
            };
            if !ended.is_empty() {
                text.push_str("\n\nENDED\n");
                text.push_str(&history_table(ended));
            }
            text
        })
    }

    pub fn history(&self, list: &[EndedSession]) {
        self.emit(&list, || {
            if list.is_empty() {
                "no ended sessions".into()
            } else {
                history_table(list)
            }
        })
    }

    pub fn killed(&self, list: &[SessionInfo]) {
        self.emit(&list, || {
            list.iter()
                .map(|s| match s.exit_code {
                    Some(c) => format!("killed {} (exit code {c})", s.id),
                    None => format!("killed {}", s.id),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    pub fn pruned(&self, list: &[SessionInfo], dry_run: bool) {
        self.emit(&list, || {
            if list.is_empty() {
                return "nothing to prune".into();
            }
            let verb = if dry_run { "would prune" } else { "pruned" };
            list.iter()
                .map(|s| {
                    safe(&format!(
                        "{verb} {} {}",
                        s.id,
                        s.name.as_deref().unwrap_or("-")
                    ))
                    .into_owned()
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    pub fn peers(&self, list: &[PeerInfo]) {
        self.emit(&list, || {
            if list.is_empty() {
                return "no clients attached".into();
            }
            let mut rows = vec![
                [
                    "CLIENT",
                    "KIND",
                    "ROLE",
                    "SIZE",
                    "ADDRESS",
                    "CONNECTED",
                    "IN",
                    "OUT",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for p in list {
                rows.push(vec![
                    p.client.clone(),
                    match p.kind {
                        hearth_rpc::PeerKind::Ssh => "ssh".into(),
                        hearth_rpc::PeerKind::Web => "web".into(),
                    },
                    p.role.to_string(),
                    format!("{}x{}", p.cols, p.rows),
                    p.address.clone(),
                    p.connected_at.clone(),
                    p.bytes_in.to_string(),
                    p.bytes_out.to_string(),
                ]);
            }
            render(&rows)
        })
    }

    /// A new link: shown once.
    pub fn shared(&self, s: &hearth_rpc::Share) {
        self.emit(s, || {
            crate::text::safe_lines(&format!(
                "{}\nread-only, live; expires {}\nshown once: anyone with it can watch. `hearth share --revoke {}` ends it",
                s.url.as_deref().unwrap_or("-"),
                s.expires_at,
                s.id
            ))
            .into_owned()
        })
    }

    pub fn shares(&self, list: &[hearth_rpc::Share]) {
        self.emit(&list, || {
            if list.is_empty() {
                return "no share links".into();
            }
            let mut rows = vec![
                ["LINK", "SESSION", "NAME", "EXPIRES", "VIEWERS"]
                    .map(String::from)
                    .to_vec(),
            ];
            for s in list {
                rows.push(vec![
                    s.id.clone(),
                    s.session.clone(),
                    s.name.clone().unwrap_or_else(|| "-".into()),
                    s.expires_at.clone(),
                    s.viewers.to_string(),
                ]);
            }
            render(&rows)
        })
    }

    pub fn unshared(&self, list: &[hearth_rpc::Share]) {
        self.emit(&list, || {
            if list.is_empty() {
                return "no share links".into();
            }
            list.iter()
                .map(|s| safe(&format!("revoked {} (session {})", s.id, s.session)).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    pub fn kicked(&self, p: &PeerInfo) {
        self.emit(p, || format!("kicked {}", p.client))
    }

    pub fn version(&self, daemon: &DaemonInfo) {
        let v = json!({
            "cli": {"version": VERSION, "protocol": PROTOCOL_VERSION},
            "daemon": daemon,
        });
        self.value(v, || {
            let mut text = format!(
                "hearth {VERSION} (protocol {PROTOCOL_VERSION})\ndaemon {} (protocol {}, pid {}, socket {})",
                daemon.version, daemon.protocol, daemon.pid, daemon.socket
            );
            if let Some(addr) = daemon.lobby.as_deref().and_then(|a| a.parse::<std::net::SocketAddr>().ok()) {
                let join = crate::join::join_command(addr.ip(), addr.port());
                text.push_str(&format!("\nlobby: {join}"));
            }
            text
        })
    }
}

fn table(list: &[SessionInfo]) -> String {
    let mut text = render(&table_rows(list));
    for s in list {
        if let Some(why) = &s.recording_error {
            text.push_str(&format!("\n{}: {why}", s.id));
        }
    }
    text
}

/// The session table's header and rows.
fn table_rows(list: &[SessionInfo]) -> Vec<Vec<String>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut rows = vec![
        [
            "ID", "NAME", "PORT", "STATE", "ACTIVITY", "AGENT", "CLIENTS", "AGE", "COMMAND", "JOIN",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in list {
        let mut state = match (s.state.as_str(), s.exit_code, &s.restarting) {
            ("exited", Some(c), _) => format!("exited({c})"),
            // The listener is up; the program waits for its next start.
            (_, None, Some(r)) => format!("restarting({})", r.exit_code),
            (st, _, _) => st.to_string(),
        };
        if s.restarts > 0 {
            state.push_str(&format!(",restarts={}", s.restarts));
        }
        // What a glance at `ps` must not miss: who may join.
        if s.access != hearth_rpc::Access::Keys {
            state.push_str(",OPEN");
        }
        if s.locked {
            state.push_str(",locked");
        }
        if s.recording_error.is_some() {
            state.push_str(",rec-stopped");
        }
        let command = short_command(&s.command);
        rows.push(vec![
            s.id.clone(),
            s.name.clone().unwrap_or_else(|| "-".into()),
            s.port.to_string(),
            state,
            activity(s),
            agent(s),
            s.clients.to_string(),
            age(now.saturating_sub(s.created_unix)),
            command,
            if s.state.as_str() == "up" {
                s.join.clone()
            } else {
                "-".into()
            },
        ]);
    }
    rows
}

fn history_table(list: &[EndedSession]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut rows = vec![
        ["ID", "NAME", "EXIT", "ENDED", "RAN", "COMMAND", "RECORDING"]
            .map(String::from)
            .to_vec(),
    ];
    for s in list {
        let (exit, ended, ran) = match s.ended_unix {
            // The daemon died with it: the end is the recording's last write.
            Some(end) if s.lost => (
                "?".into(),
                format!("{} ago (daemon died)", age(now.saturating_sub(end))),
                age(end.saturating_sub(s.created_unix)),
            ),
            Some(end) => (
                s.exit_code.map_or("-".into(), |c| c.to_string())
                    + &match s.restarts {
                        0 => String::new(),
                        n => format!(" ({n} restarts)"),
                    },
                format!("{} ago", age(now.saturating_sub(end))),
                age(end.saturating_sub(s.created_unix)),
            ),
            // The daemon stopped without noting the end (a crash).
            None => ("?".into(), "with the daemon".into(), "?".into()),
        };
        rows.push(vec![
            s.id.clone(),
            s.name.clone().unwrap_or_else(|| "-".into()),
            exit,
            ended,
            ran,
            short_command(&s.command),
            match &s.recording {
                Some(p) => format!("{p} ({})", bytes(s.recording_bytes)),
                None => "-".into(),
            },
        ]);
    }
    render(&rows)
}

fn short_command(command: &[String]) -> String {
    let command = command.join(" ");
    if command.chars().count() > 40 {
        command.chars().take(39).collect::<String>() + "…"
    } else {
        command
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// `busy`, `idle 3m`, `exited 0`.
/// What its agent is doing (`-` when nothing reads it), marked with `!` when a human is
/// needed, with the time a limit resets when the screen said.
pub fn agent(s: &SessionInfo) -> String {
    if s.agent_state == "unknown" {
        return "-".into();
    }
    let mut out = s.agent_state.clone();
    if s.agent_state == "rate_limited"
        && let Some(at) = s.agent_fields.get("resets_at")
    {
        out.push_str(" until ");
        out.push_str(at);
    }
    if s.attention {
        out.push_str(" !");
    }
    out
}

/// Busy or idle (and for how long), or how it exited.
pub fn activity(s: &SessionInfo) -> String {
    match s.activity {
        hearth_rpc::Activity::Busy => "busy".into(),
        hearth_rpc::Activity::Idle => format!("idle {}", age(s.idle_ms / 1000)),
        hearth_rpc::Activity::Exited => match s.exit_code {
            Some(c) => format!("exited {c}"),
            None => "exited".into(),
        },
    }
}

fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
/// Rows as aligned columns; every cell escaped ([`safe`]): a command line, name, title or
/// path may hold anything a program or client chose.
fn render(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| safe(c).into_owned()).collect())
        .collect();
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(125), "2m");
        assert_eq!(age(7300), "2h");
        assert_eq!(age(200_000), "2d");
    }

    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["A".to_string(), "BB".to_string()],
            vec!["long".to_string(), "x".to_string()],
        ];
        assert_eq!(render(&rows), "A     BB\nlong  x");
    }
}
