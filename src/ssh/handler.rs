//! One [`Connection`] per SSH connection: public-key auth against the [`Place`]'s
//! [`Access`] (a session's, or the lobby's: owners only), one session channel with a pty,
//! input into the session (or the lobby, which moves the client between sessions: see
//! [`super::lobby`]), window changes into the size computation. Port, socket, agent and
//! X11 forwarding and subsystems are refused explicitly (and logged); other channel types
//! and global requests are rejected by russh's `Handler` defaults.
//!
//! The channel object russh hands to `channel_open_session` is dropped at once: keeping it
//! unread stalls the whole connection once its 100-message buffer fills (seen after ~97
//! keystrokes). We use the callbacks instead.
//!
//! Log lines about connections that have not authenticated (and about refused keys) go
//! through the guard's per-source gate: a stranger cannot grow the log.

use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session as SshSession};
use russh::{Channel, ChannelId, Pty};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::input::FromClient;
use super::keys::{KeyData, fingerprint_of};
use super::seat::{Identity, Seat, join, role_of};
use super::stream::{Cuttable, QuickAck};
use super::{Access, Place, Refusal};
use crate::session::Role;
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Close a channel with a message on stderr and exit status 1.
fn refuse(session: &mut SshSession, channel: ChannelId, msg: String) {
    let _ = session.extended_data(channel, 1, Bytes::from(msg));
    let _ = session.exit_status_request(channel, 1);
    let _ = session.eof(channel);
    let _ = session.close(channel);
}

pub async fn run_connection(
    place: Place,
    stream: TcpStream,
    peer: SocketAddr,
    slot: super::preauth::Slot,
) {
    let span = tracing::info_span!("client", session = %place.label(), %peer);
    // One cancellation tree: the session's (or lobby's) token cuts the connection, which
    // stops the client's tasks.
    let cut = place.cancel().child_token();
    let authed = CancellationToken::new();
    let connection = Connection {
        authed: authed.clone(),
        slot: Some(slot),
        rejections: Arc::new(AtomicUsize::new(0)),
        place: place.clone(),
        peer,
        user: String::new(),
        role: None,
        key: None,
        fingerprint: String::new(),
        channel: None,
        channel_used: false,
        seat: Arc::new(Mutex::new(Seat::default())),
        joined: false,
        delegated: false,
        input: None,
        stop: cut.child_token(),
        cut: cut.clone(),
        span: span.clone(),
    };
    let rejections = Arc::clone(&connection.rejections);
    let heard = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = Cuttable::new(
        super::stream::Heard::new(QuickAck::new(stream), Arc::clone(&heard)),
        cut.clone(),
    );
    // Login grace, armed before the version exchange.
    let (grace, grace_over) = login_grace(&place, &cut, &authed, &heard);
    // Boxed: the handshake's state is freed once it is done, not kept in every connection's
    // task for its lifetime (2.0 -> 0.9 KiB per connection).
    match Box::pin(russh::server::run_stream(
        Arc::clone(place.config()),
        stream,
        connection,
    ))
    .await
    {
        Ok(running) => tokio::select! {
            r = running => {
                if let Err(e) = r {
                    tracing::debug!(parent: &span, error = %e, "connection ended with error");
                }
            }
            _ = place.cancel().cancelled() => cut.cancel(),
        },
        Err(e) => tracing::debug!(parent: &span, error = %e, "ssh handshake failed"),
    }
    cut.cancel();
    grace.abort();
    let source = place.guard().source(peer.ip());
    if authed.is_cancelled() {
        // Anyone may connect to an open session: its lines go through the gate too.
        if place.access().open.is_none() || place.guard().log_gate(source).is_some() {
            tracing::info!(parent: &span, "disconnected");
        }
        return;
    }
    // Any end without a login counts against the source (refused keys, silence, the login
    // grace, or the client closing first: OpenSSH's `noauth`); a few are free.
    let tried = rejections.load(Ordering::Relaxed);
    let held = grace_over.load(Ordering::Relaxed);
    let said_hello = heard.load(Ordering::Relaxed);
    place.guard().failed(peer.ip());
    if let Some(left_out) = place.guard().log_gate(source) {
        tracing::info!(parent: &span, keys_refused = tried, timed_out = held, said_hello, left_out, "unauthenticated connection closed");
    }
}

