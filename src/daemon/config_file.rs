//! The daemon's optional config file (`~/.config/hearth/config.toml`), read at start: each
//! section by its own loader (`[log]` before tracing starts, the rest by `daemon::main`).
//! Unknown keys are errors, so a typo is not silently ignored:
//!
//! ```toml
//! [menu]
//! key = "!>"        # the pause-menu trigger
//! window_ms = 250   # time allowed between its keys
//! enabled = true    # false: sessions start without a menu
//!
//! [recording]
//! enabled = true                 # false: no session records
//! dir = "/path/to/recordings"    # default ~/.local/state/hearth/recordings
//! max_bytes = 268435456          # per recording's cast (then it stops with a marker)
//! max_audit_bytes = 67108864     # typed content per audit trail (then input is summarised)
//! max_total_bytes = 2147483648   # all recordings; oldest ended ones go first
//!
//! [log]                          # the background daemon's log file (--log-file)
//! max_bytes = 10485760           # per file, then it is rotated
//! files = 3                      # files kept: daemon.log, daemon.log.1, daemon.log.2
//!
//! [events]
//! ring = 10000                   # events kept in the daemon-wide ring
//!
//! [[hooks]]                      # commands run on events (docs/events.md)
//! on = ["exited", "match"]
//! session = "agent-*"
//! run = "notify-send hearth \"$HEARTH_EVENT_KIND\""
//! timeout = "10s"
//!
//! [[triggers]]                   # output triggers (docs/events.md)
//! name = "limit"
//! match = "usage limit reached"
//! send = "continue\r"
//! cooldown = "30s"
//! hold_while_typing = "5s"
//!
//! [sessions]
//! size = "120x40"                # start size when nothing else says (default 80x24)
//!
//! [lobby]                      # one more SSH port: the dashboard of every session
//! port = 2222                    # owner keys only; `ssh -p 2222 host` (off by default)
//! bind = "0.0.0.0"               # default 0.0.0.0, like sessions
//!
//! [web]                          # read-only web links to sessions (`hearth share`)
//! port = 8080                    # off by default
//! bind = "127.0.0.1"             # default 127.0.0.1: reach it through a reverse proxy,
//!                                # `ssh -L` or a VPN (docs/web.md)
//! url = "https://hearth.example.org"  # the links' base, when a proxy serves them
//!
//! [limits]
//! log_bytes = 8388608            # output retained per session for lagging readers
//! input_bytes = 8388608          # input queued for a program that is not reading it
//! max_clients = 1000             # per session
//! max_sessions = 100             # per daemon
//! max_unauthenticated = 4096     # SSH connections not yet authenticated, daemon-wide
//!                                # (random early drop from half of it)
//! max_unauthenticated_per_source = 10  # ...from one source:
//! per_source_netblock = "32:64"  # an IPv4 /32 and an IPv6 /64 (OpenSSH's syntax)
//! idle_kill_after = "8h"         # kill sessions idle this long (off by default)
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::menu::{MenuConfig, check_trigger, check_window};
use crate::session::record::RecordConfig;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    menu: MenuSection,
    #[serde(default)]
    recording: RecordingSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    events: EventsSection,
    #[serde(default)]
    hooks: Vec<Hook>,
    #[serde(default)]
    triggers: Vec<TriggerSection>,
    #[serde(default)]
    lobby: LobbySection,
    #[serde(default)]
    web: WebSection,
    #[serde(default)]
    hosts: HostsSection,
    #[serde(default)]
    sessions: SessionsSection,
    /// `[[profiles]]`: how to read agents' screens into states (checked here with the rest
    /// of the file; `load_profiles` reads them again for their lines).
    #[serde(default, rename = "profiles")]
    _profiles: Vec<crate::session::profile::ProfileSpec>,
}

