//! The lobby (`[lobby] port`): the dashboard over SSH, owner keys only, and joining a
//! session on the same connection. OpenSSH under tmux for the interactive path; the
//! in-process russh client for admission and the edges.

mod common;

use common::*;

/// A daemon with the lobby open on a free loopback port; (daemon, lobby port).
fn lobby_daemon() -> (TestDaemon, u16) {
    lobby_daemon_with("")
}

/// The same, with `extra` in its config file.
fn lobby_daemon_with(extra: &str) -> (TestDaemon, u16) {
    let env = Env::new();
    env.write_config(&format!("[lobby]\nport = 0\nbind = \"127.0.0.1\"\n{extra}"));
    let d = env.start_daemon();
    let v = d.ok(&["version"]);
    let addr: std::net::SocketAddr = v["daemon"]["lobby"]
        .as_str()
        .unwrap_or_else(|| panic!("no lobby in {v}"))
        .parse()
        .unwrap();
    (d, addr.port())
}

#[test]
fn openssh_lists_filters_joins_types_and_comes_back_on_one_connection() {
    let (d, port) = lobby_daemon();
    lists_filters_joins_types_and_comes_back(&d, port);
}

/// The same when each session runs in a process of its own: the lobby joins it over SSH
/// on the client's behalf, and the client never notices.
#[test]
fn the_lobby_joins_sessions_in_processes_of_their_own_the_same_way() {
    let (d, port) = lobby_daemon_with("[sessions]\nprocesses = \"own\"\n");
    lists_filters_joins_types_and_comes_back(&d, port);
}

