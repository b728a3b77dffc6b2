//! DVR: recordings (asciicast v2 + input provenance), tail, logs, screen, replay.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn cast_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_is_valid_asciicast_plays_in_asciinema_and_names_typists() {
    let d = TestDaemon::start();
    let s = d.session(&["--name", "rec"], &["/bin/sh"]);
    let path = PathBuf::from(s["recording"].as_str().unwrap());
    assert!(path.starts_with(d.home.join(".local/state/hearth/recordings")));
    assert!(s["recording_error"].is_null());
    let a = SshClient::connect(port_of(&s), &d.owner, "alice", 80, 24).await;
    a.send("echo known-$((2*21))\r").await;
    a.wait_text("known-42").await;
    let mut a = a;
    a.resize(100, 30).await;
    a.send("stty size\r").await;
    a.wait_text("30 100").await;
    d.ok(&["kill", "rec"]);

    let lines = cast_lines(&path);
    assert_eq!(lines[0]["version"], 2);
    assert_eq!(lines[0]["title"], "rec");
    let mut last = 0.0;
    for ev in &lines[1..] {
        let t = ev[0].as_f64().unwrap();
        assert!(t >= last, "timestamps go backwards: {last} then {t}");
        last = t;
        assert!(["o", "r", "m"].contains(&ev[1].as_str().unwrap()), "{ev}");
    }
    assert!(lines.iter().any(|e| e[1] == "r" && e[2] == "100x30"));
    // asciinema opens /dev/tty: give it one with script(1), its output goes to a file.
    let played = d.dir.path().join("played.txt");
    let cat = external("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "asciinema cat {} > {}",
            path.display(),
            played.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output_bounded();
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert!(
        std::fs::read_to_string(&played)
            .unwrap()
            .contains("known-42")
    );
    let input = std::fs::read_to_string(path.with_extension("audit.jsonl")).unwrap();
    let typed: Vec<Value> = input
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        typed.iter().any(|e| e["event"] == "input"
            && e["client"] == "alice-1"
            && e["data"].as_str().unwrap().contains("known")),
        "{input}"
    );
    assert!(
        typed
            .iter()
            .any(|e| e["event"] == "joined" && e["client"] == "alice-1" && e["role"] == "owner"),
        "{input}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn screen_equals_what_an_openssh_client_shows() {
    let d = TestDaemon::start();
    let s = d.session(&[], &["/bin/sh"]);
    let id = id_of(&s);
    let tmux = Tmux::new(d.dir.path());
    let line = format!(
        "ssh {} -tt 127.0.0.1",
        ssh_args(&d.owner, port_of(&s)).join(" ")
    );
    tmux.run("c", 80, 24, &line);
    tmux.type_text(
        "c",
        "printf '\\033[1;31mred\\033[0m plain\\n'; ls /; echo done-$((1+1))\r",
    );
    tmux.wait_for("c", "done-2");
    let norm = |s: &str| {
        let mut v: Vec<String> = s.lines().map(|l| l.trim_end().to_string()).collect();
        while v.last().is_some_and(|l| l.is_empty()) {
            v.pop();
        }
        v
    };
    let (screen, pane) = wait_until("screen and pane to agree", DEADLINE, || {
        let out = d.cli(&["screen", &id]);
        let screen = norm(&String::from_utf8_lossy(&out.stdout));
        let pane = norm(&tmux.capture("c"));
        (screen == pane).then_some((screen, pane))
    });
    assert!(screen.iter().any(|l| l.contains("done-2")));
    assert_eq!(screen, pane);
    let ansi = d.cli(&["screen", "--ansi", &id]);
    assert!(
        String::from_utf8_lossy(&ansi.stdout).contains("\x1b[31m")
            || String::from_utf8_lossy(&ansi.stdout).contains(";31m")
    );
    assert_eq!(
        d.ok(&["screen", &id])["screen"]
            .as_str()
            .unwrap()
            .lines()
            .count(),
        screen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_new_output_and_ends_when_the_session_exits() {
    let d = TestDaemon::start();
    let s = d.session(
        &["--name", "f"],
        &[
            "sh",
            "-c",
            "echo started; read x; echo got-$x; sleep 0.3; echo after; exit 4",
        ],
    );
    let mut follow = d
        .command(&["logs", "--follow", "f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let a = SshClient::connect(port_of(&s), &d.owner, "a", 80, 24).await;
    a.wait_text("started").await;
    a.send("hi\r").await;
    assert_eq!(a.wait_exit().await, 4);
    let status = wait_until("logs --follow to end", DEADLINE, || {
        follow.try_wait().unwrap()
    });
    assert!(status.success());
    let mut out = String::new();
    follow
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("got-hi") && out.contains("after"), "{out}");
    assert!(
        !out.contains('\x1b') && !out.contains('\r'),
        "logs is not plain text: {out:?}"
    );
    // Exited sessions keep their logs until killed.
    let v = d.ok(&["logs", "f"]);
    assert!(v["text"].as_str().unwrap().contains("got-hi"));
    assert_eq!(v["exit_code"], 4);
}

#[test]
fn tail_logs_since_and_replay() {
    let d = TestDaemon::start();
    d.session(
        &["--name", "t"],
        &[
            "sh",
            "-c",
            "echo first-line; sleep 2; echo second-line; sleep 1000",
        ],
    );
    wait_until("second-line", DEADLINE, || {
        let out = d.cli(&["tail", "t"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("second-line")
            .then_some(())
    });
    let out = d.cli(&["tail", "--bytes", "13", "t"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "second-line\r\n");
    let out = d.cli(&["logs", "--since", "1s", "t"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("second-line") && !text.contains("first-line"),
        "{text}"
    );
    d.err(&["logs", "--follow", "t"], "invalid_argument");
    let path = d.ok(&["ps"])[0]["recording"].as_str().unwrap().to_string();
    // Recordings are flushed while the session runs.
    wait_until("the recording to hold the output", DEADLINE, || {
        // (The header names the command, which mentions it too: look at output events.)
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"o\",\"second-line")
            .then_some(())
    });
    let out = d.cli(&["replay", "--speed", "1000", &path]);
    assert!(out.status.success());
    let played = String::from_utf8_lossy(&out.stdout);
    assert!(
        played.contains("first-line") && played.contains("second-line"),
        "{played:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(&["replay", "--speed", "1000", "t"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("second-line"));
    let out = d.cli(&["replay", "--speed", "0", &path]);
    assert!(!out.status.success());
}

fn recorded_text(path: &std::path::Path) -> String {
    cast_lines(path)
        .iter()
        .skip(1)
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn kill_and_shutdown_lose_no_recorded_byte() {
    let mut d = TestDaemon::start();
    let script = "seq 1 100000; echo END-OF-OUTPUT; sleep 1000";
    let a = d.session(&["--name", "a"], &["sh", "-c", script]);
    let b = d.session(&["--name", "b"], &["sh", "-c", script]);
    for name in ["a", "b"] {
        wait_until("the output to end", Duration::from_secs(60), || {
            let out = d.cli(&["tail", "--bytes", "64", name]);
            String::from_utf8_lossy(&out.stdout)
                .contains("END-OF-OUTPUT")
                .then_some(())
        });
    }
    let expected: String =
        (1..=100000).map(|i| format!("{i}\r\n")).collect::<String>() + "END-OF-OUTPUT\r\n";
    d.ok(&["kill", "a"]);
    let pa = PathBuf::from(a["recording"].as_str().unwrap());
    assert_eq!(recorded_text(&pa), expected);
    // `shutdown` ends every session (SIGTERM stops only the daemon when sessions run in
    // processes of their own).
    d.ok(&["shutdown"]);
    let mut daemon = d.child.take().unwrap();
    wait_until("the daemon to stop", DEADLINE, || {
        daemon.try_wait().unwrap().map(|_| ())
    });
    let pb = PathBuf::from(b["recording"].as_str().unwrap());
    assert_eq!(recorded_text(&pb), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_recording_dir_leaves_the_session_running_with_a_warning() {
    let env = Env::new();
    // A path under a regular file can never be created.
    let blocker = env.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    env.write_config(&format!(
        "[recording]\ndir = \"{}\"\n",
        blocker.join("rec").display()
    ));
    let d = env.start_daemon();
    let out = d.cli(&["server", "--bind", "127.0.0.1", "--", "/bin/sh"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: recording disabled"));
    let s = &d.ok(&["ps"])[0];
    assert!(s["recording"].is_null());
    assert!(
        s["recording_error"]
            .as_str()
            .unwrap()
            .contains("recording disabled")
    );
    let a = SshClient::connect(port_of(s), &d.owner, "a", 80, 24).await;
    a.send("echo fine-$((1+1))\r").await;
    a.wait_text("fine-2").await;
    // And --no-record records nothing, quietly.
    let n = d.session(&["--no-record"], &["/bin/sh"]);
    assert!(n["recording"].is_null() && n["recording_error"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_scrolls_history_while_the_session_goes_on() {
    let d = TestDaemon::start();
    let v = d.other_key("viewer");
    let s = d.session(
        &["--viewer-key", v.pub_path().to_str().unwrap()],
        &["/bin/sh"],
    );
    let port = port_of(&s);
    let a = SshClient::connect(port, &d.owner, "a", 80, 12).await;
    let b = SshClient::connect(port, &d.owner, "b", 80, 12).await;
    a.send("for i in $(seq 1 60); do echo hist-$i; done\r")
        .await;
    a.wait_screen("hist-60").await;
    a.send("!>").await;
    a.wait_screen("7 Rewind").await;
    a.send("7").await;
    a.wait_screen("REWIND").await;
    // Two pages back: lines long gone from the live screen.
    a.send("\x1b[5~").await;
    a.send("\x1b[5~").await;
    a.wait_for("older history", |c| {
        let s = c.screen();
        s.contains("22 of") && s.contains("hist-30") && !s.contains("hist-60")
    })
    .await;
    // Find typed in Rewind: the newest row with it, then older ones (`n`).
    a.send("/HIST-17").await;
    a.wait_screen("find: HIST-17_").await;
    a.send("\r").await;
    a.wait_for("the hit near the top", |c| {
        let s = c.screen();
        s.lines().take(6).any(|l| l.starts_with("hist-17")) && !s.contains("find:")
    })
    .await;
    a.send("n").await;
    a.wait_screen("not found further back").await;
    // The session carries on meanwhile.
    b.send("echo meanwhile-$((3+4))\r").await;
    b.wait_text("meanwhile-7").await;
    a.send("\x1b").await;
    a.wait_screen("meanwhile-7").await;
    assert!(!a.screen().contains("REWIND"));
    // Viewers see the current screen only, unless the owner allows history.
    let viewer = SshClient::connect(port, &v, "v", 80, 12).await;
    viewer.send("!>").await;
    viewer.wait_screen("6 Redraw").await;
    assert!(!viewer.screen().contains("Rewind"));
    let s2 = d.session(
        &[
            "--viewer-history",
            "--viewer-key",
            v.pub_path().to_str().unwrap(),
        ],
        &["/bin/sh"],
    );
    let viewer = SshClient::connect(port_of(&s2), &v, "v", 80, 12).await;
    viewer.send("!>").await;
    viewer.wait_screen("7 Rewind").await;
}

#[test]
fn a_follower_killed_mid_stream_leaves_the_daemon_fine() {
    let d = TestDaemon::start();
    d.session(
        &["--name", "k"],
        &["sh", "-c", "while :; do echo tick; sleep 0.05; done"],
    );
    let mut follow = d
        .command(&["logs", "--follow", "k"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let n = follow.stdout.as_mut().unwrap().read(&mut buf).unwrap();
    assert!(n > 0);
    follow.kill().unwrap();
    follow.wait().unwrap();
    let out = d.cli(&["tail", "--bytes", "6", "k"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tick\r\n");
    assert_eq!(d.ok(&["ps"])[0]["state"], "up");
}

/// `kill` while the program is still printing as fast as it can: the recording is valid
/// asciicast, and what it holds is the output in order, without holes (a gap the recorder
/// could not keep up with would be marked, and only then may numbers jump).
#[test]
fn kill_while_output_is_in_flight_leaves_a_valid_gapless_recording() {
    let d = TestDaemon::start();
    let s = d.session(&["--name", "flood"], &["seq", "1", "100000000"]);
    wait_until("output to flow", DEADLINE, || {
        let out = d.cli(&["tail", "--bytes", "64", "flood"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let last: u64 = text
            .split_whitespace()
            .rev()
            .find_map(|w| w.parse().ok())
            .unwrap_or(0);
        (last > 200_000).then_some(())
    });
    let killed = d.ok(&["kill", "flood"]);
    assert_eq!(killed[0]["state"], "exited", "{killed}");
    let path = PathBuf::from(s["recording"].as_str().unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    let mut expected = 1u64;
    let mut pending = String::new();
    let mut gap = false;
    for (i, line) in text.lines().enumerate() {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line:.80}", i + 1));
        if i == 0 {
            assert_eq!(event["version"], 2);
            continue;
        }
        match event[1].as_str().unwrap() {
            "o" => pending.push_str(event[2].as_str().unwrap()),
            "m" => gap = true,
            _ => continue,
        }
        // Whole lines so far must count up by one (or jump forward once after a marker).
        while let Some(at) = pending.find("\r\n") {
            let n: u64 = pending[..at].parse().unwrap_or_else(|_| {
                panic!("not a number: {:?}", &pending[..at.min(40)]);
            });
            if gap && n > expected {
                expected = n;
            }
            gap = false;
            assert_eq!(n, expected, "a hole in the recording");
            expected += 1;
            pending.drain(..at + 2);
        }
    }
    assert!(expected > 200_000, "recorded only up to {expected}");
    assert!(expected < 100_000_000, "the kill came after the end");
}

/// A read at the documented maximum (4 MiB) of non-ASCII output fits in one response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_mib_read_of_binary_output_fits_the_wire() {
    let d = TestDaemon::start();
    // 0xE9 bytes: four characters each as a JSON number, 16.8 MB for 4 MiB.
    let s = d.session(
        &[],
        &[
            "sh",
            "-c",
            "head -c 6000000 /dev/zero | tr '\\000' '\\351'; sleep 100",
        ],
    );
    let id = id_of(&s);
    wait_until("6 MB of output", Duration::from_secs(60), || {
        let st = d.ok(&["status", &id]);
        (st["output_bytes"].as_u64().unwrap_or(0) >= 6_000_000).then_some(())
    });
    let (client, _) = hearth_rpc::socket::connect(&d.socket).await.unwrap();
    let mut ctx = tarpc::context::current();
    ctx.deadline = std::time::Instant::now() + Duration::from_secs(60);
    let chunk = client
        .read(ctx, id, hearth_rpc::ReadFrom::Start, 4 * 1024 * 1024, 0)
        .await
        .unwrap()
        .unwrap();
    // Whole log chunks up to the maximum.
    assert!(
        chunk.data.len() > 4 * 1024 * 1024 - 65_536,
        "{}",
        chunk.data.len()
    );
    assert!(chunk.data.len() <= 4 * 1024 * 1024);
    assert!(chunk.data.iter().all(|b| *b == 0xe9));
    // On the wire it is base64 (4/3), far from the 16 MiB frame: as an array of numbers
    // it was 16.8 MB, at the limit.
    let wire = serde_json::to_vec(&chunk).unwrap().len();
    assert!(wire < 6 * 1024 * 1024, "{wire} bytes on the wire");
}

/// `logs --follow` on a session that gets killed ends like at an exit, never with
/// "not found" (the session is removed while the follower polls).
#[test]
fn logs_follow_on_a_killed_session_ends_cleanly() {
    let d = TestDaemon::start();
    for round in 0..5 {
        let name = format!("ticker{round}");
        d.session(
            &["--name", &name],
            &["sh", "-c", "while true; do echo tick; sleep 0.05; done"],
        );
        let mut follow = d
            .command(&["logs", "--follow", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 4];
        follow
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        d.ok(&["kill", &name]);
        let out = wait_until("the follower to end", DEADLINE, || {
            follow.try_wait().unwrap()
        });
        let mut err = String::new();
        follow
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(out.success(), "round {round}: {out:?} {err}");
    }
    // What a follower's next poll sees once the session is gone: the end, with its code.
    let s = d.session(&["--name", "gone"], &["sleep", "100"]);
    d.ok(&["kill", "gone"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chunk = rt.block_on(async {
        let (client, _) = hearth_rpc::socket::connect(&d.socket).await.unwrap();
        let ctx = tarpc::context::current();
        client
            .read(ctx, id_of(&s), hearth_rpc::ReadFrom::Offset(0), 1024, 0)
            .await
            .unwrap()
    });
    let chunk = chunk.expect("a killed session's read answers with its end");
    assert!(chunk.exited && chunk.data.is_empty());
    assert_eq!(chunk.exit_code, Some(129), "SIGHUP");
    // A name that never existed is still not found.
    d.err(&["logs", "never-was"], "not_found");
}

#[test]
fn logs_during_a_flood_stop_at_the_end_they_first_saw() {
    let d = TestDaemon::start();
    // Output that never stops: a reader chasing it would never end.
    let s = d.session(&["--name", "flood"], &["yes", "flood-line"]);
    let id = id_of(&s);
    wait_until("the flood to start", DEADLINE, || {
        let v = d.ok(&["tail", &id, "--bytes", "100"]);
        v["data"].as_str()?.contains("flood-line").then_some(())
    });
    for json in [false, true] {
        let mut args = vec!["logs", id.as_str()];
        if json {
            args.insert(0, "--json");
        }
        let mut child = d
            .command(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut n = 0usize;
            let mut buf = [0u8; 65536];
            while let Ok(k) = std::io::Read::read(&mut out, &mut buf) {
                if k == 0 {
                    break;
                }
                n += k;
            }
            n
        });
        let status = wait_until("logs to return during the flood", DEADLINE, || {
            child.try_wait().unwrap()
        });
        assert!(status.success(), "json={json}");
        let bytes = reader.join().unwrap();
        // At most what the log retains (8 MiB by default), plus JSON's quoting.
        assert!(bytes > 0 && bytes < 20 << 20, "json={json}: {bytes} bytes");
    }
    d.ok(&["kill", &id]);
}

/// `replay` writes the program's own output to this terminal: when it ends, the terminal
/// is given back as it was (main screen, cursor shown, mouse off), whatever the program
/// left on.
#[test]
fn replay_leaves_the_terminal_clean() {
    let d = TestDaemon::start();
    let s = d.session(
        &["--name", "alt"],
        &[
            "sh",
            "-c",
            "printf '\\033[?1049h\\033[?1000h\\033[?25lin-alt-screen'; sleep 1000",
        ],
    );
    let path = s["recording"].as_str().unwrap().to_string();
    wait_until("the recording to hold the output", DEADLINE, || {
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("in-alt-screen")
            .then_some(())
    });
    let tmux = Tmux::new(d.dir.path());
    tmux.run(
        "replay",
        80,
        24,
        &format!("{BIN} replay --speed 1000 {path}; echo replay-done; sleep 1000"),
    );
    tmux.wait_for("replay", "replay-done");
    assert_eq!(
        tmux.format("replay", "#{alternate_on} #{cursor_flag} #{mouse_any_flag}"),
        "0 1 0"
    );
}

/// `logs --tail N` / `-n N`: the last N lines, as tail(1) gives them, however much came
/// before; with `--follow`, what comes next; `--timeout` ends a follow.
#[test]
fn logs_tail_gives_the_last_lines_then_follows_until_the_timeout() {
    let d = TestDaemon::start();
    let s = d.session(
        &["--name", "lines"],
        &[
            "sh",
            "-c",
            "i=1; while [ $i -le 20000 ]; do echo \"line $i\"; i=$((i+1)); done; \
             read x; echo after; sleep 1000",
        ],
    );
    let id = id_of(&s);
    wait_until("all 20000 lines", DEADLINE, || {
        let out = d.cli(&["logs", "--tail", "1", &id]);
        (String::from_utf8_lossy(&out.stdout) == "line 20000\n").then_some(())
    });
    let logs = |args: &[&str]| {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        all.push(&id);
        let out = d.cli(&all);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // 200 KB of output: more than the first look back (64 KiB) holds.
    assert_eq!(
        logs(&["--tail", "3"]),
        "line 19998\nline 19999\nline 20000\n"
    );
    assert_eq!(logs(&["-n", "1"]), "line 20000\n");
    assert_eq!(logs(&["-n", "0"]), "");
    let all = logs(&["-n", "100000"]);
    assert!(all.starts_with("line 1\nline 2\n"), "{}", tail(&all, 50));
    assert_eq!(all.lines().count(), 20000);
    let n15000 = logs(&["-n", "15000"]);
    assert!(n15000.starts_with("line 5001\n"), "{}", &n15000[..40]);
    assert_eq!(
        d.ok(&["logs", "-n", "2", &id])["text"],
        "line 19999\nline 20000\n"
    );

    // Follow from the last line on; the timeout ends it with success.
    let mut follow = d
        .command(&["logs", "-n", "1", "--follow", "--timeout", "3s", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 11];
    follow
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"line 20000\n");
    d.ok(&["send", &id, "go"]);
    let out = follow.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("after"), "{text}");
    assert!(!text.contains("line 19999"), "{text}");
    // --timeout without --follow is a usage error.
    let out = d.cli(&["logs", "--timeout", "1s", &id]);
    assert!(!out.status.success());
}
