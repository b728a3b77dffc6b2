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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Session {
    session: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Start {
    #[serde(default)]
    command: Vec<String>,
    name: Option<String>,
    cwd: Option<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    session: Option<String>,
    since_hours: Option<u64>,
    max: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    session: Option<String>,
    #[serde(default)]
    all: bool,
    /// A glob on session names.
    name: Option<String>,
    #[serde(default)]
    state: Vec<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default = "yes")]
    enter: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Screen {
    session: String,
    #[serde(default)]
    ansi: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadOutput {
    session: String,
    since: Option<u64>,
    max_bytes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitArgs {
    session: String,
    pattern: Option<String>,
    #[serde(default)]
    screen: bool,
    #[serde(default)]
    include_echo: bool,
    idle_ms: Option<u64>,
    #[serde(default)]
    exit: bool,
    /// Agent states, any of which ends the wait.
    #[serde(default)]
    state: Vec<String>,
    from: Option<u64>,
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    session: String,
    text: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Events {
    since: Option<u64>,
    session: Option<String>,
    wait_ms: Option<u64>,
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
        Ok(match name {
            "list_sessions" => json!({"sessions": c.list(ctx(quick)).await??}),
            "start_session" => json!(
                c.create(ctx(quick), start_request(args(a)?, remote))
                    .await??
            ),
            "send_input" => self.send_input(c, args(a)?, host).await?,
            "read_screen" => {
                let s: Screen = args(a)?;
                json!({"screen": c.screen(ctx(quick), s.session, s.ansi).await??})
            }
            "read_output" => {
                let s: ReadOutput = args(a)?;
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
            "wait_for" => self.wait_for(c, args(a)?, host).await?,
            "session_status" => {
                let s: Session = args(a)?;
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
            "restart_session" => {
                let s: Session = args(a)?;
                // Never reopened to anyone: a session started with --open restarts for keys
                // only from here (a human can `hearth restart --open`).
                json!(c.restart(ctx(quick), s.session, None, true).await??)
            }
            "list_history" => {
                let s: History = args(a)?;
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
            "kill_session" => {
                let s: Session = args(a)?;
                let killed = c.kill(ctx(quick), vec![s.session], false).await??;
                json!({"killed": killed.iter().map(|k| k.id.clone()).collect::<Vec<_>>()})
            }
            "send_message" => {
                let s: Message = args(a)?;
                c.message(ctx(quick), s.session, s.text).await??;
                json!({})
            }
            "list_events" => {
                let s: Events = args(a)?;
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
            other => return Err(invalid(format!("no tool named '{other}'"))),
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
            _ if !w.state.is_empty() => WaitFor::State { states: w.state },
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

/// `start_session`'s request. On another host, this machine's directory, shell and
/// environment mean nothing: that daemon's apply.
fn start_request(s: Start, remote: bool) -> CreateRequest {
    let cwd = match s.cwd {
        Some(d) => Some(d),
        None if remote => None,
        None => std::env::current_dir()
            .map(|d| d.display().to_string())
            .ok(),
    };
    CreateRequest {
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
        ..Default::default()
    }
}

fn tool(name: &'static str, description: &'static str, schema: Value) -> Tool {
    let as_map = |v: Value| match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut t = Tool::new(name, description, std::sync::Arc::new(as_map(schema)));
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
        "list_events" => json!({"events": {"type": "array", "items": {"type": "object"}},
                                "next": int}),
        _ => json!({}),
    };
    let mut props = props;
    props["error"] = json!({"type": "object", "properties": {"kind": str_, "message": str_}});
    json!({"type": "object", "properties": props})
}

/// A tool's input schema; every tool also takes `host`.
fn obj(mut props: Value, required: &[&str]) -> Value {
    props["host"] = json!({"type": "string", "description":
        "Another machine's hearth, reached over ssh (user@host or an ~/.ssh/config alias); default: this machine"});
    json!({"type": "object", "properties": props, "required": required,
           "additionalProperties": false})
}

fn tools() -> Vec<Tool> {
    let session = json!({"type": "string", "description": "Session id, unique id prefix, or name"});
    vec![
        tool(
            "list_sessions",
            "List every hearth session (a terminal with a program, often a coding agent) with its activity (busy/idle/exited), idle time, title, size and the command that joins it over SSH. Returns {sessions: [...]}.",
            obj(json!({}), &[]),
        ),
        tool(
            "start_session",
            "Start a new session running `command` (default: the user's shell) in a terminal that people can join over SSH. Returns the session; use its id with the other tools.",
            obj(
                json!({"command": {"type": "array", "items": {"type": "string"}, "description": "Program and arguments"},
                       "name": {"type": "string", "description": "A unique name"},
                       "cwd": {"type": "string", "description": "Working directory"},
                       "env": {"type": "object", "additionalProperties": {"type": "string"}}}),
                &[],
            ),
        ),
        tool(
            "send_input",
            "Type into a session as one unit: `text`, then Enter (unless enter: false), then each named key (enter, tab, esc, up, down, C-c, M-x, f1...). Returns `offset`; a wait_for on that session without `from` starts there, so the reply cannot be missed. Instead of `session`, pick several with `all: true`, `name` (a glob: agent-*) and/or `state` (e.g. [\"waiting_input\"]): each gets the input as one unit and `results` lists an offset or an error per session.",
            obj(
                json!({"session": session, "text": {"type": "string"},
                       "keys": {"type": "array", "items": {"type": "string"}},
                       "enter": {"type": "boolean", "default": true},
                       "all": {"type": "boolean", "description": "Every session"},
                       "name": {"type": "string", "description": "Sessions whose name matches this glob (* and ?)"},
                       "state": {"type": "array", "items": {"type": "string"}, "description": "Sessions whose agent is in one of these states"}}),
                &[],
            ),
        ),
        tool(
            "read_screen",
            "The session's current screen as text (what a person attached sees). To wait for something to appear, use wait_for instead of polling this.",
            obj(
                json!({"session": session, "ansi": {"type": "boolean"}}),
                &["session"],
            ),
        ),
        tool(
            "read_output",
            "Raw output of a session from a cursor (`since`, as returned in `next` or by send_input), or its last max_bytes. Returns text, the next cursor and how many bytes were skipped.",
            obj(
                json!({"session": session, "since": {"type": "integer", "minimum": 0},
                       "max_bytes": {"type": "integer", "minimum": 1, "maximum": MAX_READ}}),
                &["session"],
            ),
        ),
        tool(
            "wait_for",
            "Wait (up to timeout_ms, at most 60000) until the session prints a line matching `pattern` (a regex; `screen: true` matches the rendered screen instead, for full-screen programs), or is idle for `idle_ms`, or exits (`exit: true`), or its agent reaches one of `state` (needs_approval, waiting_input, rate_limited, error, working, exited; read from the screen by a `[[profiles]]` profile). Give exactly one condition. Prefer this over polling read_screen. Without `from`, it matches output from your last send_input to that session on (or from now, if you sent none), so send-then-wait never misses the reply; pass `from` (an offset) to choose. The terminal's echo of what was typed or sent never matches (the reply does), unless `include_echo: true`.",
            obj(
                json!({"session": session, "pattern": {"type": "string"}, "screen": {"type": "boolean"},
                       "include_echo": {"type": "boolean"},
                       "idle_ms": {"type": "integer", "minimum": 1}, "exit": {"type": "boolean"},
                       "state": {"type": "array", "items": {"type": "string", "enum": ["working", "waiting_input", "needs_approval", "rate_limited", "error", "exited"]}},
                       "from": {"type": "integer", "minimum": 0},
                       "timeout_ms": {"type": "integer", "minimum": 1, "maximum": MAX_WAIT_MS}}),
                &["session", "timeout_ms"],
            ),
        ),
        tool(
            "session_status",
            "What a session is doing: activity (busy/idle/exited), its agent's state as a profile reads the screen (agent_state: needs_approval, waiting_input, rate_limited, error, working, exited or unknown; attention: true when a human is needed; agent_fields such as resets_at), idle time, title, last input and its last non-empty screen lines.",
            obj(json!({"session": session}), &["session"]),
        ),
        tool(
            "kill_session",
            "End a session's program (SIGHUP, then SIGKILL) and remove the session.",
            obj(json!({"session": session}), &["session"]),
        ),
        tool(
            "restart_session",
            "Start again what an exited, killed or ended session ran (same command, cwd, env, name and port; a new id, `restarted_from` names the old). A session still running is refused: kill_session it first. One started open to anyone restarts for keys only.",
            obj(json!({"session": session}), &["session"]),
        ),
        tool(
            "list_history",
            "Sessions that have ended (also with earlier daemons), newest first: id, name, command, when, exit code, recording. `session` (an id or name) keeps one; `since_hours` only those that ended within that many hours; at most `max` (default 50, up to 500); `total` says how many there were.",
            obj(
                json!({"session": {"type": "string"},
                       "since_hours": {"type": "integer", "minimum": 1},
                       "max": {"type": "integer", "minimum": 1, "maximum": 500}}),
                &[],
            ),
        ),
        tool(
            "send_message",
            "Show a one-line message to the people attached to a session (never typed into the program).",
            obj(
                json!({"session": session, "text": {"type": "string"}}),
                &["session", "text"],
            ),
        ),
        tool(
            "list_events",
            "Events from sequence number `since` (default: all kept): created, joined, busy, idle, match, exited... Waits up to wait_ms (at most 30000) for new ones. Continue with `next`.",
            obj(
                json!({"since": {"type": "integer", "minimum": 0}, "session": session,
                       "wait_ms": {"type": "integer", "minimum": 0, "maximum": MAX_EVENTS_WAIT_MS}}),
                &[],
            ),
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
