//! Turning a `CreateRequest` into a checked [`Plan`] before anything is acquired: names,
//! addresses, keys, environment, command and menu settings are validated here, purely, so
//! a bad request fails with a clear message and leaves nothing behind. `Daemon::create`
//! then acquires (port, PTY, recording, listener) in that order.
//!
//! Must not touch the registry, the network or the file system.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use hearth_rpc::{ApiError, CreateRequest};

use super::Config;
use crate::authorized_keys::Entry;
use crate::menu::MenuConfig;
use crate::session::record::RecordConfig;
use crate::session::{Role, Spec};

/// What a valid request asks for.
#[derive(Debug)]
pub struct Plan {
    pub name: Option<String>,
    pub bind: IpAddr,
    /// 0: any free port.
    pub port: u16,
    pub spec: Spec,
    pub collaborators: Vec<Entry>,
    pub viewers: Vec<Entry>,
    pub viewers_only: bool,
    pub open: Option<Role>,
    pub menu: Option<MenuConfig>,
    pub record: Option<RecordConfig>,
    pub viewer_history: bool,
    /// This session's own triggers (`server --trigger`).
    pub triggers: Vec<crate::session::trigger::Trigger>,
}

/// Check `req` against `config`. The command defaults to the caller's shell, then
/// `config.shell`.
pub fn plan(req: &CreateRequest, config: &Config) -> Result<Plan, ApiError> {
    if let Some(name) = &req.name {
        validate_name(name)?;
    }
    let bind: IpAddr = match req.bind.as_deref() {
        None | Some("") => IpAddr::from([0, 0, 0, 0]),
        Some(b) => b
            .parse()
            .map_err(|_| ApiError::invalid(format!("'{b}' is not an IP address to bind")))?,
    };
    for (k, _) in req.caller_env.iter().chain(&req.env) {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ApiError::invalid(format!(
                "--env: '{k}' is not a variable name"
            )));
        }
    }
    let command = if req.command.is_empty() {
        let shell = req
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| config.shell.clone());
        vec![shell]
    } else {
        req.command.clone()
    };
    let cwd = req
        .cwd
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| config.home.clone());
    let restart = restart_policy(req, &command, &config.profiles)?;
    Ok(Plan {
        name: req.name.clone(),
        bind,
        port: req.port.unwrap_or(0),
        spec: Spec {
            command,
            cwd,
            env: req.caller_env.iter().chain(&req.env).cloned().collect(),
            shadow_dir: req.shadow_dir.clone().map(PathBuf::from),
            size: start_size(req.size.or(config.default_size))?,
            session_id: None,
            socket: None,
            shim: config.exec_shim.clone(),
            restart,
        },
        collaborators: parse_key_args("--allow-key", &req.allow_keys)?,
        viewers: parse_key_args("--viewer-key", &req.viewer_keys)?,
        viewers_only: req.viewers_only,
        open: req.open.map(crate::session::boundary::granted),
        menu: menu_config(req, &config.menu)?,
        record: config.record.clone().filter(|_| !req.no_record),
        viewer_history: req.viewer_history,
        triggers: triggers(req)?,
    })
}

/// The restart policy asked for, with the profiles' `resume` commands it may use.
fn restart_policy(
    req: &CreateRequest,
    command: &[String],
    profiles: &[crate::session::profile::Profile],
) -> Result<Option<crate::session::restart::Policy>, ApiError> {
    let Some(p) = &req.restart else {
        return Ok(None);
    };
    if p.max_restarts == Some(0) {
        return Err(ApiError::invalid(
            "--max-restarts 0 never restarts: use --restart no (the default) instead",
        ));
    }
    if let Some(r) = &p.resume
        && r.first().is_none_or(String::is_empty)
    {
        return Err(ApiError::invalid("--resume: give a command to run"));
    }
    let with_resume = || profiles.iter().filter_map(|p| Some((p, p.resume.clone()?)));
    Ok(Some(crate::session::restart::Policy {
        when: p.when,
        max: p.max_restarts,
        resume: p.resume.clone(),
        profile_resume: with_resume().map(|(p, r)| (p.name.clone(), r)).collect(),
        command_resume: with_resume()
            .find(|(p, _)| p.is_for_command(command))
            .map(|(p, r)| (p.name.clone(), r)),
    }))
}

/// The size a session starts at: the one asked for (or `[sessions] size`), checked; else
/// 80x24.
fn start_size(size: Option<(u16, u16)>) -> Result<(u16, u16), ApiError> {
    use crate::session::size::{MAX_COLS, MAX_ROWS};
    match size {
        None => Ok((80, 24)),
        Some((c, r)) if (2..=MAX_COLS).contains(&c) && (2..=MAX_ROWS).contains(&r) => Ok((c, r)),
        Some((c, r)) => Err(ApiError::invalid(format!(
            "--size {c}x{r}: use 2 to {MAX_COLS} columns and 2 to {MAX_ROWS} rows"
        ))),
    }
}

