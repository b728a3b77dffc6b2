//! Security, as a hostile peer or a careless owner would try it: `authorized_keys` lines
//! with options (restricted keys are never admitted, `from=` and `expiry-time=` are
//! honoured, one odd line locks nobody out), per-source pre-auth limits and penalties, logs
//! that a stranger cannot grow, and a control socket that cuts half-sent frames.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;

/// Write `~/.ssh/authorized_keys` (0600).
fn authorized_keys(env: &Env, text: &str) {
    let p = env.home.join(".ssh/authorized_keys");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn fingerprint(k: &Key) -> String {
    k.key
        .public_key()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string()
}

/// Lines of the daemon log at INFO or above that mention `needle`.
fn loud_lines(d: &TestDaemon, needle: &str) -> Vec<String> {
    d.daemon_log()
        .lines()
        .filter(|l| (l.contains(" INFO ") || l.contains(" WARN ")) && l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_keys_are_never_admitted_and_an_odd_line_locks_nobody_out() {
    let env = Env::new();
    let borg = env.other_key("borg");
    let quoted = env.other_key("quoted");
    let plain = env.other_key("plain");
    let elsewhere = env.other_key("elsewhere");
    let here = env.other_key("here");
    let expired = env.other_key("expired");
    authorized_keys(
        &env,
        &format!(
            "restrict,command=\"borg serve --append-only\" {}\n\
             command=\"echo \\\"hi there\\\"\",no-pty {}\n\
             this line is not a key at all\n\
             {}\n\
             from=\"10.9.9.9,192.168.0.0/16\" {}\n\
             from=\"127.0.0.0/8,!127.0.0.2\",no-agent-forwarding {}\n\
             expiry-time=\"20200101\" {}\n",
            borg.public_line(),
            quoted.public_line(),
            plain.public_line(),
            elsewhere.public_line(),
            here.public_line(),
            expired.public_line(),
        ),
    );
    let d = env.start_daemon();
    let port = port_of(&d.session(&[], &["/bin/sh"]));
    let refused = |k: &Key| {
        let k = Key {
            path: k.path.clone(),
            key: k.key.clone(),
        };
        async move { try_connect(port, &k, "u").await.err() }
    };
    assert_eq!(refused(&borg).await.as_deref(), Some("auth refused"));
    assert_eq!(refused(&quoted).await.as_deref(), Some("auth refused"));
    assert_eq!(refused(&elsewhere).await.as_deref(), Some("auth refused"));
    assert_eq!(refused(&expired).await.as_deref(), Some("auth refused"));
    // The lines after the odd ones still work, `from=` that matches included.
    let mut owner = SshClient::connect(port, &plain, "plain", 80, 24).await;
    owner.send("echo in-$((40+2))\r").await;
    owner.wait_text("in-42").await;
    assert_eq!(refused(&here).await, None);
    owner.resize(81, 24).await;
    // A real OpenSSH client with the restricted key gets no shell either.
    let out = external("ssh")
        .args(ssh_args(&borg, port))
        .args(["127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output_bounded();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    // One clear line per restricted key: fingerprint, file, line, option; and the odd
    // line is named by file and line.
    let log = d.daemon_log();
    let line = log
        .lines()
        .find(|l| l.contains(&fingerprint(&borg)) && l.contains("not admitted"))
        .unwrap_or_else(|| panic!("no line for the restricted key:\n{log}"));
    assert!(
        line.contains("authorized_keys") && line.contains("line=1") && line.contains("restrict"),
        "{line}"
    );
    assert!(log.contains("line=2") && log.contains("command="), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("line=3") && l.contains("not a key")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_key_files_with_restrictions_fail_at_once_and_from_is_honoured() {
    let d = TestDaemon::start();
    let friend = d.other_key("friend");
    let file = d.dir.path().join("friend.keys");
    std::fs::write(
        &file,
        format!("# friend\ncommand=\"true\" {}\n", friend.public_line()),
    )
    .unwrap();
    let msg = d.err(
        &[
            "server",
            "--allow-key",
            file.to_str().unwrap(),
            "--",
            "/bin/sh",
        ],
        "invalid_argument",
    );
    assert!(
        msg.contains("friend.keys line 2")
            && msg.contains("command=")
            && msg.contains(&fingerprint(&friend)),
        "{msg}"
    );
    assert!(d.ok(&["ps"]).as_array().unwrap().is_empty());
    // from= on a collaborator key: honoured at auth.
    let away = format!("from=\"10.0.0.0/8\" {}", friend.public_line());
    let port = port_of(&d.session(&["--allow-key", &away], &["/bin/sh"]));
    assert_eq!(
        try_connect(port, &friend, "f").await.err().as_deref(),
        Some("auth refused")
    );
    let near = format!("from=\"127.0.0.1\" {}", friend.public_line());
    let port = port_of(&d.session(&["--allow-key", &near], &["/bin/sh"]));
    let c = SshClient::connect(port, &friend, "f", 80, 24).await;
    c.send("echo friend-$((3*3))\r").await;
    c.wait_text("friend-9").await;
}

async fn connect_from(src: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{src}:0").parse().unwrap())?;
    socket.connect(([127, 0, 0, 1], port).into()).await
}

/// Read until EOF (bounded by the deadline); what arrived.
async fn drain(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holding_200_silent_connections_locks_nobody_else_out() {
    let d = TestDaemon::start(); // --login-grace 2
    let port = port_of(&d.session(&[], &["/bin/sh"]));
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(connect_from("127.0.0.2", port).await.unwrap());
    }
    // The owner, from another address, gets in while they are held.
    let owner = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    owner.send("echo owner-in-$((5*5))\r").await;
    owner.wait_text("owner-in-25").await;
    // Only the per-source share got a banner; the grace cut those.
    let mut bannered = 0;
    for s in &mut held {
        if drain(s).await.starts_with(b"SSH-2.0-") {
            bannered += 1;
        }
    }
    assert_eq!(bannered, 10, "the per-source cap (default 10)");
    // Holding places until the grace is a penalty: the source now backs off, closed
    // before the banner, while others are unaffected.
    let mut s = connect_from("127.0.0.2", port).await.unwrap();
    assert_eq!(drain(&mut s).await, b"", "a penalised source got a banner");
    let mut s = connect_from("127.0.0.4", port).await.unwrap();
    let mut banner = [0u8; 8];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    // All of it left a line or two about that source in the log, not hundreds.
    let lines = loud_lines(&d, "127.0.0.2");
    assert!(
        !lines.is_empty() && lines.len() <= 3,
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_does_not_grow_the_log() {
    let d = TestDaemon::start();
    let port = port_of(&d.session(&[], &["/bin/sh"]));
    let before = d.daemon_log().len();
    for _ in 0..300 {
        let Ok(mut s) = connect_from("127.0.0.3", port).await else {
            continue;
        };
        use tokio::io::AsyncWriteExt;
        let _ = s.write_all(b"SSH-2.0-flood\r\n").await;
        drop(s);
    }
    // Every connection is over once the daemon answers again.
    let c = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    c.send("echo done-$((1+6))\r").await;
    c.wait_text("done-7").await;
    let lines = loud_lines(&d, "127.0.0.3");
    assert!(
        !lines.is_empty() && lines.len() <= 3,
        "{} lines:\n{}",
        lines.len(),
        lines.join("\n")
    );
    let grown = d
        .daemon_log()
        .lines()
        .filter(|l| !l.contains("DEBUG"))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    assert!(
        grown < before + 20_000,
        "the log grew by {}",
        grown - before
    );
}

#[test]
fn the_control_socket_cuts_half_sent_and_oversized_frames() {
    let d = TestDaemon::start();
    // A frame header and a bit of body, then silence: cut after the frame timeout.
    let mut half = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    half.write_all(&[0, 0, 0, 100, b'{']).unwrap();
    half.set_read_timeout(Some(DEADLINE)).unwrap();
    let start = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = half.read_to_end(&mut buf);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "not cut: {:?}",
        start.elapsed()
    );
    // A declared length past the request limit: closed at once, nothing buffered.
    let mut big = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    big.write_all(&(200u32 << 20).to_be_bytes()).unwrap();
    big.set_read_timeout(Some(DEADLINE)).unwrap();
    let start = std::time::Instant::now();
    let _ = big.read_to_end(&mut buf);
    assert!(start.elapsed() < Duration::from_secs(4));
    // A whole frame of garbage that the decoder echoes in its error: the log line is
    // capped.
    let mut junk = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    // (An unknown variant: serde quotes it whole in the error.)
    let body = format!("{{\"{}\":1}}", "A".repeat(900_000));
    junk.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    junk.write_all(body.as_bytes()).unwrap();
    junk.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = junk.read_to_end(&mut buf);
    // The daemon answers on.
    assert!(d.cli(&["version"]).status.success());
    let longest = d.daemon_log().lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 1024, "a log line of {longest} bytes");
}

#[test]
fn the_background_daemon_log_is_size_capped_and_rotated() {
    let env = Env::new();
    env.write_config("[log]\nmax_bytes = 4096\nfiles = 2\n");
    let log = env.dir.path().join("state/daemon.log");
    let mut child = env
        .command(&["daemon", "--log-file", log.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the daemon to answer", DEADLINE, || {
        env.cli(&["version"]).status.success().then_some(())
    });
    for _ in 0..15 {
        let s = env.ok(&["server", "--bind", "127.0.0.1", "--", "/bin/sh"]);
        env.ok(&["kill", &id_of(&s)]);
    }
    let rotated = log.with_extension("log.1");
    assert!(rotated.exists(), "no rotation");
    for p in [&log, &rotated] {
        let len = std::fs::metadata(p).unwrap().len();
        assert!(len <= 4096, "{}: {len} bytes", p.display());
    }
    assert!(!log.with_extension("log.2").exists(), "files = 2");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn cast_lines(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_flood_past_the_recording_cap_does_not_hide_what_is_typed_next() {
    let env = Env::new();
    env.write_config("[recording]\nmax_bytes = 65536\n");
    let d = env.start_daemon();
    let s = d.session(&[], &["/bin/sh"]);
    let (id, port) = (id_of(&s), port_of(&s));
    let cast = s["recording"].as_str().unwrap().to_string();
    let c = SshClient::connect(port, &d.owner, "mallory", 80, 24).await;
    c.send("seq 1 200000; echo flood-$((2*5))\r").await;
    c.wait_text("flood-10").await;
    wait_until("the cast to reach its cap", DEADLINE, || {
        let ps = d.ok(&["ps"]);
        let e = ps[0]["recording_error"].as_str().unwrap_or("").to_string();
        e.contains("size cap").then_some(())
    });
    c.send("echo typed-after-$((6*7))\r").await;
    c.wait_text("typed-after-42").await;
    d.ok(&["kill", &id]);
    let audit = cast_lines(&cast.replace(".cast", ".audit.jsonl"));
    assert!(
        audit.iter().any(|e| e["event"] == "input"
            && e["client"] == "mallory-1"
            && e["data"].as_str().unwrap_or("").contains("typed-after")),
        "the command after the flood is not in the audit"
    );
    assert!(audit.iter().any(|e| e["event"] == "joined"));
    assert!(audit.iter().any(|e| e["event"] == "left"));
    let lines = cast_lines(&cast);
    assert!(
        lines
            .iter()
            .any(|e| e[1] == "m" && e[2].as_str().unwrap().contains("size cap")),
        "no marker where output stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_change_storm_records_a_few_resizes_not_one_per_request() {
    let d = TestDaemon::start();
    let s = d.session(&[], &["/bin/sh"]);
    let (id, port) = (id_of(&s), port_of(&s));
    let mut c = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    for i in 0..5000u16 {
        c.resize(80 + i % 2, 24 + i % 3).await;
    }
    c.resize(100, 30).await;
    c.send("stty size\r").await;
    c.wait_text("30 100").await;
    d.ok(&["kill", &id]);
    let lines = cast_lines(s["recording"].as_str().unwrap());
    let resizes: Vec<_> = lines.iter().filter(|e| e[1] == "r").collect();
    assert!(
        resizes.len() < 200,
        "{} resize events for 5000 requests",
        resizes.len()
    );
    assert_eq!(resizes.last().unwrap()[2], "100x30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_menu_keys_cost_a_few_frames() {
    let d = TestDaemon::start();
    let port = port_of(&d.session(&[], &["/bin/sh"]));
    let c = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    c.send("!>").await;
    c.wait_screen("Resume").await;
    let before = c.raw().len();
    c.send(&"j".repeat(100_000)).await;
    c.send("\x1b").await; // Esc: resume
    c.send("echo back-$((9*9))\r").await;
    c.wait_text("back-81").await;
    let sent = c.raw().len() - before;
    // One frame is ~2-4 KB; one per key would be hundreds of MB.
    assert!(sent < 2_000_000, "{sent} bytes of menu frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_menu_kick_acts_on_the_client_drawn_never_on_a_newcomer() {
    let d = TestDaemon::start();
    let friend = d.other_key("friend");
    let s = d.session(&["--allow-key", &friend.public_line()], &["/bin/sh"]);
    let (id, port) = (id_of(&s), port_of(&s));
    let owner = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    let first = SshClient::connect(port, &friend, "bob", 80, 24).await;
    owner.send("!>").await;
    owner.wait_screen("8 Kick a client").await;
    owner.send("8").await;
    owner.wait_screen("bob-1").await;
    let shown = owner.raw().len();
    owner.send("j").await;
    owner
        .wait_for("the frame with bob-1 selected", |c| c.raw().len() > shown)
        .await;
    // bob-1 leaves; a newcomer takes the same name before the owner presses Enter.
    drop(first);
    wait_until("bob to leave", DEADLINE, || {
        (d.peer_count(&id) == 1).then_some(())
    });
    let newcomer = SshClient::connect(port, &friend, "bob", 80, 24).await;
    wait_until("the newcomer", DEADLINE, || {
        (d.peer_count(&id) == 2).then_some(())
    });
    owner.send("\r").await;
    owner.wait_screen("already left").await;
    newcomer.send("echo still-here-$((1+1))\r").await;
    newcomer.wait_text("still-here-2").await;
    assert_eq!(d.peer_count(&id), 2);
    // Kicks from the CLI and the menu name who did them, in the log and the audit.
    d.ok(&["kick", &id, "bob-1"]);
    newcomer.wait_closed().await;
    d.ok(&["lock", &id]);
    let log = d.daemon_log();
    assert!(
        log.lines().any(|l| l.contains("kicked")
            && l.contains("bob-1")
            && l.contains("by=\"cli\"")
            || l.contains("kicked") && l.contains("bob-1") && l.contains("by=cli")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("lock changed") && l.contains("cli")),
        "{log}"
    );
    d.ok(&["kill", &id]);
    let audit = cast_lines(
        &s["recording"]
            .as_str()
            .unwrap()
            .replace(".cast", ".audit.jsonl"),
    );
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "kicked" && e["client"] == "bob-1" && e["by"] == "cli")
    );
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "locked" && e["by"] == "cli")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_client_does_not_shrink_the_terminal() {
    let d = TestDaemon::start();
    let port = port_of(&d.session(&[], &["/bin/sh"]));
    let big = SshClient::connect(port, &d.owner, "big", 80, 24).await;
    let _tiny = SshClient::connect(port, &d.owner, "tiny", 10, 3).await;
    big.send("stty size\r").await;
    big.wait_text("24 80").await;
}

/// A command line with escape sequences and a bidi override (what a prompt-injected agent
/// could start over MCP) never reaches the owner's terminal: `server`, `ps`, `ps --all`,
/// `history` and `events` show it escaped; `--json` keeps it exact.
#[test]
fn escapes_in_argv_never_reach_the_owners_terminal() {
    let d = TestDaemon::start();
    let evil = "\u{1b}]0;PWN\u{7}\u{1b}[2J\u{202e}gnp.exe";
    let out = d.cli(&[
        "server",
        "--bind",
        "127.0.0.1",
        "--name",
        "evil",
        "--",
        "sh",
        "-c",
        "sleep 1000",
        evil,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clean = |what: &str, bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !bytes.contains(&0x1b) && !bytes.contains(&0x07) && !text.contains('\u{202e}'),
            "{what} printed control characters: {text:?}"
        );
        assert!(text.contains("\\e]0;PWN\\x07\\e[2J"), "{what}: {text}");
    };
    clean("server", &out.stdout);
    clean("ps", &d.cli(&["ps"]).stdout);
    let events = d.cli(&["events"]);
    assert!(!events.stdout.contains(&0x1b));
    let v = d.ok(&["ps"]);
    assert_eq!(v[0]["command"][3], evil, "JSON is exact");
    d.ok(&["kill", "evil"]);
    clean("ps --all", &d.cli(&["ps", "--all"]).stdout);
    clean("history", &d.cli(&["history"]).stdout);
    assert_eq!(d.ok(&["history"])[0]["command"][3], evil);
}

/// A program that never reads its input: once the input queue is full (in bytes), `send`
/// fails with `busy` within its bound instead of hanging, from the CLI and over MCP, and
/// the session still ends cleanly.
#[test]
fn a_full_input_queue_says_busy_in_bounded_time() {
    let env = Env::new();
    env.write_config("[limits]\ninput_bytes = 2097152\n");
    let d = env.start_daemon();
    let id = id_of(&d.session(&[], &["sleep", "1000"]));
    let big = d.dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(1_500_000)).unwrap();
    let file = big.to_str().unwrap();
    d.ok(&["send", &id, "--file", file]);
    let started = std::time::Instant::now();
    let msg = d.err(&["send", &id, "--file", file], "busy");
    assert!(msg.contains("waiting for the program"), "{msg}");
    eprintln!("busy after {:?}", started.elapsed());
    let mut m = common::mcp::Mcp::start(&d);
    let (err, v) = m.tool(
        "send_input",
        serde_json::json!({"session": id, "text": "y".repeat(1_500_000)}),
    );
    assert!(err, "{v}");
    assert_eq!(v["error"]["kind"], "busy", "{v}");
    // The MCP server carries on.
    let (err, _) = m.tool("list_sessions", serde_json::json!({}));
    assert!(!err);
    d.ok(&["kill", &id]);
}

/// 100 source addresses (127.0.1.1-100), each keeping 10 silent connections open and
/// reopening them before any timeout, never keep the owner out: each of the owner's joins
/// during the flood gets in (it was `kex_exchange_identification: Connection closed` for
/// as long as 7 addresses kept at it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_addresses_flooding_never_keep_the_owner_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let d = TestDaemon::start();
    let (_, port) = d.shell(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for n in 1..=100u8 {
        let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
        attackers.push(tokio::spawn(async move {
            let from: std::net::SocketAddr = ([127, 0, 1, n], 0).into();
            let to: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
            while !stop.load(Ordering::Relaxed) {
                let mut held = Vec::new();
                for _ in 0..10 {
                    let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
                        continue;
                    };
                    if sock.bind(from).is_err() {
                        continue;
                    }
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_secs(1), sock.connect(to)).await
                    {
                        opened.fetch_add(1, Ordering::Relaxed);
                        held.push(s);
                    }
                }
                // Silent, and closed before the daemon's 2 s login grace cuts them.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                drop(held);
            }
        }));
    }
    // Let the flood build up first.
    let start = tokio::time::Instant::now();
    while opened.load(Ordering::Relaxed) < 1000 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the flood never built up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_flood = d.rss_kib();
    let mut times = Vec::new();
    for i in 0..5 {
        let t = std::time::Instant::now();
        let owner = SshClient::connect(port, &d.owner, "owner", 80, 24).await;
        owner.send(&format!("echo owner-in-$(({i}+100))\r")).await;
        owner.wait_text(&format!("owner-in-{}", i + 100)).await;
        times.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = a.await;
    }
    eprintln!(
        "owner joins during the flood ({} attacker connections opened, daemon RSS {rss_flood} \
         KiB): {times:?}",
        opened.load(Ordering::Relaxed)
    );
    assert!(
        times.iter().all(|t| *t < Duration::from_secs(10)),
        "{times:?}"
    );
}

/// A collaborator pastes 100 MB (past the audit's content cap, here 1 MiB), then types:
/// who typed, when and how much is still recorded (summaries past the cap; it used to stop
/// recording input at the cap, so a paste switched the audit off), and the file stays
/// small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_keeps_recording_who_typed_after_a_100_mb_paste() {
    let env = Env::new();
    env.write_config("[recording]\nmax_audit_bytes = 1048576\n");
    let d = env.start_daemon();
    let friend = d.other_key("friend");
    let s = d.session(
        &["--allow-key", &friend.public_line()],
        &["sh", "-c", "cat > /dev/null; echo; exec sh"],
    );
    let (id, port) = (id_of(&s), port_of(&s));
    let audit_path = s["recording"]
        .as_str()
        .unwrap()
        .replace(".cast", ".audit.jsonl");
    let c = SshClient::connect(port, &friend, "friend", 80, 24).await;
    let line = format!("{}\r", "a".repeat(1000));
    let chunk = line.repeat(64);
    let mut sent = 0usize;
    while sent < 100_000_000 {
        c.send(&chunk).await;
        sent += chunk.len();
    }
    // End the paste (cat ends at ^D), then type.
    c.send("\x04").await;
    c.send("echo typed-after-$((5*5))\r").await;
    c.wait_text("typed-after-25").await;
    d.ok(&["kill", &id]);
    let audit = cast_lines(&audit_path);
    let from_friend: Vec<&serde_json::Value> =
        audit.iter().filter(|l| l["client"] == "friend-1").collect();
    let bytes: u64 = from_friend
        .iter()
        .map(|l| match l["event"].as_str() {
            Some("input") => l["data"].as_str().unwrap().len() as u64,
            Some("input_summary") => l["bytes"].as_u64().unwrap(),
            _ => 0,
        })
        .sum();
    assert!(
        bytes >= sent as u64,
        "the audit accounts for {bytes} of {sent} bytes"
    );
    assert!(audit.iter().any(|l| l["event"] == "audit_cap"));
    let last = from_friend
        .iter()
        .rev()
        .find(|l| l["event"] == "input_summary" || l["event"] == "input")
        .unwrap();
    let text = format!("{}{}{}", last["first"], last["last"], last["data"]);
    assert!(
        text.contains("echo typed-after"),
        "the typing after the paste: {last}"
    );
    let size = std::fs::metadata(&audit_path).unwrap().len();
    assert!(size < 4 * 1024 * 1024, "audit of {size} bytes");
}
