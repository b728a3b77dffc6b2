//! `hearth`: one binary, CLI and daemon. Parse arguments, set up tracing on stderr,
//! dispatch, and map the outcome to an exit code (0 ok, 1 failure, 2 usage).

use clap::Parser;
use clap::error::ErrorKind as ClapKind;
use hearth::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // A session's child on its way to its program: no parsing, no runtime.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(hearth::session::procs::EXEC_SHIM)) {
        hearth::session::procs::exec_shim(args.collect());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hearth: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    // A background daemon's stderr goes nowhere: it says why it failed in its log file.
    let logged = matches!(
        &cli.command,
        Command::Daemon {
            log_file: Some(_),
            ..
        } | Command::SessionHost {
            log_file: Some(_),
            ..
        }
    );
    match runtime.block_on(hearth::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) if hearth::cli::output::is_broken_pipe(&failure) => {
            std::process::ExitCode::SUCCESS
        }
        Err(failure) => {
            if logged {
                tracing::error!("daemon failed: {}", failure.message());
            }
            failure.report(json);
            std::process::ExitCode::from(failure.status())
        }
    }
}

/// Tracing on stderr (lines capped), or for `daemon --log-file` in a size-capped, rotated
/// file. `HEARTH_LOG` overrides the filter.
fn init_tracing(command: &Command) {
    let (default, log_file) = match command {
        Command::Daemon { log_file, .. } => ("info", log_file.clone()),
        Command::SessionHost { log_file, .. } => ("info", log_file.clone()),
        _ => ("warn", None),
    };
    let asked = std::env::var("HEARTH_LOG").ok();
    let mut filter = asked
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // tarpc warns whenever a peer goes away mid-call (a CLI interrupted, a lobby client
    // leaving): normal here, and the command says it in its own error. Quiet unless asked.
    if !asked.is_some_and(|f| f.contains("tarpc"))
        && let Ok(quiet) = "tarpc=error".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let file = log_file.and_then(|path| {
        // A bad config file is reported by the daemon itself, in this log.
        let rotation = hearth::daemon::config_file::load_log(&hearth::paths::config_file())
            .unwrap_or_default();
        match hearth::logging::RotatingFile::open(path.clone(), rotation) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("hearth: cannot open the log file {}: {e}", path.display());
                None
            }
        }
    });
    match file {
        Some(f) => builder.with_writer(f).with_ansi(false).init(),
        None => builder
            .with_writer(hearth::logging::CappedStderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    if matches!(
        command,
        Command::Daemon { .. } | Command::SessionHost { .. }
    ) {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!("panic: {info}");
            previous(info);
        }));
    }
}

/// Help and version go to stdout as usual; a usage error is one JSON document under
/// `--json` (exit 2 either way).
fn usage_error(e: clap::Error) -> std::process::ExitCode {
    let wants_json = std::env::args().any(|a| a == "--json");
    if wants_json && !matches!(e.kind(), ClapKind::DisplayHelp | ClapKind::DisplayVersion) {
        let message = e.render().to_string();
        let v = serde_json::json!({"error": {"kind": "invalid_argument",
                                             "message": usage_message(&message)}});
        hearth::cli::output::line(&v.to_string());
        return std::process::ExitCode::from(2);
    }
    let _ = e.print();
    std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 })
}

/// clap's rendered error as one line: the error with what it lists (`the following required
/// arguments were not provided: <TARGETS>...`), then the usage line.
fn usage_message(rendered: &str) -> String {
    let mut parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    if let Some(first) = parts.first_mut() {
        *first = first.strip_prefix("error: ").unwrap_or(first);
    }
    let mut text = parts.join(" ");
    if let Some(usage) = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
    {
        text.push_str(&format!(" (usage: {usage})"));
    }
    if text.is_empty() {
        "usage error".into()
    } else {
        text
    }
}
