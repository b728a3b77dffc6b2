//! Fitting in: known_hosts lines that real OpenSSH accepts with strict checking, the host
//! key's fingerprint in `server` output, completions, a man page, systemd readiness, and
//! `doctor`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn strict_ssh(d: &TestDaemon, port: u16, known: &std::path::Path) -> Option<i32> {
    let mut args = ssh_args(&d.owner, port);
    // Replace the permissive host-key options of the helper with strict ones.
    let mut i = 0;
    while i < args.len() {
        if args[i] == "-o"
            && (args[i + 1].starts_with("StrictHostKeyChecking")
                || args[i + 1].starts_with("UserKnownHostsFile"))
        {
            args.drain(i..i + 2);
        } else {
            i += 1;
        }
    }
    external("ssh")
        .args(&args)
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(["-tt", "127.0.0.1"])
        .stdin(Stdio::null())
        .output_bounded()
        .status
        .code()
}

#[test]
fn known_hosts_lines_let_openssh_join_any_session_with_strict_checking() {
    let d = TestDaemon::start();
    let kh = d.ok(&["known-hosts", "--hostname", "127.0.0.1"]);
    let line = kh["lines"][0].as_str().unwrap();
    assert!(line.starts_with("[127.0.0.1]:* ssh-ed25519 "), "{line}");
    let known = d.dir.path().join("known_hosts");
    let empty = d.dir.path().join("empty_known_hosts");
    std::fs::write(&known, format!("{line}\n")).unwrap();
    std::fs::write(&empty, "").unwrap();
    for _ in 0..2 {
        // Two sessions, two ports, one line.
        let s = d.session(&[], &["sh", "-c", "sleep 1; exit 5"]);
        assert_eq!(s["host_key_fingerprint"], kh["host_key_fingerprint"]);
        assert_eq!(strict_ssh(&d, port_of(&s), &known), Some(5));
    }
    let s = d.session(&[], &["sh", "-c", "sleep 1; exit 5"]);
    assert_eq!(
        strict_ssh(&d, port_of(&s), &empty),
        Some(255),
        "strict checking must refuse"
    );
    // Human `server` output shows the fingerprint.
    let out = d.cli(&["server", "--bind", "127.0.0.1", "--", "sleep", "100"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(kh["host_key_fingerprint"].as_str().unwrap()),
        "{text}"
    );
    // Default host names: this machine's, and every name a join line printed: a session
    // bound to 127.0.0.1 printed `ssh -p P 127.0.0.1`, and strict checking passes with the
    // default lines alone.
    let plain = d.cli(&["known-hosts"]);
    let text = String::from_utf8_lossy(&plain.stdout).to_string();
    assert!(text.contains("[localhost]:* ssh-ed25519 "), "{text}");
    let defaults = d.dir.path().join("default_known_hosts");
    std::fs::write(&defaults, &text).unwrap();
    let s = d.session(&[], &["sh", "-c", "sleep 1; exit 6"]);
    assert!(s["join"].as_str().unwrap().ends_with(" 127.0.0.1"), "{s}");
    assert_eq!(strict_ssh(&d, port_of(&s), &defaults), Some(6));
}

#[test]
fn completions_and_the_man_page_need_no_daemon() {
    let env = Env::new(); // no daemon, and HEARTH_NO_AUTOSTART is set
    let bash = env.cli(&["completions", "bash"]);
    assert!(bash.status.success());
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(
        bash.contains("_hearth") && bash.contains("known-hosts"),
        "{bash:.200}"
    );
    let zsh = env.cli(&["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef hearth"));
    for shell in ["fish", "elvish", "powershell"] {
        assert!(env.cli(&["completions", shell]).status.success(), "{shell}");
    }
    let man = env.cli(&["man"]);
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.contains(".TH hearth") && man.contains("doctor"),
        "{man:.300}"
    );
}

#[test]
fn under_systemd_the_daemon_notifies_readiness_and_the_unit_says_so() {
    let env = Env::new();
    let notify = env.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut child = env
        .command(&["daemon"])
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("no readiness notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    // Ready means it answers.
    assert!(env.cli(&["version"]).status.success());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/systemd/hearth.service"
    ))
    .unwrap();
    for want in [
        "Type=notify",
        "hearth daemon",
        "Restart=on-failure",
        // Sessions in processes of their own outlive `systemctl --user restart hearth`.
        "KillMode=process",
        "WantedBy=default.target",
    ] {
        assert!(unit.contains(want), "unit lacks {want}");
    }
}

/// The doctor check called `name`.
fn named(v: &serde_json::Value, name: &str) -> serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no check {name}: {v}"))
}

