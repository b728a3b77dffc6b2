//! Events, hooks and triggers with real sessions and clients: order, resuming, a reader
//! that falls behind, hooks that are slow or loud, and triggers that react to the program
//! but never to a human's typing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `events [ID] --json` (what the ring holds), parsed.
fn events(d: &TestDaemon, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "events"];
    args.extend_from_slice(extra);
    let out = d.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kinds(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

fn wait_kind(d: &TestDaemon, id: &str, kind: &str) -> Vec<Value> {
    wait_until(&format!("a {kind} event"), DEADLINE, || {
        let evs = events(d, &[id]);
        evs.iter().any(|e| e["kind"] == kind).then_some(evs)
    })
}

#[test]
fn events_arrive_in_order_for_create_join_match_leave_exit_with_openssh() {
    let d = TestDaemon::start();
    let s = d.session(&["--trigger", "done=DONE-NOW"], &["/bin/sh"]);
    let (id, port) = (id_of(&s), port_of(&s));
    let mut ssh = external("ssh")
        .args(ssh_args(&d.owner, port))
        .args(["-tt", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_kind(&d, &id, "joined");
    d.ok(&["send", &id, "printf 'DONE-%s\\n' NOW"]);
    wait_kind(&d, &id, "match");
    let _ = ssh.kill();
    let _ = ssh.wait();
    wait_kind(&d, &id, "left");
    d.ok(&["send", &id, "exit 3"]);
    let evs = wait_kind(&d, &id, "exited");
    let k = kinds(&evs);
    let pos = |kind: &str| {
        k.iter()
            .position(|x| x == kind)
            .unwrap_or_else(|| panic!("no {kind} in {k:?}"))
    };
    assert!(pos("created") < pos("joined"));
    assert!(pos("joined") < pos("match"));
    assert!(pos("match") < pos("left"));
    assert!(pos("left") < pos("exited"));
    let joined = &evs[pos("joined")];
    assert_eq!(
        (
            joined["client"].as_str().unwrap().ends_with("-1"),
            joined["role"].as_str()
        ),
        (true, Some("owner"))
    );
    assert_eq!(evs[pos("match")]["trigger"], "done");
    assert_eq!(evs[pos("exited")]["exit_code"], 3);
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The match is marked in the recording too.
    let cast = std::fs::read_to_string(s["recording"].as_str().unwrap()).unwrap();
    assert!(cast.contains("trigger done matched"));
}

#[test]
fn since_resumes_exactly_and_a_reader_behind_the_ring_is_told() {
    let env = Env::new();
    env.write_config("[events]\nring = 10\n");
    let d = env.start_daemon();
    // Silent sessions: `created` events only, so the counts below are exact.
    for _ in 0..3 {
        d.session(&[], &["sleep", "100"]);
    }
    let evs = events(&d, &[]);
    assert_eq!(evs.len(), 3, "{:?}", kinds(&evs));
    let third = evs[2]["seq"].as_u64().unwrap();
    let resumed = events(&d, &["--since", &third.to_string()]);
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0]["seq"].as_u64(), Some(third));
    for _ in 0..12 {
        d.session(&[], &["sleep", "100"]);
    }
    let behind = events(&d, &["--since", "1"]);
    assert_eq!(behind[0]["kind"], "skipped", "{:?}", kinds(&behind));
    assert_eq!(behind[0]["count"].as_u64(), Some(5));
    assert_eq!(behind.len(), 11);
    assert!(behind[0]["count"].as_u64().unwrap() > 0);
    // A follower that stops reading costs the daemon nothing: it still answers.
    let mut follower = d
        .command(&["--json", "events", "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..5 {
        d.session(&[], &["/bin/sh"]);
    }
    assert!(d.cli(&["ps"]).status.success());
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn a_slow_hook_delays_nothing_and_a_loud_one_costs_no_memory() {
    let env = Env::new();
    let marks = env.dir.path().join("marks");
    let done = env.dir.path().join("loud-done");
    env.write_config(&format!(
        "[[hooks]]\non = [\"created\"]\nrun = \"sleep 30\"\n\n\
         [[hooks]]\non = [\"created\"]\nrun = \"head -c 100000000 /dev/zero; touch {}\"\n\n\
         [[hooks]]\non = [\"exited\"]\nsession = \"qu*\"\nrun = \"echo $HEARTH_EVENT_KIND $HEARTH_SESSION_NAME >> {}\"\n",
        done.display(),
        marks.display()
    ));
    let d = env.start_daemon();
    let rss_before = d.rss_kib();
    let s = d.session(&["--name", "quick"], &["sh", "-c", "echo hi; exit 2"]);
    let _other = d.session(&["--name", "other"], &["sh", "-c", "exit 0"]);
    wait_until("the exited hook for quick", DEADLINE, || {
        std::fs::read_to_string(&marks)
            .ok()
            .filter(|t| t.contains("exited quick"))
    });
    assert!(
        !std::fs::read_to_string(&marks).unwrap().contains("other"),
        "the session glob"
    );
    // Output and events went on while `sleep 30` ran.
    let tail = d.cli(&["tail", &id_of(&s)]);
    assert!(String::from_utf8_lossy(&tail.stdout).contains("hi"));
    wait_until("the loud hook to finish", DEADLINE, || {
        done.exists().then_some(())
    });
    let rss_after = d.rss_kib();
    assert!(
        rss_after < rss_before + 20 * 1024,
        "{rss_before} -> {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_fire_once_per_cooldown_stay_silent_while_typing_and_ignore_typed_words() {
    let env = Env::new();
    env.write_config(
        "[[triggers]]\nname = \"phrase\"\nmatch = \"secret phrase\"\ncooldown = \"0s\"\nhold_while_typing = \"0s\"\n",
    );
    let d = env.start_daemon();
    let s = d.session(
        &[
            "--trigger",
            "lim=usage limit reached",
            "--trigger-send",
            "lim=echo continuing-$((40+2))\r",
        ],
        &["/bin/sh"],
    );
    let (id, port) = (id_of(&s), port_of(&s));
    let matches = |name: &str| {
        events(&d, &[&id])
            .into_iter()
            .filter(|e| e["kind"] == "match" && e["trigger"] == name)
            .count()
    };
    // The program prints it twice in a row: one match (cooldown), one reply.
    d.ok(&[
        "send",
        &id,
        "printf 'usage %s reached\\n' limit; printf 'usage %s reached\\n' limit",
    ]);
    wait_until("the reply", DEADLINE, || {
        let t = d.cli(&["tail", &id]);
        String::from_utf8_lossy(&t.stdout)
            .contains("continuing-42")
            .then_some(())
    });
    assert_eq!(matches("lim"), 1);
    // Output, not typing: the config trigger fires on the program's line...
    d.ok(&["send", &id, "printf 'secret %s\\n' phrase"]);
    wait_until("the phrase match", DEADLINE, || {
        (matches("phrase") == 1).then_some(())
    });
    // ...but not on a human typing the same words (the terminal echoes them).
    let human = SshClient::connect(port, &d.owner, "human", 80, 24).await;
    human.send("# secret phrase\r").await;
    human.send("echo typed-$((1+1))\r").await;
    human.wait_text("typed-2").await;
    assert_eq!(matches("phrase"), 1, "fired on typed words");
    // Within the typing window (5 s by default), `lim` stays silent even on real output.
    human
        .send("printf 'usage %s reached\\n' limit; echo after-$((2+2))\r")
        .await;
    human.wait_text("after-4").await;
    assert_eq!(matches("lim"), 1, "fired while a human was typing");
    drop(human);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[test]
fn bad_trigger_and_hook_configs_are_clear_errors() {
    let d = TestDaemon::start();
    let msg = d.err(
        &["server", "--trigger", "x=(", "--", "/bin/sh"],
        "invalid_argument",
    );
    assert!(msg.contains("invalid regex"), "{msg}");
    let msg = d.err(
        &["server", "--trigger-send", "nope=hi", "--", "/bin/sh"],
        "invalid_argument",
    );
    assert!(msg.contains("no --trigger named"), "{msg}");
    let env = Env::new();
    env.write_config("[[hooks]]\nrun = \"\"\n");
    let mut child = env.spawn_daemon();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        env.daemon_log().contains("hooks[0].run is empty"),
        "{}",
        env.daemon_log()
    );
}

#[test]
fn a_program_ringing_in_a_loop_cannot_flood_the_ring() {
    let d = TestDaemon::start();
    let script = "printf '\\033]0;my title\\007'; i=0; while [ $i -lt 3000 ]; do printf '\\a'; i=$((i+1)); done; sleep 100";
    let id = id_of(&d.session(&[], &["sh", "-c", script]));
    let evs = wait_kind(&d, &id, "title");
    assert!(
        evs.iter()
            .any(|e| e["kind"] == "title" && e["title"] == "my title")
    );
    let status = d.ok(&["status", &id]);
    wait_until("every bell counted", DEADLINE, || {
        let s = d.ok(&["status", &id]);
        (s["bell_count"].as_u64() == Some(3000)).then_some(())
    });
    let bells = events(&d, &[&id])
        .iter()
        .filter(|e| e["kind"] == "bell")
        .count();
    assert!(bells <= 3, "{bells} bell events for 3000 bells ({status})");
}

#[test]
fn a_command_that_exits_at_once_still_reports_created_then_exited() {
    let d = TestDaemon::start();
    for _ in 0..5 {
        let id = id_of(&d.session(&[], &["true"]));
        let evs = wait_kind(&d, &id, "exited");
        let k = kinds(&evs);
        assert_eq!(k.first().map(String::as_str), Some("created"), "{k:?}");
        assert_eq!(k.iter().filter(|x| *x == "exited").count(), 1, "{k:?}");
    }
}

/// A hook that starts children (`sleep &`, or a pipeline) leaves nothing running after its
/// timeout, nor after it exits on its own: its whole process group ends with it.
#[test]
fn a_hook_leaves_nothing_behind_after_its_timeout() {
    let env = Env::new();
    env.write_config(
        "[[hooks]]\non = [\"created\"]\nrun = \"sleep 4711 & sleep 4712\"\ntimeout = \"1s\"\n\n\
         [[hooks]]\non = [\"created\"]\nrun = \"sleep 4713 & exit 0\"\n",
    );
    let d = env.start_daemon();
    d.session(&[], &["sleep", "100"]);
    let running = |pattern: &str| {
        external("pgrep")
            .args(["-f", pattern])
            .output_bounded()
            .status
            .success()
    };
    wait_until("the hooks to start", DEADLINE, || {
        running("^sleep 4712$").then_some(())
    });
    wait_until("the timed-out hook's children to end", DEADLINE, || {
        (!running("^sleep 471[123]$")).then_some(())
    });
}

/// A program that prints and then goes quiet is reported `busy`, then `idle` about
/// `BUSY_WITHIN` (2 s) after its last output, once per spell, with how long it has been
/// quiet; the session reports them through the same stream as its other events.
#[test]
fn a_program_is_reported_busy_then_idle_once_per_spell() {
    let d = TestDaemon::start();
    let s = d.session(&[], &["sh", "-c", "echo working; sleep 1000"]);
    let id = id_of(&s);
    let evs = wait_kind(&d, &id, "idle");
    let k = kinds(&evs);
    let busy = k.iter().position(|k| k == "busy").expect("a busy event");
    let idle = k.iter().position(|k| k == "idle").unwrap();
    assert!(busy < idle, "{k:?}");
    assert_eq!(k.iter().filter(|k| *k == "busy").count(), 1, "{k:?}");
    assert!(
        evs[idle]["idle_ms"].as_u64().unwrap() >= 1000,
        "{}",
        evs[idle]
    );
    // A new spell of output: busy again, then idle again.
    d.ok(&["send", &id, "x"]);
    wait_until("a second idle", DEADLINE, || {
        let k = kinds(&events(&d, &[&id]));
        (k.iter().filter(|k| *k == "idle").count() == 2).then_some(())
    });
    let k = kinds(&events(&d, &[&id]));
    assert_eq!(k.iter().filter(|k| *k == "busy").count(), 2, "{k:?}");
}

/// `events NAME` (and `logs`, `screen`, `replay`) of a session that has ended finds it by
/// the name it had, even when NAME is also the start of a live session's id.
#[test]
fn an_ended_sessions_name_wins_over_a_live_sessions_id_prefix() {
    let d = TestDaemon::start();
    let (live, _) = d.shell(&[]);
    let name = &live[..2];
    let ended = d.session(
        &["--name", name],
        &["sh", "-c", "echo ended-words; sleep 1000"],
    );
    d.ok(&[
        "wait",
        name,
        "--match",
        "^ended-words$",
        "--from",
        "0",
        "--timeout",
        "10s",
    ]);
    d.ok(&["kill", name]);
    let logs = String::from_utf8_lossy(&d.cli(&["logs", name]).stdout).into_owned();
    assert!(logs.contains("ended-words"), "{logs:?}");
    let screen = d.ok(&["screen", name]);
    assert!(screen.to_string().contains("ended-words"), "{screen}");
    let replay = d.cli(&["replay", name, "--speed", "1000"]);
    let played = String::from_utf8_lossy(&replay.stdout).into_owned();
    assert!(
        played.contains("ended-words"),
        "{played:?} {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let evs = events(&d, &[name]);
    assert!(!evs.is_empty());
    assert!(
        evs.iter().all(|e| e["session"] == id_of(&ended).as_str()),
        "{evs:?}"
    );
}

/// `kill` returns once the session's `exited` is among the events: a script that kills and
/// then reads the events (or a hook on `exited`) never misses it, whether the session ran
/// in a process of its own (whose last events the daemon copies before the process stops)
/// or in the daemon's.
#[test]
fn exited_is_among_the_events_as_soon_as_kill_returns() {
    for d in [TestDaemon::start(), TestDaemon::start_in_daemon()] {
        let ids: Vec<String> = (0..4)
            .map(|_| id_of(&d.session(&[], &["sleep", "1000"])))
            .collect();
        for id in &ids {
            wait_kind(&d, id, "created");
            d.ok(&["kill", id]);
            let evs = events(&d, &[id]);
            let exited = evs.iter().filter(|e| e["kind"] == "exited").count();
            assert_eq!(exited, 1, "{:?}", kinds(&evs));
        }
    }
}
