//! Reliability: ended sessions stay known (history, logs, screen, replay, restart) across
//! daemon restarts; recordings survive a `kill -9` of the daemon; nothing a session started
//! outlives `kill` or a daemon crash; orphans the daemon adopts are reaped.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Every line of a cast parses, except at most a truncated last one (which readers
/// drop); the header is asciicast v2. Returns the output text.
fn valid_cast(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).expect("a header line");
    assert_eq!(header["version"], 2, "{}", lines[0]);
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate().skip(1) {
        match serde_json::from_str::<Value>(line) {
            Ok(e) if e[1] == "o" => out.push_str(e[2].as_str().unwrap()),
            Ok(_) => {}
            Err(e) => assert!(
                i == lines.len() - 1 && !text.ends_with('\n'),
                "line {i} of {} is broken ({e}) and not a torn last line: {line:?}",
                path.display()
            ),
        }
    }
    out
}

fn pid_in(path: &Path) -> i32 {
    wait_until("the pid file", DEADLINE, || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or_default()
            .trim_start()
            .starts_with('Z')
    })
}

fn recording_of(d: &TestDaemon, target: &str) -> PathBuf {
    PathBuf::from(
        d.ok(&["ps"])
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == target || s["name"] == target)
            .unwrap()["recording"]
            .as_str()
            .unwrap(),
    )
}