/// A connection that has not authenticated in time (or never even says hello) is cut,
/// freeing its slot; sooner for one that never even sends its SSH version line
/// ([`HELLO_GRACE`]). The timer's task, and whether it cut the connection.
fn login_grace(
    place: &Place,
    cut: &CancellationToken,
    authed: &CancellationToken,
    heard: &Arc<std::sync::atomic::AtomicBool>,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let grace_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (cut, authed, limit) = (cut.clone(), authed.clone(), place.login_grace());
    let over = Arc::clone(&grace_over);
    let heard = Arc::clone(heard);
    let grace = place.tracker().spawn(async move {
        let hello = tokio::time::sleep(HELLO_GRACE.min(limit));
        let login = tokio::time::sleep(limit);
        tokio::pin!(hello, login);
        let mut hello_done = false;
        loop {
            tokio::select! {
                _ = &mut hello, if !hello_done => {
                    hello_done = true;
                    if !heard.load(Ordering::Relaxed) {
                        over.store(true, Ordering::Relaxed);
                        cut.cancel();
                        return;
                    }
                }
                _ = &mut login => {
                    over.store(true, Ordering::Relaxed);
                    cut.cancel();
                    return;
                }
                _ = authed.cancelled() => return,
                _ = cut.cancelled() => return,
            }
        }
    });
    (grace, grace_over)
}

