//! `hearth`: one binary, CLI and daemon. Parse arguments, set up tracing on stderr,
//! dispatch, and map the outcome to an exit code (0 ok, 1 failure, 2 usage).

use clap::Parser;
use clap::error::ErrorKind as ClapKind;
use hearth::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let default = if matches!(cli.command, Command::Daemon { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
    match runtime.block_on(hearth::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            failure.report(json);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as usual; a usage error is one JSON document under
/// `--json` (exit 2 either way).
fn usage_error(e: clap::Error) -> std::process::ExitCode {
    let wants_json = std::env::args().any(|a| a == "--json");
    if wants_json && !matches!(e.kind(), ClapKind::DisplayHelp | ClapKind::DisplayVersion) {
        let message = e.render().to_string();
        let first = message.lines().next().unwrap_or("usage error");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let v = serde_json::json!({"error": {"kind": "invalid_argument", "message": first}});
        println!("{v}");
        return std::process::ExitCode::from(2);
    }
    let _ = e.print();
    std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 })
}
