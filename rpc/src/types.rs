//! Plain data that crosses the control socket. Field names here are the field names of
//! `hearth --json`: one name per concept across code, CLI, docs and JSON.

use serde::{Deserialize, Serialize};

/// What `hello` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    pub socket: String,
    pub started_at: String,
    /// The daemon's SSH host key as an OpenSSH public-key line (every session uses it).
    #[serde(default)]
    pub host_key: String,
    /// Its SHA-256 fingerprint, as `ssh` shows it.
    #[serde(default)]
    pub host_key_fingerprint: String,
    /// Where the lobby listens (`ADDR:PORT`), if it is open.
    #[serde(default)]
    pub lobby: Option<String>,
    /// Names the numbering of its events: a reader's `since` holds for every daemon with
    /// the same epoch (a restarted daemon continues its predecessor's ring).
    #[serde(default)]
    pub events_epoch: String,
}

/// A session's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The child runs and the SSH listener accepts joins.
    Up,
    /// The child runs; the listener is closed (no new joins).
    Down,
    /// The child has ended; `exit_code` holds its status.
    Exited,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Up => "up",
            SessionState::Down => "down",
            SessionState::Exited => "exited",
        }
    }
}

/// A session as every command that returns one reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// 8 lowercase hex characters.
    pub id: String,
    pub name: Option<String>,
    /// The SSH port (kept while `down`, so `up` reopens the same one).
    pub port: u16,
    /// The address the listener binds.
    pub bind: String,
    pub state: SessionState,
    /// The child's pid (its process group leader).
    pub pid: Option<u32>,
    /// Set once the child has exited (128 + signal number when killed by a signal).
    pub exit_code: Option<i32>,
    /// Attached SSH clients.
    pub clients: usize,
    /// The command and its arguments.
    pub command: Vec<String>,
    pub cwd: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Seconds since the Unix epoch (same instant as `created_at`).
    pub created_unix: u64,
    /// The command line to type to join.
    pub join: String,
    /// No new joins (except owners).
    pub locked: bool,
    /// Who may join.
    pub access: Access,
    /// Everyone but owners joins as a viewer.
    pub viewers_only: bool,
    /// The asciicast recording, when recording.
    pub recording: Option<String>,
    /// Why the session is not (or no longer) recording, when it was asked to.
    pub recording_error: Option<String>,
    /// `busy` (output within the last 2 s), `idle`, or `exited`.
    pub activity: Activity,
    /// Milliseconds since the last output (since the start if none yet).
    pub idle_ms: u64,
    /// RFC 3339, UTC; `None` before the first output / input.
    pub last_output_at: Option<String>,
    pub last_input_at: Option<String>,
    /// The client that typed last (`alice-1`), or `api` for `send`.
    pub last_input_by: Option<String>,
    /// The title the program set (OSC 0/2).
    pub title: Option<String>,
    /// The terminal's size.
    pub cols: u16,
    pub rows: u16,
    /// Bytes the program has printed.
    pub output_bytes: u64,
    /// Bells the program rang.
    pub bell_count: u64,
    /// SHA-256 fingerprint of the daemon's host key (the same for every session).
    pub host_key_fingerprint: String,
    /// The id of the session this one restarted (`restart`), if it did: a script that held
    /// that id follows here.
    #[serde(default)]
    pub restarted_from: Option<String>,
    /// What its agent is doing, as a profile reads its screen (`[[profiles]]`):
    /// `working`, `waiting_input`, `needs_approval`, `rate_limited`, `error`, `exited`, or
    /// `unknown` when no profile applies. (`state` is the listener's: up, down, exited.)
    #[serde(default = "unknown")]
    pub agent_state: String,
    /// When it entered that state (RFC 3339), once a profile applies.
    #[serde(default)]
    pub agent_state_since: Option<String>,
    /// Its agent needs a human: `needs_approval`, `waiting_input`, `rate_limited`, `error`.
    #[serde(default)]
    pub attention: bool,
    /// The profile that reads it, if one applies.
    #[serde(default)]
    pub profile: Option<String>,
    /// What the deciding rule captured (`resets_at`...).
    #[serde(default)]
    pub agent_fields: std::collections::BTreeMap<String, String>,
    /// When its program is started again after it exits (`server --restart`); `None`: never.
    #[serde(default)]
    pub restart: Option<RestartPolicy>,
    /// How many times its program was started again (same id, same viewers, one recording).
    #[serde(default)]
    pub restarts: u32,
    /// Its program exited and is waiting to be started again: `pid` is `None` meanwhile.
    #[serde(default)]
    pub restarting: Option<Restarting>,
}

