//! Agent control with real sessions: `send` (one unit, keys, modes, big input), `wait`
//! (match, screen, idle, exit, timeout), `status`, and the environment a program gets.
//! `tests/fixtures/fake-agent.sh` plays the agent.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-agent.sh");

/// Run the CLI with `--json`; (exit status, parsed stdout or Null).
fn run(d: &TestDaemon, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = d.cli(&all);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

/// `wait ID --match PATTERN --from 0 --timeout 20s`.
fn wait_from_start(d: &TestDaemon, id: &str, pattern: &str) -> (i32, Value) {
    run(
        d,
        &[
            "wait",
            id,
            "--match",
            pattern,
            "--from",
            "0",
            "--timeout",
            "20s",
        ],
    )
}

/// The README's supervisor, verbatim, with `claude` an echoing fake agent found only on
/// the script's PATH (not the daemon's): the session starts (the program is looked up on
/// the caller's PATH), and `wait --match DONE` returns the agent's reply, not the
/// terminal's echo of the prompt that asked for it.
#[test]
fn the_readme_supervisor_gets_the_agents_reply_not_the_echo_of_its_prompt() {
    let d = TestDaemon::start();
    let readme = include_str!("../README.md");
    let script = readme
        .split("## Supervising an agent from a script")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README's supervisor example");
    assert!(script.contains("-- claude"), "{script}");
    let bin = d.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("hearth")).unwrap();
    let claude = bin.join("claude");
    std::fs::write(&claude, format!("#!/bin/sh\nexec {AGENT}\n")).unwrap();
    std::fs::set_permissions(&claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = d.script(script, &bin).output_bounded();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().next(),
        Some("DONE"),
        "wait printed the wrong line:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("on it"),
        "status shows the screen: {stdout}"
    );
    // `--include-echo` lets the echo match (it comes first).
    let sent = d.ok(&["send", "agent", "now say DONE again"]);
    let off = sent["offset"].to_string();
    let w = d.ok(&[
        "wait",
        "agent",
        "--match",
        "DONE",
        "--from",
        &off,
        "--include-echo",
        "--timeout",
        "20s",
    ]);
    assert!(
        w["line"].as_str().unwrap().contains("now say DONE again"),
        "{w}"
    );
}

