//! Other machines over plain OpenSSH, with no listener, token or transport of our own.
//! `--host NAME` runs `ssh NAME hearth proxy-stdio` and speaks the control protocol over
//! its stdin/stdout; `proxy-stdio` (the far end) bridges them to that machine's daemon
//! socket, starting the daemon like any command. The version handshake is end to end.
//!
//! It owns the ssh command line (`HEARTH_SSH`, `[hosts] ssh`, `[hosts.NAME]
//! remote_command`), turning ssh's failures into errors that say what happened (with
//! ssh's own words), and the jump form `attach --host` uses. It talks to daemons only
//! through hearth-rpc.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hearth_rpc::socket::{ConnectError, handshake};
use hearth_rpc::{ApiError, DaemonInfo, ErrorKind, HearthClient};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;

use super::Failure;
use crate::daemon::config_file::Hosts;

/// The name `--hosts` uses for this machine.
pub const LOCAL: &str = "local";

/// How long a host may take to answer the handshake (ssh's connect and auth included).
const HANDSHAKE: Duration = Duration::from_secs(30);

/// ssh's stderr kept for an error message.
const STDERR_KEPT: usize = 8 * 1024;

/// A daemon on another machine, reached through a running `ssh`.
pub struct Remote {
    pub client: HearthClient,
    pub info: DaemonInfo,
    /// Ends (killed) when dropped.
    _ssh: tokio::process::Child,
}

/// `[hosts]` from the config file.
pub fn hosts() -> Result<Hosts, Failure> {
    Ok(crate::daemon::config_file::load_hosts(
        &crate::paths::config_file(),
    )?)
}

/// `HEARTH_SSH`, split on whitespace (like `GIT_SSH_COMMAND`, without quoting).
pub fn hearth_ssh() -> Option<Vec<String>> {
    std::env::var("HEARTH_SSH")
        .ok()
        .map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
}

/// The ssh command line to reach a daemon: `HEARTH_SSH`, else `[hosts] ssh`, else
/// `ssh -T -o BatchMode=yes`.
pub fn ssh_base(hosts: &Hosts) -> Vec<String> {
    hearth_ssh()
        .or_else(|| hosts.ssh.clone())
        .unwrap_or_else(|| {
            ["ssh", "-T", "-o", "BatchMode=yes"]
                .map(String::from)
                .to_vec()
        })
}

/// A host name must look like one to ssh, never like an option.
fn check_name(name: &str) -> Result<(), Failure> {
    if name.is_empty()
        || name.starts_with('-')
        || name.len() > 255
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::invalid(format!("'{name}' is not a host name for ssh")).into());
    }
    Ok(())
}

/// Run `hearth proxy-stdio` on `name` and shake hands with its daemon.
pub async fn connect(name: &str, hosts: &Hosts) -> Result<Remote, Failure> {
    check_name(name)?;
    let mut argv = ssh_base(hosts);
    let program = argv.remove(0);
    let hearth = hosts
        .remote_commands
        .get(name)
        .cloned()
        .unwrap_or_else(|| "hearth".into());
    let mut child = tokio::process::Command::new(&program)
        .args(&argv)
        .arg("--")
        .arg(name)
        .arg(format!("{hearth} proxy-stdio"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ApiError::new(
                ErrorKind::Host,
                format!("cannot run {program} to reach {name}: {e}"),
            )
        })?;
    let (Some(stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ApiError::internal("ssh's pipes are missing").into());
    };
    // ssh's own words, for the error (bounded: the last few KiB).
    let said = Arc::new(Mutex::new(Vec::<u8>::new()));
    let keep = Arc::clone(&said);
    let stderr_done = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut kept = keep.lock();
            kept.extend_from_slice(&buf[..n]);
            let over = kept.len().saturating_sub(STDERR_KEPT);
            kept.drain(..over);
        }
    });
    let shaken = tokio::time::timeout(HANDSHAKE, handshake(tokio::io::join(stdout, stdin))).await;
    match shaken {
        Ok(Ok((client, info))) => Ok(Remote {
            client,
            info,
            _ssh: child,
        }),
        Ok(Err(ConnectError::Refused(e))) => {
            Err(ApiError::new(e.kind, format!("{name}: {}", e.message)).into())
        }
        Ok(Err(_)) => {
            // ssh ended (or said something that is not the protocol): why, in its words.
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), stderr_done).await;
            let words = String::from_utf8_lossy(&said.lock()).trim().to_string();
            let code = match status {
                Ok(Ok(s)) => s.code(),
                _ => None,
            };
            Err(ApiError::new(ErrorKind::Host, failure(name, &hearth, code, &words)).into())
        }
        Err(_) => Err(ApiError::new(
            ErrorKind::Host,
            format!(
                "{name} did not answer within {}s (ssh still connecting?)",
                HANDSHAKE.as_secs()
            ),
        )
        .into()),
    }
}