#[test]
fn doctor_says_what_is_wrong_and_how_to_fix_it_without_starting_a_daemon() {
    let env = Env::new();
    let (ok, v) = env.json(&["doctor"]);
    assert!(ok, "{v}");
    let status = |v: &serde_json::Value, name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status(&v, "owner keys").as_deref(), Some("ok"), "{v}");
    assert_eq!(status(&v, "daemon").as_deref(), Some("warn"));
    assert_eq!(status(&v, "recordings").as_deref(), Some("ok"));
    assert!(!env.socket.exists(), "doctor started a daemon");
    let d = env.start_daemon();
    let (_, v) = d.json(&["doctor"]);
    assert_eq!(status(&v, "daemon").as_deref(), Some("ok"), "{v}");
    assert_eq!(status(&v, "known_hosts").as_deref(), Some("warn"));
    assert_eq!(status(&v, "socket").as_deref(), Some("ok"), "{v}");
    // A restricted key and a group-writable file are named, with the fix.
    let ak = d.home.join(".ssh/authorized_keys");
    std::fs::write(
        &ak,
        format!("command=\"true\" {}\n", d.other_key("ci").public_line()),
    )
    .unwrap();
    std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, v) = d.json(&["doctor"]);
    let keys = named(&v, "owner keys");
    assert_eq!(keys["status"], "warn", "{keys}");
    assert!(
        keys["detail"].as_str().unwrap().contains("command="),
        "{keys}"
    );
    std::fs::set_permissions(&ak, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (_, v) = d.json(&["doctor"]);
    let keys = named(&v, "owner keys");
    assert!(
        keys["detail"].as_str().unwrap().contains("chmod go-w"),
        "{keys}"
    );
    // The fix for a StrictModes failure is the chmod, even when no key is left (it
    // suggested ssh-keygen).
    std::fs::remove_file(d.home.join(".ssh/id_ed25519.pub")).unwrap();
    let (ok, v) = d.json(&["doctor"]);
    assert!(!ok, "{v}");
    let keys = named(&v, "owner keys");
    assert_eq!(keys["status"], "fail", "{keys}");
    let fix = keys["fix"].as_str().unwrap();
    assert!(
        fix.starts_with("chmod go-w ") && !fix.contains("ssh-keygen"),
        "{keys}"
    );
    // A config file the daemon would refuse fails the doctor too (it passed with rc 0).
    d.write_config("[limits]\nmax_clientz = 3\n");
    let (ok, v) = d.json(&["doctor"]);
    assert!(!ok, "{v}");
    let config = named(&v, "config");
    assert_eq!(config["status"], "fail", "{config}");
    assert!(
        config["detail"].as_str().unwrap().contains("max_clientz"),
        "{config}"
    );
    let _ = Duration::ZERO;
}

/// The rough edges a new user hits: `hearth man --dir` writes every page the main page
/// refers to; `--json` is refused where a command prints a script or a page; a usage
/// error under `--json` is whole; a closed pipe is a quiet exit.
#[test]
fn man_pages_json_refusals_usage_errors_and_closed_pipes() {
    let env = Env::new();
    let dir = env.dir.path().join("man1");
    let out = env.cli(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let main = std::fs::read_to_string(dir.join("hearth.1")).unwrap();
    // Every hearth-*(1) the main page names exists.
    let mut named = 0;
    for page in main.split("hearth\\-").skip(1) {
        let name: String = page
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '\\' || *c == '-')
            .collect::<String>()
            .replace("\\-", "-");
        if name.is_empty() || !page[..].contains("(1)") {
            continue;
        }
        named += 1;
        assert!(
            dir.join(format!("hearth-{name}.1")).exists(),
            "hearth-{name}(1) is named but not written"
        );
    }
    assert!(named >= 20, "only {named} pages named");
    for args in [&["--json", "man"][..], &["--json", "completions", "bash"]] {
        let out = env.cli(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "invalid_argument", "{v}");
    }
    let out = env.cli(&["--json", "kill"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("<TARGETS>") && msg.contains("usage: hearth kill"),
        "{msg}"
    );
    // A reader that is gone before hearth writes: hearth exits quietly (it printed
    // "cannot write to stdout: Broken pipe", or panicked in clap_complete).
    for cmd in ["man", "completions bash", "--json kill"] {
        let out = external("sh")
            .arg("-c")
            .arg(format!("{BIN} {cmd} | true"))
            .env("HEARTH_NO_AUTOSTART", "1")
            .output_bounded();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{cmd} into a closed pipe printed: {err}");
    }
}
