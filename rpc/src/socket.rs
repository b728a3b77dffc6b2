//! Where the control socket lives, and the transport spoken on it: tarpc's serde transport
//! with length-delimited JSON frames (see `adr/0001-control-transport.md`).

use std::io;
use std::path::{Path, PathBuf};

use tarpc::serde_transport::Transport;
use tarpc::tokio_serde::formats::Json;
use tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec;
use tokio::net::UnixStream;

use crate::{ApiError, DaemonInfo, ErrorKind, HearthClient, PROTOCOL_VERSION, VERSION};

/// Environment variable that overrides the socket path for every command.
pub const SOCKET_ENV: &str = "HEARTH_SOCKET";

/// Largest frame either side accepts. Requests are small; this only stops a peer (or
/// garbage) from making the other side allocate without bound.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The socket path: `$HEARTH_SOCKET`, else `$XDG_RUNTIME_DIR/hearth/hearth.sock`, else
/// `/tmp/hearth-$UID/hearth.sock`. An explicit `--socket` (handled by the caller) wins.
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("hearth").join("hearth.sock");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/hearth-{uid}")).join("hearth.sock")
}

/// The JSON transport over one stream (a Unix stream, or one wrapped by a guard), for
/// either side.
pub fn transport<S, Item, SinkItem>(stream: S) -> Transport<S, Item, SinkItem, Json<Item, SinkItem>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    Item: for<'de> serde::Deserialize<'de>,
    SinkItem: serde::Serialize,
{
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_framed(stream);
    tarpc::serde_transport::new(framed, Json::default())
}

/// How long a local daemon may take to answer the handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connect to the daemon at `path` and perform the version handshake (bounded in time: a
/// peer that closes without answering must not leave the caller waiting).
pub async fn connect(path: &Path) -> Result<(HearthClient, DaemonInfo), ConnectError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| ConnectError::Unreachable(path.to_path_buf(), e))?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream))
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Rpc(format!(
                "no answer within {}s",
                HANDSHAKE_TIMEOUT.as_secs()
            )))
        })
}

/// Speak the control protocol over any byte stream (a Unix stream, or a pipe to
/// `ssh HOST hearth proxy-stdio`) and perform the version handshake, end to end.
pub async fn handshake<S>(stream: S) -> Result<(HearthClient, DaemonInfo), ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let client = HearthClient::new(tarpc::client::Config::default(), transport(stream)).spawn();
    let info = client
        .hello(
            tarpc::context::current(),
            PROTOCOL_VERSION,
            VERSION.to_string(),
        )
        .await
        .map_err(|e| ConnectError::Rpc(e.to_string()))?
        .map_err(ConnectError::Refused)?;
    Ok((client, info))
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing (alive) listens on the socket.
    #[error("no daemon answers on {0}: {1}")]
    Unreachable(PathBuf, #[source] io::Error),
    /// Something answered but the call failed (not a hearth daemon, or it died).
    #[error("the daemon did not answer the handshake: {0}")]
    Rpc(String),
    /// The daemon answered and refused (protocol mismatch).
    #[error("{0}")]
    Refused(ApiError),
}

impl ConnectError {
    /// The error as the socket's error type, for uniform reporting.
    pub fn into_api(self) -> ApiError {
        match self {
            ConnectError::Refused(e) => e,
            other => ApiError::new(ErrorKind::Daemon, other.to_string()),
        }
    }
}