/// When a session's program is started again after it exits (`server --restart`). The
/// session keeps its id, name, port, clients and recording; only the program is new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub when: RestartWhen,
    /// Restarts in a row (each run shorter than 10 minutes) before it is left ended;
    /// `None`: no limit.
    pub max_restarts: Option<u32>,
    /// The command run on restarts instead of the original (`--resume`, e.g. `claude
    /// --continue`); `None`: the agent profile's `resume` arguments added to the original
    /// command, or the original command as it was.
    pub resume: Option<Vec<String>>,
}

/// Which exits restart the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartWhen {
    /// A non-zero status, or death by a signal not sent by `kill`.
    OnFailure,
    /// Every exit but one asked for (`kill`, `prune`, the daemon's `stop`).
    Always,
}

/// A program that exited and is started again after a delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restarting {
    /// 1 for the first restart in a row.
    pub attempt: u32,
    /// The status it exited with.
    pub exit_code: i32,
    /// When it starts again (RFC 3339, UTC).
    pub at: String,
}

fn unknown() -> String {
    "unknown".into()
}

/// A session that has ended and left the daemon, as `history` and `ps --all` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedSession {
    pub id: String,
    pub name: Option<String>,
    pub command: Vec<String>,
    pub cwd: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub created_unix: u64,
    /// When it ended (`None` only while a crashed daemon's successor has not settled it).
    pub ended_at: Option<String>,
    pub ended_unix: Option<u64>,
    /// The child's status (128 + signal number when killed by a signal); `None` when it
    /// ended with the daemon unrecorded.
    pub exit_code: Option<i32>,
    /// It ended with a daemon that stopped without noting it (a crash): `ended_at` is
    /// the last write of its recording, the exit code unknown.
    pub lost: bool,
    /// The asciicast recording, if one was made and is still kept.
    pub recording: Option<String>,
    /// Its size in bytes (0 without one).
    pub recording_bytes: u64,
    /// How many times its program was started again (`server --restart`).
    #[serde(default)]
    pub restarts: u32,
}

/// What a session's program is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    Busy,
    Idle,
    Exited,
}

/// `send`'s arguments: `text`, then Enter (CR) if `enter` and `text` is not empty, then
/// each named key in order; all written as one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub text: String,
    pub enter: bool,
    /// Key names (`enter`, `up`, `C-c`, `M-x`, `f1`...).
    pub keys: Vec<String>,
    /// Wrap `text` in bracketed paste, if the program enabled it.
    pub paste: bool,
}

/// What `send` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReply {
    pub bytes: u64,
    /// The output offset at the moment the input was written: `wait --from` it never
    /// misses the reply.
    pub offset: u64,
}

/// What `wait` waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    /// A line of output (ANSI stripped), or of the rendered screen, matching `regex`.
    /// Text that was typed or sent into the session and comes back as the terminal's echo
    /// is not output for a match, unless `include_echo`.
    Match {
        regex: String,
        screen: bool,
        #[serde(default)]
        include_echo: bool,
    },
    /// No output for `ms`.
    Idle { ms: u64 },
    /// The program exits.
    Exit,
    /// Its agent is in one of these states (`needs_approval`, `waiting_input`...), as its
    /// profile reads the screen.
    State { states: Vec<String> },
}

/// One bounded wait: at most `timeout_ms` (capped at 30 000); a match scans output from
/// `from` (default: now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRequest {
    pub until: WaitFor,
    pub from: Option<u64>,
    pub timeout_ms: u32,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    Match,
    Idle,
    /// The program exited (what `--exit` waits for).
    Exit,
    /// The program exited before a match or idleness.
    Ended,
    Timeout,
    /// Its agent reached one of the states waited for.
    State,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitReply {
    pub reason: WaitReason,
    /// The matched text and its whole line.
    #[serde(rename = "match")]
    pub matched: Option<String>,
    pub line: Option<String>,
    /// The output offset just after what was found (or where to resume after a timeout).
    pub offset: u64,
    pub exit_code: Option<i32>,
    pub idle_ms: Option<u64>,
    /// The agent state reached (`wait --state`).
    #[serde(default)]
    pub state: Option<String>,
}