fn lists_filters_joins_types_and_comes_back(d: &TestDaemon, port: u16) {
    d.session(&["--name", "api"], &["/bin/sh"]);
    d.session(
        &["--name", "web"],
        &["sh", "-c", "echo web-screen; sleep 1000"],
    );
    let tmux = Tmux::new(d.dir.path());
    let status = d.dir.path().join("lobby.status");
    let line = format!(
        "ssh {} -t 127.0.0.1; echo $? > {}; sleep 1000",
        ssh_args(&d.owner, port).join(" "),
        status.display()
    );
    tmux.run("lobby", 100, 30, &line);
    tmux.wait_for("lobby", "hearth lobby");
    tmux.wait_for("lobby", "api");
    tmux.wait_for("lobby", "web");
    // The filter hides the other session.
    tmux.type_text("lobby", "/ap");
    let screen = wait_until("the filter", DEADLINE, || {
        let s = tmux.capture("lobby");
        (!s.contains("web")).then_some(s)
    });
    assert!(screen.contains("api"), "{screen}");
    // Enter leaves the filter; Enter again joins api on this same connection.
    tmux.send_keys("lobby", &["Enter"]);
    tmux.send_keys("lobby", &["Enter"]);
    wait_until("the lobby client to join api", DEADLINE, || {
        (d.peer_count("api") == 1).then_some(())
    });
    tmux.type_text("lobby", "echo lobby-$((6*7))\r");
    tmux.wait_for("lobby", "lobby-42");
    let logs = d.ok(&["logs", "api"]);
    assert!(
        logs["text"].as_str().unwrap().contains("lobby-42"),
        "{logs}"
    );
    // The one ssh process is still the one we started: the pause menu offers the way back.
    tmux.type_text("lobby", "!>");
    tmux.wait_for("lobby", "Sessions...");
    tmux.type_text("lobby", "2");
    tmux.wait_for("lobby", "back from api");
    tmux.wait_for("lobby", "hearth lobby");
    wait_until("the client to leave api", DEADLINE, || {
        (d.peer_count("api") == 0).then_some(())
    });
    // q leaves the lobby; ssh ends with 0, and the terminal is back on its main screen
    // with the cursor shown at the start of a line (it was left mid-line).
    tmux.type_text("lobby", "q");
    let code: i32 = written_status(&status);
    assert_eq!(code, 0, "{}", tmux.capture("lobby"));
    assert_eq!(
        tmux.format("lobby", "#{alternate_on} #{cursor_flag} #{cursor_x}"),
        "0 1 0",
        "{}",
        tmux.capture("lobby")
    );
    // A lobby client coming and going is no cause for a warning in the daemon's log.
    let log = d.daemon_log();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warned.is_empty(), "{warned:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_owner_keys_enter_the_lobby() {
    let (d, port) = lobby_daemon();
    let viewer = d.other_key("viewer");
    let collaborator = d.other_key("collab");
    let stranger = d.other_key("stranger");
    // Keys a session admits on its own port...
    d.session(
        &[
            "--name",
            "shared",
            "--viewer-key",
            &viewer.public_line(),
            "--allow-key",
            &collaborator.public_line(),
        ],
        &["/bin/sh"],
    );
    // ...get nothing from the lobby: it takes owner keys only.
    for (who, key) in [
        ("stranger", &stranger),
        ("viewer", &viewer),
        ("collaborator", &collaborator),
    ] {
        let r = try_connect(port, key, "x").await;
        assert!(r.is_err(), "{who}'s key entered the lobby");
    }
    let owner = SshClient::connect(port, &d.owner, "me", 100, 30).await;
    owner.wait_screen("shared").await;
    let log = d.daemon_log();
    assert!(log.contains("unknown key"), "refusals are logged: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_joins_at_once_and_an_exit_or_a_down_session_returns_to_the_lobby() {
    let (d, port) = lobby_daemon();
    exec_joins_and_exits_return(&d, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_lobby_a_session_process_that_exits_or_is_down_returns_to_the_lobby() {
    let (d, port) = lobby_daemon_with("[sessions]\nprocesses = \"own\"\n");
    exec_joins_and_exits_return(&d, port).await;
}

async fn exec_joins_and_exits_return(d: &TestDaemon, port: u16) {
    d.session(&["--name", "job"], &["sh", "-c", "read x; exit 4"]);
    let (down, _) = d.shell(&["--name", "quiet"]);
    d.ok(&["down", &down]);
    // `ssh -t -p LOBBY host job` joins job straight away.
    let c = SshClient::connect_with(port, &d.owner, "me", 100, 30, Some("job")).await;
    wait_until("the client in job", DEADLINE, || {
        (d.peer_count("job") == 1).then_some(())
    });
    c.send("go\r").await;
    // The program ends: the client is back in the lobby, told how it ended.
    c.wait_screen("job exited with code 4").await;
    assert!(c.received.lock().exit.is_none(), "the channel stays open");
    // A session that takes no joins is refused with the reason, in the lobby.
    c.send("/quiet\r\r").await;
    c.wait_screen("is down (no new joins)").await;
    // Unknown names too.
    let mut c2 = SshClient::connect_with(port, &d.owner, "me", 100, 30, Some("nosuch")).await;
    c2.wait_screen("nosuch").await;
    c2.wait_screen("hearth lobby").await;
    // An absurd window size is clamped, not allocated; a sane one draws again.
    c2.write.window_change(65_000, 65_000, 0, 0).await.unwrap();
    c2.received.lock().raw.clear();
    c2.resize(90, 20).await;
    c2.wait_screen("hearth lobby").await;
    assert!(c2.received.lock().exit.is_none());
    c.send("q").await;
    assert_eq!(c.wait_exit().await, 0);
    c.wait_closed().await;
}

#[test]
fn a_busy_lobby_port_is_a_clear_error() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let env = Env::new();
    env.write_config(&format!("[lobby]\nport = {port}\nbind = \"127.0.0.1\"\n"));
    let out = env
        .command(&["daemon"])
        .stdin(std::process::Stdio::null())
        .output_bounded();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot open the lobby on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_replays_a_recording_in_the_channel_and_comes_back() {
    let (d, port) = lobby_daemon();
    let s = d.session(
        &["--name", "rec"],
        &["sh", "-c", "echo recorded-$((6*7)); sleep 1000"],
    );
    let id = id_of(&s);
    let c = SshClient::connect(port, &d.owner, "me", 100, 30).await;
    c.wait_screen("recorded-42").await;
    // The recorder writes within a second; replay what is on disk.
    let cast = s["recording"].as_str().unwrap().to_string();
    wait_until("the recording on disk", DEADLINE, || {
        std::fs::read_to_string(&cast)
            .ok()?
            .contains("recorded-42")
            .then_some(())
    });
    c.received.lock().raw.clear();
    c.send("r").await;
    // The recording is played on the main screen, then the lobby comes back and says so.
    c.wait_screen(&format!("replayed {id}")).await;
    let raw = c.raw_text();
    let left = raw
        .find("\x1b[?1049l")
        .expect("the lobby's screen was left");
    assert!(
        raw[left..].contains("recorded-42"),
        "the recording was played: {:?}",
        tail(&raw, 400)
    );
}

/// `f` finds text in the selected session's recording and replays from its last hit: what
/// came before is written at once, so the replay of a long recording from a late hit ends
/// quickly (from the start it would take its gaps, about 6 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_replays_from_the_last_hit_of_a_search() {
    let (d, port) = lobby_daemon();
    let s = d.session(
        &["--name", "slow"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4; do echo step-$i; sleep 1.5; done; echo late-mark; sleep 1000",
        ],
    );
    let id = id_of(&s);
    let c = SshClient::connect(port, &d.owner, "me", 100, 30).await;
    c.wait_screen("late-mark").await;
    wait_until("the hit in the recording", DEADLINE, || {
        (d.cli(&["grep", "late-mark", &id]).status.code() == Some(0)).then_some(())
    });
    // Not there: said, nothing played.
    c.send("fnowhere-text\r").await;
    c.wait_screen("is not in").await;
    c.received.lock().raw.clear();
    let started = std::time::Instant::now();
    c.send("fLATE-MARK\r").await;
    c.wait_screen(&format!("replayed {id}")).await;
    let took = started.elapsed();
    let raw = c.raw_text();
    assert!(
        raw.contains("step-1") && raw.contains("late-mark"),
        "{:?}",
        tail(&raw, 400)
    );
    assert!(
        took < std::time::Duration::from_secs(4),
        "replayed from the start? {took:?}"
    );
}

/// Naming a lobby client is the daemon's lobby key's privilege only: a viewer that sets
/// `HEARTH_LOBBY_CLIENT` to the owner's key on a session's own port stays a viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lobby_key_may_name_a_client() {
    let (d, _) = lobby_daemon_with("[sessions]\nprocesses = \"own\"\n");
    let viewer = d.other_key("viewer");
    let s = d.session(
        &["--name", "guarded", "--viewer-key", &viewer.public_line()],
        &["/bin/sh"],
    );
    let handle = try_connect(port_of(&s), &viewer, "mallory").await.unwrap();
    let channel = handle.channel_open_session().await.unwrap();
    let claim = format!("127.0.0.1:1 root {}", d.owner.public_line());
    channel
        .set_env(true, "HEARTH_LOBBY_CLIENT", claim)
        .await
        .unwrap();
    channel
        .request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    channel.request_shell(true).await.unwrap();
    let peers = wait_until("the viewer to attach", DEADLINE, || {
        let p = d.ok(&["peers", "guarded"]);
        (p.as_array().unwrap().len() == 1).then_some(p)
    });
    assert_eq!(peers[0]["role"], "viewer", "{peers}");
    assert_eq!(peers[0]["user"], "mallory", "{peers}");
}
