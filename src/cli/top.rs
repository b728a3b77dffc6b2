//! `hearth top` (the dashboard in this terminal) and `hearth attach` (join a session from
//! this machine without typing its port, with the daemon's host key already trusted).
//!
//! `top` is the terminal adapter of [`crate::dashboard`]: it owns the raw mode and the
//! alternate screen, turns crossterm keys into dashboard keys, feeds the model from the
//! daemon's event stream (a long poll, never a timer) and the selected session's screen
//! (fetched again when its output moves), and carries out the dashboard's actions through
//! the control API. Attaching hands the terminal to `ssh` and takes it back after.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use hearth_rpc::{ApiError, DaemonInfo, HearthClient, SessionInfo};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{execute, terminal};
use tokio::sync::mpsc;

use super::{Failure, call, ctx, output::Out};
use crate::dashboard::live::{Live, Source, Update};
use crate::dashboard::{Action, Dashboard, INTERRUPT, Key};

/// The alias `attach` pins a daemon's host key to, in hearth's own known_hosts file:
/// every session's port has the same key, so there is one entry per daemon (this
/// machine's, and one per `--host`) and never a prompt.
fn host_alias(host: Option<&str>) -> String {
    match host {
        None => "hearth-daemon".into(),
        Some(h) => format!(
            "hearth-daemon-{}",
            h.chars()
                .map(
                    |c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                        c
                    } else {
                        '_'
                    }
                )
                .collect::<String>()
        ),
    }
}

/// The `ssh` command line: `HEARTH_SSH`, else `ssh`.
fn ssh_command() -> Vec<String> {
    super::remote::hearth_ssh().unwrap_or_else(|| vec!["ssh".into()])
}

/// Where `attach` connects for a session bound to `bind`.
fn connect_host(bind: &str) -> String {
    match bind {
        "0.0.0.0" | "" => "127.0.0.1".into(),
        "::" => "::1".into(),
        other => other.to_string(),
    }
}

/// hearth's known_hosts file, holding each daemon's host key (learned over the control
/// connection, which only this user can open) under its [`host_alias`]; the other
/// daemons' lines are kept.
fn known_hosts(info: &DaemonInfo, alias: &str) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    if info.host_key.is_empty() {
        return Err(ApiError::invalid("the daemon did not say its host key (too old?)").into());
    }
    use std::os::unix::fs::DirBuilderExt;
    // `~/.local/state/hearth/known_hosts` (the README's path); private, like ~/.ssh.
    let dir = crate::paths::state_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("known_hosts");
    let others: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(alias))
        .take(1000)
        .map(String::from)
        .collect();
    let tmp = dir.join(format!(".known_hosts.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    for line in others {
        writeln!(f, "{line}").context("cannot write known_hosts")?;
    }
    writeln!(f, "{alias} {}", info.host_key).context("cannot write known_hosts")?;
    std::fs::rename(&tmp, &path).context("cannot write known_hosts")?;
    Ok(path)
}

/// The full `ssh` command that joins `s`; on another host, through that host's own SSH
/// port (`-J HOST`), so only it needs to be reachable.
fn attach_command(
    s: &SessionInfo,
    info: &DaemonInfo,
    host: Option<&str>,
) -> Result<std::process::Command, Failure> {
    let alias = host_alias(host);
    let known = known_hosts(info, &alias)?;
    let mut argv = ssh_command();
    let mut cmd = std::process::Command::new(argv.remove(0));
    cmd.args(argv);
    if let Some(h) = host {
        cmd.args(["-J", h]);
    }
    cmd.arg("-t")
        .args(["-p", &s.port.to_string()])
        .args(["-o", &format!("HostKeyAlias={alias}")])
        .args(["-o", &format!("UserKnownHostsFile={}", known.display())])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg(connect_host(&s.bind));
    Ok(cmd)
}

/// `hearth attach ID`: run `ssh` into the session here; its exit status is ours.
pub async fn attach(
    client: &HearthClient,
    info: &DaemonInfo,
    out: Out,
    target: String,
    host: Option<&str>,
) -> Result<(), Failure> {
    if out.json {
        return Err(ApiError::invalid("attach hands over the terminal; it has no --json").into());
    }
    let s = call(client.get(ctx(), target)).await?;
    if s.exit_code.is_some() {
        return Err(ApiError::state(format!("session {} has exited", s.id)).into());
    }
    if s.state != hearth_rpc::SessionState::Up {
        return Err(ApiError::state(format!(
            "session {} is down (no new joins): `hearth up {}` first",
            s.id, s.id
        ))
        .into());
    }
    let mut cmd = attach_command(&s, info, host)?;
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .context("cannot run ssh (is OpenSSH installed? HEARTH_SSH picks another)")?;
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(Failure::Exit(c.clamp(1, 255) as u8)),
        None => Err(Failure::Exit(255)),
    }
}