/// `[[profiles]]`, checked (a bad regex or state is an error naming the profile, rule and
/// line; names are unique), then the profiles hearth ships that none of them replaces.
pub fn load_profiles(path: &Path) -> anyhow::Result<Vec<crate::session::profile::Profile>> {
    use crate::session::profile;
    // The whole file is checked as usual first (unknown keys, syntax).
    read(path)?;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut out = profile::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let shipped = profile::parse(profile::SHIPPED)
        .map_err(|e| anyhow::anyhow!("the profiles hearth ships: {e}"))?;
    for p in shipped {
        if !out.iter().any(|mine| mine.name == p.name) {
            out.push(p);
        }
    }
    Ok(out)
}

/// `[sessions]`: defaults for new sessions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsSection {
    /// `"120x40"`: the size a session starts at when nothing else says (MCP, the
    /// dashboards' `n`, `server` run without a terminal).
    size: Option<String>,
    /// `"own"` (the default): each session in a process of its own, so it outlives the
    /// daemon; `"daemon"`: sessions live in the daemon's process and end with it.
    processes: Option<String>,
}

/// `[sessions] processes`: whether each session gets a process of its own.
pub fn load_session_processes(path: &Path) -> anyhow::Result<bool> {
    match read(path)?.sessions.processes.as_deref() {
        Some("daemon") => Ok(false),
        None | Some("own") => Ok(true),
        Some(other) => anyhow::bail!(
            "{}: sessions.processes = {other:?}: use \"own\" (each session in a process of \
             its own) or \"daemon\"",
            path.display()
        ),
    }
}

/// `[sessions] size`, checked.
pub fn load_default_size(path: &Path) -> anyhow::Result<Option<(u16, u16)>> {
    let Some(v) = read(path)?.sessions.size else {
        return Ok(None);
    };
    use crate::session::size::{MAX_COLS, MAX_ROWS};
    v.split_once(['x', 'X'])
        .and_then(|(c, r)| Some((c.trim().parse::<u16>().ok()?, r.trim().parse::<u16>().ok()?)))
        .filter(|&(c, r)| (2..=MAX_COLS).contains(&c) && (2..=MAX_ROWS).contains(&r))
        .map(Some)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: sessions.size = {v:?}: use \"COLSxROWS\", 2-{MAX_COLS} x 2-{MAX_ROWS}",
                path.display()
            )
        })
}

/// `[hosts]` (read by the CLI for `--host`; the daemon only checks it parses).
#[derive(Debug, Default, Deserialize)]
struct HostsSection {
    ssh: Option<String>,
    default: Option<Vec<String>>,
    /// `[hosts.NAME]` tables.
    #[serde(flatten)]
    each: std::collections::BTreeMap<String, HostEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    remote_command: Option<String>,
}

/// What `[hosts]` says: how to reach other machines (`--host`, `ps --hosts`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Hosts {
    /// The ssh command line (`[hosts] ssh`), split on whitespace.
    pub ssh: Option<Vec<String>>,
    /// The hosts `ps` lists when `--hosts` is not given (`local` is this machine).
    pub default: Vec<String>,
    /// `[hosts.NAME] remote_command`: how to run hearth there (default `hearth`).
    pub remote_commands: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LobbySection {
    port: Option<u16>,
    bind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebSection {
    port: Option<u16>,
    bind: Option<String>,
    url: Option<String>,
}

/// Where the web front listens and the base of its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Web {
    pub addr: std::net::SocketAddr,
    /// `[web] url`: the links' base (a reverse proxy's address); `None`: this address.
    pub url: Option<String>,
}