/// The MCP server's way to other hosts: the same route as `--host`.
pub fn mcp_hosts() -> Result<Arc<dyn crate::mcp::Hosts>, Failure> {
    struct Route(Hosts);
    impl crate::mcp::Hosts for Route {
        fn connect(
            &self,
            host: String,
        ) -> futures::future::BoxFuture<'static, Result<crate::mcp::Connection, ApiError>> {
            let config = self.0.clone();
            Box::pin(async move {
                let r = connect(&host, &config).await.map_err(Failure::into_api)?;
                Ok(crate::mcp::Connection {
                    client: r.client.clone(),
                    guard: Box::new(r),
                })
            })
        }
    }
    Ok(Arc::new(Route(hosts()?)))
}

/// What went wrong reaching `name`, from ssh's exit status and stderr.
fn failure(name: &str, hearth: &str, code: Option<i32>, words: &str) -> String {
    let said = if words.is_empty() {
        String::new()
    } else {
        format!(": {}", words.lines().last().unwrap_or(words))
    };
    match code {
        // The remote shell's "command not found".
        Some(127) => format!(
            "hearth is not installed on {name} (`{hearth}` was not found; set [hosts.{name}] \
             remote_command to its path){said}"
        ),
        // ssh's own failure: no route, refused, auth, host key.
        Some(255) => format!("cannot reach {name} over ssh{said}"),
        Some(c) => format!("`{hearth} proxy-stdio` on {name} ended with status {c}{said}"),
        None => format!("ssh to {name} ended without a status{said}"),
    }
}

/// A daemon by host name: `local` is this machine's (started if `start` and none
/// answers), any other name is reached with [`connect`]. The `Remote` keeps ssh running.
pub async fn open(
    host: &str,
    socket: &Path,
    config: &Hosts,
    start: bool,
) -> Result<(HearthClient, DaemonInfo, Option<Remote>), Failure> {
    if host == LOCAL {
        let (client, info) = if start {
            super::connect::connect_or_start(socket).await?
        } else {
            super::connect::connect_only(socket).await?
        };
        return Ok((client, info, None));
    }
    let r = connect(host, config).await?;
    Ok((r.client.clone(), r.info.clone(), Some(r)))
}

/// `hearth proxy-stdio`: bridge stdin/stdout to this machine's daemon (started if none
/// answers), until either side closes.
pub async fn proxy_stdio(socket: &Path) -> Result<(), Failure> {
    // Start the daemon if needed (a handshake of our own, then let it go).
    drop(super::connect::connect_or_start(socket).await?);
    let mut daemon = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
        ApiError::new(
            ErrorKind::Daemon,
            format!("cannot reach the daemon on {}: {e}", socket.display()),
        )
    })?;
    let (mut from_daemon, mut to_daemon) = daemon.split();
    let (mut stdin, mut stdout) = (tokio::io::stdin(), tokio::io::stdout());
    // Either side closing ends the bridge at once: a daemon that stops must end ssh too,
    // so the far client sees the connection go (it would wait for its deadline otherwise).
    tokio::select! {
        _ = tokio::io::copy(&mut stdin, &mut to_daemon) => {}
        _ = tokio::io::copy(&mut from_daemon, &mut stdout) => {}
    }
    use tokio::io::AsyncWriteExt;
    let _ = stdout.flush().await;
    // The stdin reader is a blocking thread the runtime would wait for: leave now.
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_that_look_like_options_are_refused() {
        assert!(check_name("box").is_ok());
        assert!(check_name("me@box.example").is_ok());
        for bad in ["", "-oProxyCommand=x", "a b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ssh_failures_are_told_apart() {
        let m = failure(
            "box",
            "hearth",
            Some(127),
            "bash: hearth: command not found",
        );
        assert!(m.contains("not installed on box") && m.contains("command not found"));
        let m = failure(
            "box",
            "hearth",
            Some(255),
            "x\nPermission denied (publickey).",
        );
        assert_eq!(
            m,
            "cannot reach box over ssh: Permission denied (publickey)."
        );
    }
}
