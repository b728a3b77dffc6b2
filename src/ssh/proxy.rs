//! The lobby's way into a session that runs in a process of its own: an SSH connection to
//! the session's port, authenticated with the daemon's lobby key, that names the lobby
//! client it acts for ([`super::LOBBY_CLIENT`]: its address, user and public key; the
//! session's own access then decides with that key, as on its port), asks for a pty at the
//! client's size and a shell, and copies bytes both ways until the session says how the
//! visit ended ([`super::LOBBY_END`]) or the channel closes.
//!
//! Owns the client side of that hop only; the lobby ([`super::lobby`]) decides when to
//! visit and what to say after. The server is checked: it must show the daemon's own host
//! key (the session processes share it).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use russh::ChannelMsg;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tokio::sync::mpsc;

use super::input::FromClient;
use super::lobby::{Client, Visit};

/// Accepts only the daemon's own host key.
struct DaemonHostKey(PublicKey);

impl russh::client::Handler for DaemonHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.0.key_data()
            }
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

/// Visit the session `name` at `addr` on the lobby client's channel.
pub async fn visit(
    client: &Client,
    delegate: Arc<PrivateKey>,
    addr: SocketAddr,
    name: &str,
    rx: &mut mpsc::Receiver<FromClient>,
) -> Visit {
    let Some(host_key) = client
        .lobby
        .config
        .keys
        .first()
        .map(|k| k.public_key().clone())
    else {
        return Visit::Back(format!("cannot join {name}: no host key"));
    };
    let config = Arc::new(russh::client::Config {
        nodelay: true,
        ..Default::default()
    });
    let connected = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut ssh = russh::client::connect(config, addr, DaemonHostKey(host_key)).await?;
        let auth = ssh
            .authenticate_publickey("hearth-lobby", PrivateKeyWithHashAlg::new(delegate, None))
            .await?;
        if !auth.success() {
            return Err(russh::Error::NotAuthenticated);
        }
        let channel = ssh.channel_open_session().await?;
        Ok::<_, russh::Error>((ssh, channel))
    })
    .await;
    let (ssh, channel) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Visit::Back(format!("cannot join {name}: {e}")),
        Err(_) => return Visit::Back(format!("cannot join {name}: no answer within 10 s")),
    };
    let who = client.key.clone();
    let line = PublicKey::from(who).to_openssh().unwrap_or_default();
    let named = format!("{} {} {line}", client.who.peer, client.who.user);
    let (cols, rows) = client.seat.lock().size.unwrap_or((80, 24));
    let asked = async {
        channel.set_env(false, super::LOBBY_CLIENT, named).await?;
        channel
            .request_pty(false, "xterm-256color", cols, rows, 0, 0, &[])
            .await?;
        channel.request_shell(false).await
    };
    if let Err(e) = asked.await {
        return Visit::Back(format!("cannot join {name}: {e}"));
    }
    let (mut read, write) = channel.split();
    let mut said = Vec::new();
    let end = loop {
        tokio::select! {
            msg = read.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if client.handle.data(client.channel, Bytes::copy_from_slice(&data)).await.is_err() {
                        break Visit::Closed;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    said.extend_from_slice(&data);
                    if said.len() > 4096 {
                        said.clear();
                    }
                }
                Some(ChannelMsg::Close) | None => break ended(&said, name),
                Some(_) => {}
            },
            msg = rx.recv() => match msg {
                Some(FromClient::Data(bytes)) => {
                    if write.data(&bytes[..]).await.is_err() {
                        break ended(&said, name);
                    }
                }
                Some(FromClient::Resized) => {
                    let (cols, rows) = client.seat.lock().size.unwrap_or((80, 24));
                    let _ = write.window_change(cols, rows, 0, 0).await;
                }
                None => break Visit::Closed,
            },
            _ = client.stop.cancelled() => break Visit::Closed,
        }
    };
    let _ = ssh
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    end
}

/// How the visit ended, from what the session said on stderr; a channel that closed
/// without a word means the client left (detached).
fn ended(said: &[u8], name: &str) -> Visit {
    let text = String::from_utf8_lossy(said);
    let Some(how) = text
        .split(super::LOBBY_END)
        .nth(1)
        .map(|s| s.trim().to_string())
    else {
        return Visit::Closed;
    };
    match how.split_once(' ') {
        Some(("exited", code)) => Visit::Back(format!("{name} exited with code {code}")),
        _ if how == "kicked" => Visit::Back(format!("you were disconnected from {name}")),
        _ => Visit::Back(format!("back from {name}")),
    }
}