/// `[web]` (`None`: no web front), with `port` and `bind` from the command line over the
/// file's.
pub fn load_web(
    path: &Path,
    port: Option<u16>,
    bind: Option<String>,
) -> anyhow::Result<Option<Web>> {
    let w = read(path)?.web;
    let Some(addr) = listen_addr(
        "web",
        (port.or(w.port), bind.or(w.bind)),
        "127.0.0.1",
        w.url.is_some(),
    )?
    else {
        return Ok(None);
    };
    if let Some(u) = &w.url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        anyhow::bail!("[web] url = '{u}': give an http:// or https:// address");
    }
    Ok(Some(Web {
        addr,
        url: w.url.map(|u| u.trim_end_matches('/').to_string()),
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsSection {
    ring: Option<usize>,
}

/// A command run on events (`[[hooks]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// Event kinds (`exited`, `match`, ...); empty: every kind.
    #[serde(default)]
    pub on: Vec<String>,
    /// A glob on the session's name or id (`*`, `?`).
    pub session: Option<String>,
    /// For `state` events: only changes to these agent states (`needs_approval`...);
    /// empty: every change.
    #[serde(default)]
    pub to: Vec<String>,
    /// Run with `sh -c`.
    pub run: String,
    /// Default 10 s, then SIGKILL.
    #[serde(default, with = "humantime_serde_opt")]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerSection {
    name: String,
    #[serde(rename = "match")]
    pattern: String,
    session: Option<String>,
    send: Option<String>,
    cooldown: Option<String>,
    hold_while_typing: Option<String>,
}

mod humantime_serde_opt {
    use serde::Deserialize;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Every section checked as the daemon and the CLI read them (for `hearth doctor`): the
/// first problem, in the same words the daemon would fail with.
pub fn check(path: &Path) -> anyhow::Result<()> {
    load_lobby(path, None, None)?;
    load_menu(path)?;
    load_recording(
        path,
        crate::session::record::RecordConfig::new(crate::paths::recordings_dir()),
    )?;
    apply_limits(path, &mut super::Config::default())?;
    load_events(path)?;
    load_log(path)?;
    load_hosts(path)?;
    load_default_size(path)?;
    Ok(())
}

/// `[events] ring`, `[[hooks]]` and `[[triggers]]`, checked.
pub fn load_events(
    path: &Path,
) -> anyhow::Result<(
    Option<usize>,
    Vec<Hook>,
    Vec<crate::session::trigger::Trigger>,
)> {
    let file = read(path)?;
    if let Some(n) = file.events.ring
        && !(1..=1_000_000).contains(&n)
    {
        anyhow::bail!("{}: events.ring = {n}: use 1 to 1000000", path.display());
    }
    let mut triggers = Vec::new();
    for t in file.triggers {
        let parse = |v: Option<String>, default: u64| -> anyhow::Result<std::time::Duration> {
            v.map_or(Ok(std::time::Duration::from_secs(default)), |s| {
                humantime::parse_duration(&s)
                    .with_context(|| format!("{}: trigger {}: '{s}'", path.display(), t.name))
            })
        };
        let mut trigger = crate::session::trigger::Trigger::new(&t.name, &t.pattern)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        trigger.session = t.session.clone();
        trigger.send = t.send.clone();
        trigger.cooldown = parse(t.cooldown.clone(), 10)?;
        trigger.hold_while_typing = parse(t.hold_while_typing.clone(), 5)?;
        triggers.push(trigger);
    }
    for (i, h) in file.hooks.iter().enumerate() {
        if h.run.trim().is_empty() {
            anyhow::bail!("{}: hooks[{i}].run is empty", path.display());
        }
        if let Some(bad) =
            h.to.iter()
                .find(|s| crate::session::profile::AgentState::parse(s).is_none())
        {
            anyhow::bail!(
                "{}: hooks[{i}].to = {bad:?}: use working, waiting_input, needs_approval, \
                 rate_limited, error or exited",
                path.display()
            );
        }
    }
    Ok((file.events.ring, file.hooks, triggers))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    max_bytes: Option<u64>,
    files: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    log_bytes: Option<usize>,
    input_bytes: Option<usize>,
    max_clients: Option<usize>,
    max_sessions: Option<usize>,
    max_unauthenticated: Option<usize>,
    max_unauthenticated_per_source: Option<usize>,
    per_source_netblock: Option<String>,
    /// `"8h"`: kill sessions idle this long (no output, no input, nobody attached).
    idle_kill_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordingSection {
    enabled: Option<bool>,
    dir: Option<std::path::PathBuf>,
    max_bytes: Option<u64>,
    max_audit_bytes: Option<u64>,
    max_total_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MenuSection {
    key: Option<String>,
    window_ms: Option<u64>,
    enabled: Option<bool>,
}

fn read(path: &Path) -> anyhow::Result<File> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))
}

/// Recording settings from `path`, over `default`. `None`: recording off.
pub fn load_recording(path: &Path, default: RecordConfig) -> anyhow::Result<Option<RecordConfig>> {
    let r = read(path)?.recording;
    if r.enabled == Some(false) {
        return Ok(None);
    }
    let mut config = default;
    if let Some(dir) = r.dir {
        config.dir = dir;
    }
    if let Some(n) = r.max_bytes {
        config.max_bytes = n;
    }
    if let Some(n) = r.max_audit_bytes {
        config.max_audit_bytes = n;
    }
    if let Some(n) = r.max_total_bytes {
        config.max_total_bytes = n;
    }
    Ok(Some(config))
}

/// Apply the `[limits]` section to `config`. Zero or absurd values are refused.
pub fn apply_limits(path: &Path, config: &mut super::Config) -> anyhow::Result<()> {
    let l = read(path)?.limits;
    let check = |name: &str, v: usize, max: usize| -> anyhow::Result<usize> {
        if v == 0 || v > max {
            anyhow::bail!("{}: limits.{name} = {v}: use 1 to {max}", path.display());
        }
        Ok(v)
    };
    if let Some(v) = l.log_bytes {
        config.limits.log_bytes = check("log_bytes", v, 1 << 32)?;
    }
    if let Some(v) = l.input_bytes {
        // At least one `send` (2 MiB) must fit.
        config.limits.input_bytes = check("input_bytes", v, 1 << 30)?.max(2 * 1024 * 1024);
    }
    if let Some(v) = l.max_clients {
        config.limits.max_clients = check("max_clients", v, 100_000)?;
    }
    if let Some(v) = l.max_sessions {
        config.max_sessions = check("max_sessions", v, 10_000)?;
    }
    if let Some(v) = l.max_unauthenticated {
        config.max_unauthenticated = check("max_unauthenticated", v, 10_000)?;
    }
    if let Some(v) = l.max_unauthenticated_per_source {
        config.max_unauthenticated_per_source = check("max_unauthenticated_per_source", v, 10_000)?;
    }
    if let Some(v) = &l.idle_kill_after {
        let d = humantime::parse_duration(v)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(366 * 86_400))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: limits.idle_kill_after = {v:?}: a duration from 1s to 366d, e.g. \"8h\"",
                    path.display()
                )
            })?;
        config.idle_kill_after = Some(d);
    }
    if let Some(v) = &l.per_source_netblock {
        config.source_prefixes = parse_netblock(v).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: limits.per_source_netblock = {v:?}: use \"V4:V6\" prefix lengths, e.g. \
                 \"32:64\" (1-32 and 1-128)",
                path.display()
            )
        })?;
    }
    Ok(())
}