/// The terminal in raw mode and the alternate screen, restored on drop (and on panic).
/// Log lines are held back meanwhile and written after the terminal is restored.
struct Screen {
    _logs: crate::logging::StderrHold,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        let logs = crate::logging::hold_stderr();
        Screen::take()?;
        Ok(Screen { _logs: logs })
    }

    /// Raw mode, alternate screen, no cursor.
    fn take() -> anyhow::Result<()> {
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            ratatui::crossterm::cursor::Hide
        )
        .context("cannot switch to the alternate screen")
    }

    /// The terminal as it was.
    fn give_back() {
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            ratatui::crossterm::cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        Screen::give_back();
    }
}

fn key_of(k: event::KeyEvent) -> Option<Key> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => INTERRUPT,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

/// Keys from the terminal, on a thread (crossterm reads block). While `paused` (ssh owns
/// the terminal) it does not read, so no keystroke is taken from the attached session.
fn read_keys(tx: mpsc::UnboundedSender<Update>, paused: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if paused.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if !event::poll(Duration::from_millis(100)).unwrap_or(false)
                || paused.load(Ordering::Acquire)
            {
                continue;
            }
            let update = match event::read() {
                Ok(TermEvent::Key(k)) => key_of(k).map(Update::Key),
                Ok(TermEvent::Resize(..)) => Some(Update::Resize),
                Ok(_) => None,
                Err(_) => break,
            };
            if let Some(u) = update
                && tx.send(u).is_err()
            {
                break;
            }
        }
    });
}

/// `hearth top`.
pub async fn top(client: &HearthClient, out: Out, host: Option<&str>) -> Result<(), Failure> {
    let place = host.unwrap_or(super::remote::LOCAL);
    let label = host.unwrap_or("this machine");
    run(vec![Source::new(place, client.clone())], label, out).await
}

/// `hearth top --hosts a,b`: the sessions of every host, grouped by host. A host that does
/// not answer is shown on the status line and tried again (with back-off) until it does.
pub async fn top_hosts(
    socket: &std::path::Path,
    hosts: &[String],
    out: Out,
) -> Result<(), Failure> {
    let config = super::remote::hosts()?;
    let mut sources = Vec::new();
    for host in hosts {
        let (host, socket, config) = (host.clone(), socket.to_path_buf(), config.clone());
        let again = {
            let (host, socket, config) = (host.clone(), socket.clone(), config.clone());
            move || -> futures::future::BoxFuture<'static, _> {
                let (host, socket, config) = (host.clone(), socket.clone(), config.clone());
                Box::pin(async move {
                    let (client, _, remote) = super::remote::open(&host, &socket, &config, true)
                        .await
                        .map_err(Failure::into_api)?;
                    Ok((client, Box::new(remote) as crate::dashboard::live::Guard))
                })
            }
        };
        let source = match again().await {
            Ok((client, guard)) => Source::new(host, client).reconnecting(guard, Box::new(again)),
            // Not there yet: its follower keeps trying (and says why on the status line).
            Err(_) => Source::disconnected(host).reconnecting(Box::new(()), Box::new(again)),
        };
        sources.push(source);
    }
    run(sources, &hosts.join(", "), out).await
}

