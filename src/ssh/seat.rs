//! A client's seat: who it is (as authenticated), its terminal's size, and its membership
//! in a session; [`join`] attaches it to a session and starts its writer and input tasks.
//! Shared by the connection handler and the lobby (which moves a client between sessions),
//! so neither reaches into the other. Owns no connection state and no session internals.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use russh::ChannelId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::input::{FromClient, InputTask};
use super::keys::KeyData;
use super::writer::{self, End};
use super::{Access, Refusal, SessionServer};
use crate::session::{AttachError, Attachment, ClientSpec, Role};

/// The client's terminal: its size and, while it is in a session, its membership there.
/// Shared by the handler (window changes) and the lobby (which moves the client between
/// sessions). Lock order: the seat, then the session's locks (attaching and resizing hold
/// the seat); never taken while holding a session lock.
#[derive(Default)]
pub struct Seat {
    /// (cols, rows) from the pty-req and window changes.
    pub size: Option<(u32, u32)>,
    pub attachment: Option<Arc<Attachment>>,
}

/// A client joined to a session: its writer and input tasks run.
pub struct Joined {
    pub attachment: Arc<Attachment>,
    /// To its input task.
    pub input: mpsc::Sender<FromClient>,
    /// Its writer task; says how the stream ended.
    pub writer: tokio::task::JoinHandle<End>,
}

/// Who a client is, as authenticated.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub role: Role,
    pub peer: SocketAddr,
    pub fingerprint: String,
}

/// Join `shared`'s session at the seat's size and start the client's writer and input
/// tasks on `channel`. `stop` ends both; `lobby` says the client came from the lobby (its
/// menu offers "Sessions..." and its stream hands the channel back instead of closing it).
#[allow(clippy::too_many_arguments)]
pub fn join(
    shared: &Arc<SessionServer>,
    seat: &Mutex<Seat>,
    who: &Identity,
    handle: russh::server::Handle,
    channel: ChannelId,
    stop: CancellationToken,
    cut: CancellationToken,
    lobby: bool,
    span: &tracing::Span,
) -> Result<Joined, AttachError> {
    let mut seat = seat.lock();
    let (cols, rows) = seat.size.unwrap_or((0, 0));
    let spec = ClientSpec {
        user: who.user.clone(),
        role: who.role,
        address: who.peer.to_string(),
        key_fingerprint: who.fingerprint.clone(),
        size: (
            cols.min(u16::MAX as u32) as u16,
            rows.min(u16::MAX as u32) as u16,
        ),
        kind: crate::session::ClientKind::Ssh,
    };
    let attachment = Arc::new(shared.session.attach(spec)?);
    seat.attachment = Some(Arc::clone(&attachment));
    drop(seat);
    let span = tracing::info_span!(parent: span, "client", session = %shared.session.id, client = %attachment.name);
    let (to_writer, control) = super::mailbox::mailbox();
    let writer = writer::Writer {
        client: Arc::clone(&attachment),
        handle,
        channel,
        control,
        stop: stop.clone(),
        cut,
        lobby,
    };
    let writer = shared.tracker.spawn(writer.run().instrument(span.clone()));
    let (input, from_client) = mpsc::channel(64);
    let task = InputTask::new(
        Arc::clone(&attachment),
        to_writer,
        shared.menu.as_ref(),
        shared.viewer_history,
        lobby,
    );
    shared
        .tracker
        .spawn(task.run(from_client, stop).instrument(span));
    Ok(Joined {
        attachment,
        input,
        writer,
    })
}

/// The role `key` grants a client at `addr` under `access`, or why not. Owner keys are
/// checked in `~/.ssh` at every attempt: file I/O, so off the runtime.
pub async fn role_of(
    access: &Arc<Access>,
    key: &KeyData,
    addr: std::net::IpAddr,
) -> Result<Role, Refusal> {
    let access = Arc::clone(access);
    let key = key.clone();
    tokio::task::spawn_blocking(move || access.role_of(&key, addr))
        .await
        .unwrap_or(Err(Refusal::Unknown))
}