fn agent(d: &TestDaemon) -> String {
    let s = d.session(&["--name", "agent"], &[AGENT]);
    let id = id_of(&s);
    let (code, _) = run(
        d,
        &[
            "wait",
            &id,
            "--match",
            "^agent> $",
            "--from",
            "0",
            "--timeout",
            "20s",
        ],
    );
    assert_eq!(code, 0, "the agent's prompt never came");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_then_wait_is_race_free_a_thousand_times() {
    let d = TestDaemon::start();
    let id = agent(&d);
    let (client, _) = hearth_rpc::socket::connect(&d.socket).await.unwrap();
    for i in 0..1000 {
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + Duration::from_secs(60);
        let sent = client
            .send(
                ctx,
                id.clone(),
                hearth_rpc::SendRequest {
                    text: format!("q{i}"),
                    enter: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        let req = hearth_rpc::WaitRequest {
            until: hearth_rpc::WaitFor::Match {
                // Not anchored at the start: when the next input is echoed before the
                // agent prints its prompt, the reply shares a line with that prompt.
                regex: format!("answer: q{i}$"),
                screen: false,
                include_echo: false,
            },
            from: Some(sent.offset),
            timeout_ms: 20_000,
        };
        let r = client.wait(ctx, id.clone(), req).await.unwrap().unwrap();
        assert_eq!(
            r.reason,
            hearth_rpc::WaitReason::Match,
            "iteration {i}: {r:?}"
        );
    }
}

#[test]
fn send_and_wait_from_the_cli_with_json_and_the_audit_names_api() {
    let d = TestDaemon::start();
    let id = agent(&d);
    let (code, sent) = run(&d, &["send", &id, "hello", "world"]);
    assert_eq!(code, 0, "{sent}");
    assert_eq!(sent["bytes"], 12);
    let offset = sent["offset"].as_u64().unwrap().to_string();
    let (code, w) = run(
        &d,
        &[
            "wait",
            &id,
            "--match",
            "answer: (\\w+ \\w+)",
            "--from",
            &offset,
        ],
    );
    assert_eq!(code, 0, "{w}");
    assert_eq!(w["reason"], "match");
    assert_eq!(w["match"], "answer: hello world");
    assert_eq!(w["line"], "answer: hello world");
    assert!(w["offset"].as_u64().unwrap() > offset.parse::<u64>().unwrap());
    // The trigger is text like any other over the API: it never opens a menu.
    run(&d, &["send", &id, "a!>b"]);
    let (code, _) = run(
        &d,
        &[
            "wait",
            &id,
            "--match",
            "answer: a!>b",
            "--from",
            &offset,
            "--timeout",
            "20s",
        ],
    );
    assert_eq!(code, 0);
    let (_, s) = run(&d, &["status", &id, "--lines", "3"]);
    assert_eq!(s["last_input_by"], "api");
    assert!(s["lines"].as_array().unwrap().len() <= 3);
    assert!(
        ["busy", "idle"].contains(&s["activity"].as_str().unwrap()),
        "{s}"
    );
    assert!(s["output_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        (s["cols"].as_u64(), s["rows"].as_u64()),
        (Some(80), Some(24))
    );
    d.ok(&["kill", &id]);
    let rec = s["recording"]
        .as_str()
        .unwrap()
        .replace(".cast", ".audit.jsonl");
    let audit = std::fs::read_to_string(rec).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"client\":\"api\"")
            && l.contains("\"uid\":")
            && l.contains("hello world")),
        "{audit}"
    );
}

#[test]
fn control_keys_reach_the_program_c_c_stops_a_sleep() {
    let d = TestDaemon::start();
    let (id, _) = d.shell(&[]);
    run(&d, &["send", &id, "sleep 313; echo slept-$((1+1))"]);
    wait_until("sleep 313 to run", DEADLINE, || {
        let out = external("pgrep")
            .args(["-f", "^sleep 313$"])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    let (code, v) = run(&d, &["send", &id, "--key", "C-c"]);
    assert_eq!(code, 0, "{v}");
    run(&d, &["send", &id, "echo after-$((20+22))"]);
    let (code, _) = wait_from_start(&d, &id, "^after-42$");
    assert_eq!(code, 0, "C-c did not stop the sleep");
    let tail = d.cli(&["tail", &id]);
    assert!(!String::from_utf8_lossy(&tail.stdout).contains("slept-2"));
}

#[test]
fn arrows_follow_the_programs_cursor_key_mode() {
    let d = TestDaemon::start();
    let script = "printf '\\033[?1h'; stty raw -echo; echo READY; \
                  dd bs=3 count=1 2>/dev/null | od -An -tx1; sleep 100";
    let id = id_of(&d.session(&[], &["sh", "-c", script]));
    let (code, _) = wait_from_start(&d, &id, "READY");
    assert_eq!(code, 0);
    run(&d, &["send", &id, "--key", "up"]);
    let (code, w) = wait_from_start(&d, &id, "1b 4f 41");
    assert_eq!(code, 0, "application-mode Up is ESC O A: {w}");
}

#[test]
fn idle_never_fires_during_steady_output_and_does_when_quiet() {
    let d = TestDaemon::start();
    let ticker = id_of(&d.session(
        &[],
        &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
    ));
    let (code, w) = run(&d, &["wait", &ticker, "--idle", "1s", "--timeout", "3s"]);
    assert_eq!(code, 124, "idle fired during output: {w}");
    assert_eq!(w["reason"], "timeout");
    let quiet = id_of(&d.session(&[], &["sh", "-c", "echo once; sleep 100"]));
    let (code, w) = run(&d, &["wait", &quiet, "--idle", "300ms", "--timeout", "20s"]);
    assert_eq!(code, 0, "{w}");
    assert_eq!(w["reason"], "idle");
    assert!(w["idle_ms"].as_u64().unwrap() >= 300);
}

#[test]
fn timeouts_give_124_and_an_ended_session_gives_3() {
    let d = TestDaemon::start();
    let id = agent(&d);
    let (code, w) = run(
        &d,
        &["wait", &id, "--match", "never-printed", "--timeout", "1s"],
    );
    assert_eq!((code, w["reason"].as_str()), (124, Some("timeout")));
    run(&d, &["send", &id, "quit"]);
    let (code, w) = run(
        &d,
        &["wait", &id, "--match", "never-printed", "--timeout", "20s"],
    );
    assert_eq!(code, 3, "{w}");
    assert_eq!(
        (w["reason"].as_str(), w["exit_code"].as_i64()),
        (Some("exit"), Some(7))
    );
    let (code, w) = run(&d, &["wait", &id, "--exit", "--timeout", "20s"]);
    assert_eq!((code, w["exit_code"].as_i64()), (0, Some(7)));
    // Exited: send is refused plainly.
    let msg = d.err(&["send", &id, "hello"], "invalid_state");
    assert!(msg.contains("exited"), "{msg}");
}

#[test]
fn screen_matches_text_drawn_by_cursor_addressing() {
    let d = TestDaemon::start();
    let id = agent(&d);
    run(&d, &["send", &id, "fullscreen"]);
    // The stream has "VIEW" before "FULL"; the screen shows "FULL VIEW".
    let (code, w) = run(
        &d,
        &[
            "wait",
            &id,
            "--screen",
            "--match",
            "FULL.VIEW",
            "--timeout",
            "20s",
        ],
    );
    assert_eq!(code, 0, "{w}");
    let (code, _) = run(
        &d,
        &[
            "wait",
            &id,
            "--match",
            "FULL.VIEW",
            "--from",
            "0",
            "--timeout",
            "1s",
        ],
    );
    assert_eq!(code, 124, "the stream should not show it in that order");
}

#[test]
fn empty_and_invalid_regexes_and_unknown_keys_are_clear_errors() {
    let d = TestDaemon::start();
    let (id, _) = d.shell(&[]);
    let msg = d.err(
        &["wait", &id, "--match", "", "--timeout", "1s"],
        "invalid_argument",
    );
    assert!(msg.contains("empty"), "{msg}");
    let msg = d.err(
        &["wait", &id, "--match", "(", "--timeout", "1s"],
        "invalid_argument",
    );
    assert!(msg.contains("invalid regex"), "{msg}");
    let msg = d.err(&["send", &id, "--key", "hyper-x"], "invalid_argument");
    assert!(msg.contains("unknown key"), "{msg}");
    d.err(&["send", "nosuch", "x"], "not_found");
}

#[test]
fn a_megabyte_from_stdin_arrives_intact() {
    let d = TestDaemon::start();
    let out = d.dir.path().join("received");
    let script = format!(
        "stty raw -echo; echo READY; head -c 1000000 > {}; echo GOT-IT; sleep 100",
        out.display()
    );
    let id = id_of(&d.session(&[], &["sh", "-c", &script]));
    let (code, _) = wait_from_start(&d, &id, "READY");
    assert_eq!(code, 0);
    let mut x: u32 = 7;
    let text: String = (0..1_000_000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 100 == 99 {
                '\n'
            } else {
                (b'!' + (x % 90) as u8) as char
            }
        })
        .collect();
    let o = d.cli_fed(
        &["--json", "send", &id, "--stdin", "--no-enter"],
        text.as_bytes(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let (code, _) = run(
        &d,
        &[
            "wait",
            &id,
            "--match",
            "GOT-IT",
            "--from",
            "0",
            "--timeout",
            "30s",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        std::fs::read(&out).unwrap() == text.as_bytes(),
        "the input was altered"
    );
}

#[test]
fn programs_know_their_session_and_if_absent_returns_the_running_one() {
    let d = TestDaemon::start();
    let script = "echo \"id=$HEARTH_SESSION sock=$HEARTH_SOCKET\"; sleep 100";
    let s = d.session(&["--name", "self"], &["sh", "-c", script]);
    let id = id_of(&s);
    let expect = format!("id={id} sock={}", d.socket.display());
    let (code, w) = wait_from_start(&d, &id, &regex_escape(&expect));
    assert_eq!(code, 0, "{w}");
    let again = d.session(&["--name", "self", "--if-absent"], &["sh", "-c", script]);
    assert_eq!(id_of(&again), id);
    assert_eq!(again["already_running"], true, "{again}");
    assert_eq!(d.ok(&["ps"]).as_array().unwrap().len(), 1);
    let human = d.cli(&[
        "server",
        "--bind",
        "127.0.0.1",
        "--name",
        "self",
        "--if-absent",
        "--",
        "true",
    ]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("already running") && !text.contains("started"),
        "{text}"
    );
    // A session of that name that exited is absent: a new one starts (it failed with
    // already_exists, so the README's script got id=null).
    let gone = d.session(&["--name", "done"], &["true"]);
    let (code, _) = run(&d, &["wait", "done", "--exit", "--timeout", "20s"]);
    assert_eq!(code, 0);
    let fresh = d.session(&["--name", "done", "--if-absent"], &["sleep", "100"]);
    assert_ne!(id_of(&fresh), id_of(&gone));
    assert_eq!(fresh["already_running"], false, "{fresh}");
    assert_eq!(fresh["state"], "up", "{fresh}");
    d.ok(&["kill", "done"]);
    let ps = d.ok(&["ps"]);
    for field in [
        "activity",
        "idle_ms",
        "title",
        "cols",
        "rows",
        "output_bytes",
        "bell_count",
        "last_output_at",
    ] {
        assert!(ps[0].get(field).is_some(), "ps --json lacks {field}");
    }
    let human = d.cli(&["ps"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("ACTIVITY"));
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ' ' || c == '=' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn restart_starts_the_same_command_name_and_port_after_an_exit_or_a_kill() {
    let d = TestDaemon::start();
    let s = d.session(
        &["--name", "job", "--env", "WHO=me"],
        &["sh", "-c", "echo run-$WHO; exit 4"],
    );
    let (id, port) = (id_of(&s), port_of(&s));
    let (code, _) = run(&d, &["wait", &id, "--exit", "--timeout", "20s"]);
    assert_eq!(code, 0);
    let again = d.ok(&["restart", "job"]);
    assert_ne!(id_of(&again), id);
    // A script holding the old id can follow: the new id says what it replaced.
    assert_eq!(again["restarted_from"], id.as_str(), "{again}");
    assert_eq!(
        (again["name"].as_str(), port_of(&again)),
        (Some("job"), port)
    );
    let (code, w) = run(
        &d,
        &[
            "wait",
            "job",
            "--match",
            "run-me",
            "--from",
            "0",
            "--timeout",
            "20s",
        ],
    );
    assert_eq!(code, 0, "{w}");
    // Killed: still known to restart, by name.
    let (code, _) = run(&d, &["wait", "job", "--exit", "--timeout", "20s"]);
    assert_eq!(code, 0);
    d.ok(&["kill", "job"]);
    let third = d.ok(&["restart", "job"]);
    assert_eq!(port_of(&third), port);
    assert_eq!(third["restarted_from"], id_of(&again).as_str(), "{third}");
    // A running session is not restarted behind its users' backs.
    let (live, _) = d.shell(&[]);
    let msg = d.err(&["restart", &live], "invalid_state");
    assert!(msg.contains("still running"), "{msg}");
    d.err(&["restart", "never-was"], "not_found");
}

/// `send --name GLOB` (and `--all`) types into each picked session as one unit and says
/// what happened to each: an offset to wait from, or why not; one session that cannot
/// take input never stops the others, and the command exits 1.
#[test]
fn send_to_many_reports_each_and_never_stops_at_one_that_cannot_take_it() {
    let d = TestDaemon::start();
    let echo = ["sh", "-c", "while IFS= read -r l; do echo \"got:$l\"; done"];
    for i in 0..19 {
        d.session(&["--name", &format!("fleet-{i:02}")], &echo);
    }
    let dead = id_of(&d.session(&["--name", "fleet-19"], &["true"]));
    wait_until("fleet-19 to exit", DEADLINE, || {
        (d.ok(&["status", &dead])["activity"] == "exited").then_some(())
    });
    let other = id_of(&d.session(&["--name", "other"], &echo));

    let out = d.cli(&["--json", "send", "--name", "fleet-*", "hello", "fleet"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 20, "{rows:#?}");
    let failed: Vec<&Value> = rows.iter().filter(|r| r["error"].is_object()).collect();
    assert_eq!(failed.len(), 1, "{rows:#?}");
    assert_eq!(failed[0]["name"], "fleet-19", "{rows:#?}");
    assert!(failed[0]["error"]["message"].is_string(), "{rows:#?}");
    // Each reply is there, after the offset each send gave.
    for r in rows.iter().filter(|r| r["offset"].is_u64()) {
        let id = r["session"].as_str().unwrap();
        let offset = r["offset"].as_u64().unwrap().to_string();
        let w = d.ok(&[
            "wait",
            id,
            "--match",
            "^got:hello fleet$",
            "--from",
            &offset,
            "--timeout",
            "20s",
        ]);
        assert_eq!(w["reason"], "match", "{id}: {w}");
    }
    // The glob picked only its own.
    let logs = String::from_utf8_lossy(&d.cli(&["logs", &other]).stdout).into_owned();
    assert!(!logs.contains("got:hello"), "{logs}");
    // --all reaches it too; text output names each session.
    let out = d.cli(&["send", "--all", "everyone"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 21, "{text}");
    assert!(text.contains("other: sent 9 bytes"), "{text}");
    // Nothing picked, a bad state, and neither a target nor a selector: clear errors.
    let m = d.err(&["send", "--name", "nosuch-*", "x"], "not_found");
    assert!(m.contains("no session matches"), "{m}");
    let m = d.err(&["send", "--state", "sleepy", "x"], "invalid_argument");
    assert!(m.contains("unknown state 'sleepy'"), "{m}");
    let m = d.err(&["send"], "invalid_argument");
    assert!(m.contains("--all"), "{m}");
}
