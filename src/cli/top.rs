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
use hearth_rpc::{ApiError, DaemonInfo, HearthClient, ReadFrom, SendRequest, SessionInfo};
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{execute, terminal};
use tokio::sync::mpsc;

use super::{Failure, call, ctx, output::Out};
use crate::dashboard::{Action, Dashboard, INTERRUPT, Key};

/// The alias `attach` pins the daemon's host key to, in hearth's own known_hosts file:
/// every session's port has the same key, so there is one entry and never a prompt.
const HOST_ALIAS: &str = "hearth-daemon";

/// The `ssh` command line: `HEARTH_SSH` (split on whitespace, like `GIT_SSH_COMMAND`
/// without quoting), else `ssh`.
fn ssh_command() -> Vec<String> {
    std::env::var("HEARTH_SSH")
        .ok()
        .map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec!["ssh".into()])
}

/// Where `attach` connects for a session bound to `bind`.
fn connect_host(bind: &str) -> String {
    match bind {
        "0.0.0.0" | "" => "127.0.0.1".into(),
        "::" => "::1".into(),
        other => other.to_string(),
    }
}

/// hearth's known_hosts file, holding the daemon's host key (learned over the control
/// socket, which only this user can reach) under [`HOST_ALIAS`].
fn known_hosts(info: &DaemonInfo) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    if info.host_key.is_empty() {
        return Err(ApiError::invalid("the daemon did not say its host key (too old?)").into());
    }
    let dir = crate::paths::state_dir().join("hearth");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("known_hosts");
    let tmp = dir.join(format!(".known_hosts.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    writeln!(f, "{HOST_ALIAS} {}", info.host_key).context("cannot write known_hosts")?;
    std::fs::rename(&tmp, &path).context("cannot write known_hosts")?;
    Ok(path)
}

/// The full `ssh` command that joins `s`.
fn attach_command(s: &SessionInfo, info: &DaemonInfo) -> Result<std::process::Command, Failure> {
    let known = known_hosts(info)?;
    let mut argv = ssh_command();
    let mut cmd = std::process::Command::new(argv.remove(0));
    cmd.args(argv)
        .arg("-t")
        .args(["-p", &s.port.to_string()])
        .args(["-o", &format!("HostKeyAlias={HOST_ALIAS}")])
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
    let mut cmd = attach_command(&s, info)?;
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

/// What the background tasks tell the UI loop.
enum Update {
    Key(Key),
    Resize,
    Events(Vec<hearth_rpc::Event>),
    Screen(String, String),
    Error(String),
}

/// The terminal in raw mode and the alternate screen, restored on drop (and on panic).
struct Screen;

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        Screen::take()?;
        Ok(Screen)
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

/// The event stream: a long poll; every batch goes to the UI, and a fresh list with it.
fn follow_events(client: HearthClient, tx: mpsc::UnboundedSender<Update>) {
    tokio::spawn(async move {
        let mut since = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            match call(client.events(ctx(), since, None, 512, 10_000)).await {
                Ok(batch) => {
                    backoff = Duration::from_millis(200);
                    since = Some(batch.next);
                    if batch.events.is_empty() {
                        continue;
                    }
                    if tx.send(Update::Events(batch.events)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    if tx.send(Update::Error(e.message())).is_err() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
}

/// The selected session's screen: fetched at once, then each time its output moves (a
/// long `read` from the end), at most ~10 times a second.
fn follow_screen(
    client: HearthClient,
    tx: mpsc::UnboundedSender<Update>,
) -> mpsc::UnboundedSender<String> {
    let (select, mut selected) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut id: Option<String> = None;
        let mut offset: Option<u64> = None;
        loop {
            let Some(current) = id.clone() else {
                match selected.recv().await {
                    Some(next) => id = Some(next),
                    None => return,
                }
                continue;
            };
            if let Ok(text) = call(client.screen(ctx(), current.clone(), false)).await
                && tx.send(Update::Screen(current.clone(), text)).is_err()
            {
                return;
            }
            let from = offset.map_or(ReadFrom::End, ReadFrom::Offset);
            let moved = client.read(ctx(), current.clone(), from, 4 << 20, 5_000);
            tokio::select! {
                next = selected.recv() => match next {
                    Some(next) => { id = Some(next); offset = None; }
                    None => return,
                },
                r = moved => match r {
                    Ok(Ok(chunk)) if chunk.exited && chunk.data.is_empty() => {
                        // Nothing more will come: wait for another selection.
                        let _ = tx.send(Update::Screen(current.clone(), String::new()));
                        match selected.recv().await {
                            Some(next) => { id = Some(next); offset = None; }
                            None => return,
                        }
                    }
                    Ok(Ok(chunk)) => {
                        offset = Some(chunk.next);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
    });
    select
}

/// `hearth top`.
pub async fn top(client: &HearthClient, info: &DaemonInfo, out: Out) -> Result<(), Failure> {
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
    let mut dash = Dashboard::new("this machine", no_color);
    dash.model.set_sessions(call(client.list(ctx())).await?);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (paused, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let _screen = Screen::enter()?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut term = ratatui::Terminal::new(backend).context("cannot draw")?;
    read_keys(tx.clone(), Arc::clone(&paused), Arc::clone(&stop));
    follow_events(client.clone(), tx.clone());
    let select = follow_screen(client.clone(), tx.clone());
    if let Some(s) = dash.model.selected() {
        let _ = select.send(s.id.clone());
    }
    // Every session's last line, once: later only the selected one's screen is followed.
    for s in dash
        .model
        .visible()
        .iter()
        .map(|s| s.id.clone())
        .collect::<Vec<_>>()
    {
        if let Ok(text) = call(client.screen(ctx(), s.clone(), false)).await {
            dash.set_screen(&s, &text);
        }
    }
    let result = loop {
        term.draw(|f| crate::dashboard::view::draw(f, &dash))
            .context("cannot draw")?;
        let Some(update) = rx.recv().await else {
            break Ok(());
        };
        let mut refresh = false;
        match update {
            Update::Key(k) => match dash.key(k) {
                None => {}
                Some(Action::Quit) => break Ok(()),
                Some(Action::Preview(id)) => {
                    dash.preview.clear();
                    let _ = select.send(id);
                }
                Some(action) => {
                    refresh = true;
                    if let Err(e) = act(client, info, &mut dash, action, &paused, &mut term).await {
                        dash.status = Some(e.message());
                    }
                }
            },
            Update::Resize => {
                let _ = term.autoresize();
            }
            Update::Events(events) => {
                for e in &events {
                    refresh |= dash.model.apply(e);
                    if let hearth_rpc::EventKind::Idle { .. } = e.kind
                        && let Ok(text) = call(client.screen(ctx(), e.session.clone(), false)).await
                    {
                        dash.set_screen(&e.session, &text);
                    }
                }
            }
            Update::Screen(id, text) if !text.is_empty() => dash.set_screen(&id, &text),
            Update::Screen(..) => {}
            Update::Error(e) => dash.status = Some(format!("daemon: {e}")),
        }
        if refresh {
            let before = dash.model.selected().map(|s| s.id.clone());
            match call(client.list(ctx())).await {
                Ok(list) => {
                    // Gone from the daemon (killed): gone from the view.
                    dash.model.set_sessions(list);
                    let after = dash.model.selected().map(|s| s.id.clone());
                    if after != before
                        && let Some(id) = after
                    {
                        let _ = select.send(id);
                    }
                }
                Err(e) => dash.status = Some(e.message()),
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = tx.send(Update::Resize);
    result
}

/// Carry out one dashboard action through the control API.
async fn act(
    client: &HearthClient,
    info: &DaemonInfo,
    dash: &mut Dashboard,
    action: Action,
    paused: &Arc<AtomicBool>,
    term: &mut ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>,
) -> Result<(), Failure> {
    match action {
        Action::Attach(s) => {
            let mut cmd = attach_command(&s, info)?;
            let status = suspended(paused, term, move || cmd.status())?;
            dash.status = Some(match status {
                Ok(st) if st.success() => format!("back from {}", crate::dashboard::label(&s)),
                Ok(st) => format!("ssh ended: {st}"),
                Err(e) => format!("cannot run ssh: {e}"),
            });
        }
        Action::Replay(id) => {
            let path = super::dvr::recording_path(client, &id).await?;
            suspended(paused, term, move || {
                super::dvr::replay(&path, 1.0, Duration::ZERO)
            })?
            .map_err(|e| ApiError::invalid(e.message()))?;
            dash.status = Some(format!("replayed {id}"));
        }
        Action::Send { id, text } => {
            let req = SendRequest {
                text,
                enter: true,
                ..Default::default()
            };
            let r = call(client.send(ctx(), id.clone(), req)).await?;
            dash.status = Some(format!("sent {} bytes to {id}", r.bytes));
        }
        Action::Message { id, text } => {
            call(client.message(ctx(), id.clone(), text)).await?;
            dash.status = Some(format!("message shown in {id}"));
        }
        Action::Kill(id) => {
            call(client.kill(ctx(), vec![id.clone()], false)).await?;
            dash.model.remove(&id);
            dash.status = Some(format!("killed {id}"));
        }
        Action::New(command) => {
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let req = hearth_rpc::CreateRequest {
                cwd: Some(cwd.display().to_string()),
                command: if command.trim().is_empty() {
                    Vec::new()
                } else {
                    vec!["sh".into(), "-c".into(), command]
                },
                shell: std::env::var("SHELL").ok(),
                ..Default::default()
            };
            let s = call(client.create(ctx(), req)).await?;
            dash.status = Some(format!("started {} on port {}", s.id, s.port));
        }
        Action::Preview(_) | Action::Quit => {}
    }
    Ok(())
}

/// Run `f` with the terminal handed back (cooked mode, main screen, no key reader), then
/// take it again and redraw everything.
fn suspended<T>(
    paused: &Arc<AtomicBool>,
    term: &mut ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>,
    f: impl FnOnce() -> T,
) -> Result<T, Failure> {
    paused.store(true, Ordering::Release);
    // Let a poll in progress notice.
    std::thread::sleep(Duration::from_millis(120));
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
