//! Data plane with real clients: the in-process russh client and OpenSSH `ssh` (driven
//! through tmux where it needs a terminal).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_both_see_what_either_types() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "alice", 80, 24).await;
    let b = SshClient::connect(port, &d.owner, "bob", 80, 24).await;
    a.send("echo from-$((40+2))-alice\r").await;
    b.wait_text("from-42-alice").await;
    b.send("echo from-$((50+5))-bob\r").await;
    a.wait_text("from-55-bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_size_is_the_per_axis_minimum_of_writers_and_is_recomputed_on_leave() {
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 100, 30).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 40).await;
    a.send("stty size\r").await;
    a.wait_text("30 80").await;
    let peers = d.ok(&["peers", &id]);
    let names: Vec<&str> = peers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["client"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-1", "b-1"]);
    drop(a);
    wait_until("a to leave", DEADLINE, || {
        (d.peer_count(&id) == 1).then_some(())
    });
    b.send("stty size\r").await;
    b.wait_text("40 80").await;
    // Window changes count too; a 0x0 axis does not.
    let mut b = b;
    b.resize(120, 0).await;
    b.send("stty size\r").await;
    b.wait_text("40 120").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_sees_the_current_screen_at_once() {
    let d = TestDaemon::start();
    // A full-screen program drawn with cursor addressing, then idle.
    let s = d.session(
        &[],
        &[
            "sh",
            "-c",
            "printf 'scrolled-away\\n'; printf '\\033[2J\\033[5;10Hmarker\\033[1;1Htop-left\\033[31m red'; sleep 1000",
        ],
    );
    let port = port_of(&s);
    let late = SshClient::connect(port, &d.owner, "late", 80, 24).await;
    late.wait_screen("marker").await;
    let mut p = vt100::Parser::new(24, 80, 0);
    p.process(&late.raw());
    let screen = p.screen();
    assert_eq!(screen.contents_between(4, 9, 4, 15), "marker");
    assert_eq!(screen.contents_between(0, 0, 0, 8), "top-left");
    assert_eq!(screen.cell(0, 9).unwrap().fgcolor(), vt100::Color::Idx(1));
    assert!(!screen.contents().contains("scrolled-away"));
    // Painted from the screen model, not by replaying the log: what the program printed
    // before clearing the screen never reaches the joiner at all.
    assert!(
        !late.raw_text().contains("scrolled-away"),
        "the late joiner was sent the old output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_reaches_every_client() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 24).await;
    a.send("echo last-words; exit 7\r").await;
    assert_eq!(a.wait_exit().await, 7);
    assert_eq!(b.wait_exit().await, 7);
    assert!(b.raw_text().contains("last-words"));
}

#[test]
fn openssh_exits_with_the_child_code_and_eof_does_not_close_the_channel() {
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    // `ssh -tt host <<< cmds` sends EOF at once: output must still arrive.
    let mut child = Command::new("ssh")
        .args(ssh_args(&d.owner, port))
        .args(["-tt", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"echo via-$((3*3))-openssh; exit 9\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("via-9-openssh"));
    assert_eq!(out.status.code(), Some(9));
    let v = d.ok(&["ps"]);
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["exit_code"], 9);
}

#[test]
fn a_client_without_a_pty_is_told_and_exits_non_zero() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let out = Command::new("ssh")
        .args(ssh_args(&d.owner, port))
        .args(["-T", "127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pty is required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_are_refused_and_allowed_keys_admitted() {
    let d = TestDaemon::start();
    let stranger = d.other_key("stranger");
    let friend = d.other_key("friend");
    let s = d.session(
        &["--allow-key", friend.pub_path().to_str().unwrap()],
        &["/bin/sh"],
    );
    let port = port_of(&s);
    let refused = try_connect(port, &stranger, "eve").await;
    assert!(refused.is_err(), "a stranger's key was admitted");
    let f = SshClient::connect(port, &friend, "friend", 80, 24).await;
    f.send("echo friend-$((1+1))\r").await;
    f.wait_text("friend-2").await;
    // OpenSSH with the wrong key fails too.
    let out = Command::new("ssh")
        .args(ssh_args(&stranger, port))
        .args(["-tt", "127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    // Bad --allow-key input is a clear error and creates nothing.
    d.err(
        &["server", "--allow-key", "ssh-ed25519 garbage", "--", "true"],
        "invalid_argument",
    );
    assert_eq!(d.ok(&["ps"]).as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_ends_one_client_only() {
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 24).await;
    a.wait_for("the first paint", |c| !c.raw().is_empty()).await;
    let kicked = d.ok(&["kick", &id, "a-1"]);
    assert_eq!(kicked["client"], "a-1");
    a.wait_closed().await;
    assert!(a.raw_text().contains("disconnected"));
    b.send("echo still-$((2*4))\r").await;
    b.wait_text("still-8").await;
    wait_until("a to be gone from peers", DEADLINE, || {
        (d.peer_count(&id) == 1).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_keeps_attached_clients_refuses_new_ones_and_up_reopens() {
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    d.ok(&["down", &id]);
    assert!(try_connect(port, &d.owner, "b").await.is_err());
    a.send("echo alive-$((5+5))\r").await;
    a.wait_text("alive-10").await;
    d.ok(&["up", &id]);
    let b = SshClient::connect(port, &d.owner, "b", 80, 24).await;
    b.send("echo back-$((6+6))\r").await;
    a.wait_text("back-12").await;
    d.ok(&["down", &id, "--kick"]);
    a.wait_closed().await;
    b.wait_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_by_zero_pty_request_does_not_shrink_the_terminal() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 90, 33).await;
    let _zero = SshClient::connect(port, &d.owner, "script", 0, 0).await;
    a.send("stty size\r").await;
    a.wait_text("33 90").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_window_sizes_are_clamped() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let mut a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    a.write
        .window_change(u32::MAX, u32::MAX, 0, 0)
        .await
        .unwrap();
    a.size = (1000, 500);
    a.send("stty size\r").await;
    a.wait_text("500 1000").await;
}

#[test]
fn a_terminal_query_is_answered_once_with_two_terminals_attached() {
    let d = TestDaemon::start();
    let script = "printf 'ready\\n'; read -r go; printf '\\033[6n'; \
                  IFS= read -r -s -d R first; \
                  if IFS= read -r -s -t 2 -d R second; then echo replies=2; else echo replies=1; fi; \
                  sleep 1000";
    let s = d.session(&[], &["bash", "-c", script]);
    let port = port_of(&s);
    let tmux = Tmux::new(d.dir.path());
    let ssh = |name: &str| {
        let args: Vec<String> = ssh_args(&d.owner, port);
        let line = format!("ssh {} -tt 127.0.0.1", args.join(" "));
        tmux.run(name, 80, 24, &line);
        tmux.wait_for(name, "ready");
    };
    ssh("one");
    ssh("two");
    tmux.type_text("one", "go\r");
    let screen = tmux.wait_for("two", "replies=");
    assert!(screen.contains("replies=1"), "{screen}");
}

#[test]
fn openssh_clients_in_tmux_share_one_screen() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let tmux = Tmux::new(d.dir.path());
    // The pane's shell reports ssh's exit status (a signal would show as 128+N).
    let line = format!(
        "sh -c 'ssh {} -tt 127.0.0.1; echo ssh-exit=$?; sleep 100'",
        ssh_args(&d.owner, port).join(" ")
    );
    tmux.run("a", 80, 24, &line);
    tmux.run("b", 80, 24, &line);
    tmux.type_text("a", "echo tmux-$((7*6))\r");
    tmux.wait_for("b", "tmux-42");
    tmux.type_text("b", "exit 4\r");
    tmux.wait_for("a", "ssh-exit=4");
    tmux.wait_for("b", "ssh-exit=4");
}

/// One client never reads while 50 MB flow: the other gets everything up to the end marker,
/// typing still echoes, the daemon's memory stays bounded, and when the stalled client
/// finally drains it shows the current screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_never_slows_the_others() {
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let mut stalled = stalled_ssh(&d, &id, port);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let rss_before = d.rss_kib();
    // 50 MB of output, then an end marker computed by the shell.
    a.send("head -c 37500000 /dev/zero | base64 -w 100; echo end-$((20+3))-marker\r")
        .await;
    let end = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut peak = rss_before;
    loop {
        peak = peak.max(d.rss_kib());
        if a.raw_text().contains("end-23-marker") {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "flood did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.send("echo typed-$((9*9))\r").await;
    a.wait_text("typed-81").await;
    // Memory: the log cap plus buffers, not 50 MB per client.
    assert!(
        peak < rss_before + 64 * 1024,
        "daemon grew from {rss_before} KiB to {peak} KiB"
    );
    // The stalled client drains: it ends up showing the current screen.
    let rx = drain(stalled.stdout.take().unwrap());
    let mut parser = vt100::Parser::new(24, 80, 0);
    let mut total = 0usize;
    wait_until(
        "the stalled client to show the current screen",
        Duration::from_secs(120),
        || {
            while let Ok(chunk) = rx.try_recv() {
                total += chunk.len();
                parser.process(&chunk);
            }
            parser
                .screen()
                .contents()
                .contains("typed-81")
                .then_some(())
        },
    );
    assert!(
        total < 50_000_000,
        "the stalled client was sent everything ({total} bytes)"
    );
    let _ = stalled.kill();
    let _ = stalled.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_during_a_full_screen_program_sees_the_shell_again_when_it_quits() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    a.send("echo before-$((2+2)); printf '\\033[?1049h\\033[Hin-alt-screen'; read x; printf '\\033[?1049l'; echo after-$((3+3))\r")
        .await;
    a.wait_screen("in-alt-screen").await;
    let late = SshClient::connect(port, &d.owner, "late", 80, 24).await;
    late.wait_screen("in-alt-screen").await;
    a.send("\r").await;
    a.wait_screen("after-6").await;
    late.wait_screen("after-6").await;
    assert!(late.screen().contains("before-4"), "{}", late.screen());
    assert_eq!(late.screen(), a.screen());
}

/// A client that vanishes mid-write (killed while output floods to it) costs the others
/// nothing and leaves the session's client table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_write_disturbs_nobody() {
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let mut doomed = Command::new("ssh")
        .args(ssh_args(&d.owner, port))
        .args(["-tt", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = doomed.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(n).is_err() {
                break;
            }
        }
    });
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    wait_until("both attached", DEADLINE, || {
        (d.peer_count(&id) == 2).then_some(())
    });
    a.send("head -c 7500000 /dev/zero | base64 -w 100; echo done-$((6+6))\r")
        .await;
    // Kill the other client once output is flowing to it.
    let mut seen = 0;
    wait_until("output reaching the doomed client", DEADLINE, || {
        while let Ok(n) = rx.try_recv() {
            seen += n;
        }
        (seen > 100_000).then_some(())
    });
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    a.wait_text("done-12").await;
    a.send("echo after-$((1+2))\r").await;
    a.wait_text("after-3").await;
    wait_until("the vanished client to leave", DEADLINE, || {
        (d.peer_count(&id) == 1).then_some(())
    });
}

/// A colour query (OSC 11) goes to one terminal only - the typist's - so the program gets
/// one answer, not one per attached terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_colour_query_is_asked_of_the_typist_only() {
    let d = TestDaemon::start();
    let script = "echo ready; read -r go; printf '\\033]11;?\\007'; \
                  IFS= read -rs -d $(printf '\\a') r; echo \"got ${r#*;}\"; sleep 1000";
    let s = d.session(&[], &["bash", "-c", script]);
    let port = port_of(&s);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 24).await;
    a.wait_text("ready").await;
    b.wait_text("ready").await;
    b.send("go\r").await;
    b.wait_for("the colour query", |c| {
        c.raw_text().contains("\x1b]11;?\x07")
    })
    .await;
    // B's terminal answers, as a real one would.
    b.send("\x1b]11;rgb:1111/2222/3333\x07").await;
    a.wait_text("got rgb:1111/2222/3333").await;
    assert!(
        !a.raw_text().contains("\x1b]11;?"),
        "the query reached a second terminal"
    );
}
