//! Data plane with real clients: the in-process russh client and OpenSSH `ssh` (driven
//! through tmux where it needs a terminal).

mod common;

use std::io::Read;
use std::process::Stdio;
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
    let mut child = external("ssh")
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
    let out = external("ssh")
        .args(ssh_args(&d.owner, port))
        .args(["-T", "127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output_bounded();
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
    let out = external("ssh")
        .args(ssh_args(&stranger, port))
        .args(["-tt", "127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output_bounded();
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

/// Print `bytes` of base64 (100-column lines), then a marker the shell computes (so the
/// echo of the command cannot match); returns how long until `a` shows the marker.
async fn flood(a: &SshClient, bytes: usize, marker: u32) -> Duration {
    let start = tokio::time::Instant::now();
    a.send(&format!(
        "head -c {} /dev/zero | base64 -w 100; echo end-$(({marker}+0))-marker\r",
        bytes / 4 * 3
    ))
    .await;
    let needle = format!("end-{marker}-marker");
    let end = start + Duration::from_secs(240);
    while !a.raw_text().contains(&needle) {
        assert!(
            tokio::time::Instant::now() < end,
            "flood {marker} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// How long `a`'s typed line takes to come back as output.
async fn echo_time(a: &SshClient, n: u32) -> Duration {
    let start = tokio::time::Instant::now();
    a.send(&format!("echo typed-$(({n}*1))\r")).await;
    a.wait_text(&format!("typed-{n}\r")).await;
    start.elapsed()
}

/// What the name says, measured: the same flood and the same typed line for client `a`,
/// first alone, then beside a client that never reads (ssh into a pipe nobody drains).
/// During the stall `a`'s flood and echo stay within a small factor of the run without
/// one (a writer that waited for the stalled client would never finish); the stalled
/// client, 6 MB behind (less than the log retains, so only skip-ahead can spare it the
/// backlog), is sent at most its SSH window and a repaint when it drains, and shows the
/// current screen; and with the log full, another 40 MB beside a stalled client costs the
/// daemon no more than a few MiB (the log drops what everyone has read or skipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_never_slows_the_others() {
    const FLOOD: usize = 6_000_000;
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let alone = flood(&a, FLOOD, 1).await;
    let echo_alone = echo_time(&a, 11).await;

    let mut stalled = stalled_ssh(&d, &id, port);
    let beside = flood(&a, FLOOD, 2).await;
    let echo_beside = echo_time(&a, 12).await;
    eprintln!(
        "flood alone {alone:?}, beside a stalled client {beside:?}; echo {echo_alone:?} / {echo_beside:?}"
    );
    assert!(
        beside < alone * 3 + Duration::from_secs(2),
        "a stalled client slowed the flood: {alone:?} alone, {beside:?} beside it"
    );
    assert!(
        echo_beside < (echo_alone * 10).max(Duration::from_secs(1)),
        "a stalled client slowed the typist's echo: {echo_alone:?} alone, {echo_beside:?} beside it"
    );

    // The stalled client drains: it is skipped ahead, not sent its 6 MB backlog.
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
                .contains("typed-12")
                .then_some(())
        },
    );
    eprintln!("the stalled client was sent {total} bytes");
    assert!(
        total < 4_000_000,
        "the stalled client was sent its backlog ({total} bytes), not skipped ahead"
    );
    let _ = stalled.kill();
    let _ = stalled.wait();

    // Memory, with the log already full: a stalled client must not make it keep more.
    let mut stalled = stalled_ssh(&d, &id, port);
    let rss_before = d.rss_kib();
    let peak = PeakRss::watch(d.pid());
    flood(&a, 40_000_000, 3).await;
    let peak = peak.stop();
    eprintln!("daemon RSS {rss_before} KiB before, peak {peak} KiB");
    assert!(
        peak < rss_before + 16 * 1024,
        "daemon grew from {rss_before} KiB to {peak} KiB during 40 MB beside a stalled client"
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
    // The shell's next prompt may reach one client a moment before the other.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while late.screen() != a.screen() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(late.screen(), a.screen());
}

/// A client that vanishes mid-write (killed while output floods to it) costs the others
/// nothing and leaves the session's client table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_write_disturbs_nobody() {
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let mut doomed = external("ssh")
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

/// However a client leaves (the program exits, it is kicked, it detaches from its menu, the
/// daemon shuts down), its terminal is left clean even when the program had it on the
/// alternate screen with the cursor hidden and mouse reporting on: tmux, as the client's
/// terminal, says so.
#[test]
fn every_way_out_leaves_the_clients_terminal_clean() {
    let mut d = TestDaemon::start();
    let tmux = Tmux::new(d.dir.path());
    let program = "printf '\\033[?1049h\\033[?1000h\\033[?1006h\\033[?25l\\033[?2004h'; \
                   echo in-alt-screen; read x; exit 3";
    let state = |name: &str| tmux.format(name, "#{alternate_on} #{cursor_flag} #{mouse_any_flag}");
    let run = |name: &str| -> String {
        let s = d.session(&["--name", name], &["bash", "-c", program]);
        let line = format!(
            "sh -c 'ssh {} -tt 127.0.0.1; echo ssh-exit=$?; sleep 1000'",
            ssh_args(&d.owner, port_of(&s)).join(" ")
        );
        tmux.run(name, 80, 24, &line);
        tmux.wait_for(name, "in-alt-screen");
        assert_eq!(
            state(name),
            "1 0 1",
            "{name}: the program's modes reached the client"
        );
        id_of(&s)
    };
    let exits = run("exits");
    d.ok(&["send", &exits, "bye"]);
    tmux.wait_for("exits", "ssh-exit=3");
    assert_eq!(state("exits"), "0 1 0", "after the program's exit");

    let kicked = run("kicked");
    let client = d.ok(&["peers", &kicked])[0]["client"]
        .as_str()
        .unwrap()
        .to_string();
    d.ok(&["kick", &kicked, &client]);
    tmux.wait_for("kicked", "ssh-exit=");
    assert_eq!(state("kicked"), "0 1 0", "after a kick");

    run("detached");
    tmux.type_text("detached", "!>");
    tmux.wait_for("detached", "2 Detach");
    tmux.type_text("detached", "2");
    tmux.wait_for("detached", "ssh-exit=");
    assert_eq!(state("detached"), "0 1 0", "after Detach");

    run("stopped");
    d.ok(&["shutdown"]);
    tmux.wait_for("stopped", "ssh-exit=");
    assert_eq!(state("stopped"), "0 1 0", "after shutdown");
    d.child.take().map(|mut c| c.wait());
}

/// A session starts at the size of the terminal that ran `hearth server` (a program drawn
/// at 80x24 for a 120x40 viewer wraps and scrolls its first screen away), or at `--size`.
#[test]
fn sessions_start_at_the_size_of_the_terminal_that_asked() {
    let d = TestDaemon::start();
    let tmux = Tmux::new(d.dir.path());
    let out = d.dir.path().join("sized.json");
    tmux.run(
        "sized",
        120,
        40,
        &format!(
            "env HOME={} HEARTH_SOCKET={} HEARTH_NO_AUTOSTART=1 {BIN} --json server --bind \
             127.0.0.1 --name sized -- sh -c 'stty size; sleep 1000' > {}; sleep 1000",
            d.home.display(),
            d.socket.display(),
            out.display()
        ),
    );
    let s: serde_json::Value = wait_until("the session to start", DEADLINE, || {
        serde_json::from_str(&std::fs::read_to_string(&out).ok()?).ok()
    });
    assert_eq!(
        (s["cols"].as_u64(), s["rows"].as_u64()),
        (Some(120), Some(40)),
        "{s}"
    );
    wait_until("the program to see 40x120", DEADLINE, || {
        let out = d.cli(&["tail", "sized"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("40 120")
            .then_some(())
    });
    let s = d.ok(&[
        "server",
        "--bind",
        "127.0.0.1",
        "--size",
        "100x30",
        "--",
        "sleep",
        "100",
    ]);
    assert_eq!(
        (s["cols"].as_u64(), s["rows"].as_u64()),
        (Some(100), Some(30))
    );
    let msg = d.err(
        &["server", "--size", "5000x3", "--", "sleep", "100"],
        "invalid_argument",
    );
    assert!(msg.contains("columns"), "{msg}");
    let bad = d.cli(&["server", "--size", "wide", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("COLSxROWS"));
}

/// Rows scrolled off a small terminal come back when it grows, as in tmux: a program that
/// printed 60 lines at 80x24 shows lines 23-60 at 120x40, both to a late joiner whose
/// size grows the session and to a client that was attached at 80x24 and then grew (its
/// terminal never had those lines: hearth repaints every client when the PTY is resized).
/// OpenSSH clients in tmux.
#[test]
fn growing_the_terminal_brings_scrolled_off_lines_back() {
    let d = TestDaemon::start();
    let tmux = Tmux::new(d.dir.path());
    let top_row = |name: &str| {
        tmux.capture(name)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    for (name, first) in [("joiner", (120, 40)), ("grower", (80, 24))] {
        let s = d.session(
            &["--size", "80x24"],
            &["sh", "-c", "seq 1 60; echo printed; sleep 1000"],
        );
        let id = id_of(&s);
        wait_until("the program to print", DEADLINE, || {
            let out = d.cli(&["tail", &id]);
            String::from_utf8_lossy(&out.stdout)
                .contains("printed")
                .then_some(())
        });
        let line = format!(
            "ssh {} -tt 127.0.0.1",
            ssh_args(&d.owner, port_of(&s)).join(" ")
        );
        tmux.run(name, first.0, first.1, &line);
        tmux.wait_for(name, "printed");
        if name == "grower" {
            assert_eq!(top_row(name), "39", "{}", tmux.capture(name));
            tmux.resize(name, 120, 40);
        }
        wait_until(
            &format!("the {name} to show line 23 on top"),
            DEADLINE,
            || (top_row(name) == "23").then_some(()),
        );
        let shown = tmux.capture(name);
        let rows: Vec<&str> = shown.lines().map(str::trim).collect();
        assert_eq!(
            rows[..38],
            (23..=60).map(|n| n.to_string()).collect::<Vec<_>>()[..],
            "{shown}"
        );
        assert_eq!(rows[38], "printed", "{shown}");
    }
}

/// What a late joiner's terminal shows equals the first client's, cell for cell, with
/// attributes and colour encodings: bold and dim together, dim after bold, `38;5;1` kept
/// apart from `31` (a late joiner saw Codex's "Press enter to continue" all bold+dim).
/// Both clients are OpenSSH in tmux; tmux's `capture-pane -e` is the reference.
#[test]
fn a_late_joiner_sees_the_same_attributes_as_the_first_client() {
    let d = TestDaemon::start();
    let program = "read go; \
        printf '\\033[2mdim \\033[0;1mbold \\033[0;2m dim2 \\033[1;2mboth\\033[0m\\n'; \
        printf '\\033[2mPress \\033[1menter\\033[22m\\033[2m to continue\\033[0m\\n'; \
        printf '\\033[38;5;1mA\\033[31mB\\033[48;5;9mC\\033[101mD\\033[0m\\033[1;3;4;7mE\\033[0m\\n'; \
        echo shown-$((6*7)); sleep 1000";
    let s = d.session(&[], &["bash", "-c", program]);
    let port = port_of(&s);
    let tmux = Tmux::new(d.dir.path());
    let line = format!("ssh {} -tt 127.0.0.1", ssh_args(&d.owner, port).join(" "));
    tmux.run("first", 80, 24, &line);
    wait_until("the first client to attach", DEADLINE, || {
        (d.peer_count(&id_of(&s)) == 1).then_some(())
    });
    tmux.type_text("first", "go\r");
    tmux.wait_for("first", "shown-42");
    tmux.run("late", 80, 24, &line);
    tmux.wait_for("late", "shown-42");
    let rows = |name: &str| -> Vec<String> {
        tmux.capture_ansi(name)
            .lines()
            .filter(|l| l.contains("dim") || l.contains("Press") || l.contains("A"))
            .map(String::from)
            .collect()
    };
    let (first, late) = (rows("first"), rows("late"));
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(late, first, "the late joiner's attributes differ");
}

/// `[sessions] size` is the start size when nothing else says (a script, MCP, `n` in the
/// dashboards), and a bad one is refused at load.
#[test]
fn the_configured_start_size_applies_when_nothing_else_says() {
    let env = Env::new();
    env.write_config("[sessions]\nsize = \"100x30\"\n");
    let d = env.start_daemon();
    let s = d.session(&[], &["sleep", "100"]);
    assert_eq!(
        (s["cols"].as_u64(), s["rows"].as_u64()),
        (Some(100), Some(30)),
        "{s}"
    );
    let mut m = common::mcp::Mcp::start(&d);
    let (err, v) = m.tool(
        "start_session",
        serde_json::json!({"command": ["sleep", "100"]}),
    );
    assert!(!err, "{v}");
    assert_eq!(
        (v["cols"].as_u64(), v["rows"].as_u64()),
        (Some(100), Some(30)),
        "{v}"
    );
    let bad = Env::new();
    bad.write_config("[sessions]\nsize = \"big\"\n");
    let mut child = bad.spawn_daemon();
    assert!(!child.wait().unwrap().success());
    assert!(
        bad.daemon_log().contains("sessions.size"),
        "{}",
        bad.daemon_log()
    );
}
