//! The one error type that crosses the control socket. Its JSON form is what
//! `hearth --json` prints under `"error"`: `{"kind": "not_found", "message": "..."}`.

use serde::{Deserialize, Serialize};

/// What went wrong, in a form a caller can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No session (or client) matches the target.
    NotFound,
    /// An id prefix matches several sessions; the message lists them.
    Ambiguous,
    /// A name is already taken.
    AlreadyExists,
    /// The requested port could not be bound (in use, or not permitted).
    PortUnavailable,
    /// A request argument is invalid (bad port, bad key, bad env, ...).
    InvalidArgument,
    /// The operation does not apply in the session's current state.
    InvalidState,
    /// The session's command could not be started.
    Spawn,
    /// CLI and daemon speak different protocol versions, or the handshake was skipped.
    Protocol,
    /// A configured limit was reached.
    Limit,
    /// The session cannot take more input now (its program is not reading it): try later.
    Busy,
    /// The daemon could not be reached or started.
    Daemon,
    /// A host given with `--host` could not be reached over ssh, or has no hearth there.
    Host,
    /// Anything else; the message says what.
    Internal,
}

impl ErrorKind {
    /// The snake_case name used on the wire and in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Host => "host",
            ErrorKind::Ambiguous => "ambiguous",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::PortUnavailable => "port_unavailable",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::Spawn => "spawn",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Limit => "limit",
            ErrorKind::Busy => "busy",
            ErrorKind::Daemon => "daemon",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error with a kind to match on and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidState, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_shape_is_kind_and_message() {
        let e = ApiError::not_found("no session matches 'zz'");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "not_found");
        assert_eq!(v["message"], "no session matches 'zz'");
        assert_eq!(ErrorKind::PortUnavailable.as_str(), "port_unavailable");
        let back: ApiError = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