/// The dashboard over `sources`, in this terminal.
async fn run(sources: Vec<Source>, label: &str, out: Out) -> Result<(), Failure> {
    use std::io::IsTerminal;
    if out.json {
        return Err(ApiError::invalid("top is a full-screen view; it has no --json").into());
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(
            ApiError::invalid("top needs a terminal (try `hearth ps` or `hearth events`)").into(),
        );
    }
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let only_here = sources.len() == 1 && sources[0].host == super::remote::LOCAL;
    // The followers' tasks: they end when `live` is dropped.
    let tasks = tokio_util::task::TaskTracker::new();
    let mut live = Live::start(sources, Dashboard::new(label, no_color), &tasks).await?;
    // New sessions start here, like `server`; on another host, where its daemon starts them.
    if only_here {
        live.new_cwd = Some(
            std::env::current_dir()
                .context("cannot read the current directory")?
                .display()
                .to_string(),
        );
        live.shell = std::env::var("SHELL").ok();
        live.caller_env = hearth_rpc::carried_env();
    }
    let (paused, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let _screen = Screen::enter()?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut term = ratatui::Terminal::new(backend).context("cannot draw")?;
    read_keys(live.sender(), Arc::clone(&paused), Arc::clone(&stop));
    let result = loop {
        term.draw(|f| crate::dashboard::view::draw(f, &live.dash))
            .context("cannot draw")?;
        let Some(update) = live.recv().await else {
            break Ok(());
        };
        if let Update::Resize = update {
            let _ = term.autoresize();
        }
        match live.apply(update).await {
            None => {}
            Some(Action::Quit) => break Ok(()),
            Some(Action::Attach(s)) => {
                attach_here(&mut live, &s, &paused, &mut term).await?;
            }
            Some(Action::Replay { id, find }) => {
                if let Some(status) = replay_here(&live, &id, find, &paused, &mut term).await {
                    live.dash.status = Some(status);
                }
            }
            Some(action) => live.act(action).await,
        }
    };
    stop.store(true, Ordering::Relaxed);
    // Every follower ends with `live` (its drop cancels them).
    drop(live);
    tasks.close();
    tasks.wait().await;
    result
}

type Term = ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>;

/// Join `s` with `ssh` in this terminal, the dashboard suspended until it ends, then say
/// how it ended on the status line and refresh. Errors: the terminal could not be given
/// back.
async fn attach_here(
    live: &mut Live,
    s: &SessionInfo,
    paused: &Arc<AtomicBool>,
    term: &mut Term,
) -> Result<(), Failure> {
    let status = match attach_routed(live, s).await {
        Ok(mut cmd) => suspended(paused, term, move || cmd.status())?,
        Err(e) => {
            live.dash.status = Some(e.message());
            return Ok(());
        }
    };
    live.dash.status = Some(match status {
        Ok(st) if st.success() => format!("back from {}", crate::dashboard::label(s)),
        Ok(st) => format!("ssh ended: {st}"),
        Err(e) => format!("cannot run ssh: {e}"),
    });
    // After the status: a host that does not answer says so over it.
    live.refresh().await;
    Ok(())
}

/// Replay session `id`'s recording in this terminal (from the last line holding `find`,
/// if given); what the status line says after (`None`: nothing new).
async fn replay_here(
    live: &Live,
    id: &str,
    find: Option<String>,
    paused: &Arc<AtomicBool>,
    term: &mut Term,
) -> Option<String> {
    let (source, real) = live.route(id)?;
    if source.host != super::remote::LOCAL {
        let h = &source.host;
        return Some(format!(
            "the recording of {real} is on {h}: `ssh -t {h} hearth replay {real}`"
        ));
    }
    let client = match source.client() {
        Ok(client) => client,
        Err(e) => return Some(e.message),
    };
    // From the last line with the text asked for.
    let from = match &find {
        None => None,
        Some(text) => match live.last_hit(id, text).await {
            Ok(Some(t)) => Some(t),
            Ok(None) => return Some(format!("{text:?} is not in {id}'s recording")),
            Err(e) => return Some(e.message),
        },
    };
    Some(match replay(&client, &real, from, paused, term).await {
        Err(e) => e.message(),
        Ok(()) => format!("replayed {id}"),
    })
}

/// The ssh command that joins the session `s` (its id possibly `host/id`) through its
/// source: the daemon's host key comes from that daemon.
async fn attach_routed(live: &Live, s: &SessionInfo) -> Result<std::process::Command, Failure> {
    let (source, real) = live
        .route(&s.id)
        .ok_or_else(|| ApiError::not_found(format!("no session {}", s.id)))?;
    let client = source.client()?;
    let info = call(client.hello(
        ctx(),
        hearth_rpc::PROTOCOL_VERSION,
        hearth_rpc::VERSION.to_string(),
    ))
    .await?;
    let host = (source.host != super::remote::LOCAL).then_some(source.host.as_str());
    let session = SessionInfo {
        id: real,
        ..s.clone()
    };
    attach_command(&session, &info, host)
}

/// Play a session's recording in this terminal, then take the terminal back.
async fn replay(
    client: &HearthClient,
    id: &str,
    from: Option<f64>,
    paused: &Arc<AtomicBool>,
    term: &mut Term,
) -> Result<(), Failure> {
    let path = super::dvr::recording_path(client, id).await?;
    let from = from.map(|t| super::dvr::From::Offset(Duration::from_secs_f64(t.max(0.0))));
    suspended(paused, term, move || super::dvr::replay(&path, 1.0, from))?
}

/// Run `f` with the terminal handed back (cooked mode, main screen, no key reader), then
/// take it again and redraw everything.
fn suspended<T>(
    paused: &Arc<AtomicBool>,
    term: &mut Term,
    f: impl FnOnce() -> T,
) -> Result<T, Failure> {
    paused.store(true, Ordering::Release);
    // Let a poll in progress notice.
    std::thread::sleep(Duration::from_millis(120));
    // Keys the key reader had already taken from the terminal (typed right after Enter)
    // were meant for the session; they are gone for it, but must not come back to the
    // dashboard afterwards (a stray Enter would attach again).
    while event::poll(Duration::ZERO).unwrap_or(false) {
        if event::read().is_err() {
            break;
        }
    }
    Screen::give_back();
    let value = tokio::task::block_in_place(f);
    Screen::take()?;
    let _ = term.clear();
    paused.store(false, Ordering::Release);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_connects_to_loopback_for_wildcard_binds() {
        assert_eq!(connect_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(connect_host("::"), "::1");
        assert_eq!(connect_host("10.0.0.5"), "10.0.0.5");
    }
}