/// `"32:64"` (or `"24"`: IPv4 only, IPv6 /64) as prefix lengths.
fn parse_netblock(v: &str) -> Option<crate::ssh::preauth::Prefixes> {
    let (v4, v6) = v.split_once(':').unwrap_or((v, "64"));
    let (v4, v6): (u8, u8) = (v4.trim().parse().ok()?, v6.trim().parse().ok()?);
    ((1..=32).contains(&v4) && (1..=128).contains(&v6))
        .then_some(crate::ssh::preauth::Prefixes { v4, v6 })
}

/// The log file's size cap and rotation from `path`.
pub fn load_log(path: &Path) -> anyhow::Result<crate::logging::Rotation> {
    let l = read(path)?.log;
    let mut r = crate::logging::Rotation::default();
    if let Some(n) = l.max_bytes {
        if !(4096..=1 << 40).contains(&n) {
            anyhow::bail!("{}: log.max_bytes = {n}: use 4096 or more", path.display());
        }
        r.max_bytes = n;
    }
    if let Some(n) = l.files {
        if !(1..=100).contains(&n) {
            anyhow::bail!("{}: log.files = {n}: use 1 to 100", path.display());
        }
        r.files = n;
    }
    Ok(r)
}

/// The lobby's address from `[lobby]` (`None`: no lobby), with `port` and `bind` from
/// the command line over the file's.
pub fn load_lobby(
    path: &Path,
    port: Option<u16>,
    bind: Option<String>,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let l = read(path)?.lobby;
    listen_addr(
        "lobby",
        (port.or(l.port), bind.or(l.bind)),
        "0.0.0.0",
        false,
    )
}