/// `--trigger NAME=REGEX` and `--trigger-send NAME=TEXT`.
fn triggers(req: &CreateRequest) -> Result<Vec<crate::session::trigger::Trigger>, ApiError> {
    let mut out: Vec<crate::session::trigger::Trigger> = Vec::new();
    for (name, pattern) in &req.triggers {
        if out.iter().any(|t| &t.name == name) {
            return Err(ApiError::invalid(format!(
                "--trigger: '{name}' given twice"
            )));
        }
        out.push(
            crate::session::trigger::Trigger::new(name, pattern)
                .map_err(|e| ApiError::invalid(format!("--trigger: {e}")))?,
        );
    }
    for (name, text) in &req.trigger_sends {
        let t = out.iter_mut().find(|t| &t.name == name).ok_or_else(|| {
            ApiError::invalid(format!("--trigger-send: no --trigger named '{name}'"))
        })?;
        t.send = Some(text.clone());
    }
    Ok(out)
}

/// The session's menu settings: the request's, else the daemon's defaults.
fn menu_config(
    req: &CreateRequest,
    default: &Option<MenuConfig>,
) -> Result<Option<MenuConfig>, ApiError> {
    if req.no_menu {
        return Ok(None);
    }
    let explicit = req.menu_key.is_some() || req.menu_window_ms.is_some();
    let mut menu = match default {
        Some(m) => m.clone(),
        None if explicit => MenuConfig::default(),
        None => return Ok(None),
    };
    if let Some(key) = &req.menu_key {
        crate::menu::check_trigger(key)
            .map_err(|e| ApiError::invalid(format!("--menu-key: {e}")))?;
        menu.trigger = key.as_bytes().to_vec();
    }
    if let Some(ms) = req.menu_window_ms {
        crate::menu::check_window(ms)
            .map_err(|e| ApiError::invalid(format!("--menu-window: {e}")))?;
        menu.window = Duration::from_millis(ms);
    }
    Ok(Some(menu))
}

/// Parse `--allow-key`/`--viewer-key` arguments (key lines; the CLI has read files). A
/// line that does not parse or restricts its key fails the call.
fn parse_key_args(
    flag: &str,
    args: &[String],
) -> Result<Vec<crate::authorized_keys::Entry>, ApiError> {
    let mut all = Vec::new();
    for arg in args {
        all.extend(crate::authorized_keys::parse_key_arg(flag, arg).map_err(ApiError::invalid)?);
    }
    Ok(all)
}

pub(super) fn validate_name(name: &str) -> Result<(), ApiError> {
    // Ids are 8 lowercase hex characters: a name like one would shadow or be shadowed.
    if name.len() == 8
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ApiError::invalid(format!(
            "'{name}' looks like a session id: choose a name that is not 8 hex characters"
        )));
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "'{name}' is not a valid name: use 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t";

    fn config() -> Config {
        Config {
            home: "/home/u".into(),
            shell: "/bin/zsh".into(),
            ..Config::default()
        }
    }

    fn err(req: CreateRequest) -> String {
        plan(&req, &config()).unwrap_err().message
    }

    #[test]
    fn defaults_fill_what_the_request_leaves_out() {
        let p = plan(&CreateRequest::default(), &config()).unwrap();
        assert_eq!(p.spec.command, ["/bin/zsh"]);
        assert_eq!(p.spec.cwd, PathBuf::from("/home/u"));
        assert_eq!((p.bind, p.port), (IpAddr::from([0, 0, 0, 0]), 0));
        assert!(p.menu.is_some() && p.record.is_some() && p.open.is_none());
        let p = plan(
            &CreateRequest {
                shell: Some("/bin/fish".into()),
                no_menu: true,
                no_record: true,
                open: Some(hearth_rpc::Grant::Collaborator),
                allow_keys: vec![ED.into()],
                ..Default::default()
            },
            &config(),
        )
        .unwrap();
        assert_eq!(p.spec.command, ["/bin/fish"]);
        assert!(p.menu.is_none() && p.record.is_none());
        assert_eq!(p.open, Some(Role::Collaborator));
        assert_eq!(p.collaborators.len(), 1);
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let bad = |f: fn(&mut CreateRequest)| {
            let mut r = CreateRequest::default();
            f(&mut r);
            err(r)
        };
        assert!(bad(|r| r.name = Some("a b".into())).contains("not a valid name"));
        assert!(bad(|r| r.bind = Some("nowhere".into())).contains("not an IP address"));
        assert!(bad(|r| r.env = vec![("A=B".into(), "c".into())]).contains("variable name"));
        assert!(bad(|r| r.allow_keys = vec!["not a key".into()]).contains("--allow-key"));
        assert!(bad(|r| r.menu_key = Some(String::new())).contains("--menu-key"));
        assert!(bad(|r| r.menu_window_ms = Some(1)).contains("--menu-window"));
    }
}
