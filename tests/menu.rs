//! The `!>` pause menu with two real clients: it is per-client, holds that client's output
//! back, never disturbs the other, and swallows only the trigger.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_menu_is_per_client_and_resume_shows_what_happened_meanwhile() {
    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 24).await;
    // No prompt: nothing may follow the marker that B's count below would race.
    b.send("PS1=''; echo ready-$((1+1))\r").await;
    a.wait_text("ready-2").await;
    b.wait_text("ready-2\r\n").await;
    let b_before = b.raw().len();

    a.send("!").await;
    a.send(">").await;
    a.wait_screen("1 Resume").await;
    assert!(a.screen().contains("Read-only: off"));
    // B saw nothing of it.
    assert_eq!(
        b.raw().len(),
        b_before,
        "B received bytes when A opened the menu"
    );
    // B keeps typing into the shell; A's menu is unaffected and A's output is held back.
    b.send("echo while-$((3*3))-away\r").await;
    b.wait_text("while-9-away").await;
    let peers = d.ok(&["peers", &id]);
    assert_eq!(peers.as_array().unwrap().len(), 2);
    assert!(
        !a.raw_text().contains("while-9-away"),
        "A got live output in the menu"
    );
    assert!(a.screen().contains("1 Resume"));

    // Resume: A is repainted with the current screen, including what happened.
    a.send("\x1b").await;
    a.wait_screen("while-9-away").await;
    assert!(!a.screen().contains("1 Resume"));
    a.send("echo back-$((4*4))\r").await;
    b.wait_text("back-16").await;
}

