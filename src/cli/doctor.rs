//! `hearth doctor [--json]`: what is wrong, and the one-line fix. Checks the owner's keys
//! (found, modes, options), the control socket and the daemon's version, that recordings
//! can be written and have room, and whether `known_hosts` knows the host key. It never
//! starts a daemon: whether one runs is one of the answers.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::Failure;
use super::output::Out;
use crate::authorized_keys::{self, Rule};

#[derive(Serialize)]
struct Check {
    name: &'static str,
    /// `ok`, `warn` or `fail`.
    status: &'static str,
    detail: String,
    fix: Option<String>,
}

fn check(name: &'static str, status: &'static str, detail: String, fix: Option<String>) -> Check {
    Check {
        name,
        status,
        detail,
        fix,
    }
}

pub async fn doctor(out: Out, socket: &Path) -> Result<(), Failure> {
    let home = crate::paths::home_dir();
    let mut checks = vec![config(&crate::paths::config_file()), owner_keys(&home)];
    let daemon = hearth_rpc::socket::connect(socket).await;
    checks.push(match &daemon {
        Ok((_, info)) if info.version == hearth_rpc::VERSION => check(
            "daemon",
            "ok",
            format!(
                "pid {} answers on {} (version {})",
                info.pid,
                socket.display(),
                info.version
            ),
            None,
        ),
        Ok((_, info)) => check(
            "daemon",
            "warn",
            format!(
                "the daemon runs version {}, this CLI is {}",
                info.version,
                hearth_rpc::VERSION
            ),
            Some("restart it: hearth shutdown (the next command starts the new one)".into()),
        ),
        Err(e) => check(
            "daemon",
            "warn",
            format!("no daemon answers: {e}"),
            Some(
                "`hearth server` starts it with a session, `hearth daemon` runs it in the \
                 foreground (doctor, ps, top, events and version never start one)"
                    .into(),
            ),
        ),
    });
    checks.push(socket_dir(socket));
    checks.push(recordings(&crate::paths::recordings_dir()));
    if let Ok((_, info)) = &daemon {
        checks.push(known_hosts(&home, &info.host_key));
    }
    let failed = checks.iter().any(|c| c.status == "fail");
    out.value(json!({"checks": checks}), || {
        checks
            .iter()
            .map(|c| {
                let fix = c
                    .fix
                    .as_deref()
                    .map(|f| format!("\n       fix: {f}"))
                    .unwrap_or_default();
                format!("{:<5} {:<12} {}{fix}", c.status, c.name, c.detail)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    if failed {
        Err(Failure::Exit(1))
    } else {
        Ok(())
    }
}

/// The config file parses and every value is allowed (the daemon refuses to start, and
/// commands fail, on a bad one).
fn config(path: &Path) -> Check {
    if !path.exists() {
        return check(
            "config",
            "ok",
            format!("no {} (defaults apply)", path.display()),
            None,
        );
    }
    match crate::daemon::config_file::check(path) {
        Ok(()) => check("config", "ok", format!("{} is valid", path.display()), None),
        Err(e) => check(
            "config",
            "fail",
            format!("{e:#}"),
            Some(format!(
                "edit {} (docs/config.md lists every key)",
                path.display()
            )),
        ),
    }
}

fn owner_keys(home: &Path) -> Check {
    let files = authorized_keys::owner_key_files(home);
    if files.is_empty() {
        return check(
            "owner keys",
            "fail",
            format!(
                "no ~/.ssh/authorized_keys or ~/.ssh/id_*.pub under {}",
                home.display()
            ),
            Some("ssh-keygen -t ed25519 (your own key makes you the owner)".into()),
        );
    }
    let (mut usable, mut problems, mut mode_fixes) = (0, Vec::new(), Vec::new());
    for f in &files {
        if let Err(e) = authorized_keys::check_path_strict(f, home) {
            let e = format!("{e:#}");
            // StrictModes: the fix is the chmod or chown the message ends with.
            if let Some(fix) = e.rsplit_once(" would: ").map(|(_, fix)| fix.to_string()) {
                mode_fixes.push(fix);
            }
            problems.push(e);
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let (entries, errors) = authorized_keys::parse_text(&text);
        for (line, why) in errors {
            problems.push(format!("{}:{line}: {why}", f.display()));
        }
        for (line, e) in &entries {
            match &e.rule {
                Rule::Refuse(option) => problems.push(format!(
                    "{}:{line}: key {} has option {option}: never admitted",
                    f.display(),
                    authorized_keys::fingerprint(&e.key)
                )),
                Rule::Allow { .. } => usable += 1,
            }
        }
    }
    let detail = format!("{usable} usable key line(s) in {} file(s)", files.len());
    match (usable, problems.is_empty()) {
        (0, _) if !mode_fixes.is_empty() => check(
            "owner keys",
            "fail",
            format!("{detail}; {}", problems.join("; ")),
            Some(mode_fixes.join("; ")),
        ),
        (0, _) => check(
            "owner keys",
            "fail",
            format!("{detail}; {}", problems.join("; ")),
            Some("add an unrestricted key to ~/.ssh/authorized_keys, or ssh-keygen".into()),
        ),
        (_, true) => check("owner keys", "ok", detail, None),
        (_, false) if !mode_fixes.is_empty() => check(
            "owner keys",
            "warn",
            format!("{detail}; {}", problems.join("; ")),
            Some(mode_fixes.join("; ")),
        ),
        (_, false) => check(
            "owner keys",
            "warn",
            format!("{detail}; {}", problems.join("; ")),
            Some("fix the options named above (see docs/security.md)".into()),
        ),
    }
}

/// The control socket's directory must be private (the daemon makes it so; a later chmod
/// would let other users reach the socket, where the peer-uid check still stops them).
fn socket_dir(socket: &Path) -> Check {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = socket.parent() else {
        return check(
            "socket",
            "warn",
            "the socket path has no directory".into(),
            None,
        );
    };
    match std::fs::metadata(dir) {
        Err(_) => check(
            "socket",
            "ok",
            format!("{} will be created (0700) by the daemon", dir.display()),
            None,
        ),
        Ok(m) if m.mode() & 0o077 != 0 => check(
            "socket",
            "warn",
            format!(
                "{} is open to others (mode {:o})",
                dir.display(),
                m.mode() & 0o777
            ),
            Some(format!("chmod 700 {}", dir.display())),
        ),
        Ok(_) => check(
            "socket",
            "ok",
            format!("{} is private", dir.display()),
            None,
        ),
    }
}

fn recordings(dir: &Path) -> Check {
    let probe_dir: PathBuf = if dir.exists() {
        dir.to_path_buf()
    } else {
        dir.ancestors()
            .find(|a| a.exists())
            .unwrap_or(Path::new("/"))
            .to_path_buf()
    };
    let probe = probe_dir.join(format!(".hearth-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"") {
        return check(
            "recordings",
            "fail",
            format!("cannot write in {}: {e}", probe_dir.display()),
            Some(format!(
                "make {} writable, or set [recording] dir",
                dir.display()
            )),
        );
    }
    let _ = std::fs::remove_file(&probe);
    let free = free_bytes(&probe_dir);
    match free {
        Some(b) if b < 1 << 30 => check(
            "recordings",
            "warn",
            format!("{} has only {} MiB free", probe_dir.display(), b >> 20),
            Some("free some disk, or lower [recording] max_total_bytes".into()),
        ),
        _ => check(
            "recordings",
            "ok",
            format!(
                "{} is writable{}",
                dir.display(),
                free.map(|b| format!(", {} GiB free", b >> 30))
                    .unwrap_or_default()
            ),
            None,
        ),
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter for statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
        .then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

fn known_hosts(home: &Path, host_key: &str) -> Check {
    let key = host_key.split_whitespace().nth(1).unwrap_or("");
    let file = home.join(".ssh/known_hosts");
    let known = std::fs::read_to_string(&file)
        .map(|t| !key.is_empty() && t.contains(key))
        .unwrap_or(false);
    if known {
        check(
            "known_hosts",
            "ok",
            format!("{} knows the host key", file.display()),
            None,
        )
    } else {
        check(
            "known_hosts",
            "warn",
            "joiners will be asked to confirm the host key for every session port".into(),
            Some("hearth known-hosts >> ~/.ssh/known_hosts (on each joining machine)".into()),
        )
    }
}