/// `create`'s arguments. Empty `command` means the user's `$SHELL`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// 0 or `None` picks a free port.
    pub port: Option<u16>,
    /// Listen address; `None` means all interfaces.
    pub bind: Option<String>,
    pub name: Option<String>,
    /// Working directory; `None` means the daemon user's home.
    pub cwd: Option<String>,
    /// Extra environment, applied after the defaults.
    pub env: Vec<(String, String)>,
    /// The terminal size to start at (cols, rows): the size of the terminal that ran
    /// `server`, or `--size`. `None`: 80x24. Attached writers resize it as usual.
    #[serde(default)]
    pub size: Option<(u16, u16)>,
    /// The caller's own environment to carry into the program (`PATH`, locale, `TZ`,
    /// `COLORTERM`; see `hearth_rpc::CARRIED_ENV`), applied before `env`. The command is
    /// looked up on this `PATH`, as a shell would; without one, on the daemon's.
    #[serde(default)]
    pub caller_env: Vec<(String, String)>,
    /// Prepended to `PATH`.
    pub shadow_dir: Option<String>,
    pub command: Vec<String>,
    /// Extra public keys allowed to join: OpenSSH public-key lines or file paths
    /// (files are read by the CLI, so they resolve relative to the caller).
    pub allow_keys: Vec<String>,
    /// Public keys that join as viewers (read-only), as for `allow_keys`.
    pub viewer_keys: Vec<String>,
    /// Everyone but owners joins as a viewer.
    pub viewers_only: bool,
    /// Admit any client with this role. `None`: keys only.
    pub open: Option<Grant>,
    /// The caller's `$SHELL`, used when `command` is empty.
    pub shell: Option<String>,
    /// The pause menu's trigger (default `!>`).
    pub menu_key: Option<String>,
    /// How long the trigger's bytes may be apart, in ms (default 250).
    pub menu_window_ms: Option<u64>,
    /// Turn the pause menu off for this session.
    pub no_menu: bool,
    /// Do not record this session.
    pub no_record: bool,
    /// Let viewers rewind the session's history (default: current screen only).
    pub viewer_history: bool,
    /// Output triggers for this session: (name, regex).
    #[serde(default)]
    pub triggers: Vec<(String, String)>,
    /// What a trigger types when it matches: (name, text).
    #[serde(default)]
    pub trigger_sends: Vec<(String, String)>,
    /// Start the program again when it exits (`--restart`); `None`: it ends the session.
    #[serde(default)]
    pub restart: Option<RestartPolicy>,
}

/// Who may join a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// The owner's keys and the keys listed for the session.
    Keys,
    /// Any client, as a viewer.
    Open,
    /// Any client, and it may type.
    OpenCollaborator,
}

/// What an attached client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRole {
    Owner,
    Collaborator,
    Viewer,
}

/// The roles an owner can give (owners come from keys only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    Viewer,
    Collaborator,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The name on the wire and in the CLI.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$v),)*
                    _ => Err(format!("'{s}': use one of {}", [$($s),*].join(", "))),
                }
            }
        }
    };
}
names!(Access { Keys => "keys", Open => "open", OpenCollaborator => "open-collaborator" });
names!(PeerRole { Owner => "owner", Collaborator => "collaborator", Viewer => "viewer" });
names!(Grant { Viewer => "viewer", Collaborator => "collaborator" });
names!(Activity { Busy => "busy", Idle => "idle", Exited => "exited" });
names!(RestartWhen { OnFailure => "on-failure", Always => "always" });

/// One attached SSH client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// `<ssh-user>-<n>`, unique within the session.
    pub client: String,
    pub user: String,
    pub role: PeerRole,
    pub cols: u16,
    pub rows: u16,
    pub address: String,
    pub connected_at: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// SHA-256 fingerprint of the key the client authenticated with (`share:ID` for a
    /// browser: the link it came through).
    pub key_fingerprint: String,
    /// `ssh`, or `web` for a browser watching through a share link.
    #[serde(default)]
    pub kind: PeerKind,
}

