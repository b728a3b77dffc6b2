//! Control plane against the real daemon: lifecycle, lookup, errors, socket hygiene,
//! auto-start and `--json` shapes.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use hearth_rpc::{ErrorKind, PROTOCOL_VERSION};
use serde_json::Value;

fn state(d: &TestDaemon, id: &str) -> serde_json::Value {
    let list = d.ok(&["ps"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn server_ps_down_up_kill_lifecycle() {
    let d = TestDaemon::start();
    let s = d.session(&["--name", "agent"], &["sleep", "1000"]);
    let id = id_of(&s);
    assert_eq!(id.len(), 8);
    assert!(
        id.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(s["state"], "up");
    let port = port_of(&s);
    assert!(port > 0);
    assert_eq!(s["join"], format!("ssh -p {port} 127.0.0.1"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    let down = d.ok(&["down", "agent"]);
    assert_eq!(down["state"], "down");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener still open"
    );

    let up = d.ok(&["up", &id[..4]]);
    assert_eq!(up["state"], "up");
    assert_eq!(port_of(&up), port, "up must reopen the same port");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    let pid = s["pid"].as_u64().unwrap() as i32;
    let killed = d.ok(&["kill", &id]);
    assert_eq!(killed[0]["id"], id.as_str());
    assert!(state(&d, &id).is_null(), "killed session still listed");
    assert!(
        unsafe { libc::kill(pid, 0) } != 0,
        "child still alive after kill"
    );
    wait_until("the port to close", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}

#[test]
fn human_output_has_the_table_and_join_line() {
    let d = TestDaemon::start();
    let out = d.cli(&["server", "--bind", "127.0.0.1", "--", "sleep", "1000"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("join with: ssh -p "), "{text}");
    assert!(
        text.contains("recording: ") && text.contains(".cast"),
        "{text}"
    );
    let ps = d.cli(&["ps"]);
    let table = String::from_utf8_lossy(&ps.stdout);
    let header = table.lines().next().unwrap();
    for col in [
        "ID", "NAME", "PORT", "STATE", "CLIENTS", "AGE", "COMMAND", "JOIN",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        table.contains("sleep 1000") && table.contains("ssh -p "),
        "{table}"
    );
}

#[test]
fn names_and_id_prefixes_resolve_and_ambiguity_lists_candidates() {
    let d = TestDaemon::start();
    let a = d.session(&["--name", "alpha"], &["sleep", "1000"]);
    assert_eq!(d.ok(&["down", "alpha"])["id"], a["id"]);
    d.err(
        &["server", "--name", "alpha", "--", "sleep", "1"],
        "already_exists",
    );
    d.err(
        &["server", "--name", "bad name", "--", "sleep", "1"],
        "invalid_argument",
    );
    // 17 ids over 16 hex digits: two share a first character.
    let mut ids = vec![id_of(&a)];
    for _ in 0..16 {
        ids.push(id_of(&d.session(&[], &["sleep", "1000"])));
    }
    let c = (b'0'..=b'f')
        .map(|c| c as char)
        .find(|c| ids.iter().filter(|i| i.starts_with(*c)).count() >= 2)
        .unwrap();
    let msg = d.err(&["up", &c.to_string()], "ambiguous");
    for id in ids.iter().filter(|i| i.starts_with(c)) {
        assert!(msg.contains(id.as_str()), "{msg} should list {id}");
    }
    d.err(&["kill", "zzzz"], "not_found");
    let out = d.cli(&["kill", "zzzz"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session matches 'zzzz'"));
    assert_eq!(d.ok(&["kill", "--all"]).as_array().unwrap().len(), 17);
}

#[test]
fn a_command_that_exits_3_is_exited_with_code_3() {
    let d = TestDaemon::start();
    let s = d.session(&[], &["sh", "-c", "exit 3"]);
    let id = id_of(&s);
    let v = wait_until("the session to exit", DEADLINE, || {
        let v = state(&d, &id);
        (v["state"] == "exited").then_some(v)
    });
    assert_eq!(v["exit_code"], 3);
    d.err(&["up", &id], "invalid_state");
    // Exited sessions are removed by kill, too.
    assert_eq!(d.ok(&["kill", &id])[0]["exit_code"], 3);
    assert!(state(&d, &id).is_null());
}

#[test]
fn a_busy_port_fails_cleanly_and_leaves_no_session() {
    let d = TestDaemon::start();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let msg = d.err(
        &[
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--",
            "sleep",
            "1000",
        ],
        "port_unavailable",
    );
    assert!(msg.contains(&port), "{msg}");
    assert_eq!(d.ok(&["ps"]).as_array().unwrap().len(), 0);
    // Invalid ports are refused by the CLI before anything happens.
    let out = d.cli(&["server", "--port", "70000"]);
    assert!(!out.status.success());
}

#[test]
fn env_cwd_and_shadow_dir_reach_the_child() {
    let d = TestDaemon::start();
    let shadow = d.dir.path().join("shadow");
    std::fs::create_dir(&shadow).unwrap();
    let out = d.dir.path().join("out.txt");
    let script = format!(
        "printf '%s|%s|%s|%s' \"$A\" \"$PWD\" \"${{PATH%%:*}}\" \"$TERM\" > {}",
        out.display()
    );
    let s = d.session(
        &[
            "--env",
            "A=x,y=z",
            "--cwd",
            "/tmp",
            "--shadow-dir",
            shadow.to_str().unwrap(),
        ],
        &["sh", "-c", &script],
    );
    assert_eq!(s["cwd"], "/tmp");
    let text = wait_until("the child to write", DEADLINE, || {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.ends_with("color"))
    });
    assert_eq!(
        text,
        format!("x,y=z|/tmp|{}|xterm-256color", shadow.display())
    );
    let msg = d.err(&["server", "--cwd", "/nonexistent", "--", "true"], "spawn");
    assert!(msg.contains("/nonexistent"), "{msg}");
    assert_eq!(d.ok(&["ps"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_second_daemon_is_refused() {
    let d = TestDaemon::start();
    let out = d.command(&["daemon"]).output_bounded();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already") || err.contains("another hearth daemon"),
        "{err}"
    );
    // Said once (it was printed twice: the log line and the error), with the way out.
    assert_eq!(err.matches("hearth daemon").count(), 1, "{err}");
    assert!(err.contains("`hearth shutdown`"), "{err}");
    // The first still works.
    d.ok(&["ps"]);
}

#[test]
fn a_stale_socket_is_replaced() {
    let env = Env::new();
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&env.socket).unwrap());
    assert!(env.socket.exists());
    let d = env.start_daemon();
    d.ok(&["ps"]);
}

#[test]
fn socket_and_directory_are_private() {
    let d = TestDaemon::start();
    let dir = std::fs::metadata(d.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    let sock = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(sock.permissions().mode() & 0o777, 0o600);
}

#[test]
fn garbage_and_half_open_connections_do_not_disturb_the_daemon() {
    let d = TestDaemon::start();
    let s = d.session(&[], &["sleep", "1000"]);
    // A half-open connection that never speaks.
    let _idle = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    // Garbage: a huge length prefix, then junk, then a hang-up mid-frame.
    let mut g = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    g.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    drop(g);
    let mut g = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    g.write_all(&[0, 0, 0, 5, b'{', b'x', 0, 0xfe, b'}'])
        .unwrap();
    // The daemon may already have hung up on the bad frame (EPIPE): that is fine.
    let _ = g.write_all(b"not json at all\n");
    drop(g);
    let list = d.ok(&["ps"]);
    assert_eq!(list[0]["id"], s["id"]);
}

#[tokio::test]
async fn calls_before_hello_and_wrong_protocols_are_refused_plainly() {
    let d = TestDaemon::start();
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let client =
        hearth_rpc::HearthClient::new(Default::default(), hearth_rpc::socket::transport(stream))
            .spawn();
    let ctx = tarpc::context::current;
    let e = client.list(ctx()).await.unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    let e = client
        .hello(ctx(), PROTOCOL_VERSION + 1, "future".into())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(e.message.contains("protocol mismatch"), "{}", e.message);
    let info = client
        .hello(ctx(), PROTOCOL_VERSION, "test".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.pid, d.pid());
    assert!(client.list(ctx()).await.unwrap().is_ok());
}

#[test]
fn the_cli_starts_the_daemon_when_none_answers() {
    let env = Env::new();
    // With auto-start off, a clear error and no daemon.
    let msg = env.err(&["status", "x"], "daemon");
    assert!(msg.contains("HEARTH_NO_AUTOSTART"), "{msg}");
    // Asking about (or stopping) a daemon never starts one, auto-start or not, and the
    // error says which commands do.
    for cmd in [&["ps"][..], &["version"], &["events"], &["top"]] {
        let mut all = vec!["--json"];
        all.extend_from_slice(cmd);
        let out = env
            .command(&all)
            .env_remove("HEARTH_NO_AUTOSTART")
            .output_bounded();
        assert!(!out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no hearth daemon is running"),
            "{v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`hearth server` starts it"),
            "{v}"
        );
        assert!(!env.socket.exists(), "{cmd:?} started a daemon");
    }
    let out = env
        .command(&["--json", "shutdown"])
        .env_remove("HEARTH_NO_AUTOSTART")
        .output_bounded();
    assert!(out.status.success());
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["running"],
        false
    );
    assert!(!env.socket.exists(), "a daemon was started to answer");
    let out = env
        .command(&[
            "--json",
            "server",
            "--bind",
            "127.0.0.1",
            "--",
            "sleep",
            "1000",
        ])
        .env_remove("HEARTH_NO_AUTOSTART")
        .output_bounded();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["state"], "up");
    let v = env.ok(&["version"]);
    let pid = v["daemon"]["pid"].as_u64().unwrap() as i32;
    assert_eq!(v["cli"]["protocol"], v["daemon"]["protocol"]);
    assert!(env.home.join(".local/state/hearth/daemon.log").exists());
    env.ok(&["shutdown"]);
    assert!(!env.socket.exists(), "socket left behind");
    wait_until("the daemon process to end", DEADLINE, || {
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
    // After a shutdown too: `version` reports, `history` (which reads what the daemon
    // keeps) starts one.
    let autostart = |args: &[&str]| {
        env.command(args)
            .env_remove("HEARTH_NO_AUTOSTART")
            .output_bounded()
    };
    assert!(!autostart(&["--json", "version"]).status.success());
    assert!(!env.socket.exists(), "version started a daemon");
    let out = autostart(&["--json", "history"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.socket.exists(), "history did not start the daemon");
    env.ok(&["shutdown"]);
}

#[test]
fn sigterm_ends_children_and_removes_the_socket() {
    // Sessions in the daemon's process end with it (tests/survive.rs: in their own).
    let mut d = TestDaemon::start_in_daemon();
    // A child that ignores SIGHUP must still end (SIGKILL after the grace period).
    let stubborn = d.session(&[], &["sh", "-c", "trap '' HUP; sleep 1000"]);
    let plain = d.session(&[], &["sleep", "1000"]);
    let pids: Vec<i32> = [stubborn, plain]
        .iter()
        .map(|s| s["pid"].as_u64().unwrap() as i32)
        .collect();
    assert!(d.terminate(), "daemon did not exit on SIGTERM");
    assert!(!d.socket.exists(), "socket left behind");
    for pid in pids {
        wait_until("children to be gone", Duration::from_secs(5), || {
            (unsafe { libc::kill(pid, 0) } != 0).then_some(())
        });
    }
}

#[test]
fn json_shapes_carry_every_documented_field() {
    let d = TestDaemon::start();
    let s = d.session(&["--name", "shape"], &["sleep", "1000"]);
    for field in [
        "id",
        "name",
        "port",
        "state",
        "pid",
        "exit_code",
        "clients",
        "command",
        "cwd",
        "created_at",
        "join",
    ] {
        assert!(s.get(field).is_some(), "session JSON lacks {field}: {s}");
    }
    assert!(d.ok(&["ps"]).is_array());
    assert!(d.ok(&["peers", "shape"]).as_array().unwrap().is_empty());
    let (ok, e) = d.json(&["get-me-nothing"]);
    assert!(!ok);
    assert_eq!(e["error"]["kind"], "invalid_argument", "{e}");
    let msg = d.err(&["kick", "shape", "nobody-1"], "not_found");
    assert!(msg.contains("nobody-1"));
}

/// Even if the socket's directory were opened up by mistake, another user's connection is
/// refused by its peer uid. Needs root (to act as another user) and setpriv: `build.rs`
/// says whether the tests have them; without, the test is listed as ignored.
#[test]
#[cfg_attr(
    not(hearth_tests_as_root),
    ignore = "needs root and /usr/bin/setpriv to connect as another user"
)]
fn another_users_control_connection_is_refused() {
    let d = TestDaemon::start();
    let dir = d.socket.parent().unwrap();
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = external("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .args(["--json", "--socket", d.socket.to_str().unwrap(), "ps"])
        .env("HEARTH_NO_AUTOSTART", "1")
        .env("HOME", "/tmp")
        .output_bounded();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "daemon", "{v}");
    wait_until("the refusal in the log", DEADLINE, || {
        d.daemon_log()
            .contains("refused control connection from another user")
            .then_some(())
    });
    d.ok(&["ps"]);
}

#[test]
fn server_says_how_to_make_a_key_when_the_user_has_none() {
    let env = Env::new();
    std::fs::remove_file(env.home.join(".ssh/id_ed25519.pub")).unwrap();
    let d = env.start_daemon();
    let out = d.cli(&["server", "--bind", "127.0.0.1", "--", "sleep", "1000"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ssh-keygen -t ed25519"), "{err}");
}

#[test]
fn concurrent_creates_of_one_name_give_exactly_one_session() {
    let d = TestDaemon::start();
    let handles: Vec<_> = (0..50)
        .map(|_| {
            d.command(&[
                "--json",
                "server",
                "--bind",
                "127.0.0.1",
                "--name",
                "same",
                "--",
                "sleep",
                "100",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let ok = handles
        .into_iter()
        .map(|h| h.wait_with_output().unwrap())
        .filter(|o| o.status.success())
        .count();
    assert_eq!(ok, 1, "{ok} sessions named 'same' were created");
    assert_eq!(d.ok(&["ps"]).as_array().unwrap().len(), 1);
}

#[test]
fn id_like_names_are_refused_and_a_down_sessions_port_stays_reserved() {
    let d = TestDaemon::start();
    let msg = d.err(
        &["server", "--name", "deadbeef", "--", "sleep", "100"],
        "invalid_argument",
    );
    assert!(msg.contains("looks like a session id"), "{msg}");
    let s = d.session(&[], &["sleep", "100"]);
    let (id, port) = (id_of(&s), port_of(&s));
    d.ok(&["down", &id]);
    let p = port.to_string();
    let msg = d.err(
        &[
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            &p,
            "--",
            "sleep",
            "1",
        ],
        "port_unavailable",
    );
    assert!(msg.contains(&id) && msg.contains("down"), "{msg}");
    assert_eq!(d.ok(&["up", &id])["state"], "up");
}

/// Pids of processes whose environment names session `id`.
fn session_pids(id: &str) -> Vec<u32> {
    let needle = format!("HEARTH_SESSION={id}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| String::from_utf8_lossy(&e).contains(&needle))
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z")
        })
        .collect()
}

#[test]
fn kill_leaves_no_orphans_even_setsid_and_hup_ignoring_ones() {
    let d = TestDaemon::start();
    let script = "setsid sh -c 'trap \"\" HUP; exec sleep 317' & \
                  sh -c 'trap \"\" HUP; exec sleep 318' & sleep 0.3; echo started; exec sleep 1000";
    let s = d.session(&[], &["sh", "-c", script]);
    let id = id_of(&s);
    wait_until("the children to start", DEADLINE, || {
        (session_pids(&id).len() >= 3).then_some(())
    });
    d.ok(&["kill", &id]);
    wait_until("every process of the session to be gone", DEADLINE, || {
        session_pids(&id).is_empty().then_some(())
    });
}

#[test]
fn a_socket_that_never_answers_or_hangs_up_is_an_error_not_a_hang() {
    let env = Env::new();
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&env.socket).unwrap();
    // The first connections are held without a word; later ones are closed at once, as
    // the daemon does for another user.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            if n < 1 {
                held.push(stream);
            }
        }
    });
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let (ok, v) = env.json(&["ps"]);
        assert!(!ok);
        assert_eq!(v["error"]["kind"], "daemon", "{v}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
}

/// `history` says when the program ended, not when the session was removed: a program that
/// exits and is killed (removed) two seconds later ended when it exited.
#[test]
fn history_records_the_exit_time_not_the_kill_time() {
    let d = TestDaemon::start();
    let s = d.session(&["--name", "short"], &["sh", "-c", "exit 2"]);
    let id = id_of(&s);
    let w = d.ok(&["wait", &id, "--exit", "--timeout", "20s"]);
    assert_eq!(w["exit_code"], 2);
    let exited = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A gap between the exit and the removal, on purpose.
    std::thread::sleep(Duration::from_millis(2100));
    d.ok(&["kill", &id]);
    let h = d.ok(&["history"]);
    assert_eq!(h[0]["id"], id.as_str(), "{h}");
    let ended = h[0]["ended_unix"].as_u64().unwrap();
    assert!(
        ended <= exited,
        "ended_unix {ended} is the kill time, not the exit ({exited})"
    );
    assert_eq!(h[0]["exit_code"], 2);
}

/// 2,000 idle connections to the control socket (a runaway script of the owner's) never
/// keep `ps` out, and the daemon's log says so once, not every 100 ms.
#[test]
fn thousands_of_idle_control_connections_never_keep_ps_out() {
    // With 1,024 descriptors, as on many systems: 2,000 connections would exhaust them.
    let env = Env::new();
    let child = env.spawn_daemon_limited(Some(1024));
    let d = TestDaemon {
        env,
        child: Some(child),
    };
    d.wait_ready();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(c) = std::os::unix::net::UnixStream::connect(&d.socket) {
            idle.push(c);
        }
    }
    assert!(idle.len() >= 1000, "only {} connections", idle.len());
    let v = d.ok(&["ps"]);
    assert!(v.as_array().is_some(), "{v}");
    d.ok(&["version"]);
    drop(idle);
    let log = d.daemon_log();
    let noisy = log
        .lines()
        .filter(|l| l.contains("control accept failed") || l.contains("control connections"))
        .count();
    assert!(noisy <= 2, "{noisy} log lines about control connections");
}

/// `rename`: the id, port and clients stay; every command finds the session by its new
/// name and none by the old, which is free again; events and its end carry the new name.
/// In a session's own process and in the daemon's.
#[test]
fn rename_then_every_command_finds_the_new_name() {
    for d in [TestDaemon::start(), TestDaemon::start_in_daemon()] {
        let echo = ["sh", "-c", "while IFS= read -r l; do echo \"got:$l\"; done"];
        let s = d.session(&["--name", "old"], &echo);
        let (id, port) = (id_of(&s), port_of(&s));
        d.session(&["--name", "taken"], &["sleep", "1000"]);
        // Refused: a name in use, one like an id, a bad one, no such session.
        let m = d.err(&["rename", "old", "taken"], "already_exists");
        assert!(m.contains("'taken'"), "{m}");
        let m = d.err(&["rename", "old", "deadbeef"], "invalid_argument");
        assert!(m.contains("looks like a session id"), "{m}");
        d.err(&["rename", "old", "two words"], "invalid_argument");
        d.err(&["rename", "nosuch", "x"], "not_found");

        let r = d.ok(&["rename", "old", "new"]);
        assert_eq!(
            (r["name"].as_str(), id_of(&r), port_of(&r)),
            (Some("new"), id.clone(), port)
        );
        assert_eq!(id_of(&d.ok(&["status", "new"])), id);
        d.err(&["status", "old"], "not_found");
        let off = d.ok(&["send", "new", "hi"])["offset"].to_string();
        let w = d.ok(&[
            "wait",
            "new",
            "--match",
            "^got:hi$",
            "--from",
            &off,
            "--timeout",
            "10s",
        ]);
        assert_eq!(w["reason"], "match", "{w}");
        let ps = d.ok(&["ps"]);
        let names: Vec<&str> = ps["sessions"]
            .as_array()
            .or(ps.as_array())
            .unwrap()
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        assert!(names.contains(&"new") && !names.contains(&"old"), "{ps}");
        assert!(
            d.ok(&["screen", "new"])["screen"]
                .as_str()
                .unwrap()
                .contains("got:hi")
        );
        d.ok(&["lock", "new"]);
        d.ok(&["unlock", "new"]);
        // One `renamed` event; later events carry the new name.
        d.ok(&["msg", "new", "hello"]);
        let events = wait_until("the message event", DEADLINE, || {
            let out = d.cli(&["--json", "events", "--since", "1", &id]);
            let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            events
                .iter()
                .any(|e| e["kind"] == "message")
                .then_some(events)
        });
        let renamed: Vec<&Value> = events.iter().filter(|e| e["kind"] == "renamed").collect();
        assert_eq!(renamed.len(), 1, "{events:#?}");
        assert_eq!(
            (renamed[0]["from"].as_str(), renamed[0]["to"].as_str()),
            (Some("old"), Some("new"))
        );
        let message = events.iter().find(|e| e["kind"] == "message").unwrap();
        assert_eq!(message["name"], "new", "{message}");
        // The old name is free.
        d.session(&["--name", "old"], &["sleep", "1000"]);
        // Ended: found by its new name, and restarted with it.
        d.ok(&["kill", "new"]);
        assert!(String::from_utf8_lossy(&d.cli(&["logs", "new"]).stdout).contains("got:hi"));
        let r = d.ok(&["restart", "new"]);
        assert_eq!(r["name"], "new", "{r}");
    }
}

/// `prune`: sessions whose program ended and ones idle for a while (no output, no input,
/// nobody attached) go, each with a `pruned` event and a history record; `--dry-run` only
/// says which. `[limits] idle_kill_after` does it on its own.
#[test]
fn prune_removes_exited_and_idle_sessions_and_says_why() {
    let d = TestDaemon::start();
    let done = id_of(&d.session(&["--name", "done"], &["true"]));
    let quiet = id_of(&d.session(&["--name", "quiet"], &["sleep", "1000"]));
    let busy = id_of(&d.session(
        &["--name", "busy"],
        &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
    ));
    wait_until("done to exit", DEADLINE, || {
        (d.ok(&["status", &done])["activity"] == "exited").then_some(())
    });
    let ids = |v: &Value| -> Vec<String> {
        let mut ids: Vec<String> = v.as_array().unwrap().iter().map(id_of).collect();
        ids.sort();
        ids
    };
    d.err(&["prune"], "invalid_argument");
    // Dry run: says, removes nothing.
    let would = d.ok(&["prune", "--exited", "--dry-run"]);
    assert_eq!(ids(&would), vec![done.clone()]);
    assert_eq!(d.ok(&["status", &done])["id"], done.as_str());
    // Idle for 1 s: the quiet one, not the one that prints.
    wait_until("quiet to be idle for 1 s", DEADLINE, || {
        ids(&d.ok(&["prune", "--idle", "1s", "--dry-run"]))
            .contains(&quiet)
            .then_some(())
    });
    let pruned = d.ok(&["prune", "--idle", "1s"]);
    assert_eq!(ids(&pruned), vec![quiet.clone()]);
    d.err(&["status", &quiet], "not_found");
    assert_eq!(d.ok(&["status", &busy])["id"], busy.as_str());
    let pruned = d.ok(&["prune", "--exited"]);
    assert_eq!(ids(&pruned), vec![done.clone()]);
    // Each with a pruned event saying why, and in history.
    let out = d.cli(&["--json", "events", "--since", "1"]);
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Value| e["kind"] == "pruned")
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("idle for 1s"),
        "{events:#?}"
    );
    assert_eq!(events[1]["reason"], "its program exited (0)", "{events:#?}");
    let history = d.ok(&["history"]);
    let text = history.to_string();
    assert!(text.contains(&quiet) && text.contains(&done), "{history}");

    // idle_kill_after prunes on its own.
    let env = Env::new();
    env.write_config("[limits]\nidle_kill_after = \"2s\"\n");
    let d = env.start_daemon();
    let quiet = id_of(&d.session(&[], &["sleep", "1000"]));
    wait_until("idle_kill_after to prune it", DEADLINE, || {
        (d.cli(&["status", &quiet]).status.code() != Some(0)).then_some(())
    });
    // A bad value is an error at start.
    let bad = Env::new();
    bad.write_config("[limits]\nidle_kill_after = \"soon\"\n");
    let out = bad
        .command(&["daemon"])
        .stdin(std::process::Stdio::null())
        .output_bounded();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("idle_kill_after"));
}

/// The JSON events of session `id` so far.
fn events_of(d: &TestDaemon, id: &str) -> Vec<Value> {
    let out = d.cli(&["--json", "events", "--since", "1", id]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn millis(e: &Value) -> u128 {
    let t = humantime::parse_rfc3339(e["time"].as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

/// `server --restart on-failure --max-restarts 2`: a program that exits 1 three times is
/// started again twice, in the same session (id, port, the same viewer's connection, one
/// recording), after 1 s then 2 s; the third exit ends the session. Events in order; input
/// sent while it waits is refused, not lost. In a session's own process and in the daemon's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_program_restarts_in_place_with_growing_delays_until_max() {
    for d in [TestDaemon::start(), TestDaemon::start_in_daemon()] {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().to_str().unwrap();
        // Each run counts itself, says so, and exits 1 once told to.
        let script = "n=$(($(cat count 2>/dev/null || echo 0)+1)); echo $n > count; \
                      echo \"run-$n of $$\"; IFS= read -r l; exit 1";
        let s = d.session(
            &[
                "--restart",
                "on-failure",
                "--max-restarts",
                "2",
                "--cwd",
                cwd,
            ],
            &["sh", "-c", script],
        );
        let (id, port) = (id_of(&s), port_of(&s));
        assert_eq!(s["restart"]["when"], "on-failure", "{s}");
        let viewer = SshClient::connect(port, &d.owner, "own", 80, 24).await;
        viewer.wait_text("run-1 of").await;
        let first_pid = d.ok(&["status", &id])["pid"].clone();
        for n in 1..=3 {
            d.ok(&["send", &id, "go"]);
            if n == 3 {
                break;
            }
            // Waiting: no pid, `restarting` in ps, and input is refused with why.
            let st = wait_until("the restart to be due", DEADLINE, || {
                let st = d.ok(&["status", &id]);
                (!st["restarting"].is_null()).then_some(st)
            });
            assert_eq!(st["restarting"]["attempt"], n, "{st}");
            assert_eq!(st["restarting"]["exit_code"], 1, "{st}");
            assert!(st["pid"].is_null(), "{st}");
            let m = d.err(&["send", &id, "lost?"], "invalid_state");
            assert!(m.contains("starts again"), "{m}");
            let ps = String::from_utf8_lossy(&d.cli(&["ps"]).stdout).into_owned();
            assert!(ps.contains("restarting(1)"), "{ps}");
            viewer.wait_text(&format!("run-{} of", n + 1)).await;
            let st = d.ok(&["status", &id]);
            assert_eq!((id_of(&st), port_of(&st)), (id.clone(), port));
            assert_eq!(st["restarts"], n, "{st}");
            assert_ne!(st["pid"], first_pid, "{st}");
        }
        let ended = wait_until("the session to end", DEADLINE, || {
            let st = d.ok(&["status", &id]);
            st["exit_code"].as_i64().map(|_| st)
        });
        assert_eq!(ended["exit_code"], 1, "{ended}");
        // Events in order, with growing delays honoured. (A session in its own process
        // reports its exit to `status` at once; its events reach the daemon's ring a moment
        // later, copied from the host.)
        let events: Vec<Value> = wait_until("the exited event", DEADLINE, || {
            let events = events_of(&d, &id);
            events
                .iter()
                .any(|e| e["kind"] == "exited")
                .then_some(events)
        })
        .into_iter()
        .filter(|e| ["restarting", "restarted", "exited"].contains(&e["kind"].as_str().unwrap()))
        .collect();
        let shape: Vec<(String, Value, Value)> = events
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap().to_string(),
                    e["attempt"].clone(),
                    e["after_ms"]
                        .clone()
                        .as_u64()
                        .map_or(e["exit_code"].clone(), Value::from),
                )
            })
            .collect();
        let expected: Vec<(String, Value, Value)> = vec![
            ("restarting".into(), 1.into(), 1000.into()),
            ("restarted".into(), 1.into(), Value::Null),
            ("restarting".into(), 2.into(), 2000.into()),
            ("restarted".into(), 2.into(), Value::Null),
            ("exited".into(), Value::Null, 1.into()),
        ];
        assert_eq!(shape, expected, "{events:#?}");
        for pair in [(0, 1, 1000), (2, 3, 2000)] {
            let waited = millis(&events[pair.1]) - millis(&events[pair.0]);
            assert!(waited + 50 >= pair.2, "waited {waited} ms for {}", pair.2);
        }
        // The same connection saw every run; one recording holds them, with hearth's lines.
        assert!(viewer.raw_text().contains("run-3 of"));
        let logs = String::from_utf8_lossy(&d.cli(&["logs", &id]).stdout).into_owned();
        for needle in [
            "run-1 of",
            "run-2 of",
            "run-3 of",
            "[hearth] sh exited with status 1: starting it again in 2 s (restart 2 of 2)",
            "[hearth] started again: sh -c",
        ] {
            assert!(logs.contains(needle), "{needle:?} not in {logs}");
        }
        d.ok(&["kill", &id]);
        let history = d.ok(&["history"]);
        let ended = history
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id.as_str());
        assert_eq!(
            ended.map(|e| e["restarts"].clone()),
            Some(2.into()),
            "{history}"
        );
    }
}

/// `--resume` runs on restarts instead of the command; without it, the agent profile's
/// `resume` does (Claude Code's `claude --continue`, here a stand-in named `claude`).
/// `kill` while a restart waits ends the session at once, with the last status; no
/// restart follows. Bad policies are refused before anything starts.
#[test]
fn resume_commands_run_on_restart_and_kill_cancels_a_pending_one() {
    let d = TestDaemon::start();
    let s = d.session(
        &[
            "--restart",
            "always",
            "--resume",
            "sh -c 'echo \"resumed $0\"; sleep 1000' x",
        ],
        &["sh", "-c", "echo first; exit 0"],
    );
    let id = id_of(&s);
    let st = wait_until("the resumed run", DEADLINE, || {
        let st = d.ok(&["status", &id]);
        (st["restarts"] == 1).then_some(st)
    });
    assert_eq!(st["command"][2], "echo \"resumed $0\"; sleep 1000", "{st}");
    d.ok(&[
        "wait",
        &id,
        "--match",
        "^resumed x$",
        "--from",
        "0",
        "--timeout",
        "10s",
    ]);

    // A profile's resume: a `claude` that fails fresh and continues with --continue.
    let bin = tempfile::tempdir().unwrap();
    let claude = bin.path().join("claude");
    std::fs::write(
        &claude,
        "#!/bin/sh\nif [ \"$1\" = --continue ]; then echo continued; sleep 1000; fi\necho fresh; exit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755)).unwrap();
    let shadow = bin.path().to_str().unwrap();
    let s = d.session(
        &["--restart", "on-failure", "--shadow-dir", shadow],
        &["claude"],
    );
    let id = id_of(&s);
    d.ok(&[
        "wait",
        &id,
        "--match",
        "^continued$",
        "--from",
        "0",
        "--timeout",
        "10s",
    ]);
    assert_eq!(
        d.ok(&["status", &id])["command"],
        serde_json::json!(["claude", "--continue"])
    );

    // Killed while a restart waits (an always-failing program backs off to 2 s, 4 s...).
    let s = d.session(&["--restart", "always"], &["sh", "-c", "exit 3"]);
    let id = id_of(&s);
    wait_until("a restart to wait", DEADLINE, || {
        let st = d.ok(&["status", &id]);
        (st["restarts"].as_u64() >= Some(1) && !st["restarting"].is_null()).then_some(())
    });
    let started = std::time::Instant::now();
    d.ok(&["kill", &id]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let events = events_of(&d, &id);
    let last = events.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["exit_code"].as_i64()),
        (Some("exited"), Some(3)),
        "{events:#?}"
    );

    // Refused, and nothing is left behind.
    for (args, kind, says) in [
        (&["--restart", "sometimes"][..], None, "sometimes"),
        (
            &["--restart", "no", "--max-restarts", "2"],
            Some("invalid_argument"),
            "need --restart",
        ),
        (
            &["--restart", "always", "--max-restarts", "0"],
            Some("invalid_argument"),
            "never restarts",
        ),
        (
            &["--restart", "always", "--resume", "'unbalanced"],
            Some("invalid_argument"),
            "not a command",
        ),
        (
            &["--restart", "always", "--resume", "no-such-program-xyz"],
            Some("spawn"),
            "--resume",
        ),
    ] {
        let mut all = vec!["server", "--bind", "127.0.0.1"];
        all.extend_from_slice(args);
        all.extend(["--", "sleep", "1000"]);
        let m = match kind {
            Some(kind) => d.err(&all, kind),
            None => {
                let out = d.cli(&all);
                assert_eq!(out.status.code(), Some(2), "{args:?}");
                String::from_utf8_lossy(&out.stderr).into_owned()
            }
        };
        assert!(m.contains(says), "{args:?}: {m}");
    }
    let live = d.ok(&["ps"]);
    assert_eq!(live.as_array().unwrap().len(), 2, "{live}");
}
