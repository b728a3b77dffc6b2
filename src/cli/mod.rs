//! The command line: clap types, one function per command, and how results are shown
//! (human tables on stdout, or one JSON document with `--json`). Every command but
//! `daemon` talks to the daemon through `hearth-rpc`, starting it first if none answers
//! (`connect.rs`); `daemon` hands over to [`crate::daemon::main`]. It must not reach into
//! daemon, SSH or session internals (key files are checked with the shared
//! [`crate::authorized_keys`] rules).

pub(crate) mod agent;
mod connect;
mod doctor;
mod dvr;
mod ecosystem;
mod events;
mod grep;
pub mod output;
mod profile;
mod remote;
mod top;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hearth_rpc::{Access, ApiError, CreateRequest, ErrorKind, Grant, HearthClient};
use serde_json::json;

pub use output::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "Shared terminal sessions over plain SSH"
)]
pub struct Cli {
    /// Control socket (default: $XDG_RUNTIME_DIR/hearth/hearth.sock or /tmp/hearth-$UID/hearth.sock)
    #[arg(long, global = true, env = "HEARTH_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print one JSON document on stdout (errors too)
    #[arg(long, global = true)]
    pub json: bool,
    /// Run the command against the daemon on this host, over `ssh HOST hearth proxy-stdio`
    /// (`user@host` or a ~/.ssh/config alias; `local` is this machine)
    #[arg(long, global = true, env = "HEARTH_HOST", value_name = "HOST")]
    pub host: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (for systemd and tests); logs go to stderr
    Daemon {
        /// Seconds between SIGHUP and SIGKILL when ending a session
        #[arg(long, default_value_t = 3.0, value_name = "SECS")]
        kill_grace: f64,
        /// Seconds an SSH connection may take to authenticate
        #[arg(long, default_value_t = 30, value_name = "SECS",
              value_parser = clap::value_parser!(u64).range(1..=600))]
        login_grace: u64,
        /// Log to this file, size-capped and rotated (`[log]` in the config file), instead
        /// of stderr (the CLI starts background daemons with this)
        #[arg(long, value_name = "PATH")]
        log_file: Option<PathBuf>,
        /// Open the lobby on this port: `ssh -p PORT host` shows every session and joins
        /// one (owner keys only; `[lobby] port` in the config file)
        #[arg(long, value_name = "PORT")]
        lobby_port: Option<u16>,
        /// The lobby's address (default 0.0.0.0; `[lobby] bind`)
        #[arg(long, value_name = "ADDR")]
        lobby_bind: Option<String>,
        /// Serve read-only web links to sessions (`hearth share`) on this port (`[web] port`)
        #[arg(long, value_name = "PORT")]
        web_port: Option<u16>,
        /// The web links' address (default 127.0.0.1; `[web] bind`)
        #[arg(long, value_name = "ADDR")]
        web_bind: Option<String>,
        /// Keep sessions in the daemon's process, so they end with it (by default each runs
        /// in a process of its own and outlives the daemon); `[sessions] processes = "daemon"`
        #[arg(long)]
        sessions_in_daemon: bool,
        /// Take over from the daemon running on this socket without ending its sessions:
        /// the upgrade path (install a new hearth, run `hearth daemon --replace`). Sessions
        /// in the old daemon's own process make it refuse
        #[arg(long)]
        replace: bool,
    },
    /// Serve one session in a process of its own (the daemon starts it; not for people)
    #[command(hide = true)]
    SessionHost {
        /// The session's own control socket
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        #[arg(long, default_value_t = 3.0, value_name = "SECS")]
        kill_grace: f64,
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        login_grace: u64,
        /// Log to this file (the daemon's), as the daemon does
        #[arg(long, value_name = "PATH")]
        log_file: Option<PathBuf>,
    },
    /// Start a session: your $SHELL (or CMD) in a PTY, served over SSH on its own port
    Server(ServerArgs),
    /// List sessions
    Ps {
        /// Also the sessions that have ended (as `history` lists them)
        #[arg(long, short)]
        all: bool,
        /// List the sessions of these hosts in one table (`local` is this machine;
        /// default: `[hosts] default` in the config file)
        #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// Sessions that have ended: killed, or with an earlier daemon (newest first)
    History {
        /// Only those that ended within this long (e.g. 1h, 2d)
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// Reopen a session's SSH listener on the same port
    Up { target: String },
    /// Give a session another name (its id, port, clients and recording stay)
    Rename { target: String, name: String },
    /// A read-only web link to a session, for people without an SSH key on this machine:
    /// the live screen in any browser (the daemon needs `[web] port` or `--web-port`)
    Share {
        /// The session (id, prefix or name)
        #[arg(required_unless_present_any = ["list", "revoke", "all"])]
        target: Option<String>,
        /// How long the link works (default 24h, at most 366 days)
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
        expires: Option<std::time::Duration>,
        /// Add a timeline over the session's recording: play, pause, speed, a slider to any
        /// moment (a link to a session that has ended always has one)
        #[arg(long)]
        replay: bool,
        /// The live links (ids, sessions, expiry, viewers; never the tokens)
        #[arg(long, conflicts_with_all = ["target", "expires", "replay", "revoke", "all"])]
        list: bool,
        /// Revoke a link (its token, or its id as --list shows): its viewers are cut
        #[arg(long, value_name = "TOKEN|ID", conflicts_with_all = ["target", "expires", "all"])]
        revoke: Option<String>,
        /// Revoke every link
        #[arg(long, conflicts_with_all = ["target", "expires"])]
        all: bool,
    },
    /// Close a session's SSH listener; attached clients stay unless --kick
    Down {
        target: String,
        /// Also disconnect every attached client
        #[arg(long)]
        kick: bool,
    },
    /// End sessions (SIGHUP, grace period, SIGKILL) and remove them
    Kill {
        #[arg(required_unless_present = "all")]
        targets: Vec<String>,
        /// Every session
        #[arg(long, conflicts_with = "targets")]
        all: bool,
    },
    /// Kill sessions whose program ended, or that have been idle (no output, no input,
    /// nobody attached) for a while
    Prune {
        /// Sessions idle this long (e.g. 8h, 30m)
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DUR")]
        idle: Option<std::time::Duration>,
        /// Sessions whose program has exited
        #[arg(long)]
        exited: bool,
        /// Only list what would be pruned
        #[arg(long)]
        dry_run: bool,
    },
    /// List the clients attached to a session
    Peers { target: String },
    /// Disconnect one client from a session
    Kick { target: String, client: String },
    /// Refuse new joins (owners still get in); attached clients stay
    Lock { target: String },
    /// Accept new joins again
    Unlock { target: String },
    /// Change a client's role live
    Role {
        target: String,
        client: String,
        /// viewer or collaborator
        #[arg(value_parser = parse_grant)]
        role: Grant,
    },
    /// Show a one-line message to everyone attached (never typed into the session)
    Msg {
        target: String,
        #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
        text: Vec<String>,
    },
    /// Lines for ~/.ssh/known_hosts: the daemon's host key for every port of each host name
    KnownHosts {
        /// A host name joiners use (repeatable); default: this machine's hostname and FQDN,
        /// localhost, 127.0.0.1, ::1, and every host the sessions' join lines name
        #[arg(long = "hostname", value_name = "NAME")]
        hosts: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write every page (hearth.1 and one per command,
    /// hearth-ps.1...) into a directory
    Man {
        /// Write all the pages here (e.g. ~/.local/share/man/man1) instead of printing one
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// Check keys, daemon, recordings and known_hosts; say what is wrong and how to fix it
    Doctor,
    /// Serve the Model Context Protocol on stdio, for agents (e.g. `claude mcp add hearth -- hearth mcp`)
    Mcp,
    /// What happened, one event per line: created, joined, busy, idle, match, exited...
    Events {
        /// Only this session's events
        target: Option<String>,
        /// Every one of these hosts' events, each line marked with its host (`local` is
        /// this machine); a dropped connection is made again, with back-off
        #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
        hosts: Vec<String>,
        /// Keep printing new events as they happen
        #[arg(long, short)]
        follow: bool,
        /// From this sequence number on (as printed in `seq`)
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
    },
    /// Start a session again (same command, cwd, env, name, port) after it exited or was killed
    Restart {
        target: String,
        /// It was started with --open: keep it open (as a viewer, or --open=collaborator)
        #[arg(long, num_args = 0..=1, default_missing_value = "viewer", value_name = "ROLE",
              value_parser = parse_grant, conflicts_with = "keys_only")]
        open: Option<Grant>,
        /// It was started with --open: restart it for keys only
        #[arg(long)]
        keys_only: bool,
    },
    /// Type into a session's program: TEXT, then Enter, then each --key; as one unit
    Send(agent::SendArgs),
    /// Wait for output matching a regex, for idleness, or for the exit
    /// (exit status 0; 124 on timeout; 3 if the session ended first)
    Wait(agent::WaitArgs),
    /// What a session is doing: activity, idle time, title, size and its last screen lines
    Status {
        target: String,
        /// How many non-empty screen lines to show
        #[arg(long, default_value_t = 10)]
        lines: usize,
    },
    /// Print the last output bytes of a session
    Tail {
        target: String,
        /// How many bytes
        #[arg(long, default_value_t = 4096)]
        bytes: u64,
    },
    /// Print a session's output as plain text (also for exited sessions)
    Logs {
        target: String,
        /// Keep streaming new output until the session exits
        #[arg(long, short)]
        follow: bool,
        /// Only output from this long ago on (e.g. 30s, 5m, 1h)
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "lines")]
        since: Option<std::time::Duration>,
        /// Only the last N lines (then, with --follow, what comes next)
        #[arg(long = "tail", short = 'n', value_name = "N")]
        lines: Option<usize>,
        /// With --follow: stop after this long (e.g. 30s), exit 0
        #[arg(long, value_parser = humantime::parse_duration, requires = "follow", value_name = "DUR")]
        timeout: Option<std::time::Duration>,
    },
    /// Search what every session printed, running or ended (plain text, newest first;
    /// exit 0 with hits, 1 without)
    Grep(grep::GrepArgs),
    /// Print the current screen (exactly what an attached client sees)
    Screen {
        target: String,
        /// With colours and cursor (escape sequences)
        #[arg(long)]
        ansi: bool,
    },
    /// Agent profiles (`[[profiles]]` in the config file)
    Profile {
        #[command(subcommand)]
        action: ProfileAction,
    },
    /// Play a recording in this terminal with its timing (space pauses, q quits)
    Replay {
        /// A session (id, prefix or name) or a .cast file
        source: String,
        /// Playback speed
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Start this far into the recording (90s, 2m, 62.3s as `grep` prints it) or at a
        /// time (RFC 3339, e.g. a `grep` hit's)
        #[arg(long, value_parser = dvr::parse_from, value_name = "WHEN")]
        from: Option<dvr::From>,
    },
    /// Every session at a glance, live, with a preview; Enter attaches (? lists the keys)
    Top {
        /// The sessions of these hosts, grouped by host (`local` is this machine)
        #[arg(long, value_name = "HOST,...", value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// Join a session from this machine: runs ssh with its port and the daemon's host key
    /// (exit status: ssh's)
    Attach { target: String },
    /// Print the CLI's and the daemon's versions
    Version,
    /// Bridge stdin/stdout to this machine's daemon (what `--host` runs over ssh)
    ProxyStdio,
    /// Stop the daemon, ending every session (or, with --keep-sessions, only the daemon)
    Shutdown {
        /// Stop only the daemon: sessions in processes of their own keep running, with
        /// their clients, and the next daemon adopts them (`[sessions] processes = "own"`)
        #[arg(long)]
        keep_sessions: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfileAction {
    /// Replay a recording through a profile and print its state timeline (no daemon)
    Test {
        /// The profile's name
        name: String,
        /// An asciicast recording (`~/.local/state/hearth/recordings/ID.cast`)
        file: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// SSH port (0 or none: a free port)
    #[arg(long, short)]
    port: Option<u16>,
    /// Address to listen on (default: all interfaces; auth is public-key only)
    #[arg(long)]
    bind: Option<String>,
    /// A unique name to refer to the session by
    #[arg(long, short)]
    name: Option<String>,
    /// With --name: if that session exists and runs, return it instead (same output)
    #[arg(long, requires = "name")]
    if_absent: bool,
    /// Working directory (default: the current one)
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Start the terminal at COLSxROWS (default: the size of this terminal, else 80x24)
    #[arg(long, value_name = "COLSxROWS", value_parser = parse_size)]
    size: Option<(u16, u16)>,
    /// Extra environment, K=V (repeatable; the value may contain commas and '=')
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// An output trigger: NAME=REGEX (a `match` event when the program prints it)
    #[arg(long = "trigger", value_name = "NAME=REGEX", value_parser = parse_env)]
    triggers: Vec<(String, String)>,
    /// What trigger NAME types when it matches: NAME=TEXT (no Enter is added)
    #[arg(long = "trigger-send", value_name = "NAME=TEXT", value_parser = parse_env)]
    trigger_sends: Vec<(String, String)>,
    /// A directory prepended to PATH (to shadow commands)
    #[arg(long, value_name = "DIR")]
    shadow_dir: Option<PathBuf>,
    /// Also admit this public key (a key line, or a file of them; repeatable)
    #[arg(long = "allow-key", value_name = "KEY|FILE")]
    allow_keys: Vec<String>,
    /// Admit this public key read-only, as a viewer (a key line or a file; repeatable)
    #[arg(long = "viewer-key", value_name = "KEY|FILE")]
    viewer_keys: Vec<String>,
    /// Everyone but the owner joins as a viewer
    #[arg(long)]
    viewers_only: bool,
    /// DANGER: admit any client, with any key or none, as a viewer (or --open=collaborator)
    #[arg(long, num_args = 0..=1, default_missing_value = "viewer", value_name = "ROLE",
          value_parser = parse_grant)]
    open: Option<Grant>,
    /// Do not record this session
    #[arg(long)]
    no_record: bool,
    /// Let viewers rewind the session's history in the menu (default: current screen only)
    #[arg(long)]
    viewer_history: bool,
    /// The pause-menu trigger typed by a client (default: the config file's, or '!>')
    #[arg(long, value_name = "KEYS")]
    menu_key: Option<String>,
    /// Milliseconds allowed between the trigger's keys (default 250)
    #[arg(long, value_name = "MS")]
    menu_window: Option<u64>,
    /// No pause menu in this session: every byte goes to the program
    #[arg(long, conflicts_with_all = ["menu_key", "menu_window"])]
    no_menu: bool,
    /// Start the program again when it exits: no (default), on-failure (a non-zero
    /// status or a signal), always. Same session: id, name, port, viewers, recording
    #[arg(long, value_name = "WHEN")]
    restart: Option<RestartArg>,
    /// With --restart: give up after N restarts in a row (a run of 10 minutes resets it)
    #[arg(long, value_name = "N", requires = "restart")]
    max_restarts: Option<u32>,
    /// With --restart: run this on restarts instead (shell words, e.g. "claude --continue";
    /// default: the agent profile's resume command, else the same command)
    #[arg(long, value_name = "CMD", requires = "restart")]
    resume: Option<String>,
    /// The command to run instead of $SHELL
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `server --restart`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RestartArg {
    No,
    OnFailure,
    Always,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not K=V"))?;
    if k.is_empty() {
        return Err(format!("'{s}' has an empty variable name"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Run a parsed command. `Ok` means exit 0.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(hearth_rpc::socket::default_socket_path);
    let json = cli.json;
    let host = cli.host.filter(|h| !h.is_empty() && h != remote::LOCAL);
    if let Some(h) = &host
        && let Some(what) = local_only(&cli.command)
    {
        return Err(
            ApiError::invalid(format!("--host {h}: `{what}` runs on this machine only")).into(),
        );
    }
    if let Some(done) = run_fanned_out(&cli.command, &socket, host.as_deref(), json).await {
        return done;
    }
    match host {
        Some(h) => run_remote(cli.command, &h, json).await,
        None => run_local(cli.command, socket, json).await,
    }
}

/// `ps`, `events` and `top` over several hosts (`--hosts`, or `ps`'s configured default
/// hosts); `None` when the command is not one of those.
async fn run_fanned_out(
    command: &Command,
    socket: &std::path::Path,
    host: Option<&str>,
    json: bool,
) -> Option<Result<(), Failure>> {
    if let Command::Ps { all, hosts } = command
        && host.is_none()
    {
        let hosts = if hosts.is_empty() {
            match remote::hosts() {
                Ok(h) => h.default,
                Err(e) => return Some(Err(e)),
            }
        } else {
            hosts.clone()
        };
        if !hosts.is_empty() {
            return Some(ps_hosts(socket, &hosts, *all, output::Out { json }).await);
        }
    }
    if let Command::Events {
        hosts,
        target,
        follow,
        since,
    } = command
        && !hosts.is_empty()
    {
        if host.is_some() || since.is_some() {
            return Some(Err(ApiError::invalid(
                "--hosts takes the place of --host, and sequence numbers (--since) are per host",
            )
            .into()));
        }
        return Some(
            events::events_hosts(socket, hosts, output::Out { json }, target.clone(), *follow)
                .await,
        );
    }
    if let Command::Top { hosts } = command
        && !hosts.is_empty()
    {
        if host.is_some() {
            return Some(Err(
                ApiError::invalid("--hosts takes the place of --host").into()
            ));
        }
        return Some(top::top_hosts(socket, hosts, output::Out { json }).await);
    }
    None
}

/// A command for the daemon on `h` (`--host`), over OpenSSH.
async fn run_remote(command: Command, h: &str, json: bool) -> Result<(), Failure> {
    if let Command::Replay { source, .. } = &command
        && !std::path::Path::new(source).is_file()
    {
        return Err(ApiError::invalid(format!(
            "replay plays a recording file, which is on {h}: run `ssh -t {h} hearth replay {source}`"
        ))
        .into());
    }
    let r = remote::connect(h, &remote::hosts()?).await?;
    run_client(command, &r.client, r.info, output::Out { json }, Some(h)).await
}

/// A command on this machine: the ones that need no daemon, then the daemon's (started
/// when the command needs one).
async fn run_local(
    command: Command,
    socket: std::path::PathBuf,
    json: bool,
) -> Result<(), Failure> {
    match command {
        Command::ProxyStdio => remote::proxy_stdio(&socket).await,
        Command::Daemon {
            kill_grace,
            login_grace,
            lobby_port,
            lobby_bind,
            web_port,
            web_bind,
            sessions_in_daemon,
            replace,
            log_file,
        } => crate::daemon::main(
            socket,
            kill_grace,
            login_grace,
            (lobby_port, lobby_bind),
            (web_port, web_bind),
            (sessions_in_daemon, replace),
            log_file,
        )
        .await
        .map_err(Failure::from),
        Command::SessionHost {
            socket,
            kill_grace,
            login_grace,
            log_file,
        } => crate::daemon::host::main(socket, kill_grace, login_grace, log_file)
            .await
            .map_err(Failure::from),
        Command::Completions { .. } | Command::Man { .. } if json => Err(ApiError::invalid(
            "completions and man print a script or a man page; they have no --json",
        )
        .into()),
        Command::Completions { shell } => ecosystem::completions(shell),
        Command::Man { dir } => ecosystem::man(dir.as_deref(), output::Out { json }),
        Command::Doctor => doctor::doctor(output::Out { json }, &socket).await,
        Command::Profile {
            action: ProfileAction::Test { name, file },
        } => profile::test(&name, &file, output::Out { json }),
        // A file needs no daemon.
        Command::Replay {
            source,
            speed,
            from,
        } if std::path::Path::new(&source).is_file() => {
            if json {
                return Err(
                    ApiError::invalid("replay plays in the terminal; it has no --json").into(),
                );
            }
            dvr::replay(std::path::Path::new(&source), speed, from)
        }
        // Asking about (or stopping) a daemon never starts one.
        Command::Shutdown { keep_sessions } => match connect::connect_only(&socket).await {
            Ok((client, info)) => {
                let command = Command::Shutdown { keep_sessions };
                run_client(command, &client, info, output::Out { json }, None).await
            }
            Err(Failure::Api(e))
                if e.kind == ErrorKind::Daemon && e.message.starts_with("no hearth") =>
            {
                output::Out { json }.value(json!({"stopped": false, "running": false}), || {
                    "no daemon is running".into()
                });
                Ok(())
            }
            Err(e) => Err(e),
        },
        // Commands that only look at the daemon never start one (README: "Which commands
        // start the daemon"); every other command below does.
        command @ (Command::Version
        | Command::Ps { .. }
        | Command::Events { .. }
        | Command::Top { .. }) => {
            let (client, info) = connect::connect_only(&socket).await?;
            run_client(command, &client, info, output::Out { json }, None).await
        }
        command => {
            let (client, info) = connect::connect_or_start(&socket).await?;
            let out = output::Out { json };
            run_client(command, &client, info, out, None).await
        }
    }
}

/// `server`: start a session (or, with `--if-absent`, find it running) and say how to join.
async fn server(
    client: &HearthClient,
    out: output::Out,
    args: ServerArgs,
    host: Option<&str>,
) -> Result<(), Failure> {
    let existing = match (&args.name, args.if_absent) {
        (Some(name), true) => named(client, name).await?,
        _ => None,
    };
    match existing {
        Some(s) if s.exit_code.is_none() => {
            out.session_already_running(&s);
            return Ok(());
        }
        // Exited: "absent" as far as running goes. Remove it (its recording and
        // history stay) so the name is free, and start a new one.
        Some(s) => {
            call(client.kill(ctx(), vec![s.id], false)).await?;
        }
        None => {}
    }
    let if_absent = args.if_absent;
    let name = args.name.clone();
    let req = server_request(args, host)?;
    let mut s = match call(client.create(ctx(), req)).await {
        Ok(s) => s,
        // Another `--if-absent` won the race: that session is the answer.
        Err(Failure::Api(e)) if if_absent && e.kind == ErrorKind::AlreadyExists => {
            let name = name.unwrap_or_default();
            match named(client, &name).await? {
                Some(s) if s.exit_code.is_none() => {
                    out.session_already_running(&s);
                    return Ok(());
                }
                _ => return Err(Failure::Api(e)),
            }
        }
        Err(e) => return Err(e),
    };
    if let Some(h) = host
        && s.bind
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        // Reachable only through the host's own SSH port.
        s.join = format!("ssh -J {h} -p {} {}", s.port, s.bind);
    }
    out.session_started(&s);
    if let Some(e) = &s.recording_error {
        eprintln!("warning: {e}");
    }
    warn_if_open(&s);
    if !out.json
        && host.is_none()
        && crate::authorized_keys::owner_key_files(&crate::paths::home_dir()).is_empty()
    {
        eprintln!(
            "note: you have no SSH key in ~/.ssh, so nobody can join yet.\n      \
             Make one with `ssh-keygen -t ed25519`, or pass --allow-key."
        );
    }
    Ok(())
}

/// An open session is announced loudly, on stderr, whatever started it.
fn warn_if_open(s: &hearth_rpc::SessionInfo) {
    if s.access == Access::Keys {
        return;
    }
    let role = if s.access == Access::Open {
        "viewer"
    } else {
        "collaborator who may type"
    };
    eprintln!(
        "\n  WARNING: session {} is OPEN. Anyone who can reach port {} joins,\n  \
         with any key or none, as a {role}. Use it for demos on trusted networks only.\n",
        s.id, s.port
    );
}

/// Calls get a generous deadline: `kill` waits out grace periods.
fn ctx() -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = std::time::Instant::now() + Duration::from_secs(60);
    c
}

/// The live session named `name` (running or exited), if the daemon has one.
async fn named(
    client: &HearthClient,
    name: &str,
) -> Result<Option<hearth_rpc::SessionInfo>, Failure> {
    match call(client.get(ctx(), name.to_string())).await {
        Ok(s) => Ok(Some(s)),
        Err(Failure::Api(e)) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `120x40`.
fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (c, r) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}': give COLSxROWS, e.g. 120x40"))?;
    let c: u16 = c
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': bad column count"))?;
    let r: u16 = r
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': bad row count"))?;
    Ok((c, r))
}

fn parse_grant(s: &str) -> Result<Grant, String> {
    s.parse()
}

/// One call to the daemon: a transport failure or the daemon's own error, as a [`Failure`].
async fn call<T>(
    f: impl std::future::Future<Output = Result<Result<T, ApiError>, tarpc::client::RpcError>>,
) -> Result<T, Failure> {
    // Every call's deadline is 60 s (`ctx`); a connection that went away without an answer
    // must not hold the command longer than that.
    Ok(hearth_rpc::bounded(Duration::from_secs(70), f).await?)
}

/// Commands that act on this machine only (never through `--host`).
fn local_only(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Daemon { .. } => "daemon",
        Command::Share { .. } => "share",
        Command::SessionHost { .. } => "session-host",
        Command::ProxyStdio => "proxy-stdio",
        Command::Doctor => "doctor",
        Command::Profile { .. } => "profile",
        Command::Completions { .. } => "completions",
        Command::Man { .. } => "man",
        _ => return None,
    })
}

/// `ps --hosts`: every host's sessions in one table; a host that cannot be reached is
/// listed with its error (the others still show) and the exit status is 1.
async fn ps_hosts(
    socket: &std::path::Path,
    hosts: &[String],
    all: bool,
    out: output::Out,
) -> Result<(), Failure> {
    let config = remote::hosts()?;
    let lists = hosts.iter().map(|h| {
        let config = &config;
        async move {
            let listed = async {
                let (client, _, _remote) = remote::open(h, socket, config, false).await?;
                let live = call(client.list(ctx())).await?;
                let ended = if all {
                    call(client.history(ctx(), None, None)).await?
                } else {
                    Vec::new()
                };
                Ok::<_, Failure>((live, ended))
            }
            .await;
            (h.clone(), listed.map_err(|e| e.into_api()))
        }
    });
    let results = futures::future::join_all(lists).await;
    let failed = results.iter().any(|(_, r)| r.is_err());
    out.sessions_by_host(&results);
    if failed {
        return Err(Failure::Exit(1));
    }
    Ok(())
}

async fn run_client(
    command: Command,
    client: &HearthClient,
    info: hearth_rpc::DaemonInfo,
    out: output::Out,
    host: Option<&str>,
) -> Result<(), Failure> {
    match command {
        Command::Daemon { .. } | Command::SessionHost { .. } | Command::ProxyStdio => {
            unreachable!("handled by run")
        }
        Command::Server(args) => server(client, out, args, host).await?,
        Command::Ps { all: false, .. } => out.sessions(&call(client.list(ctx())).await?),
        Command::Ps { all: true, .. } => {
            let live = call(client.list(ctx())).await?;
            let ended = call(client.history(ctx(), None, None)).await?;
            out.all_sessions(&live, &ended)
        }
        Command::History { since } => {
            let since = since.map(unix_time_ago);
            out.history(&call(client.history(ctx(), None, since)).await?)
        }
        command @ (Command::Up { .. }
        | Command::Rename { .. }
        | Command::Share { .. }
        | Command::Prune { .. }
        | Command::Down { .. }
        | Command::Kill { .. }
        | Command::Peers { .. }
        | Command::Kick { .. }
        | Command::Lock { .. }
        | Command::Unlock { .. }
        | Command::Role { .. }
        | Command::Msg { .. }
        | Command::Restart { .. }) => manage(command, client, out).await?,
        Command::Tail { target, bytes } => dvr::tail(client, out, target, bytes).await?,
        Command::Logs {
            target,
            follow,
            since,
            lines,
            timeout,
        } => {
            let how = dvr::LogsArgs {
                follow,
                since,
                lines,
                timeout,
            };
            dvr::logs(client, out, target, how).await?
        }
        Command::Screen { target, ansi } => dvr::screen(client, out, target, ansi).await?,
        Command::Grep(args) => grep::grep(client, out, args).await?,
        Command::Mcp => crate::mcp::serve(client.clone(), remote::mcp_hosts()?).await?,
        Command::Events {
            target,
            follow,
            since,
            ..
        } => events::events(client, &info, host.is_none(), out, target, follow, since).await?,
        Command::Send(args) => agent::send(client, out, args).await?,
        Command::Wait(args) => agent::wait(client, out, args).await?,
        Command::Status { target, lines } => agent::status(client, out, target, lines).await?,
        Command::Replay {
            source,
            speed,
            from,
        } => replay(client, out, &source, speed, from).await?,
        Command::Version => out.version(&info),
        Command::Top { .. } => top::top(client, out, host).await?,
        Command::Attach { target } => top::attach(client, &info, out, target, host).await?,
        Command::KnownHosts { hosts } => known_hosts(client, out, &info, hosts).await?,
        Command::Completions { .. }
        | Command::Man { .. }
        | Command::Doctor
        | Command::Profile { .. } => {
            unreachable!("handled by run")
        }
        Command::Shutdown { keep_sessions } => shutdown(client, &info, keep_sessions, out).await?,
    }
    Ok(())
}

/// Seconds since the Unix epoch, `ago` before now (0 if that is before the epoch).
fn unix_time_ago(ago: std::time::Duration) -> u64 {
    std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// `replay SOURCE`: play a session's recording in this terminal.
async fn replay(
    client: &HearthClient,
    out: output::Out,
    source: &str,
    speed: f64,
    from: Option<dvr::From>,
) -> Result<(), Failure> {
    if out.json {
        return Err(ApiError::invalid("replay plays in the terminal; it has no --json").into());
    }
    let path = dvr::recording_path(client, source).await?;
    dvr::replay(&path, speed, from)
}

/// `known-hosts [HOST...]`: lines for `known_hosts` (every session's join host when no
/// host is named).
async fn known_hosts(
    client: &HearthClient,
    out: output::Out,
    info: &hearth_rpc::DaemonInfo,
    hosts: Vec<String>,
) -> Result<(), Failure> {
    let joins: Vec<String> = if hosts.is_empty() {
        call(client.list(ctx()))
            .await?
            .into_iter()
            .map(|s| s.join)
            .collect()
    } else {
        Vec::new()
    };
    ecosystem::known_hosts(out, info, hosts, &joins)
}

/// `shutdown [--keep-sessions]`: ask the daemon to stop, wait until it has, and say how
/// many sessions ended with it or keep running.
async fn shutdown(
    client: &HearthClient,
    info: &hearth_rpc::DaemonInfo,
    keep_sessions: bool,
    out: output::Out,
) -> Result<(), Failure> {
    let sessions = call(client.list(ctx())).await?.len();
    // The daemon may close the connection before the answer arrives: what counts
    // is that it stops answering. A refusal is an answer.
    if let Ok(Err(refused)) = client.shutdown(ctx(), keep_sessions).await {
        return Err(refused.into());
    }
    connect::wait_until_gone(std::path::Path::new(&info.socket)).await?;
    let (ended, kept) = if keep_sessions {
        (0, sessions)
    } else {
        (sessions, 0)
    };
    out.value(
        json!({"stopped": true, "pid": info.pid, "sessions_ended": ended,
               "sessions_kept": kept}),
        || match (ended, kept) {
            (0, 0) => format!("daemon (pid {}) stopped", info.pid),
            (n, 0) => format!(
                "daemon (pid {}) stopped; {n} session(s) ended with it",
                info.pid
            ),
            (_, n) => format!(
                "daemon (pid {}) stopped; {n} session(s) keep running (the next \
                 daemon adopts them)",
                info.pid
            ),
        },
    );
    Ok(())
}

/// The commands that manage a session and its clients (up, down, kill, peers, kick, lock,
/// role, msg, restart).
async fn manage(command: Command, client: &HearthClient, out: output::Out) -> Result<(), Failure> {
    match command {
        Command::Up { target } => out.session(&call(client.up(ctx(), target)).await?),
        Command::Prune {
            idle,
            exited,
            dry_run,
        } => {
            let idle_ms = idle.map(|d| d.as_millis() as u64);
            let list = call(client.prune(ctx(), idle_ms, exited, dry_run)).await?;
            out.pruned(&list, dry_run)
        }
        Command::Rename { target, name } => {
            out.session(&call(client.rename(ctx(), target, name)).await?)
        }
        Command::Share {
            target,
            expires,
            replay,
            list,
            revoke,
            all,
        } => {
            if list {
                out.shares(&call(client.shares(ctx())).await?)
            } else if revoke.is_some() || all {
                out.unshared(&call(client.unshare(ctx(), revoke, all)).await?)
            } else {
                let target = target.unwrap_or_default();
                out.shared(
                    &call(client.share(ctx(), target, expires.map(|d| d.as_secs().max(1)), replay))
                        .await?,
                )
            }
        }
        Command::Down { target, kick } => {
            out.session(&call(client.down(ctx(), target, kick)).await?)
        }
        Command::Kill { targets, all } => {
            out.killed(&call(client.kill(ctx(), targets, all)).await?)
        }
        Command::Peers { target } => out.peers(&call(client.peers(ctx(), target)).await?),
        Command::Kick {
            target,
            client: name,
        } => out.kicked(&call(client.kick(ctx(), target, name)).await?),
        Command::Lock { target } => out.session(&call(client.lock(ctx(), target, true)).await?),
        Command::Unlock { target } => out.session(&call(client.lock(ctx(), target, false)).await?),
        Command::Role {
            target,
            client: name,
            role,
        } => {
            let p = call(client.role(ctx(), target, name, role)).await?;
            out.value(serde_json::to_value(&p).unwrap_or_default(), || {
                format!("{} is now {}", p.client, p.role)
            });
        }
        Command::Msg { target, text } => {
            let text = text.join(" ");
            call(client.message(ctx(), target, text.clone())).await?;
            out.value(json!({"sent": text}), String::new);
        }
        Command::Restart {
            target,
            open,
            keys_only,
        } => {
            let s = call(client.restart(ctx(), target, open, keys_only)).await?;
            out.session_restarted(&s);
            warn_if_open(&s);
        }
        _ => unreachable!("run_client passes only the session-management commands"),
    }
    Ok(())
}

/// The request `server` sends. On another host (`host`), this machine's directory and
/// `$SHELL` mean nothing there: the session starts where that daemon starts them (its
/// home) with its shell, unless `--cwd` says where.
fn server_request(args: ServerArgs, host: Option<&str>) -> Result<CreateRequest, Failure> {
    let cwd = match (args.cwd, host) {
        (Some(c), Some(_)) => Some(c),
        (None, Some(_)) => None,
        (Some(c), None) => Some(std::path::absolute(&c).context("cannot resolve --cwd")?),
        (None, None) => Some(std::env::current_dir().context("cannot read the current directory")?),
    };
    let shadow_dir = args
        .shadow_dir
        .map(|d| std::path::absolute(&d))
        .transpose()
        .context("cannot resolve --shadow-dir")?;
    let allow_keys = args
        .allow_keys
        .iter()
        .map(|k| read_key_arg("--allow-key", k))
        .collect::<Result<Vec<_>, _>>()?;
    let viewer_keys = args
        .viewer_keys
        .iter()
        .map(|k| read_key_arg("--viewer-key", k))
        .collect::<Result<Vec<_>, _>>()?;
    let restart = restart_policy(args.restart, args.max_restarts, args.resume)?;
    Ok(CreateRequest {
        port: args.port,
        bind: args.bind,
        name: args.name,
        cwd: cwd.map(|c| c.display().to_string()),
        env: args.env,
        // The terminal this command runs in, if it is one: a program started now draws
        // for the size its first viewer most likely has.
        size: args.size.or_else(|| {
            use std::io::IsTerminal;
            let on_a_terminal = std::io::stdout().is_terminal()
                || std::io::stderr().is_terminal()
                || std::io::stdin().is_terminal();
            on_a_terminal
                .then(|| ratatui::crossterm::terminal::size().ok())
                .flatten()
                .filter(|&(c, r)| c >= 2 && r >= 2)
        }),
        // On another host, this machine's PATH means nothing.
        caller_env: if host.is_none() {
            hearth_rpc::carried_env()
        } else {
            Vec::new()
        },
        shadow_dir: shadow_dir.map(|d| d.display().to_string()),
        command: args.command,
        allow_keys,
        viewer_keys,
        viewers_only: args.viewers_only,
        open: args.open,
        shell: host
            .is_none()
            .then(|| std::env::var("SHELL").ok())
            .flatten(),
        menu_key: args.menu_key,
        menu_window_ms: args.menu_window,
        no_menu: args.no_menu,
        no_record: args.no_record,
        viewer_history: args.viewer_history,
        triggers: args.triggers,
        trigger_sends: args.trigger_sends,
        restart,
    })
}

/// `--restart`, `--max-restarts` and `--resume` as one policy (`None`: never restart).
fn restart_policy(
    when: Option<RestartArg>,
    max_restarts: Option<u32>,
    resume: Option<String>,
) -> Result<Option<hearth_rpc::RestartPolicy>, Failure> {
    let when = match when {
        None | Some(RestartArg::No) => None,
        Some(RestartArg::OnFailure) => Some(hearth_rpc::RestartWhen::OnFailure),
        Some(RestartArg::Always) => Some(hearth_rpc::RestartWhen::Always),
    };
    let Some(when) = when else {
        if max_restarts.is_some() || resume.is_some() {
            return Err(ApiError::invalid(
                "--max-restarts and --resume need --restart on-failure or --restart always",
            )
            .into());
        }
        return Ok(None);
    };
    let resume = resume
        .map(|r| match shlex::split(&r) {
            Some(words) if !words.is_empty() => Ok(words),
            _ => Err(ApiError::invalid(format!(
                "--resume {r:?}: not a command (unbalanced quotes, or empty)"
            ))),
        })
        .transpose()?;
    Ok(Some(hearth_rpc::RestartPolicy {
        when,
        max_restarts,
        resume,
    }))
}

/// Key arguments take a key line or a file; files are read here, relative to the caller,
/// and refused when others could write them (OpenSSH's StrictModes).
fn read_key_arg(flag: &str, arg: &str) -> Result<String, Failure> {
    let path = std::path::Path::new(arg);
    if path.is_file() {
        crate::authorized_keys::check_file_mode(path)
            .map_err(|e| ApiError::invalid(format!("{flag}: {e:#}")))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| ApiError::invalid(format!("{flag}: cannot read {arg}: {e}")))?;
        // Checked here too, so the message names the file.
        crate::authorized_keys::parse_key_arg(&format!("{flag} {arg}"), &text)
            .map_err(ApiError::invalid)?;
        return Ok(text);
    }
    if arg.contains(' ') {
        return Ok(arg.to_string());
    }
    Err(ApiError::invalid(format!(
        "{flag}: '{arg}' is neither a file nor an OpenSSH public key line"
    ))
    .into())
}