/// How a peer is connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    #[default]
    Ssh,
    Web,
}

/// A read-only web link to a session (`hearth share`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Names the link in `share --list` and `--revoke` (not the token).
    pub id: String,
    pub session: String,
    pub name: Option<String>,
    /// The token, only in the answer to `share` (it is kept hashed, never shown again).
    pub token: Option<String>,
    /// The link to open, only in the answer to `share`.
    pub url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: String,
    /// Browsers watching through it now.
    pub viewers: u32,
    /// The page has a timeline over the recording (`share --replay`).
    #[serde(default)]
    pub replay: bool,
}

/// Where a `read` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// The oldest output still retained.
    Start,
    /// Only output produced from now on.
    End,
    /// A cursor returned by an earlier read.
    Offset(u64),
    /// The last n bytes.
    Tail(u64),
    /// Output produced within the last n seconds.
    SinceSecs(u64),
}

/// A piece of a session's output. Continue with `Offset(next)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// Output bytes, as base64 on the wire (4/3 of the size, whatever the bytes; a JSON
    /// array of numbers would be up to 4x and break the frame limit on a big read).
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    pub next: u64,
    /// Bytes the reader missed because they were no longer retained.
    pub skipped: u64,
    /// The session's child has exited (and everything it printed was delivered once
    /// `data` comes back empty).
    pub exited: bool,
    pub exit_code: Option<i32>,
    /// Where the output ended when this chunk was read (a live session): a reader that
    /// wants "everything so far" stops there instead of chasing a flood.
    #[serde(default)]
    pub end: Option<u64>,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// One event: `seq` strictly increases across the daemon; `kind` and its fields are
/// flattened into the same object (`{"seq": 7, "kind": "joined", "client": "alice-1", ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// The session's id.
    pub session: String,
    pub name: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// `grep`'s question: a regex over the plain text of recordings (live and ended sessions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// A regex (Rust syntax); `^` and `$` match at line ends; a match never spans lines.
    pub pattern: String,
    pub ignore_case: bool,
    /// Only these sessions (ids, id prefixes or names; live or ended); empty: all.
    pub sessions: Vec<String>,
    pub scope: SearchScope,
    /// Only lines printed at or after this time (seconds since the Unix epoch).
    pub since_unix: Option<u64>,
    /// Only lines printed before this time.
    pub until_unix: Option<u64>,
    /// Lines of context before and after each hit (at most 20).
    pub context: u32,
    /// Stop after this many hits.
    pub max: Option<u64>,
}

/// Which sessions `grep` searches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchScope {
    /// Running and ended.
    #[default]
    All,
    Live,
    Ended,
}

/// Where a search goes on (opaque to callers: hand it back as it came).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchCursor {
    /// The sessions still to search, in order; the first is under way at `offset`.
    pub sessions: Vec<String>,
    pub offset: u64,
    /// Hits so far (for `max`).
    pub found: u64,
    /// The last hit (session, line, seconds into the recording): a repeat of it is not
    /// reported again.
    pub last: Option<(String, String, f64)>,
}

/// One line that matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub session: String,
    pub name: Option<String>,
    /// Whether the session is running.
    pub live: bool,
    /// When it was printed (RFC 3339, UTC, to a tenth of a second).
    pub time: String,
    /// Seconds into the recording (`replay ID --from` it).
    pub offset_secs: f64,
    /// The line, as the terminal showed it (escape sequences dropped), cut to 1,000 bytes
    /// around the match.
    pub line: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
    /// The same line matched again this many more times within a minute (a program
    /// redrawing its screen): reported once.
    pub repeats: u32,
}