/// A `[section]`'s listening address from its port and bind (the command line's already
/// over the file's); `None` without a port, an error if a bind (or, with `more`, another
/// of the section's settings) is given without one.
fn listen_addr(
    section: &str,
    (port, bind): (Option<u16>, Option<String>),
    default_bind: &str,
    more: bool,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(port) = port else {
        if bind.is_some() || more {
            anyhow::bail!("[{section}] needs a port too (--{section}-port or [{section}] port)");
        }
        return Ok(None);
    };
    let bind = bind.unwrap_or_else(|| default_bind.into());
    let ip: std::net::IpAddr = bind
        .parse()
        .map_err(|_| anyhow::anyhow!("{section} bind '{bind}' is not an IP address"))?;
    Ok(Some(std::net::SocketAddr::new(ip, port)))
}

/// `[hosts]` from `path` (missing: none).
pub fn load_hosts(path: &Path) -> anyhow::Result<Hosts> {
    let h = read(path)?.hosts;
    let ssh = h
        .ssh
        .map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|v| !v.is_empty());
    Ok(Hosts {
        ssh,
        default: h.default.unwrap_or_default(),
        remote_commands: h
            .each
            .into_iter()
            .filter_map(|(name, e)| Some((name, e.remote_command?)))
            .collect(),
    })
}

