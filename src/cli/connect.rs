//! Reaching the daemon: connect and handshake, or start it in the background (detached,
//! its own session, logging to the XDG state dir) and wait, with a deadline, until it
//! answers.

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_rpc::socket::{ConnectError, connect};
use hearth_rpc::{ApiError, DaemonInfo, ErrorKind, HearthClient};

use super::Failure;

const START_DEADLINE: Duration = Duration::from_secs(15);

/// What a command that does not start the daemon tells the user to do instead.
pub const NOT_STARTED: &str = "this command never starts one: `hearth server` starts it with \
     a session, `hearth daemon` runs it in the foreground";

/// Set (to anything but `0`) to make every command fail instead of starting a daemon:
/// for scripts and tests that manage the daemon themselves.
pub const NO_AUTOSTART: &str = "HEARTH_NO_AUTOSTART";

/// Connect, or fail plainly when nothing answers (for the commands that only look at the
/// daemon or stop it: `version`, `ps`, `top`, `events`, `shutdown`).
pub async fn connect_only(socket: &Path) -> Result<(HearthClient, DaemonInfo), Failure> {
    connect(socket).await.map_err(|e| match e {
        ConnectError::Refused(e) => e.into(),
        ConnectError::Unreachable(..) => ApiError::new(
            ErrorKind::Daemon,
            format!(
                "no hearth daemon is running on {} ({NOT_STARTED})",
                socket.display()
            ),
        )
        .into(),
        other => other.into_api().into(),
    })
}

pub async fn connect_or_start(socket: &Path) -> Result<(HearthClient, DaemonInfo), Failure> {
    match connect(socket).await {
        Ok(c) => return Ok(c),
        Err(ConnectError::Refused(e)) => return Err(e.into()),
        Err(ConnectError::Rpc(e)) if socket_is_live(socket) => {
            return Err(ApiError::new(
                ErrorKind::Daemon,
                format!(
                    "something answers on {} but not as hearth: {e}",
                    socket.display()
                ),
            )
            .into());
        }
        Err(e) => {
            if std::env::var_os(NO_AUTOSTART).is_some_and(|v| !v.is_empty() && v != "0") {
                return Err(ApiError::new(
                    ErrorKind::Daemon,
                    format!("{e} (and {NO_AUTOSTART} is set, so none was started)"),
                )
                .into());
            }
        }
    }
    let mut child = spawn_daemon(socket)?;
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        match connect(socket).await {
            Ok(c) => return Ok(c),
            Err(ConnectError::Refused(e)) => return Err(e.into()),
            Err(_) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ApiError::new(
                ErrorKind::Daemon,
                format!(
                    "the daemon exited at start ({status}); see {}",
                    crate::paths::daemon_log().display()
                ),
            )
            .into());
        }
        if Instant::now() > deadline {
            return Err(ApiError::new(
                ErrorKind::Daemon,
                format!(
                    "the daemon did not answer on {} within {}s; see {}",
                    socket.display(),
                    START_DEADLINE.as_secs(),
                    crate::paths::daemon_log().display()
                ),
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A connect succeeds but the handshake fails: someone listens.
fn socket_is_live(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

fn spawn_daemon(socket: &Path) -> anyhow::Result<std::process::Child> {
    let exe = std::env::current_exe().context("cannot find the hearth executable")?;
    let log_path = crate::paths::daemon_log();
    if let Some(dir) = log_path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // The daemon writes its own log (size-capped and rotated); its stdio goes nowhere.
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .arg("--socket")
        .arg(socket)
        .arg("--log-file")
        .arg(&log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal and
    // process group so it outlives this command and ignores our Ctrl-C.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().context("cannot start the daemon")
}

/// After `shutdown`: wait until nothing answers on the socket.
pub async fn wait_until_gone(socket: &Path) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while socket_is_live(socket) {
        if Instant::now() > deadline {
            return Err(
                ApiError::new(ErrorKind::Daemon, "the daemon is still running after 30 s").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}
