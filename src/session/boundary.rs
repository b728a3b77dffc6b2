//! The calls the daemon makes on one session, in the control API's own types
//! (`hearth_rpc`): peers, kick, role, message, read, send, wait and screen. This is the
//! session's side of the boundary a session process will serve over its own socket (#27):
//! everything a call reads or builds from a session (the bytes `send` types, the read loop,
//! the wait condition, the peer rows) happens here, so the daemon's service only resolves a
//! target and forwards. Owns no state; must not reach into the daemon (registry, history,
//! events ring).

use std::sync::Arc;
use std::time::Duration;

use hearth_rpc::{
    ApiError, ErrorKind, Grant, OutputChunk, PeerInfo, PeerRole, ReadFrom, SendReply, SendRequest,
    WaitFor, WaitReason, WaitReply, WaitRequest,
};

use super::reader::{Next, Reader};
use super::wait::{Until, Waited};
use super::{Peer, Role, RoleError, SendError, Session, Who};

/// Most text one `send` types (the request frame limit is 4 MiB).
const MAX_SEND: usize = hearth_rpc::MAX_SEND_BYTES;

/// Most bytes one `read` returns.
const MAX_READ: usize = 4 * 1024 * 1024;

/// Longest a `read` or `wait` call waits, whatever it asks.
const MAX_CALL_WAIT: Duration = Duration::from_secs(30);

impl From<RoleError> for ApiError {
    fn from(e: RoleError) -> ApiError {
        match e {
            RoleError::NoSuchClient(_) => {
                ApiError::not_found(format!("{e} in the session (see `hearth peers`)"))
            }
            RoleError::Owner(_) | RoleError::Invalid => ApiError::invalid(e.to_string()),
        }
    }
}

/// The session's role for a role given over the wire.
pub fn granted(g: Grant) -> Role {
    match g {
        Grant::Viewer => Role::Viewer,
        Grant::Collaborator => Role::Collaborator,
    }
}

/// A role as the wire says it.
pub fn peer_role(r: Role) -> PeerRole {
    match r {
        Role::Owner => PeerRole::Owner,
        Role::Collaborator => PeerRole::Collaborator,
        Role::Viewer => PeerRole::Viewer,
    }
}

/// Where a read starts, from the wire.
pub fn read_from(from: ReadFrom) -> super::ReadFrom {
    match from {
        ReadFrom::Start => super::ReadFrom::Start,
        ReadFrom::End => super::ReadFrom::End,
        ReadFrom::Offset(o) => super::ReadFrom::Offset(o),
        ReadFrom::Tail(n) => super::ReadFrom::Tail(n),
        ReadFrom::SinceSecs(s) => super::ReadFrom::Since(Duration::from_secs(s)),
    }
}

/// Bytes one read may return: what was asked, within 1..=`MAX_READ` (4 MiB).
pub fn read_limit(max: u32) -> usize {
    (max as usize).clamp(1, MAX_READ)
}

fn peer_info(p: Peer) -> PeerInfo {
    PeerInfo {
        client: p.name,
        user: p.spec.user,
        role: peer_role(p.spec.role),
        cols: p.size.0,
        rows: p.size.1,
        address: p.spec.address,
        connected_at: humantime::format_rfc3339_seconds(p.connected_at).to_string(),
        bytes_in: p.bytes_in,
        bytes_out: p.bytes_out,
        key_fingerprint: p.spec.key_fingerprint,
        kind: match p.spec.kind {
            super::ClientKind::Ssh => hearth_rpc::PeerKind::Ssh,
            super::ClientKind::Web => hearth_rpc::PeerKind::Web,
        },
    }
}

impl Session {
    /// The attached clients.
    pub fn peer_infos(&self) -> Vec<PeerInfo> {
        self.peers().into_iter().map(peer_info).collect()
    }

