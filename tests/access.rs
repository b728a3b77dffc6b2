//! Access: roles by key, live role changes, lock, open mode, an SSH surface that refuses
//! everything but the shared terminal, and pre-auth limits.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn pubkey(k: &Key) -> String {
    k.pub_path().to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_never_types_and_never_shrinks_the_terminal() {
    let d = TestDaemon::start();
    let v = d.other_key("viewer");
    let s = d.session(&["--viewer-key", &pubkey(&v)], &["/bin/sh"]);
    let (id, port) = (id_of(&s), port_of(&s));
    let owner = SshClient::connect(port, &d.owner, "own", 100, 30).await;
    let viewer = SshClient::connect(port, &v, "view", 40, 10).await;
    viewer.send("echo viewer-typed-$((1+1))\r").await;
    viewer.send("!>").await;
    viewer.wait_screen("1 Resume").await;
    assert!(
        !viewer.screen().contains("Kick"),
        "a viewer saw owner items"
    );
    viewer.send("q").await;
    owner.send("stty size; echo marker-$((2+2))\r").await;
    owner.wait_text("marker-4").await;
    assert!(
        owner.raw_text().contains("30 100"),
        "a viewer shrank the PTY"
    );
    assert!(!owner.raw_text().contains("viewer-typed-2"));
    let peers = d.ok(&["peers", &id]);
    let roles: Vec<(&str, &str)> = peers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["client"].as_str().unwrap(), p["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("own-1", "owner"), ("view-1", "viewer")]);
    // The viewer still sees everything.
    viewer.wait_text("marker-4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_change_live_both_ways() {
    let d = TestDaemon::start();
    let v = d.other_key("viewer");
    let s = d.session(&["--viewer-key", &pubkey(&v)], &["/bin/sh"]);
    let (id, port) = (id_of(&s), port_of(&s));
    let owner = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    let c = SshClient::connect(port, &v, "carol", 80, 24).await;
    let p = d.ok(&["role", &id, "carol-1", "collaborator"]);
    assert_eq!(p["role"], "collaborator");
    c.send("echo promoted-$((3+3))\r").await;
    owner.wait_text("promoted-6").await;
    d.ok(&["role", &id, "carol-1", "viewer"]);
    c.send("echo demoted-$((4+4))\r").await;
    owner.send("echo check-$((5+5))\r").await;
    owner.wait_text("check-10").await;
    assert!(!owner.raw_text().contains("demoted-8"));
    d.err(&["role", &id, "own-1", "viewer"], "invalid_argument");
    d.err(&["role", &id, "nobody-9", "viewer"], "not_found");
    // From the owner's menu: pick carol (second in the list) and switch her back.
    owner.send("!>").await;
    owner.wait_screen("0 Change a role").await;
    owner.send("0").await;
    owner.wait_screen("Switch which client").await;
    owner.send("j\r").await;
    owner.wait_screen("carol-1 is now collaborator").await;
}

#[test]
fn a_locked_session_refuses_new_joins_with_a_reason() {
    let d = TestDaemon::start();
    let friend = d.other_key("friend");
    let s = d.session(&["--allow-key", &pubkey(&friend)], &["/bin/sh"]);
    let (id, port) = (id_of(&s), port_of(&s));
    let locked = d.ok(&["lock", &id]);
    assert_eq!(locked["locked"], true);
    let out = external("ssh")
        .args(ssh_args(&friend, port))
        .args(["-tt", "127.0.0.1"])
        .stdin(Stdio::null())
        .output_bounded();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("locked"), "{text}");
    // Owners still get in; after unlock, everyone does.
    let tmux = Tmux::new(d.dir.path());
    let line = |k: &Key| format!("ssh {} -tt 127.0.0.1", ssh_args(k, port).join(" "));
    tmux.run("owner", 80, 24, &line(&d.owner));
    tmux.type_text("owner", "echo owner-in-$((1+1))\r");
    tmux.wait_for("owner", "owner-in-2");
    d.ok(&["unlock", &id]);
    tmux.run("friend", 80, 24, &line(&friend));
    tmux.type_text("friend", "echo friend-in-$((2+1))\r");
    tmux.wait_for("owner", "friend-in-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_only_makes_collaborators_viewers() {
    let d = TestDaemon::start();
    let friend = d.other_key("friend");
    let s = d.session(
        &["--viewers-only", "--allow-key", &pubkey(&friend)],
        &["/bin/sh"],
    );
    assert_eq!(s["viewers_only"], true);
    let port = port_of(&s);
    let owner = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    let f = SshClient::connect(port, &friend, "friend", 80, 24).await;
    typing_is_dropped(&owner, &f, "friend").await;
}

/// `viewer` types a line and then opens its `!>` menu: once the menu shows, its input task
/// has dealt with the line (dropped it, or queued it to the PTY). The owner then types a
/// marker, which the shell can only echo after anything queued before it. So when the
/// marker shows, a line that got through would have shown too.
async fn typing_is_dropped(owner: &SshClient, viewer: &SshClient, who: &str) {
    viewer.send(&format!("echo {who}-typed-$((1+1))\r")).await;
    // Told once why nothing happens.
    viewer
        .wait_screen("you are a viewer: what you type is not sent")
        .await;
    viewer.send("!>").await;
    viewer.wait_screen("1 Resume").await;
    viewer.send("q").await;
    owner.send("echo owner-typed-$((2+2))\r").await;
    owner.wait_text("owner-typed-4").await;
    viewer.wait_text("owner-typed-4").await;
    let forbidden = format!("{who}-typed-2");
    assert!(
        !owner.raw_text().contains(&forbidden) && !viewer.raw_text().contains(&forbidden),
        "a viewer's typing reached the program"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sessions_admit_any_key_as_viewer_or_collaborator_with_a_warning() {
    let d = TestDaemon::start();
    let stranger = d.other_key("stranger");
    let out = d.cli(&["server", "--bind", "127.0.0.1", "--open", "--", "/bin/sh"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"));
    let list = d.ok(&["ps"]);
    assert_eq!(list[0]["access"], "open");
    let table = String::from_utf8_lossy(&d.cli(&["ps"]).stdout).to_string();
    assert!(table.contains("up,OPEN"), "{table}");
    let port = port_of(&list[0]);
    let owner = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    let s = SshClient::connect(port, &stranger, "anyone", 80, 24).await;
    typing_is_dropped(&owner, &s, "stranger").await;

    let c = d.session(&["--open=collaborator"], &["/bin/sh"]);
    assert_eq!(c["access"], "open-collaborator");
    let s = SshClient::connect(port_of(&c), &stranger, "anyone", 80, 24).await;
    s.send("echo typed-$((7+7))\r").await;
    s.wait_text("typed-14").await;
}

/// OpenSSH's forwarding and subsystem features are refused and the session goes on.
#[test]
fn forwarding_agent_x11_and_sftp_are_refused() {
    let d = TestDaemon::start();
    let (id, port) = {
        let s = d.session(&[], &["/bin/sh"]);
        (id_of(&s), port_of(&s))
    };
    let base = ssh_args(&d.owner, port);
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = external("ssh");
        c.args(&base).args(extra).stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output_bounded()
    };
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();

    // -W: stdio forwarding is a direct-tcpip channel.
    let o = run(&["-W", &format!("127.0.0.1:{port}"), "127.0.0.1"], &[]);
    assert_eq!(o.status.code(), Some(255));
    assert!(err(&o).contains("forwarding failed"), "{}", err(&o));
    // -R: a tcpip-forward global request.
    let o = run(
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "0:127.0.0.1:22",
            "127.0.0.1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(255));
    assert!(
        err(&o).contains("remote port forwarding failed"),
        "{}",
        err(&o)
    );
    // sftp: a subsystem.
    let o = external("sftp")
        .args(["-F", "/dev/null", "-i", d.owner.path.to_str().unwrap()])
        .args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-P", &port.to_string(), "127.0.0.1"])
        .stdin(Stdio::null())
        .output_bounded();
    assert!(!o.status.success());
    assert!(err(&o).contains("subsystem request failed"), "{}", err(&o));

    // -L: the client listens locally; a connection through it is refused by the server.
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lport = local.local_addr().unwrap().port();
    drop(local);
    let mut l = external("ssh")
        .args(&base)
        .args([
            "-N",
            "-L",
            &format!("{lport}:127.0.0.1:{port}"),
            "127.0.0.1",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut conn = wait_until("the -L listener", DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", lport)).ok()
    });
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = conn.read_to_end(&mut buf);
    assert!(
        buf.is_empty(),
        "forwarded data arrived: {:?}",
        String::from_utf8_lossy(&buf)
    );
    let _ = l.kill();
    let _ = l.wait();
    assert!(
        d.daemon_log()
            .contains("refused port forwarding (direct-tcpip)")
    );

    // -X and -A: OpenSSH reports the X11 refusal; it never asks for a reply to agent
    // forwarding, so the daemon's log is where that refusal shows.
    let tmux = Tmux::new(d.dir.path());
    let agent = d.dir.path().join("agent.sock");
    let mut agent_proc = external("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the agent socket", DEADLINE, || {
        agent.exists().then_some(())
    });
    // ssh's own messages go to a file: on the pane, the session's first repaint clears them.
    let ssh_err = d.dir.path().join("ssh-x11.err");
    let line = format!(
        "env DISPLAY=:0 SSH_AUTH_SOCK={} ssh {} -X -A -tt 127.0.0.1 2>{}",
        agent.display(),
        base.join(" "),
        ssh_err.display()
    );
    tmux.run("xa", 80, 24, &line);
    wait_until("ssh to report the X11 refusal", DEADLINE, || {
        std::fs::read_to_string(&ssh_err)
            .ok()
            .filter(|t| t.contains("X11 forwarding request failed"))
    });
    tmux.type_text(
        "xa",
        "echo still-$((6*7)); echo sock=${SSH_AUTH_SOCK:-none}\r",
    );
    tmux.wait_for("xa", "still-42");
    assert!(tmux.capture("xa").contains("sock=none"));
    wait_until("the agent refusal in the log", DEADLINE, || {
        d.daemon_log()
            .contains("refused agent forwarding")
            .then_some(())
    });
    let _ = agent_proc.kill();
    let _ = agent_proc.wait();
    // The session went on undisturbed.
    assert_eq!(d.ok(&["ps"])[0]["state"], "up");
    assert_eq!(d.peer_count(&id), 1);
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_wrong_keys_get_nothing_and_leave_nothing_behind() {
    let d = TestDaemon::start();
    let (_, port) = {
        let s = d.session(&[], &["/bin/sh"]);
        (id_of(&s), port_of(&s))
    };
    // An attached owner keeps working throughout.
    let owner = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    owner.send("echo ready-$((1+1))\r").await;
    owner.wait_text("ready-2").await;
    let fds_before = fd_count(d.pid());
    let rss_before = d.rss_kib();
    let stranger = d.other_key("stranger");
    let (mut admitted, mut refused_by_key, mut refused_early) = (0, 0, 0);
    let mut first_early = None;
    for i in 0..200 {
        match try_connect(port, &stranger, "eve").await {
            Ok(_) => admitted += 1,
            Err(e) if e == "auth refused" => refused_by_key += 1,
            Err(_) => {
                refused_early += 1;
                first_early.get_or_insert(i);
            }
        }
    }
    assert_eq!(admitted, 0);
    // The back-off is observable: after a few failures, connections are closed before
    // the SSH handshake.
    assert!(
        refused_by_key >= 1 && refused_early > 150,
        "{refused_by_key} / {refused_early}"
    );
    assert!(
        first_early.unwrap() <= 10,
        "back-off started late: {first_early:?}"
    );
    owner.send("echo alive-$((2+3))\r").await;
    owner.wait_text("alive-5").await;
    let fds = wait_until("fds to return to the baseline", DEADLINE, || {
        let n = fd_count(d.pid());
        (n <= fds_before + 2).then_some(n)
    });
    let rss_after = d.rss_kib();
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB ({fds} fds)"
    );
    // The source is still backing off, for every key: the back-off is per address.
    assert!(try_connect(port, &d.owner, "own").await.is_err());
}

#[test]
fn group_writable_key_files_are_refused_with_a_clear_message() {
    let d = TestDaemon::start();
    let friend = d.other_key("friend");
    std::fs::set_permissions(friend.pub_path(), std::fs::Permissions::from_mode(0o664)).unwrap();
    let msg = d.err(
        &["server", "--allow-key", &pubkey(&friend), "--", "/bin/sh"],
        "invalid_argument",
    );
    assert!(
        msg.contains("writable by group or others") && msg.contains("chmod go-w"),
        "{msg}"
    );
    assert!(d.ok(&["ps"]).as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_owner_key_file_admits_nobody() {
    let d = TestDaemon::start();
    let s = d.session(&[], &["/bin/sh"]);
    std::fs::set_permissions(d.owner.pub_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        try_connect(port_of(&s), &d.owner, "own")
            .await
            .err()
            .as_deref(),
        Some("auth refused")
    );
    assert!(d.daemon_log().contains("writable by group or others"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_viewer_sees_a_clipped_view_and_a_larger_one_the_top_left() {
    let d = TestDaemon::start();
    let v = d.other_key("viewer");
    let s = d.session(&["--viewer-key", &pubkey(&v)], &["/bin/sh"]);
    let port = port_of(&s);
    let owner = SshClient::connect(port, &d.owner, "own", 100, 30).await;
    let small = SshClient::connect(port, &v, "small", 40, 10).await;
    let large = SshClient::connect(port, &v, "large", 150, 50).await;
    owner
        .send(
            "clear; printf '%0100d\\n' 0 | tr 0 A; printf '\\033[20;1Hlow-%d\\033[2;1H' $((1+1))\r",
        )
        .await;
    owner.wait_screen("low-2").await;
    large.wait_screen("low-2").await;
    small
        .wait_for("a clipped frame", |c| {
            c.screen().starts_with(&"A".repeat(40))
        })
        .await;
    let screen = small.screen();
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(lines[0], "A".repeat(40), "{screen}");
    assert!(
        !lines.get(1).unwrap_or(&"").contains('A'),
        "the long row wrapped:\n{screen}"
    );
    assert!(
        !screen.contains("low-2"),
        "rows below the viewer's height leaked:\n{screen}"
    );
    // The large viewer: the PTY's 100 columns, top-left, no wrap.
    let big = large.screen();
    assert!(big.lines().next().unwrap().starts_with(&"A".repeat(100)));
    assert!(!big.lines().nth(1).unwrap_or("").contains('A'));
}

#[test]
fn a_connection_that_never_authenticates_is_cut_after_the_login_grace() {
    let d = TestDaemon::start(); // --login-grace 2
    let s = d.session(&[], &["/bin/sh"]);
    let start = std::time::Instant::now();
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port_of(&s))).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = Vec::new();
    // The server's banner, then EOF once the grace passes; never more.
    let _ = silent.read_to_end(&mut buf);
    assert!(String::from_utf8_lossy(&buf).starts_with("SSH-2.0-"));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "not cut: {:?}",
        start.elapsed()
    );
    // One that says hello (its version line) and then nothing is cut at the same grace,
    // not the grace again after the hello check (4 s here).
    let start = std::time::Instant::now();
    let mut hello = std::net::TcpStream::connect(("127.0.0.1", port_of(&s))).unwrap();
    hello
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::io::Write::write_all(&mut hello, b"SSH-2.0-test_1.0\r\n").unwrap();
    let _ = hello.read_to_end(&mut Vec::new());
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "a client that said hello was cut after {took:?} (login grace 2 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_from_the_config_file_are_enforced_with_a_message() {
    let env = Env::new();
    env.write_config("[limits]\nmax_clients = 1\nmax_sessions = 1\n");
    let d = env.start_daemon();
    let s = d.session(&[], &["/bin/sh"]);
    let msg = d.err(&["server", "--", "/bin/sh"], "limit");
    assert!(msg.contains("1 sessions"), "{msg}");
    let _a = SshClient::connect(port_of(&s), &d.owner, "a", 80, 24).await;
    let out = external("ssh")
        .args(ssh_args(&d.owner, port_of(&s)))
        .args(["-tt", "127.0.0.1"])
        .stdin(Stdio::null())
        .output_bounded();
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("full"), "{text}");
}

/// A session started with `--open` is never reopened to anyone silently: `restart` refuses
/// until told `--open` (kept open, with the warning) or `--keys-only`.
#[test]
fn restart_of_an_open_session_must_be_told_again() {
    let d = TestDaemon::start();
    let s = d.session(&["--name", "demo", "--open"], &["sh", "-c", "exit 0"]);
    d.ok(&["wait", &id_of(&s), "--exit", "--timeout", "20s"]);
    let msg = d.err(&["restart", "demo"], "invalid_state");
    assert!(
        msg.contains("--open") && msg.contains("--keys-only"),
        "{msg}"
    );
    let out = d.cli(&["restart", "demo", "--open"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"));
    assert_eq!(d.ok(&["ps"])[0]["access"], "open");
    d.ok(&["wait", "demo", "--exit", "--timeout", "20s"]);
    let again = d.ok(&["restart", "demo", "--keys-only"]);
    assert_eq!(again["access"], "keys", "{again}");
}
