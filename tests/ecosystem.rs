//! Fitting in: known_hosts lines that real OpenSSH accepts with strict checking, the host
//! key's fingerprint in `server` output, completions, a man page, systemd readiness, and
//! `doctor`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
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
    Command::new("ssh")
        .args(&args)
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(["-tt", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
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
    // Default host names: this machine's.
    let plain = d.cli(&["known-hosts"]);
    assert!(String::from_utf8_lossy(&plain.stdout).contains("]:* ssh-ed25519 "));
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
    let _ = Duration::ZERO;
}