/// The menu defaults from `path` (missing file: built-in defaults). `None`: menu off.
pub fn load_menu(path: &Path) -> anyhow::Result<Option<MenuConfig>> {
    let file = read(path)?;
    if file.menu.enabled == Some(false) {
        return Ok(None);
    }
    let mut menu = MenuConfig::default();
    if let Some(key) = file.menu.key {
        check_trigger(&key).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        menu.trigger = key.into_bytes();
    }
    if let Some(ms) = file.menu.window_ms {
        check_window(ms).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        menu.window = Duration::from_millis(ms);
    }
    Ok(Some(menu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_size_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "[sessions]\nsize = \"120x40\"\n").unwrap();
        assert_eq!(load_default_size(&p).unwrap(), Some((120, 40)));
        std::fs::write(&p, "[sessions]\nsize = \"9999x40\"\n").unwrap();
        assert!(
            load_default_size(&p)
                .unwrap_err()
                .to_string()
                .contains("sessions.size")
        );
        std::fs::write(&p, "[sessions]\nsizes = \"1x1\"\n").unwrap();
        assert!(load_default_size(&p).is_err(), "unknown keys are errors");
    }

    #[test]
    fn net_blocks_parse_like_openssh() {
        let p = parse_netblock("24:48").unwrap();
        assert_eq!((p.v4, p.v6), (24, 48));
        let p = parse_netblock("16").unwrap();
        assert_eq!((p.v4, p.v6), (16, 64));
        for bad in ["0:64", "33", "24:129", "x", ""] {
            assert!(parse_netblock(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn hosts_give_the_ssh_command_defaults_and_remote_commands() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        assert_eq!(load_hosts(&p).unwrap(), Hosts::default());
        std::fs::write(
            &p,
            "[hosts]\nssh = \"ssh -F cfg\"\ndefault = [\"local\", \"box\"]\n\n             [hosts.box]\nremote_command = \"/opt/hearth\"\n",
        )
        .unwrap();
        let h = load_hosts(&p).unwrap();
        assert_eq!(h.ssh.unwrap(), ["ssh", "-F", "cfg"]);
        assert_eq!(h.default, ["local", "box"]);
        assert_eq!(h.remote_commands["box"], "/opt/hearth");
        std::fs::write(&p, "[hosts.box]\nremote_cmd = \"x\"\n").unwrap();
        assert!(load_hosts(&p).is_err(), "typos are errors");
    }

    #[test]
    fn the_web_is_off_unless_a_port_is_given_and_binds_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        assert_eq!(load_web(&p, None, None).unwrap(), None);
        std::fs::write(&p, "[web]\nport = 8080\nurl = \"https://h.example/\"\n").unwrap();
        let w = load_web(&p, None, None).unwrap().unwrap();
        assert_eq!(w.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(w.url.as_deref(), Some("https://h.example"));
        assert_eq!(
            load_web(&p, Some(9), Some("::1".into()))
                .unwrap()
                .unwrap()
                .addr
                .to_string(),
            "[::1]:9"
        );
        std::fs::write(&p, "[web]\nbind = \"0.0.0.0\"\n").unwrap();
        assert!(load_web(&p, None, None).is_err(), "a bind without a port");
        std::fs::write(&p, "[web]\nport = 1\nurl = \"ftp://x\"\n").unwrap();
        assert!(load_web(&p, None, None).is_err());
    }

    #[test]
    fn the_lobby_is_off_unless_a_port_is_given_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        assert_eq!(load_lobby(&p, None, None).unwrap(), None);
        std::fs::write(&p, "[lobby]\nport = 2222\n").unwrap();
        assert_eq!(
            load_lobby(&p, None, None).unwrap(),
            Some("0.0.0.0:2222".parse().unwrap())
        );
        assert_eq!(
            load_lobby(&p, Some(7), Some("127.0.0.1".into())).unwrap(),
            Some("127.0.0.1:7".parse().unwrap())
        );
        std::fs::write(&p, "[lobby]\nbind = \"::1\"\n").unwrap();
        assert!(
            load_lobby(&p, None, None)
                .unwrap_err()
                .to_string()
                .contains("needs a port")
        );
        std::fs::write(&p, "[lobby]\nport = 1\nbind = \"nowhere\"\n").unwrap();
        assert!(
            load_lobby(&p, None, None)
                .unwrap_err()
                .to_string()
                .contains("not an IP")
        );
        std::fs::write(&p, "[lobby]\nprot = 1\n").unwrap();
        assert!(load_lobby(&p, None, None).is_err(), "typos are errors");
    }

    #[test]
    fn missing_file_means_defaults_and_values_override() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        assert_eq!(load_menu(&p).unwrap().unwrap().trigger, b"!>");
        std::fs::write(&p, "[menu]\nkey = \"@@\"\nwindow_ms = 400\n").unwrap();
        let m = load_menu(&p).unwrap().unwrap();
        assert_eq!(
            (m.trigger.as_slice(), m.window.as_millis()),
            (b"@@".as_slice(), 400)
        );
        std::fs::write(&p, "[menu]\nenabled = false\n").unwrap();
        assert!(load_menu(&p).unwrap().is_none());
    }

    /// The example in docs/config.md is a valid config file: the reference cannot drift
    /// from what the loaders accept.
    #[test]
    fn the_documented_example_parses_with_every_loader() {
        let doc = include_str!("../../docs/config.md");
        let start = doc.find("```toml\n").expect("a toml block") + 8;
        let end = start + doc[start..].find("```").expect("its end");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, &doc[start..end]).unwrap();
        let menu = load_menu(&p).unwrap().unwrap();
        assert_eq!(menu.trigger, b"!>");
        let rec = load_recording(&p, RecordConfig::new("/x".into()))
            .unwrap()
            .unwrap();
        assert_eq!(rec.max_audit_bytes, 64 * 1024 * 1024);
        let log = load_log(&p).unwrap();
        assert_eq!((log.max_bytes, log.files), (10 * 1024 * 1024, 3));
        let mut config = super::super::Config::default();
        apply_limits(&p, &mut config).unwrap();
        assert_eq!(config.max_unauthenticated_per_source, 10);
        let (ring, hooks, triggers) = load_events(&p).unwrap();
        assert_eq!((ring, hooks.len(), triggers.len()), (Some(10_000), 1, 1));
        assert_eq!(triggers[0].send.as_deref(), Some("continue\r"));
    }

    #[test]
    fn typos_and_bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "[menu]\nkee = \"x\"\n").unwrap();
        assert!(format!("{:#}", load_menu(&p).unwrap_err()).contains("kee"));
        std::fs::write(&p, "[menu]\nwindow_ms = 1\n").unwrap();
        assert!(load_menu(&p).is_err());
    }
}