    /// Disconnect the client named `client`; `by` says who asked.
    pub fn kick_named(&self, client: &str, by: &str) -> Result<PeerInfo, ApiError> {
        self.kick(Who::Name(client), by)
            .map(peer_info)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no client '{client}' in session {} (see `hearth peers {}`)",
                    self.id, self.id
                ))
            })
    }

    /// Give the client named `client` another role; `by` says who asked.
    pub fn grant(&self, client: &str, role: Grant, by: &str) -> Result<PeerInfo, ApiError> {
        self.set_role(Who::Name(client), granted(role), by)
            .map(peer_info)
            .map_err(ApiError::from)
    }

    /// Show `text` to every client, from `by` (control characters dropped; one line).
    pub fn message(&self, by: &str, text: &str) -> Result<(), ApiError> {
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        if text.trim().is_empty() {
            return Err(ApiError::invalid("the message is empty"));
        }
        if text.chars().count() > crate::menu::MAX_MESSAGE {
            return Err(ApiError::new(
                ErrorKind::Limit,
                format!(
                    "messages are at most {} characters",
                    crate::menu::MAX_MESSAGE
                ),
            ));
        }
        self.notify_others(by, &text);
        Ok(())
    }

    /// Output from `from`, at most `max` bytes; with nothing new, wait up to `wait_ms`
    /// (at most 30 s) for some.
    pub async fn read_chunk(
        self: &Arc<Self>,
        from: ReadFrom,
        max: u32,
        wait_ms: u32,
    ) -> OutputChunk {
        let max = read_limit(max);
        let (mut reader, mut skipped) = Reader::bytes(self, read_from(from));
        let mut waited = wait_ms == 0;
        let data = loop {
            match reader.read(max) {
                Next::Data(bytes) => break bytes.to_vec(),
                // The log moved on under us: count the loss and read from its start.
                Next::Behind(lost) => skipped += lost,
                Next::UpToDate if !waited => {
                    waited = true;
                    let wait = Duration::from_millis(u64::from(wait_ms)).min(MAX_CALL_WAIT);
                    let _ = tokio::time::timeout(wait, reader.changed()).await;
                }
                Next::UpToDate | Next::Exited(_) => break Vec::new(),
            }
        };
        let exit_code = self.exit_code();
        OutputChunk {
            data,
            next: reader.cursor(),
            skipped,
            exited: exit_code.is_some(),
            exit_code,
            end: Some(self.output_end()),
        }
    }

    /// Type what `req` asks (text, pasted if the program wants bracketed paste, Enter,
    /// named keys in the program's cursor mode), as the owner with `uid`.
    pub async fn send_request(&self, req: SendRequest, uid: u32) -> Result<SendReply, ApiError> {
        if req.text.len() > MAX_SEND {
            return Err(ApiError::new(
                ErrorKind::Limit,
                format!(
                    "the text is {} bytes; send at most {MAX_SEND} at once",
                    req.text.len()
                ),
            ));
        }
        let (app_cursor, bracketed) = self.input_modes();
        let mut bytes = Vec::with_capacity(req.text.len() + 16);
        if req.paste && bracketed {
            bytes.extend_from_slice(b"\x1b[200~");
            bytes.extend_from_slice(req.text.as_bytes());
            bytes.extend_from_slice(b"\x1b[201~");
        } else {
            bytes.extend_from_slice(req.text.as_bytes());
        }
        if req.enter && !req.text.is_empty() {
            bytes.push(b'\r');
        }
        for key in &req.keys {
            let k = super::keys::key_bytes(key, app_cursor).map_err(ApiError::invalid)?;
            bytes.extend_from_slice(&k);
        }
        if bytes.is_empty() {
            return Err(ApiError::invalid(
                "nothing to send: give text, --key, --stdin or --file",
            ));
        }
        let n = bytes.len() as u64;
        let offset = self
            .send(bytes::Bytes::from(bytes), uid)
            .await
            .map_err(|e| match e {
                SendError::Busy { .. } => {
                    ApiError::new(ErrorKind::Busy, format!("session {}: {e}", self.id))
                }
                SendError::Exited | SendError::Restarting { .. } => {
                    ApiError::state(format!("session {}: {e}", self.id))
                }
            })?;
        Ok(SendReply { bytes: n, offset })
    }

    /// Wait for what `req` asks (a match, quiet, the exit), at most 30 s.
    pub async fn wait_request(self: &Arc<Self>, req: WaitRequest) -> Result<WaitReply, ApiError> {
        let until = until(req.until)?;
        let limit = Duration::from_millis(u64::from(req.timeout_ms)).min(MAX_CALL_WAIT);
        let waited = super::wait::wait(self, &until, req.from, limit).await;
        Ok(wait_reply(waited, &until))
    }

    /// The screen as text, or with colours and cursor (`ansi`: what a late joiner gets).
    pub fn screen_of(&self, ansi: bool) -> String {
        if ansi {
            String::from_utf8_lossy(&self.screen_ansi()).into_owned()
        } else {
            self.screen_text()
        }
    }
}

/// A wait condition from the wire, checked.
fn until(w: WaitFor) -> Result<Until, ApiError> {
    Ok(match w {
        WaitFor::Match {
            regex,
            screen,
            include_echo,
        } => {
            if regex.is_empty() {
                return Err(ApiError::invalid(
                    "the pattern is empty: give a regex to match",
                ));
            }
            let regex = regex::RegexBuilder::new(&regex)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| ApiError::invalid(format!("invalid regex: {e}")))?;
            Until::Match {
                regex,
                screen,
                echo: include_echo,
            }
        }
        WaitFor::Idle { ms } => Until::Idle(Duration::from_millis(ms.max(1))),
        WaitFor::Exit => Until::Exit,
        WaitFor::State { states } => {
            let parsed = states
                .iter()
                .map(|s| {
                    super::profile::AgentState::parse(s).ok_or_else(|| {
                        ApiError::invalid(format!(
                            "unknown state '{}': one of working, waiting_input, \
                             needs_approval, rate_limited, error, exited",
                            crate::text::safe(s)
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if parsed.is_empty() {
                return Err(ApiError::invalid("name at least one state to wait for"));
            }
            Until::State(parsed)
        }
    })
}

fn wait_reply(waited: Waited, until: &Until) -> WaitReply {
    let mut reply = WaitReply {
        reason: WaitReason::Timeout,
        matched: None,
        line: None,
        offset: 0,
        exit_code: None,
        idle_ms: None,
        state: None,
    };
    match waited {
        Waited::Match { text, line, offset } => {
            reply.reason = WaitReason::Match;
            reply.matched = Some(text);
            reply.line = Some(line);
            reply.offset = offset;
        }
        Waited::Idle { idle, offset } => {
            reply.reason = WaitReason::Idle;
            reply.idle_ms = Some(idle.as_millis() as u64);
            reply.offset = offset;
        }
        Waited::Exit { code, offset } | Waited::Ended { code, offset } => {
            reply.reason = if matches!(until, Until::Exit) {
                WaitReason::Exit
            } else {
                WaitReason::Ended
            };
            reply.exit_code = Some(code);
            reply.offset = offset;
        }
        Waited::Timeout { resume } => reply.offset = resume,
        Waited::State { state, offset } => {
            reply.reason = WaitReason::State;
            reply.state = Some(state.name().to_string());
            reply.offset = offset;
        }
    }
    reply
}