#[test]
fn ended_sessions_stay_known_across_daemon_restarts() {
    let mut d = TestDaemon::start();
    let s = d.session(
        &["--name", "hist"],
        &[
            "sh",
            "-c",
            "echo hello-history; echo second line; sleep 1000",
        ],
    );
    let id = id_of(&s);
    wait_until("the output", DEADLINE, || {
        d.ok(&["screen", "hist"])["screen"]
            .as_str()?
            .contains("second line")
            .then_some(())
    });
    d.ok(&["kill", "hist"]);
    // Killed: gone from `ps`, in `history` with its exit and recording.
    assert!(d.ok(&["ps"]).as_array().unwrap().is_empty());
    let check = |d: &TestDaemon| {
        let h = d.ok(&["history"]);
        let e = &h.as_array().unwrap()[0];
        assert_eq!(e["id"], id.as_str(), "{h}");
        assert_eq!(e["name"], "hist");
        assert_eq!(e["exit_code"], 129, "SIGHUP: {h}");
        assert!(e["recording_bytes"].as_u64().unwrap() > 0, "{h}");
        assert!(e["ended_at"].is_string() && e["lost"] == false, "{h}");
        // logs, tail and screen of the ended session, by name and by id.
        let logs = d.ok(&["logs", "hist"]);
        assert!(
            logs["text"].as_str().unwrap().contains("hello-history"),
            "{logs}"
        );
        assert_eq!(logs["exit_code"], 129);
        let tail = d.cli(&["tail", "--bytes", "13", &id]);
        assert_eq!(String::from_utf8_lossy(&tail.stdout), "second line\r\n");
        let screen = d.ok(&["screen", &id]);
        assert!(
            screen["screen"].as_str().unwrap().contains("hello-history"),
            "{screen}"
        );
        let out = d.cli(&["replay", "--speed", "1000", "hist"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("second line"));
        let all = d.ok(&["ps", "--all"]);
        assert_eq!(all["ended"][0]["id"], id.as_str(), "{all}");
        let human = String::from_utf8_lossy(&d.cli(&["ps", "--all"]).stdout).into_owned();
        assert!(human.contains("ENDED") && human.contains(&id), "{human}");
    };
    check(&d);
    // A new daemon knows it too, from the records beside the recordings.
    assert!(d.terminate());
    d.restart();
    check(&d);
    assert_eq!(
        d.ok(&["history", "--since", "1h"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // ...and can start it again (same command and name).
    let again = d.ok(&["restart", "hist"]);
    assert_eq!(again["name"], "hist");
    assert_ne!(again["id"], id.as_str());
    // A running session is not history.
    assert!(
        d.ok(&["history"])
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "hist" || e["id"] == id.as_str())
    );
    d.err(&["logs", "never-was"], "not_found");
    d.err(&["screen", "never-was"], "not_found");
}

/// A steady ticker's recording is on disk within ~1 s while it runs, and a `kill -9` of the
/// daemon mid-ticker and mid-flood leaves valid casts; the next daemon lists both sessions
/// as ended with it.
#[test]
fn recordings_survive_a_daemon_crash() {
    // Sessions in the daemon's process end with it (tests/survive.rs: in their own).
    let mut d = TestDaemon::start_in_daemon();
    let ticker = d.session(
        &["--name", "ticker"],
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done",
        ],
    );
    d.session(
        &["--name", "flood"],
        &["sh", "-c", "while true; do seq 1 2000; done"],
    );
    let cast = recording_of(&d, "ticker");
    // Wait until the live log shows tick 15; the cast must already hold tick 7, printed
    // at least 1.6 s earlier (it is written out at least every second).
    wait_until("tick-15 in the live log", DEADLINE, || {
        let out = d.cli(&["tail", "--bytes", "200", "ticker"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("tick-15")
            .then_some(())
    });
    let recorded = valid_cast(&cast);
    assert!(
        recorded.contains("tick-7\r\n"),
        "the cast lags: {recorded:?}"
    );
    let flood_cast = recording_of(&d, "flood");
    wait_until("the flood on disk", DEADLINE, || {
        (std::fs::metadata(&flood_cast).ok()?.len() > 100_000).then_some(())
    });
    d.crash();
    let ticks = valid_cast(&cast);
    // Everything up to ~1 s before the crash (the ticker had printed tick-15).
    assert!(ticks.contains("tick-8\r\n"), "{ticks:?}");
    let flood = valid_cast(&flood_cast);
    assert!(flood.len() > 50_000, "{} bytes", flood.len());
    d.restart();
    let h = d.ok(&["history"]);
    let ended: Vec<&Value> = h.as_array().unwrap().iter().collect();
    assert_eq!(ended.len(), 2, "{h}");
    for e in ended {
        assert_eq!(e["lost"], true, "{h}");
        assert!(e["exit_code"].is_null() && e["ended_at"].is_string(), "{h}");
    }
    // The screen of a crashed session is rebuilt from its recording.
    let screen = d.ok(&["screen", &id_of(&ticker)]);
    assert!(
        screen["screen"].as_str().unwrap().contains("tick-"),
        "{screen}"
    );
    let human = String::from_utf8_lossy(&d.cli(&["history"]).stdout).into_owned();
    assert!(human.contains("daemon died"), "{human}");
}

/// What a session starts is gone after `kill`, even a child that left its tty session
/// (`setsid`) and ignores SIGHUP; after a daemon crash the leader dies with the daemon
/// (even one ignoring SIGHUP), and the next daemon ends what is left.
#[test]
fn nothing_a_session_started_outlives_kill_or_a_daemon_crash() {
    // Sessions in the daemon's process end with it (tests/survive.rs: in their own).
    let mut d = TestDaemon::start_in_daemon();
    let dir = d.dir.path().to_path_buf();
    let script = |tag: &str| {
        format!(
            "setsid sh -c 'trap \"\" HUP; echo $$ > {dir}/{tag}-setsid.pid; exec sleep 1000' & \
             trap '' HUP; echo $$ > {dir}/{tag}-leader.pid; exec sleep 1000",
            dir = dir.display()
        )
    };
    d.session(&["--name", "k"], &["sh", "-c", &script("kill")]);
    let (leader, setsid) = (
        pid_in(&dir.join("kill-leader.pid")),
        pid_in(&dir.join("kill-setsid.pid")),
    );
    assert!(alive(leader) && alive(setsid));
    d.ok(&["kill", "k"]);
    wait_until("both gone after kill", DEADLINE, || {
        (!alive(leader) && !alive(setsid)).then_some(())
    });

    d.session(&["--name", "c"], &["sh", "-c", &script("crash")]);
    let (leader, setsid) = (
        pid_in(&dir.join("crash-leader.pid")),
        pid_in(&dir.join("crash-setsid.pid")),
    );
    d.crash();
    // The leader ignores SIGHUP: it dies of the daemon's death (PDEATHSIG), not the tty.
    wait_until("the leader gone with the daemon", DEADLINE, || {
        (!alive(leader)).then_some(())
    });
    assert!(
        alive(setsid),
        "a setsid child ignoring SIGHUP lingers until a daemon starts"
    );
    d.restart();
    wait_until("the next daemon to end what was left", DEADLINE, || {
        (!alive(setsid)).then_some(())
    });
}

/// A double fork (the grandchild is orphaned, adopted by the daemon as subreaper) leaves
/// no zombie behind, and the session's own exit status is still right.
#[test]
fn adopted_orphans_are_reaped_and_exit_codes_stay_right() {
    let d = TestDaemon::start();
    let s = d.session(
        &[],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do (sleep 0.1 &); done; sleep 1; exit 7",
        ],
    );
    let id = id_of(&s);
    let code = wait_until("the exit", DEADLINE, || {
        d.ok(&["ps"])[0]["exit_code"].as_i64()
    });
    assert_eq!(code, 7);
    let daemon = d.pid() as i32;
    wait_until("no zombie children of the daemon", DEADLINE, || {
        let zombies: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    let mut f = s.rsplit(')').next().unwrap_or_default().split_whitespace();
                    f.next() == Some("Z") && f.next() == Some(daemon.to_string().as_str())
                })
            })
            .collect();
        zombies.is_empty().then_some(())
    });
    d.ok(&["kill", &id]);
}