/// How long a new connection may stay silent (no SSH version line) before it is cut.
pub const HELLO_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Connection {
    place: Place,
    peer: SocketAddr,
    user: String,
    role: Option<Role>,
    /// The key it authenticated with (the lobby checks it against each session it joins).
    key: Option<KeyData>,
    fingerprint: String,
    channel: Option<ChannelId>,
    channel_used: bool,
    seat: Arc<Mutex<Seat>>,
    /// A shell or exec request was served (a second one is refused).
    joined: bool,
    /// Authenticated with the daemon's lobby key: it acts for the lobby client it names
    /// ([`super::LOBBY_CLIENT`]), with that client's own role here (none until named).
    delegated: bool,
    /// To this client's input task (menu detector, then the PTY), or to its lobby.
    input: Option<mpsc::Sender<FromClient>>,
    /// Stops this client's writer task.
    stop: CancellationToken,
    /// Cuts the TCP connection.
    cut: CancellationToken,
    /// Cancelled once authenticated (ends the login grace timer).
    authed: CancellationToken,
    /// Our place among unauthenticated connections; released on success.
    slot: Option<super::preauth::Slot>,
    /// Keys refused on this connection (a connection that ends with some is a failure).
    rejections: Arc<AtomicUsize>,
    span: tracing::Span,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Connection {
    fn access(&self) -> &Access {
        self.place.access()
    }

    /// The role a key grants, or why not.
    async fn role_of(&self, key: &KeyData) -> Result<Role, Refusal> {
        role_of(self.place.access(), key, self.peer.ip()).await
    }

    /// Whether a line about this admitted client goes to the log: always, unless the
    /// session is open to anyone (then at most once per source per minute).
    fn loud(&self) -> bool {
        self.access().open.is_none()
            || self
                .place
                .guard()
                .log_gate(self.place.guard().source(self.peer.ip()))
                .is_some()
    }

    /// A refused key: counted (a connection that ends with some is a failure) and logged
    /// through the per-source gate.
    fn refused(&self, user: &str, key: &KeyData, why: &Refusal) {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        let source = self.place.guard().source(self.peer.ip());
        if let Some(left_out) = self.place.guard().log_gate(source) {
            tracing::info!(parent: &self.span, user = %sanitize_user(user), fingerprint = %fingerprint_of(key), left_out, "auth refused: {why}");
        }
    }

    /// Refuse a channel we never serve, saying so in the log.
    async fn refuse_channel(
        &self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        what: &str,
    ) -> Result<(), russh::Error> {
        drop(channel);
        tracing::info!(parent: &self.span, "refused {what}");
        reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    fn accepted(&mut self, user: &str, role: Role, key: Option<KeyData>, fingerprint: String) {
        self.user = sanitize_user(user);
        if self.loud() {
            tracing::info!(parent: &self.span, user = %self.user, %fingerprint, role = role.as_str(), "auth accepted");
        }
        self.role = Some(role);
        self.key = key;
        self.fingerprint = fingerprint;
        self.authed.cancel();
        self.slot = None;
        self.place.guard().succeeded(self.peer.ip());
    }

    /// Take on the lobby client named by `value` (`ADDR USER KEYTYPE BASE64`), if this
    /// session's access admits its key from its address.
    async fn act_for(&mut self, value: &str) {
        let mut parts = value.splitn(3, ' ');
        let (Some(addr), Some(user), Some(line)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let (Ok(addr), Ok(key)) = (
            addr.parse::<SocketAddr>(),
            russh::keys::PublicKey::from_openssh(line),
        ) else {
            return;
        };
        let key = key.key_data().clone();
        match role_of(self.place.access(), &key, addr.ip()).await {
            Ok(role) => {
                self.role = Some(role);
                self.fingerprint = fingerprint_of(&key);
                self.user = sanitize_user(user);
                self.peer = addr;
                tracing::info!(parent: &self.span, user = %self.user, fingerprint = %self.fingerprint, role = role.as_str(), %addr, "joined from the lobby");
            }
            Err(why) => {
                tracing::info!(parent: &self.span, fingerprint = %fingerprint_of(&key), "the lobby's client is refused: {why}");
            }
        }
    }

    fn identity(&self) -> Identity {
        Identity {
            user: self.user.clone(),
            role: self.role.unwrap_or(Role::Viewer),
            peer: self.peer,
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// Serve a shell or exec request: join the session (`exec` is typed into the shared
    /// shell), or open the lobby (`exec` names a session to join at once).
    fn attach(&mut self, channel: ChannelId, session: &mut SshSession, exec: Option<&[u8]>) {
        if self.seat.lock().size.is_none() {
            let msg = "hearth: this is a shared terminal; a pty is required (use `ssh -t`)\r\n";
            refuse(session, channel, msg.into());
            return;
        }
        if self.joined {
            let _ = session.channel_failure(channel);
            return;
        }
        self.joined = true;
        let shared = match &self.place {
            Place::Session(shared) => Arc::clone(shared),
            Place::Lobby(lobby) => {
                let Some(key) = self.key.clone() else {
                    refuse(session, channel, "hearth: the lobby needs a key\r\n".into());
                    return;
                };
                let _ = session.channel_success(channel);
                let (to_lobby, from_client) = mpsc::channel(64);
                self.input = Some(to_lobby);
                let first = exec
                    .map(|c| String::from_utf8_lossy(c).trim().to_string())
                    .filter(|c| !c.is_empty());
                let client = super::lobby::Client {
                    lobby: Arc::clone(lobby),
                    who: self.identity(),
                    key,
                    handle: session.handle(),
                    channel,
                    seat: Arc::clone(&self.seat),
                    stop: self.stop.clone(),
                    cut: self.cut.clone(),
                    span: self.span.clone(),
                };
                if self.loud() {
                    tracing::info!(parent: &self.span, user = %self.user, "in the lobby");
                }
                lobby.tracker.spawn(
                    super::lobby::run(client, from_client, first).instrument(self.span.clone()),
                );
                return;
            }
        };
        if self.delegated && self.role.is_none() {
            refuse(
                session,
                channel,
                "hearth: your key is refused here\r\n".into(),
            );
            return;
        }
        let joined = join(
            &shared,
            &self.seat,
            &self.identity(),
            session.handle(),
            channel,
            self.stop.clone(),
            self.cut.clone(),
            self.delegated,
            &self.span,
        );
        match joined {
            Ok(joined) => {
                let super::seat::Joined {
                    attachment,
                    input,
                    writer,
                } = joined;
                if self.delegated {
                    tell_the_lobby(&shared, writer, session.handle(), channel);
                }
                if self.loud() {
                    tracing::info!(parent: &self.span, client = %attachment.name, role = ?self.role, "attached");
                }
                let _ = session.channel_success(channel);
                if let Some(cmd) = exec.filter(|c| !c.is_empty())
                    && self.role.is_some_and(Role::may_type)
                {
                    let mut line = cmd.to_vec();
                    line.push(b'\r');
                    let stop = self.stop.clone();
                    shared.tracker.spawn(async move {
                        tokio::select! {
                            _ = attachment.input(Bytes::from(line)) => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                }
                self.input = Some(input);
            }
            Err(e) => refuse(session, channel, format!("hearth: cannot join: {e}\r\n")),
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        // Only an `--open` session admits clients without a key.
        match self.access().role_without_key() {
            Some(role) => {
                self.accepted(user, role, None, "none".into());
                Ok(Auth::Accept)
            }
            None => Ok(Auth::reject()),
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only say "go on and sign" for keys we would accept; others fail fast.
        let key = offer.public_key.key_data();
        if self.access().delegate.as_ref() == Some(key) {
            return Ok(Auth::Accept);
        }
        Ok(match self.role_of(key).await {
            Ok(_) => Auth::Accept,
            Err(why) => {
                self.refused(user, key, &why);
                Auth::reject()
            }
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let key = key.public_key.key_data();
        if self.access().delegate.as_ref() == Some(key) {
            // The daemon's lobby: no role until it names its client.
            self.accepted(user, Role::Viewer, None, "lobby".into());
            self.role = None;
            self.delegated = true;
            return Ok(Auth::Accept);
        }
        match self.role_of(key).await {
            Ok(role) => {
                self.accepted(user, role, Some(key.clone()), fingerprint_of(key));
                Ok(Auth::Accept)
            }
            Err(why) => {
                self.refused(user, key, &why);
                Ok(Auth::reject())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.refuse_channel(channel, reply, "port forwarding (direct-tcpip)")
            .await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.refuse_channel(channel, reply, "socket forwarding")
            .await
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        tracing::info!(parent: &self.span, "refused remote port forwarding (tcpip-forward)");
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        tracing::info!(parent: &self.span, "refused X11 forwarding");
        let _ = session.channel_failure(channel);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        tracing::info!(parent: &self.span, subsystem = %name.chars().take(32).collect::<String>(), "refused subsystem");
        let _ = session.channel_failure(channel);
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        tracing::info!(parent: &self.span, "refused agent forwarding");
        Ok(false)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let id = channel.id();
        drop(channel);
        // One session channel per connection, ever: a kicked client cannot reopen one. (The
        // lobby's connection has its role once it names its client, on this channel.)
        if (self.role.is_none() && !self.delegated) || self.channel_used {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        self.channel = Some(id);
        self.channel_used = true;
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if Some(channel) != self.channel {
            let _ = session.channel_failure(channel);
            return Ok(());
        }
        self.seat.lock().size = Some((col_width, row_height));
        let _ = session.channel_success(channel);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if Some(channel) != self.channel {
            let _ = session.channel_failure(channel);
            return Ok(());
        }
        self.attach(channel, session, None);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if Some(channel) != self.channel {
            let _ = session.channel_failure(channel);
            return Ok(());
        }
        self.attach(channel, session, Some(data));
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        _channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        {
            let mut seat = self.seat.lock();
            seat.size = Some((col_width, row_height));
            if let Some(attachment) = &seat.attachment {
                attachment.resize(col_width, row_height);
            }
        }
        if let Some(input) = &self.input {
            let _ = input.send(FromClient::Resized).await;
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        _channel: ChannelId,
        name: &str,
        value: &str,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // The daemon's lobby names the client it acts for: that client's own key decides,
        // against this session's access, as if it had come to this port.
        if self.delegated && name == super::LOBBY_CLIENT && self.role.is_none() {
            self.act_for(value).await;
        }
        // Anything else is accepted and ignored: the session's environment is its own.
        Ok(())
    }

    async fn data(
        &mut self,
        _channel: ChannelId,
        data: &[u8],
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // Everything goes to the input task, viewers' keys too: they may open the menu.
        // The session itself drops input from clients that may not type.
        if let Some(input) = &self.input {
            let _ = input
                .send(FromClient::Data(Bytes::copy_from_slice(data)))
                .await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        _channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // `ssh host <<< cmds` sends EOF at once; closing here would lose the output.
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if Some(channel) == self.channel {
            self.stop.cancel();
            self.seat.lock().attachment = None;
            self.input = None;
            self.channel = None;
        }
        Ok(())
    }
}

/// A visit from the lobby: when the client's stream ends the way the lobby takes it back
/// (the program exited, a kick, "Sessions..."), say how on stderr and close the channel.
fn tell_the_lobby(
    shared: &super::SessionServer,
    writer: tokio::task::JoinHandle<super::writer::End>,
    handle: russh::server::Handle,
    channel: ChannelId,
) {
    use super::writer::End;
    shared.tracker.spawn(async move {
        let how = match writer.await.unwrap_or(End::Gone) {
            End::Lobby => "lobby".to_string(),
            End::Exited(code) => format!("exited {code}"),
            End::Kicked => "kicked".to_string(),
            _ => return,
        };
        let said = format!("{}{how}\n", super::LOBBY_END);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            handle
                .extended_data(channel, 1, Bytes::from(said))
                .await
                .ok()?;
            handle.exit_status_request(channel, 0).await.ok()?;
            handle.eof(channel).await.ok()?;
            handle.close(channel).await.ok()
        })
        .await;
    });
}

/// SSH user names end up in client names and logs: keep them short and printable.
fn sanitize_user(user: &str) -> String {
    let clean: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(32)
        .collect();
    if clean.is_empty() {
        "user".into()
    } else {
        clean
    }
}
