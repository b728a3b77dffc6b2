//! `hearth mcp`: a Model Context Protocol server on stdio (rmcp), so a supervising agent can
//! start, drive and watch sessions. An adapter over `hearth-rpc` like the CLI: every tool is
//! one or a few control calls, results are the same JSON shapes as `--json` (as text and as
//! `structuredContent`), and failures are tool errors (`isError: true`) with the CLI's
//! `kind` and `message`, never protocol failures. Every tool is bounded in time. Nothing but
//! protocol messages goes to stdout (logs go to stderr).
//!
//! Every tool takes an optional `host`: the daemon on that machine, reached the way `--host`
//! reaches it (the CLI hands in a [`Hosts`] connector; one connection per host, kept and
//! made again when it drops).
//!
//! It must not reach into the daemon: only `hearth-rpc`. Requests larger than a daemon call
//! may carry are answered with an error before they reach rmcp (`limit`); more than
//! [`MAX_IN_FLIGHT`] calls at once wait their turn.

mod limit;

use std::time::{Duration, Instant};

use hearth_rpc::{
    ApiError, CreateRequest, ErrorKind, HearthClient, ReadFrom, SendRequest, WaitFor, WaitReason,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Longest `wait_for`, and longest `list_events` wait.
pub const MAX_WAIT_MS: u64 = 60_000;
pub const MAX_EVENTS_WAIT_MS: u64 = 30_000;
/// Most output one `read_output` returns.
pub const MAX_READ: u32 = 256 * 1024;

/// How often a `wait_for` whose caller asked for progress reports it.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Most other hosts one MCP server keeps connections to.
pub const MAX_HOSTS: usize = 32;

/// A connection to another host's daemon; whatever keeps it open lives in `guard`.
pub struct Connection {
    pub client: HearthClient,
    pub guard: Box<dyn std::any::Any + std::marker::Send + Sync>,
}

/// How to reach the daemon on another host (the CLI's `--host` route).
pub trait Hosts: std::marker::Send + Sync {
    fn connect(
        &self,
        host: String,
    ) -> futures::future::BoxFuture<'static, Result<Connection, ApiError>>;
}

#[derive(Clone)]
pub struct HearthMcp {
    client: HearthClient,
    hosts: std::sync::Arc<dyn Hosts>,
    /// Open connections to other hosts, by name.
    open: std::sync::Arc<
        parking_lot::Mutex<std::collections::HashMap<String, std::sync::Arc<Connection>>>,
    >,
    /// Tool calls running at once; the rest wait their turn (a daemon connection takes 64
    /// calls in flight and refuses more).
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    /// The output offset of this connection's last `send_input` to each session, by host
    /// and session id: `wait_for` without `from` starts there, so send-then-wait never
    /// misses a reply however fast it comes. At most [`MAX_SENT`] sessions.
    sent: std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<(String, String), u64>>>,
}

/// Sessions whose last send offset one MCP connection keeps (then it starts over).
const MAX_SENT: usize = 4096;

/// Tool calls run at once; more wait (within their own time bound).
pub const MAX_IN_FLIGHT: usize = 32;

/// Serve MCP on stdin/stdout until the client closes it; `client` is the default daemon,
/// `hosts` reaches the others.
pub async fn serve(client: HearthClient, hosts: std::sync::Arc<dyn Hosts>) -> anyhow::Result<()> {
    // stdin reaches rmcp through the size guard (`limit`), which ends with stdin.
    let (guarded, theirs) = tokio::io::duplex(64 * 1024);
    let guard = tokio::spawn(limit::bounded_lines(tokio::io::stdin(), guarded));
    let running = HearthMcp {
        client,
        hosts,
        open: Default::default(),
        in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        sent: Default::default(),
    }
    .serve((theirs, tokio::io::stdout()))
    .await
    .map_err(|e| anyhow::anyhow!("MCP handshake failed: {e}"))?;
    running.waiting().await?;
    guard.abort();
    Ok(())
}

fn ctx(limit: Duration) -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = Instant::now() + limit;
    c
}

/// A tool failure: shown to the model, with the same kind and message as the CLI.
struct Fail(ApiError);

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Fail(e)
    }
}

impl From<tarpc::client::RpcError> for Fail {
    fn from(e: tarpc::client::RpcError) -> Self {
        Fail(ApiError::new(
            ErrorKind::Daemon,
            format!("the daemon did not answer: {e}"),
        ))
    }
}

fn invalid(msg: impl Into<String>) -> Fail {
    Fail(ApiError::invalid(msg))
}