/// Sessions start through the exec shim: a program that does not exist is still refused
/// at create, clearly, and the program sees its own name and a clean environment.
#[test]
fn a_bad_command_is_still_a_clear_error_at_create() {
    let d = TestDaemon::start();
    let msg = d.err(&["server", "--", "no-such-program-hearth"], "spawn");
    assert!(
        msg.contains("no-such-program-hearth") && msg.contains("not found"),
        "{msg}"
    );
    let s = d.session(
        &[],
        &[
            "sh",
            "-c",
            "echo argv0=$0; grep SigIgn /proc/$$/status; echo done",
        ],
    );
    let id = id_of(&s);
    let text = wait_until("the output", DEADLINE, || {
        let t = d.ok(&["logs", &id])["text"].as_str()?.to_string();
        t.contains("done").then_some(t)
    });
    assert!(text.contains("argv0=sh"), "{text}");
    let ignored = text
        .split("SigIgn:")
        .nth(1)
        .and_then(|r| u64::from_str_radix(r.split_whitespace().next()?, 16).ok())
        .unwrap();
    assert_eq!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE is ignored: {text}"
    );
    let _ = Duration::ZERO;
}

/// Threads of the daemon whose name starts with `prefix` (`pty-write-`...).
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|t| t.ok())
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim().starts_with(prefix))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The daemon's open pty masters.
fn ptmx_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|f| f.ok())
                .filter(|f| {
                    std::fs::read_link(f.path()).is_ok_and(|l| l.to_string_lossy().contains("ptmx"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// `kill` of a session whose program never reads, with input still queued for it, leaves
/// nothing: no PTY writer thread blocked in a write, no pty fd, no queued input.
#[test]
fn kill_with_input_queued_leaves_no_thread_fd_or_buffer() {
    let d = TestDaemon::start();
    let pid = d.pid();
    let input: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    for round in 0..3 {
        let id = id_of(&d.session(&[], &["sleep", "1000"]));
        // More than the pty takes while nobody reads: the writer thread blocks in write.
        for _ in 0..3 {
            d.cli_fed(&["send", &id, "--stdin"], input.as_bytes());
        }
        d.ok(&["kill", &id]);
        wait_until(
            &format!("round {round}: the session's pty thread and fd to go"),
            DEADLINE,
            || {
                let (t, f) = (threads_named(pid, "pty-write-"), ptmx_fds(pid));
                (t == 0 && f == 0).then_some(())
            },
        );
    }
}