/// Keys typed right after the one that leaves the menu, in the same packet (a fast typist on
/// a slow link, a paste), go to the program.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_after_resume_in_the_same_packet_reach_the_program() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    a.send("!>").await;
    a.wait_screen("1 Resume").await;
    a.send("qecho after-$((5*5))\r").await;
    a.wait_screen("after-25").await;
    // Esc, and the trigger again in the rest: the menu opens again.
    a.send("\x1b!>").await;
    a.wait_screen("1 Resume").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_ends_only_that_client_with_status_zero() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 24).await;
    a.send("!>").await;
    a.wait_screen("2 Detach").await;
    a.send("2").await;
    assert_eq!(a.wait_exit().await, 0);
    assert!(a.raw_text().contains("detached"));
    b.send("echo alive-$((2+5))\r").await;
    b.wait_text("alive-7").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bang_not_followed_by_the_key_reaches_the_shell_in_order() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    a.send("echo $((2+3))!").await;
    a.send("x\r").await;
    a.wait_text("\n5!x").await;
    // A lone `!` is released once the window passes.
    a.send("echo $((3+4))!").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.send("\r").await;
    a.wait_text("\n7!").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bracketed_paste_with_the_trigger_runs_literally() {
    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let s = d.session(
        &["--cwd", dir.path().to_str().unwrap()],
        &["bash", "--norc", "--noprofile"],
    );
    let port = port_of(&s);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    a.send("set +H; bind 'set enable-bracketed-paste on'; echo set-$((1+1))\r")
        .await;
    a.wait_text("set-2").await;
    a.send("\x1b[200~echo a!>b\x1b[201~\r").await;
    let file = dir.path().join("b");
    wait_until("the pasted command to write b", DEADLINE, || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "a!\n");
    assert!(!a.screen().contains("1 Resume"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_others_as_a_banner_and_never_the_pty() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 24).await;
    a.send("!>").await;
    a.wait_screen("5 Send message").await;
    a.send("5").await;
    a.wait_screen("Message to everyone else").await;
    a.send("hello-team").await;
    a.send("\r").await;
    b.wait_screen("[a-1] hello-team").await;
    a.wait_screen("message sent").await;
    // A joiner's screen comes from the screen model, i.e. from what the PTY printed.
    let c = SshClient::connect(port, &d.owner, "c", 80, 24).await;
    c.send("echo probe-$((8+8))\r").await;
    c.wait_text("probe-16").await;
    assert!(
        !c.screen().contains("hello-team"),
        "the message reached the PTY"
    );
    assert!(
        !a.screen().contains("[a-1]"),
        "the sender got its own banner"
    );
    // The banner goes away by itself (like tmux's display-message), and the row it covered
    // shows the screen again.
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while b.screen() != c.screen() {
        assert!(
            tokio::time::Instant::now() < end,
            "the banner never went away:\n{}",
            b.screen()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Who sent what is in the audit trail, and in the events.
    let ps = d.ok(&["ps"]);
    let audit = ps[0]["recording"]
        .as_str()
        .unwrap()
        .replace(".cast", ".audit.jsonl");
    wait_until("the message in the audit trail", DEADLINE, || {
        std::fs::read_to_string(&audit)
            .ok()
            .filter(|t| t.contains("\"event\":\"message\"") && t.contains("hello-team"))
    });
    let events = String::from_utf8_lossy(&d.cli(&["--json", "events"]).stdout).to_string();
    assert!(
        events
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| e["kind"] == "message" && e["by"] == "a-1"),
        "{events}"
    );
    // At most 10 a minute per client: the 11th is not sent, and says so.
    for i in 2..=11 {
        a.send("!>").await;
        a.wait_screen("5 Send message").await;
        a.send("5").await;
        a.wait_screen("Message to everyone else").await;
        a.send(&format!("note-{i}\r")).await;
        if i <= 10 {
            b.wait_screen(&format!("[a-1] note-{i}")).await;
            a.wait_screen("message sent").await;
            a.send("q").await;
        }
    }
    a.wait_screen("not sent: at most 10 messages a minute")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_in_the_menu_does_not_constrain_the_size_and_relayouts_on_resize() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let mut a = SshClient::connect(port, &d.owner, "a", 60, 20).await;
    let b = SshClient::connect(port, &d.owner, "b", 100, 40).await;
    b.send("stty size\r").await;
    b.wait_text("20 60").await;
    a.send("!>").await;
    a.wait_screen("1 Resume").await;
    b.send("stty size\r").await;
    b.wait_text("40 100").await;
    let frames = a.raw_text().matches("Resume").count();
    a.resize(90, 30).await;
    a.wait_for("a new menu frame at the new size", move |c| {
        c.raw_text().matches("Resume").count() > frames
    })
    .await;
    assert!(a.screen().contains("1 Resume"));
    a.send("q").await;
    a.wait_for("the menu to close", |c| !c.screen().contains("1 Resume"))
        .await;
    b.send("stty size\r").await;
    b.wait_text("30 90").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_drops_that_clients_input_until_toggled_back() {
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 24).await;
    a.send("!>").await;
    a.wait_screen("4 Read-only: off").await;
    a.send("4").await;
    a.wait_screen("4 Read-only: on").await;
    a.send("\x1b").await;
    a.wait_for("the menu to close", |c| !c.screen().contains("1 Resume"))
        .await;
    a.send("echo ignored-$((6*7))\r").await;
    b.send("echo marker-$((1+2))\r").await;
    b.wait_text("marker-3").await;
    assert!(
        !b.raw_text().contains("ignored"),
        "read-only input reached the PTY"
    );
    a.send("!>").await;
    a.wait_screen("4 Read-only: on").await;
    a.send("4").await;
    a.wait_screen("4 Read-only: off").await;
    a.send("q").await;
    a.send("echo typed-$((5+5))\r").await;
    b.wait_text("typed-10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_is_configurable_and_the_menu_can_be_turned_off() {
    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_str().unwrap();
    let off = d.session(&["--no-menu", "--cwd", cwd], &["/bin/sh"]);
    let a = SshClient::connect(port_of(&off), &d.owner, "a", 80, 24).await;
    a.send("echo $((1+1))!>x; echo wrote-$((6*7))\r").await;
    a.wait_text("wrote-42").await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x")).unwrap(),
        "2!\n"
    );

    let custom = d.session(&["--menu-key", "~~"], &["/bin/sh"]);
    let c = SshClient::connect(port_of(&custom), &d.owner, "c", 80, 24).await;
    c.send("~~").await;
    c.wait_screen("1 Resume").await;
    d.err(
        &["server", "--menu-key", "", "--", "true"],
        "invalid_argument",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_sets_the_default_trigger() {
    let env = Env::new();
    env.write_config("[menu]\nkey = \"@@\"\n");
    let d = env.start_daemon();
    let (_, port) = d.shell(&[]);
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    a.send("@@").await;
    a.wait_screen("1 Resume").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_menu_opens_while_the_program_is_not_reading_its_input() {
    let d = TestDaemon::start();
    // Raw mode and never read: the tty's input buffer fills and PTY writes block.
    let s = d.session(&[], &["sh", "-c", "stty raw -echo; echo stuck; sleep 1000"]);
    let a = SshClient::connect(port_of(&s), &d.owner, "a", 80, 24).await;
    a.wait_text("stuck").await;
    // More keystroke messages than the session's input queue holds.
    for _ in 0..400 {
        a.send(&"x".repeat(1000)).await;
    }
    a.send("!>").await;
    a.wait_screen("1 Resume").await;
}

/// A client that stops reading, then types fast in its menu, is not wedged once it reads
/// again. (Before: its writer waited for the SSH window, the menu's frames filled the
/// writer's queue, the input task waited on that, its keys filled the input queue, and
/// russh's loop, waiting in `data` on that queue, never read the window adjust that would
/// have freed the writer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_and_types_in_its_menu_is_not_wedged() {
    use std::io::Write;

    let d = TestDaemon::start();
    let (id, port) = d.shell(&[]);
    let mut stalled = stalled_ssh(&d, &id, port);
    // More output than its SSH window: its writer now waits for a window adjust.
    let a = SshClient::connect(port, &d.owner, "a", 80, 24).await;
    a.send("head -c 7500000 /dev/zero | base64 -w 100; echo end-$((20+3))-marker\r")
        .await;
    a.wait_text("end-23-marker").await;
    // The menu, then keys as separate packets, each asking for a redraw.
    let mut keys = stalled.stdin.take().unwrap();
    keys.write_all(b"!>").unwrap();
    for _ in 0..400 {
        keys.write_all(b"j").unwrap();
        keys.flush().unwrap();
        // Paced so that ssh sends each key in a packet of its own.
        std::thread::sleep(Duration::from_millis(2));
    }
    // It reads again: the menu shows; it leaves the menu and types.
    let rx = drain(stalled.stdout.take().unwrap());
    let mut parser = vt100::Parser::new(24, 80, 0);
    let mut shows = |what: &str, present: bool| {
        wait_until(what, Duration::from_secs(60), || {
            while let Ok(chunk) = rx.try_recv() {
                parser.process(&chunk);
            }
            (parser.screen().contents().contains(what) == present).then_some(())
        })
    };
    shows("Resume", true);
    keys.write_all(b"q").unwrap();
    shows("Resume", false);
    keys.write_all(b"echo unwedged-$((6*7))\r").unwrap();
    shows("unwedged-42", true);
    let _ = stalled.kill();
    let _ = stalled.wait();
}