fn args<T: for<'de> Deserialize<'de>>(a: &Map<String, Value>) -> Result<T, Fail> {
    serde_json::from_value(Value::Object(a.clone()))
        .map_err(|e| invalid(format!("bad arguments: {e}")))
}

// The arguments of every tool, as types: each both parses a call ([`Call::parse`]) and
// generates its tool's input schema ([`input_schema`]), so the two cannot drift. Doc
// comments are the schema's descriptions.

/// A tool that takes nothing (but `host`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Session {
    /// Session id, unique id prefix, or name
    session: String,
}

#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
struct Start {
    /// Program and arguments (default: the user's shell)
    #[serde(default)]
    command: Vec<String>,
    /// A unique name
    name: Option<String>,
    /// Working directory
    cwd: Option<String>,
    /// Extra environment variables
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    /// Start the program again when it exits (same session: id, viewers, recording).
    /// Default: no
    restart: Option<Restart>,
    /// With restart: give up after this many restarts in a row
    #[schemars(range(min = 1))]
    max_restarts: Option<u32>,
    /// With restart: the command run on restarts (e.g. ["claude", "--continue"]; default:
    /// the agent profile's resume command, else the same command)
    resume: Option<Vec<String>>,
}

/// When `start_session` restarts a program: on-failure (a non-zero status or a signal),
/// always (every exit not asked for), no.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
#[schemars(inline)]
enum Restart {
    No,
    OnFailure,
    Always,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// A regex (Rust syntax); ^ and $ match at line ends; a match never spans lines
    pattern: String,
    /// Only these sessions (ids or names)
    #[serde(default)]
    sessions: Vec<String>,
    /// Only lines printed within this many minutes
    #[schemars(range(min = 1))]
    since_minutes: Option<u64>,
    /// Case-insensitive
    #[serde(default)]
    ignore_case: bool,
    /// Lines of context around each hit (default 0)
    #[schemars(range(max = 5))]
    context: Option<u32>,
    /// Only running sessions (true) or only ended ones (false); default both
    running: Option<bool>,
    /// At most this many hits (default 20)
    #[schemars(range(min = 1, max = 200))]
    max: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct History {
    /// Only this one (an ended session's id or name)
    session: Option<String>,
    /// Only those that ended within this many hours
    #[schemars(range(min = 1))]
    since_hours: Option<u64>,
    /// At most this many (default 50)
    #[schemars(range(min = 1, max = 500))]
    max: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Send {
    /// Session id, unique id prefix, or name (or pick several with all, name, state)
    session: Option<String>,
    /// Every session
    #[serde(default)]
    all: bool,
    /// Sessions whose name matches this glob (* and ?)
    name: Option<String>,
    /// Sessions whose agent is in one of these states
    #[serde(default)]
    state: Vec<String>,
    /// Text to type
    #[serde(default)]
    text: String,
    /// Keys to press after the text: enter, tab, esc, up, down, C-c, M-x, f1...
    #[serde(default)]
    keys: Vec<String>,
    /// Press Enter after the text (default true)
    #[serde(default = "yes")]
    enter: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Screen {
    /// Session id, unique id prefix, or name
    session: String,
    /// With colours and cursor (escape sequences)
    #[serde(default)]
    ansi: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadOutput {
    /// Session id, unique id prefix, or name
    session: String,
    /// A cursor: `next` of an earlier read, or send_input's offset
    since: Option<u64>,
    /// At most this many bytes (default 65536)
    #[schemars(range(min = 1, max = MAX_READ))]
    max_bytes: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    /// Session id, unique id prefix, or name
    session: String,
    /// A regex a line of output must match
    pattern: Option<String>,
    /// Match the rendered screen instead of the output (full-screen programs)
    #[serde(default)]
    screen: bool,
    /// Let the echo of typed or sent text match too
    #[serde(default)]
    include_echo: bool,
    /// No output for this many ms
    #[schemars(range(min = 1))]
    idle_ms: Option<u64>,
    /// The program exits
    #[serde(default)]
    exit: bool,
    /// Agent states, any of which ends the wait
    #[serde(default)]
    state: Vec<crate::session::profile::AgentState>,
    /// Match output from this offset on (default: your last send_input to it, else now)
    from: Option<u64>,
    /// How long to wait at most
    #[schemars(range(min = 1, max = MAX_WAIT_MS))]
    timeout_ms: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Message {
    /// Session id, unique id prefix, or name
    session: String,
    /// The one-line message
    text: String,
}

#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
struct Events {
    /// Sequence number to start from (default: all kept)
    since: Option<u64>,
    /// Only this session's (id, unique id prefix, or name)
    session: Option<String>,
    /// Wait this long for new ones when there are none
    #[schemars(range(max = MAX_EVENTS_WAIT_MS))]
    wait_ms: Option<u64>,
}

/// A tool call, parsed: the tool's name picks its argument type. Every tool [`tools`]
/// lists is one of these (a test checks it), and the match on it is exhaustive.
enum Call {
    ListSessions(NoArgs),
    StartSession(Start),
    SendInput(Send),
    ReadScreen(Screen),
    ReadOutput(ReadOutput),
    WaitFor(WaitArgs),
    SessionStatus(Session),
    KillSession(Session),
    RestartSession(Session),
    ListHistory(History),
    SearchOutput(SearchArgs),
    SendMessage(Message),
    ListEvents(Events),
}

impl Call {
    fn parse(name: &str, a: &Map<String, Value>) -> Result<Call, Fail> {
        Ok(match name {
            "list_sessions" => Call::ListSessions(args(a)?),
            "start_session" => Call::StartSession(args(a)?),
            "send_input" => Call::SendInput(args(a)?),
            "read_screen" => Call::ReadScreen(args(a)?),
            "read_output" => Call::ReadOutput(args(a)?),
            "wait_for" => Call::WaitFor(args(a)?),
            "session_status" => Call::SessionStatus(args(a)?),
            "kill_session" => Call::KillSession(args(a)?),
            "restart_session" => Call::RestartSession(args(a)?),
            "list_history" => Call::ListHistory(args(a)?),
            "search_output" => Call::SearchOutput(args(a)?),
            "send_message" => Call::SendMessage(args(a)?),
            "list_events" => Call::ListEvents(args(a)?),
            other => return Err(invalid(format!("no tool named '{other}'"))),
        })
    }
}

impl HearthMcp {
    /// The daemon a call is for: this one, or `host`'s (connected once, then kept).
    async fn client_for(&self, host: Option<&str>) -> Result<HearthClient, Fail> {
        let Some(host) = host.filter(|h| !h.is_empty() && *h != "local") else {
            return Ok(self.client.clone());
        };
        if let Some(c) = self.open.lock().get(host) {
            return Ok(c.client.clone());
        }
        if self.open.lock().len() >= MAX_HOSTS {
            return Err(invalid(format!("at most {MAX_HOSTS} hosts at once")));
        }
        let conn = std::sync::Arc::new(self.hosts.connect(host.to_string()).await?);
        let client = conn.client.clone();
        self.open.lock().insert(host.to_string(), conn);
        Ok(client)
    }

    async fn call(&self, name: &str, a: &Map<String, Value>) -> Result<Value, Fail> {
        if name == limit::OVERSIZED_TOOL {
            let bytes = a.get("bytes").and_then(Value::as_u64).unwrap_or(0);
            return Err(Fail(ApiError::new(
                ErrorKind::Limit,
                format!(
                    "the request was {bytes} bytes; hearth mcp takes requests of at most {} \
                     bytes (send_input: at most {} bytes of text; send it in parts)",
                    limit::MAX_REQUEST,
                    hearth_rpc::MAX_SEND_BYTES
                ),
            )));
        }
        let host = match a.get("host") {
            None | Some(Value::Null) => None,
            Some(Value::String(h)) => Some(h.clone()),
            Some(_) => return Err(invalid("host: a host name, as for ssh")),
        };
        let mut a = a.clone();
        a.remove("host");
        let c = self.client_for(host.as_deref()).await?;
        // Bounded by our own timer as well: tarpc's client can wait forever once its
        // connection is gone.
        let limit = Duration::from_millis(MAX_WAIT_MS) + Duration::from_secs(30);
        let run = async {
            // Waits its turn: more than MAX_IN_FLIGHT calls queue here, never fail.
            let _turn = self.in_flight.acquire().await;
            self.call_on(&c, name, &a, host.as_deref()).await
        };
        let result = tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
            Err(Fail(ApiError::new(
                ErrorKind::Daemon,
                format!("no answer within {} s", limit.as_secs()),
            )))
        });
        // A connection that dropped is made again on the next call.
        if let (Some(h), Err(Fail(e))) = (&host, &result)
            && e.kind == ErrorKind::Daemon
        {
            self.open.lock().remove(h);
        }
        result
    }

    async fn call_on(
        &self,
        c: &HearthClient,
        name: &str,
        a: &Map<String, Value>,
        host: Option<&str>,
    ) -> Result<Value, Fail> {
        let remote = host.is_some();
        let quick = Duration::from_secs(60);
        Ok(match Call::parse(name, a)? {
            Call::ListSessions(NoArgs {}) => json!({"sessions": c.list(ctx(quick)).await??}),
            Call::StartSession(s) => json!(c.create(ctx(quick), start_request(s, remote)?).await??),
            Call::SendInput(s) => self.send_input(c, s, host).await?,
            Call::ReadScreen(s) => {
                json!({"screen": c.screen(ctx(quick), s.session, s.ansi).await??})
            }
            Call::ReadOutput(s) => {
                let max = s.max_bytes.unwrap_or(64 * 1024);
                if max == 0 || max > MAX_READ {
                    return Err(invalid(format!("max_bytes: use 1 to {MAX_READ}")));
                }
                let from = s
                    .since
                    .map_or(ReadFrom::Tail(u64::from(max)), ReadFrom::Offset);
                let r = c.read(ctx(quick), s.session, from, max, 0).await??;
                json!({"text": String::from_utf8_lossy(&r.data), "next": r.next,
                       "skipped": r.skipped, "exit_code": r.exit_code})
            }
            Call::WaitFor(w) => self.wait_for(c, w, host).await?,
            Call::SessionStatus(s) => {
                let info = c.get(ctx(quick), s.session.clone()).await??;
                let screen = c.screen(ctx(quick), s.session, false).await??;
                let mut lines: Vec<&str> = screen
                    .lines()
                    .rev()
                    .filter(|l| !l.trim().is_empty())
                    .take(10)
                    .collect();
                lines.reverse();
                let mut v = json!(info);
                v["lines"] = json!(lines);
                v
            }
            Call::RestartSession(s) => {
                // Never reopened to anyone: a session started with --open restarts for keys
                // only from here (a human can `hearth restart --open`).
                json!(c.restart(ctx(quick), s.session, None, true).await??)
            }
            Call::ListHistory(s) => {
                let since = s.since_hours.map(|h| {
                    std::time::SystemTime::now()
                        .checked_sub(Duration::from_secs(h.saturating_mul(3600)))
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs())
                });
                let mut ended = c.history(ctx(quick), s.session, since).await??;
                // Newest first (as the daemon lists them), bounded: a model reads the top.
                let total = ended.len();
                ended.truncate(s.max.unwrap_or(50).clamp(1, 500));
                json!({"sessions": ended, "total": total})
            }
            Call::SearchOutput(s) => search_output(c, s).await?,
            Call::KillSession(s) => {
                let killed = c.kill(ctx(quick), vec![s.session], false).await??;
                json!({"killed": killed.iter().map(|k| k.id.clone()).collect::<Vec<_>>()})
            }
            Call::SendMessage(s) => {
                c.message(ctx(quick), s.session, s.text).await??;
                json!({})
            }
            Call::ListEvents(s) => {
                let wait = s.wait_ms.unwrap_or(0);
                if wait > MAX_EVENTS_WAIT_MS {
                    return Err(invalid(format!("wait_ms: at most {MAX_EVENTS_WAIT_MS}")));
                }
                let since = Some(s.since.unwrap_or(0));
                let b = c
                    .events(ctx(quick), since, s.session, 1000, wait as u32)
                    .await??;
                json!({"events": b.events, "next": b.next})
            }
        })
    }

    /// The id `session` names now, if it names one.
    async fn id_of(c: &HearthClient, session: &str) -> Option<String> {
        let info = c
            .get(ctx(Duration::from_secs(10)), session.to_string())
            .await;
        info.ok().and_then(Result::ok).map(|i| i.id)
    }

    /// Remember where this connection's input to session `id` started.
    fn remember(&self, host: Option<&str>, id: String, offset: u64) {
        let mut sent = self.sent.lock();
        if sent.len() >= MAX_SENT {
            sent.clear();
        }
        sent.insert((host.unwrap_or("").to_string(), id), offset);
    }

    /// `send_input`: to one session, or to each picked by `all`, `name` (a glob) or
    /// `state`, like `hearth send --all|--name|--state`.
    async fn send_input(
        &self,
        c: &HearthClient,
        s: Send,
        host: Option<&str>,
    ) -> Result<Value, Fail> {
        let quick = Duration::from_secs(60);
        if s.text.len() > hearth_rpc::MAX_SEND_BYTES {
            return Err(invalid(format!(
                "text: {} bytes; send at most {} at once",
                s.text.len(),
                hearth_rpc::MAX_SEND_BYTES
            )));
        }
        let req = SendRequest {
            text: s.text,
            enter: s.enter,
            keys: s.keys,
            paste: false,
        };
        let many = s.all || s.name.is_some() || !s.state.is_empty();
        match (s.session, many) {
            (Some(session), false) => {
                let r = c.send(ctx(quick), session.clone(), req).await??;
                if let Some(id) = Self::id_of(c, &session).await {
                    self.remember(host, id, r.offset);
                }
                Ok(json!({"bytes": r.bytes, "offset": r.offset}))
            }
            (None, true) => {
                crate::cli::agent::check_states(&s.state)?;
                let picked = crate::cli::agent::pick(
                    c.list(ctx(quick)).await??,
                    s.name.as_deref(),
                    &s.state,
                );
                if picked.is_empty() {
                    return Err(Fail(ApiError::not_found("no session matches")));
                }
                let sends = picked.iter().map(|p| {
                    let req = req.clone();
                    async move { (p, c.send(ctx(quick), p.id.clone(), req).await) }
                });
                let mut results = Vec::with_capacity(picked.len());
                for (p, r) in futures::future::join_all(sends).await {
                    results.push(match r {
                        Ok(Ok(r)) => {
                            self.remember(host, p.id.clone(), r.offset);
                            json!({"session": p.id, "name": p.name, "bytes": r.bytes,
                                   "offset": r.offset})
                        }
                        Ok(Err(e)) => json!({"session": p.id, "name": p.name,
                                             "error": {"kind": e.kind, "message": e.message}}),
                        Err(e) => json!({"session": p.id, "name": p.name,
                                         "error": {"kind": ErrorKind::Daemon,
                                                   "message": e.to_string()}}),
                    });
                }
                Ok(json!({"results": results}))
            }
            _ => Err(invalid(
                "give session, or pick several with all: true, name (a glob) or state, not both",
            )),
        }
    }

    /// One bounded wait, looping over the daemon's 30 s polls; without `from`, from this
    /// connection's last `send_input` to that session.
    async fn wait_for(
        &self,
        c: &HearthClient,
        w: WaitArgs,
        host: Option<&str>,
    ) -> Result<Value, Fail> {
        let chosen = usize::from(w.pattern.is_some())
            + usize::from(w.idle_ms.is_some())
            + usize::from(w.exit)
            + usize::from(!w.state.is_empty());
        if chosen != 1 {
            return Err(invalid(
                "give exactly one of pattern, idle_ms, exit: true or state",
            ));
        }
        if w.timeout_ms == 0 || w.timeout_ms > MAX_WAIT_MS {
            return Err(invalid(format!("timeout_ms: use 1 to {MAX_WAIT_MS}")));
        }
        let until = match (w.pattern, w.idle_ms) {
            _ if !w.state.is_empty() => WaitFor::State {
                states: w.state.iter().map(|s| s.name().to_string()).collect(),
            },
            (Some(regex), _) => WaitFor::Match {
                regex,
                screen: w.screen,
                include_echo: w.include_echo,
            },
            (None, Some(ms)) => WaitFor::Idle { ms },
            _ => WaitFor::Exit,
        };
        let timeout = Duration::from_millis(w.timeout_ms);
        // Without `from`: from this connection's last input to that session (else now).
        let from = match w.from {
            Some(f) => Some(f),
            None => match Self::id_of(c, &w.session).await {
                Some(id) => self
                    .sent
                    .lock()
                    .get(&(host.unwrap_or("").to_string(), id))
                    .copied(),
                None => None,
            },
        };
        let r = hearth_rpc::wait::wait_for(c, &w.session, until, from, Some(timeout)).await?;
        Ok(
            json!({"reason": r.reason.reported(), "match": r.matched, "line": r.line,
            "offset": r.offset, "exit_code": r.exit_code, "state": r.state,
            "ended_first": r.reason == WaitReason::Ended, "from": from}),
        )
    }
}

/// How long `search_output` searches before it answers with what it found.
const SEARCH_FOR: Duration = Duration::from_secs(20);

/// `search_output`: `grep` for a model: bounded hits, `more` when there were more.
async fn search_output(c: &HearthClient, s: SearchArgs) -> Result<Value, Fail> {
    let max = s.max.unwrap_or(20);
    if !(1..=200).contains(&max) {
        return Err(invalid("max: use 1 to 200"));
    }
    if s.context.is_some_and(|n| n > 5) {
        return Err(invalid("context: at most 5 lines"));
    }
    let req = hearth_rpc::SearchRequest {
        pattern: s.pattern,
        ignore_case: s.ignore_case,
        sessions: s.sessions,
        scope: match s.running {
            None => hearth_rpc::SearchScope::All,
            Some(true) => hearth_rpc::SearchScope::Live,
            Some(false) => hearth_rpc::SearchScope::Ended,
        },
        since_unix: s.since_minutes.map(|m| {
            std::time::SystemTime::now()
                .checked_sub(Duration::from_secs(m.saturating_mul(60)))
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs())
        }),
        until_unix: None,
        context: s.context.unwrap_or(0),
        // One more than asked: whether there are more.
        max: Some(max + 1),
    };
    let until = tokio::time::Instant::now() + SEARCH_FOR;
    let (mut hits, mut warnings, mut cursor) = (Vec::new(), Vec::new(), None);
    let more = loop {
        let b = c
            .search(ctx(Duration::from_secs(30)), req.clone(), cursor)
            .await??;
        hits.extend(b.hits);
        warnings.extend(b.warnings);
        if hits.len() as u64 > max {
            hits.truncate(max as usize);
            break true;
        }
        match b.next {
            Some(next) if tokio::time::Instant::now() < until => cursor = Some(next),
            // Out of time with more to search: say so.
            Some(_) => break true,
            None => break false,
        }
    };
    warnings.truncate(20);
    Ok(json!({"hits": hits, "more": more, "warnings": warnings}))
}

/// `start_session`'s request. On another host, this machine's directory, shell and
/// environment mean nothing: that daemon's apply.
fn start_request(s: Start, remote: bool) -> Result<CreateRequest, Fail> {
    let when = match s.restart {
        None | Some(Restart::No) => None,
        Some(Restart::OnFailure) => Some(hearth_rpc::RestartWhen::OnFailure),
        Some(Restart::Always) => Some(hearth_rpc::RestartWhen::Always),
    };
    let restart = match when {
        None if s.max_restarts.is_some() || s.resume.is_some() => {
            return Err(invalid(
                "max_restarts and resume need restart: on-failure or always",
            ));
        }
        None => None,
        Some(when) => Some(hearth_rpc::RestartPolicy {
            when,
            max_restarts: s.max_restarts,
            resume: s.resume,
        }),
    };
    let cwd = match s.cwd {
        Some(d) => Some(d),
        None if remote => None,
        None => std::env::current_dir()
            .map(|d| d.display().to_string())
            .ok(),
    };
    Ok(CreateRequest {
        command: s.command,
        name: s.name,
        cwd,
        env: s.env.into_iter().collect(),
        caller_env: if remote {
            Vec::new()
        } else {
            hearth_rpc::carried_env()
        },
        shell: (!remote).then(|| std::env::var("SHELL").ok()).flatten(),
        restart,
        ..Default::default()
    })
}

fn tool<T: JsonSchema>(name: &'static str, description: &'static str) -> Tool {
    let as_map = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut t = Tool::new(
        name,
        description,
        std::sync::Arc::new(as_map(input_schema::<T>())),
    );
    t.output_schema = Some(std::sync::Arc::new(as_map(output_schema(name))));
    t
}

/// What a tool's `structuredContent` holds: always an object (MCP requires one). Nothing is
/// required, because a failed call carries `{"error": {"kind", "message"}}` instead.
fn output_schema(name: &str) -> Value {
    let int = json!({"type": "integer"});
    let str_ = json!({"type": "string"});
    let opt = |t: &str| json!({"type": [t, "null"]});
    let session =
        json!({"type": "object", "description": "A session, as `hearth ps --json` shows it"});
    let props = match name {
        "list_sessions" => json!({"sessions": {"type": "array", "items": session}}),
        "start_session" => json!({"id": str_, "name": opt("string"), "port": int, "join": str_}),
        "send_input" => json!({"bytes": int, "offset": int,
                               "results": {"type": "array", "items": {"type": "object",
                                   "description": "{session, name, bytes, offset} or {session, name, error}"}}}),
        "read_screen" => json!({"screen": str_}),
        "read_output" => json!({"text": str_, "next": int, "skipped": int,
                                "exit_code": opt("integer")}),
        "wait_for" => json!({"reason": str_, "match": opt("string"), "line": opt("string"),
                             "offset": int, "exit_code": opt("integer"),
                             "state": opt("string"), "ended_first": {"type": "boolean"},
                             "from": opt("integer")}),
        "session_status" => json!({"id": str_, "activity": str_, "agent_state": str_,
                                   "attention": {"type": "boolean"},
                                   "lines": {"type": "array", "items": str_}}),
        "kill_session" => json!({"killed": {"type": "array", "items": str_}}),
        "restart_session" => json!({"id": str_, "name": opt("string"), "port": int,
                                    "restarted_from": opt("string")}),
        "list_history" => json!({"sessions": {"type": "array", "items": {"type": "object",
                                   "description": "An ended session, as `hearth history --json` shows it"}},
                                 "total": int}),
        "search_output" => json!({"hits": {"type": "array", "items": {"type": "object",
                                    "description": "A matching line, as `hearth grep --json` prints it"}},
                                  "more": {"type": "boolean"},
                                  "warnings": {"type": "array", "items": str_}}),
        "list_events" => json!({"events": {"type": "array", "items": {"type": "object"}},
                                "next": int}),
        _ => json!({}),
    };
    let mut props = props;
    props["error"] = json!({"type": "object", "properties": {"kind": str_, "message": str_}});
    json!({"type": "object", "properties": props})
}

/// A tool's input schema, generated from its argument type; every tool also takes `host`.
fn input_schema<T: JsonSchema>() -> Value {
    let mut v = schemars::schema_for!(T).to_value();
    if let Some(o) = v.as_object_mut() {
        for k in ["$schema", "title", "description"] {
            o.remove(k);
        }
        let props = o.entry("properties").or_insert_with(|| json!({}));
        props["host"] = json!({"type": "string", "description":
            "Another machine's hearth, reached over ssh (user@host or an ~/.ssh/config alias); default: this machine"});
    }
    v
}

/// Every tool: its name, what it does, and its argument type, which generates its input
/// schema (and parses its calls: [`Call::parse`]).
fn tools() -> Vec<Tool> {
    vec![
        tool::<NoArgs>(
            "list_sessions",
            "List every hearth session (a terminal with a program, often a coding agent) with its activity (busy/idle/exited), idle time, title, size and the command that joins it over SSH. Returns {sessions: [...]}.",
        ),
        tool::<Start>(
            "start_session",
            "Start a new session running `command` (default: the user's shell) in a terminal that people can join over SSH. Returns the session; use its id with the other tools.",
        ),
        tool::<Send>(
            "send_input",
            "Type into a session as one unit: `text`, then Enter (unless enter: false), then each named key (enter, tab, esc, up, down, C-c, M-x, f1...). Returns `offset`; a wait_for on that session without `from` starts there, so the reply cannot be missed. Instead of `session`, pick several with `all: true`, `name` (a glob: agent-*) and/or `state` (e.g. [\"waiting_input\"]): each gets the input as one unit and `results` lists an offset or an error per session.",
        ),
        tool::<Screen>(
            "read_screen",
            "The session's current screen as text (what a person attached sees). To wait for something to appear, use wait_for instead of polling this.",
        ),
        tool::<ReadOutput>(
            "read_output",
            "Raw output of a session from a cursor (`since`, as returned in `next` or by send_input), or its last max_bytes. Returns text, the next cursor and how many bytes were skipped.",
        ),
        tool::<WaitArgs>(
            "wait_for",
            "Wait (up to timeout_ms, at most 60000) until the session prints a line matching `pattern` (a regex; `screen: true` matches the rendered screen instead, for full-screen programs), or is idle for `idle_ms`, or exits (`exit: true`), or its agent reaches one of `state` (needs_approval, waiting_input, rate_limited, error, working, exited; read from the screen by a `[[profiles]]` profile). Give exactly one condition. Prefer this over polling read_screen. Without `from`, it matches output from your last send_input to that session on (or from now, if you sent none), so send-then-wait never misses the reply; pass `from` (an offset) to choose. The terminal's echo of what was typed or sent never matches (the reply does), unless `include_echo: true`.",
        ),
        tool::<Session>(
            "session_status",
            "What a session is doing: activity (busy/idle/exited), its agent's state as a profile reads the screen (agent_state: needs_approval, waiting_input, rate_limited, error, working, exited or unknown; attention: true when a human is needed; agent_fields such as resets_at), idle time, title, last input and its last non-empty screen lines.",
        ),
        tool::<Session>(
            "kill_session",
            "End a session's program (SIGHUP, then SIGKILL) and remove the session.",
        ),
        tool::<Session>(
            "restart_session",
            "Start again what an exited, killed or ended session ran (same command, cwd, env, name and port; a new id, `restarted_from` names the old). A session still running is refused: kill_session it first. One started open to anyone restarts for keys only.",
        ),
        tool::<History>(
            "list_history",
            "Sessions that have ended (also with earlier daemons), newest first: id, name, command, when, exit code, recording. `session` (an id or name) keeps one; `since_hours` only those that ended within that many hours; at most `max` (default 50, up to 500); `total` says how many there were.",
        ),
        tool::<SearchArgs>(
            "search_output",
            "Search what sessions printed (running and ended ones, also with earlier daemons; newest first) for a regex: each hit has the session, when the line was printed, `offset_secs` into its recording, the line as the terminal showed it and `context` lines around it. `more` says there were more hits than `max` (default 20, up to 200).",
        ),
        tool::<Message>(
            "send_message",
            "Show a one-line message to the people attached to a session (never typed into the program).",
        ),
        tool::<Events>(
            "list_events",
            "Events from sequence number `since` (default: all kept): created, joined, busy, idle, match, exited... Waits up to wait_ms (at most 30000) for new ones. Continue with `next`.",
        ),
    ]
}

impl ServerHandler for HearthMcp {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hearth", hearth_rpc::VERSION))
            .with_instructions(
                "hearth runs shared terminal sessions (often coding agents). Start or find a \
                 session, send_input to type into it, wait_for its reply (it starts at your \
                 last send_input to that session), read_screen or session_status to look.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let empty = Map::new();
        let a = request.arguments.as_ref().unwrap_or(&empty);
        let work = self.call(&request.name, a);
        // A client that asked for progress (`_meta.progressToken`) hears from a wait every
        // second: how long it has waited, of how long at most.
        let token = request
            .meta
            .as_ref()
            .and_then(|m| m.get_progress_token())
            .or_else(|| context.meta.get_progress_token());
        let outcome = match token {
            Some(token) if request.name == "wait_for" => {
                let total =
                    a.get("timeout_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0;
                let started = Instant::now();
                let mut tick = tokio::time::interval(PROGRESS_EVERY);
                tick.tick().await;
                tokio::pin!(work);
                loop {
                    tokio::select! {
                        r = &mut work => break r,
                        _ = tick.tick() => {
                            let waited = started.elapsed().as_secs_f64().floor();
                            let note = ProgressNotificationParam::new(token.clone(), waited)
                                .with_total(total)
                                .with_message(format!("waited {waited:.0} s of at most {total:.0} s"));
                            // A client that cannot take it does not stop the wait.
                            let _ = context.peer.notify_progress(note).await;
                        }
                    }
                }
            }
            _ => work.await,
        };
        let result = match outcome {
            Ok(v) => {
                let text = serde_json::to_string_pretty(&v).unwrap_or_default();
                let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
                r.structured_content = Some(v);
                r
            }
            Err(Fail(e)) => {
                let v = json!({"error": {"kind": e.kind.as_str(), "message": e.message}});
                let mut r = CallToolResult::error(vec![ContentBlock::text(format!(
                    "{}: {}",
                    e.kind.as_str(),
                    e.message
                ))]);
                r.structured_content = Some(v);
                r
            }
        };
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value of the type a property's schema names (the first that is not null).
    fn sample(prop: &Value) -> Value {
        if let Some(v) = prop["enum"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| !v.is_null()))
        {
            return v.clone();
        }
        let kind = match &prop["type"] {
            Value::String(t) => t.clone(),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null")
                .to_string(),
            _ => String::new(),
        };
        match kind.as_str() {
            "string" => json!("x"),
            "integer" => json!(1),
            "boolean" => json!(true),
            "object" => json!({}),
            "array" => match prop["items"]["enum"].as_array() {
                Some(values) => json!([values[0]]),
                None => json!([sample(&prop["items"])]),
            },
            other => panic!("a property of type {other:?}: {prop}"),
        }
    }

    /// Every listed tool's input schema is its argument type's: a call that sets every
    /// property the schema lists parses, and one with a property it does not list is
    /// refused. (Adding a field to the type adds it to the schema; a schema written by
    /// hand beside the type, or a tool parsed into another type, fails here.)
    #[test]
    fn every_tool_schema_is_generated_from_the_type_its_calls_parse_into() {
        let tools = tools();
        assert_eq!(tools.len(), 13);
        for t in &tools {
            let schema = Value::Object((*t.input_schema).clone());
            assert_eq!(schema["type"], "object", "{}", t.name);
            assert_eq!(schema["additionalProperties"], false, "{}", t.name);
            let mut call = Map::new();
            for (k, prop) in schema["properties"].as_object().unwrap() {
                if k != "host" {
                    call.insert(k.clone(), sample(prop));
                }
            }
            if let Err(Fail(e)) = Call::parse(&t.name, &call) {
                panic!("{}: {} with {call:?}", t.name, e.message);
            }
            let mut extra = call.clone();
            extra.insert("not_a_field".into(), json!(1));
            assert!(Call::parse(&t.name, &extra).is_err(), "{}", t.name);
        }
        assert!(Call::parse("no_such_tool", &Map::new()).is_err());
    }
}