/// Hits found so far, and where to go on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchBatch {
    pub hits: Vec<SearchHit>,
    /// Call again with this to go on; `None`: done.
    pub next: Option<SearchCursor>,
    /// Recordings skipped or partly unreadable, in words.
    pub warnings: Vec<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Exited {
        exit_code: i32,
    },
    Up,
    Down,
    Locked {
        by: String,
    },
    Unlocked {
        by: String,
    },
    Joined {
        client: String,
        role: PeerRole,
        addr: String,
    },
    Left {
        client: String,
    },
    Kicked {
        client: String,
        by: String,
    },
    Role {
        client: String,
        role: PeerRole,
        by: String,
    },
    Busy,
    Idle {
        idle_ms: u64,
    },
    Title {
        title: String,
    },
    Bell,
    Match {
        trigger: String,
        text: String,
    },
    Message {
        by: String,
    },
    RecordingError {
        error: String,
    },
    /// A client typed (at most one per client per second).
    Input {
        client: String,
    },
    /// The program asked for a desktop notification (OSC 9 or OSC 777): an agent wants a
    /// human. `text` is cleaned and at most 200 characters.
    Notify {
        text: String,
    },
    /// A shell that speaks OSC 133 (shell integration) showed its prompt.
    Prompt,
    /// A command finished, as a shell that speaks OSC 133 reports it, with the exit status
    /// it gave.
    Command {
        exit_code: Option<i32>,
    },
    /// `prune` (or `[limits] idle_kill_after`) is removing it, and why; `exited` or the
    /// kill's end follows.
    Pruned {
        reason: String,
    },
    /// It was given another name (`rename`); events after this carry the new one.
    Renamed {
        from: Option<String>,
        to: String,
    },
    /// Typing after a rate limit resets (a profile's `on_rate_limit`): `step` is
    /// `scheduled` (for `at`, RFC 3339), `sent`, or `cancelled` (`reason`: someone typed
    /// first, the limit ended on its own, no readable time).
    Resume {
        step: String,
        at: Option<String>,
        reason: Option<String>,
    },
    /// Its agent's state changed, as its profile reads the screen (`working`,
    /// `waiting_input`, `needs_approval`, `rate_limited`, `error`, `exited`); `text` is
    /// the line a rule matched.
    State {
        from: String,
        to: String,
        reason: String,
        text: Option<String>,
    },
    /// Its program exited and is started again in `after_ms` (`server --restart`): the
    /// `attempt`th restart in a row. `restarted` follows, or `exited` if it is killed first.
    Restarting {
        attempt: u32,
        exit_code: i32,
        after_ms: u64,
    },
    /// Its program was started again (same session, same viewers), running `command`.
    Restarted {
        attempt: u32,
        pid: u32,
        command: Vec<String>,
    },
    /// The session's own process went away without ending it (it crashed or was killed):
    /// the session is gone, and what it left running was ended.
    Lost {
        reason: String,
    },
    /// This reader fell behind the daemon's ring: `count` events are gone.
    Skipped {
        count: u64,
    },
}

impl EventKind {
    /// The kind's name, as in JSON and hook filters.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Exited { .. } => "exited",
            EventKind::Up => "up",
            EventKind::Down => "down",
            EventKind::Locked { .. } => "locked",
            EventKind::Unlocked { .. } => "unlocked",
            EventKind::Joined { .. } => "joined",
            EventKind::Left { .. } => "left",
            EventKind::Kicked { .. } => "kicked",
            EventKind::Role { .. } => "role",
            EventKind::Busy => "busy",
            EventKind::Idle { .. } => "idle",
            EventKind::Title { .. } => "title",
            EventKind::Bell => "bell",
            EventKind::Match { .. } => "match",
            EventKind::Message { .. } => "message",
            EventKind::RecordingError { .. } => "recording_error",
            EventKind::Input { .. } => "input",
            EventKind::Lost { .. } => "lost",
            EventKind::State { .. } => "state",
            EventKind::Notify { .. } => "notify",
            EventKind::Prompt => "prompt",
            EventKind::Command { .. } => "command",
            EventKind::Resume { .. } => "resume",
            EventKind::Renamed { .. } => "renamed",
            EventKind::Pruned { .. } => "pruned",
            EventKind::Restarting { .. } => "restarting",
            EventKind::Restarted { .. } => "restarted",
            EventKind::Skipped { .. } => "skipped",
        }
    }
}

/// A batch of events and the sequence number to continue from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<Event>,
    pub next: u64,
}
