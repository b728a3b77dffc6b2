//! Agent states read from the screen by a profile (`[[profiles]]`): a real daemon, a real
//! session host and PTY, `tests/fixtures/fake-agent.sh` drawing the prompts the profile
//! keys on.

mod common;

use common::mcp::Mcp;
use common::*;
use serde_json::{Value, json};

const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-agent.sh");

/// A profile for the fake agent: the text each rule expects is the fixture's.
const PROFILE: &str = r#"
[[profiles]]
name = "fake"
detect = { banner = 'FakeAgent \d' }
[[profiles.rules]]
state = "needs_approval"
pattern = 'Do you want to run'
bottom = 4
[[profiles.rules]]
state = "rate_limited"
pattern = 'limit reached\. It resets at (?P<resets_at>\S+?)\.?$'
bottom = 2
[[profiles.rules]]
state = "waiting_input"
pattern = '^agent>\s*$'
bottom = 1
"#;

/// The `state` events of session `id` so far.
fn states(d: &TestDaemon, id: &str) -> Vec<Value> {
    let out = d.cli(&["--json", "events", "--since", "1", id]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "state")
        .collect()
}

/// Wait until the session's agent is in `state`; its `ps` entry.
fn wait_state(d: &TestDaemon, id: &str, state: &str) -> Value {
    wait_until(&format!("the agent to be {state}"), DEADLINE, || {
        let s = d.ok(&["status", id]);
        let s = if s["session"].is_object() {
            s["session"].clone()
        } else {
            s
        };
        (s["agent_state"] == state).then_some(s)
    })
}

#[test]
fn a_profile_reads_approval_input_and_limits_from_the_screen_once_per_change() {
    let env = Env::new();
    env.write_config(PROFILE);
    let d = env.start_daemon();
    let s = d.session(&["--name", "fake"], &["sh", AGENT]);
    let id = id_of(&s);
    let recording = s["recording"].as_str().unwrap().to_string();

    let s = wait_state(&d, &id, "waiting_input");
    assert_eq!(s["profile"], "fake", "{s}");
    assert_eq!(s["attention"], true, "{s}");

    // A supervisor waits for the approval prompt before it is drawn.
    let waiter = d
        .command(&[
            "--json",
            "wait",
            &id,
            "--state",
            "needs_approval,rate_limited",
            "--timeout",
            "20s",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    d.ok(&["send", &id, "approve"]);
    let waited = waiter.wait_with_output().unwrap();
    assert!(waited.status.success(), "{waited:?}");
    let waited: Value = serde_json::from_slice(&waited.stdout).unwrap();
    assert_eq!(waited["reason"], "state", "{waited}");
    assert_eq!(waited["state"], "needs_approval", "{waited}");
    let s = wait_state(&d, &id, "needs_approval");
    assert_eq!(s["attention"], true);
    // `ps` says so, marked.
    let table = String::from_utf8_lossy(&d.cli(&["ps"]).stdout).into_owned();
    assert!(table.contains("needs_approval !"), "{table}");
    let last = states(&d, &id).pop().unwrap();
    assert_eq!(last["to"], "needs_approval");
    assert_eq!(last["text"], "Do you want to run `make`?", "{last}");

    // A supervising model sees it over MCP, and waits on it the same way.
    let mut m = Mcp::start(&d);
    let (err, st) = m.tool("session_status", json!({"session": id}));
    assert!(!err, "{st}");
    assert_eq!(st["agent_state"], "needs_approval", "{st}");
    assert_eq!(st["attention"], true, "{st}");
    let (err, w) = m.tool(
        "wait_for",
        json!({"session": id, "state": ["needs_approval"], "timeout_ms": 10000}),
    );
    assert!(!err, "{w}");
    assert_eq!(w["state"], "needs_approval", "{w}");

    d.ok(&["send", &id, "1"]);
    wait_state(&d, &id, "waiting_input");

    d.ok(&["send", &id, "limit"]);
    let s = wait_state(&d, &id, "rate_limited");
    assert_eq!(s["agent_fields"]["resets_at"], "3pm", "{s}");

    d.ok(&["send", &id, "quit"]);
    wait_state(&d, &id, "exited");

    // Once per change, each from the state before it, in the order they happened.
    let events = states(&d, &id);
    let mut was = "unknown".to_string();
    for e in &events {
        assert_eq!(e["from"], was.as_str(), "{events:#?}");
        assert_ne!(e["from"], e["to"], "{events:#?}");
        was = e["to"].as_str().unwrap().to_string();
    }
    let to: Vec<&str> = events.iter().map(|e| e["to"].as_str().unwrap()).collect();
    let wanted = [
        "waiting_input",
        "needs_approval",
        "waiting_input",
        "rate_limited",
        "exited",
    ];
    let mut at = 0;
    for s in &to {
        if at < wanted.len() && *s == wanted[at] {
            at += 1;
        }
    }
    assert_eq!(at, wanted.len(), "{to:?}");

    // The recording, replayed through the profile, gives the same timeline up to the exit
    // (which a recording does not hold: the replay reads the last screen as settled).
    d.ok(&["kill", &id]);
    let replayed = d.ok(&["profile", "test", "fake", &recording]);
    assert_eq!(replayed["detected"], true, "{replayed}");
    let steps: Vec<&str> = replayed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["to"].as_str().unwrap())
        .collect();
    let live: Vec<&str> = to.iter().copied().filter(|s| *s != "exited").collect();
    assert!(steps.starts_with(&live), "{live:?} then exited; {replayed}");
}

#[test]
fn waiting_for_an_unknown_state_is_a_clear_error() {
    let d = TestDaemon::start();
    let (id, _) = d.shell(&[]);
    let message = d.err(&["wait", &id, "--state", "sleepy"], "invalid_argument");
    assert!(message.contains("unknown state 'sleepy'"), "{message}");
    // `profile test` of a profile that is not there says which ones are.
    let message = d.err(
        &["profile", "test", "nosuch", "/nonexistent.cast"],
        "not_found",
    );
    assert!(
        message.contains("there are: claude-code, codex, gemini, aider"),
        "{message}"
    );
}

#[test]
fn a_bad_profile_is_a_clear_error_at_start() {
    let env = Env::new();
    env.write_config(
        "[[profiles]]\nname = \"broken\"\n[[profiles.rules]]\nstate = \"error\"\npattern = \"(\"\n",
    );
    let out = env
        .command(&["daemon"])
        .stdin(std::process::Stdio::null())
        .output_bounded();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("profile broken: rule 1"), "{err}");
}

/// `hearth top` in a real terminal: the session whose agent needs a human is marked and
/// listed first (going back to its place is the model's unit test).
#[test]
fn top_marks_and_lists_first_the_agent_that_needs_a_human() {
    let env = Env::new();
    env.write_config(PROFILE);
    let d = env.start_daemon();
    // "aaa" sorts before "zzz" by name; the fake agent is "zzz".
    d.session(&["--name", "aaa"], &["sh", "-c", "echo plain; sleep 1000"]);
    let s = d.session(&["--name", "zzz"], &["sh", AGENT]);
    let id = id_of(&s);
    wait_state(&d, &id, "waiting_input");
    let tmux = Tmux::new(d.dir.path());
    let line = format!(
        "env HOME={} HEARTH_SOCKET={} HEARTH_NO_AUTOSTART=1 TERM=xterm-256color {BIN} top",
        d.home.display(),
        d.socket.display(),
    );
    tmux.run("top", 100, 30, &line);
    tmux.wait_for("top", "hearth top");
    d.ok(&["send", &id, "approve"]);
    let screen = tmux.wait_for("top", "! approve");
    let (a, z) = (screen.find("aaa").unwrap(), screen.find("zzz").unwrap());
    assert!(z < a, "the agent that needs a human comes first:\n{screen}");
    // Answered: it waits for its next prompt, which needs a human too.
    d.ok(&["send", &id, "2"]);
    tmux.wait_for("top", "! input");
}

/// An agent that asks the terminal for a desktop notification (OSC 9, OSC 777) is heard:
/// one `notify` event with the text, cleaned.
#[test]
fn a_desktop_notification_from_the_program_is_an_event() {
    let d = TestDaemon::start();
    let s = d.session(
        &[],
        &[
            "sh",
            "-c",
            r"printf '\033]9;needs \033[1myou\007'; sleep 1; printf '\033]777;notify;Agent;done\007'; sleep 1000",
        ],
    );
    let id = id_of(&s);
    let texts = wait_until("two notify events", DEADLINE, || {
        let out = d.cli(&["--json", "events", "--since", "1", &id]);
        let texts: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["kind"] == "notify")
            .map(|e| e["text"].as_str().unwrap_or("").to_string())
            .collect();
        (texts.len() == 2).then_some(texts)
    });
    // The escape inside the first ended it, as in any terminal: no sequence gets through.
    assert_eq!(texts, ["needs", "Agent: done"]);
    // A program that asks for a human wants one, with no profile: its state says so.
    let s = wait_state(&d, &id, "waiting_input");
    assert_eq!(s["profile"], Value::Null, "{s}");
    let last = states(&d, &id).pop().unwrap();
    assert_eq!(last["reason"], "a notification", "{last}");
    assert_eq!(last["text"], "Agent: done", "{last}");
}

/// A shell that speaks OSC 133 (shell integration) says where it is: `prompt` and
/// `command` events (with the exit status), and a state without any profile: waiting at
/// its prompt, working while a command runs however quiet it is.
#[test]
fn shell_integration_marks_are_events_and_give_a_plain_shell_a_state() {
    let d = TestDaemon::start();
    let prompt = r"printf '\033]133;A\007$ \033]133;B\007'";
    let script = format!(
        "{prompt}; read x; printf '\\033]133;C\\007running\\n'; sleep 3; \
         printf '\\033]133;D;3\\007'; {prompt}; sleep 1000"
    );
    let s = d.session(&[], &["sh", "-c", &script]);
    let id = id_of(&s);
    let s = wait_state(&d, &id, "waiting_input");
    assert_eq!(s["profile"], Value::Null, "{s}");
    d.ok(&["send", &id, "make"]);
    wait_state(&d, &id, "working");
    let events = wait_until("the command's end and the next prompt", DEADLINE, || {
        let out = d.cli(&["--json", "events", "--since", "1", &id]);
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| ["prompt", "command", "state"].contains(&e["kind"].as_str().unwrap()))
            .collect();
        events
            .iter()
            .any(|e| e["kind"] == "command")
            .then_some(events)
    });
    let command = events.iter().find(|e| e["kind"] == "command").unwrap();
    assert_eq!(command["exit_code"], 3, "{events:#?}");
    // Quiet for 3 s while the command ran, and never read as waiting: the shell said it ran.
    let to: Vec<&str> = events
        .iter()
        .take_while(|e| e["kind"] != "command")
        .filter(|e| e["kind"] == "state")
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["waiting_input", "working"], "{events:#?}");
    wait_state(&d, &id, "waiting_input");
}

/// A hook with `to` runs once per change to those states, and for nothing else.
#[test]
fn a_hook_runs_once_per_change_to_the_states_it_names() {
    let env = Env::new();
    let log = env.dir.path().join("hook.log");
    env.write_config(&format!(
        "{PROFILE}\n[[hooks]]\non = [\"state\"]\nto = [\"needs_approval\"]\n\
         run = 'printf \"%s\\n\" \"$HEARTH_EVENT\" >> {}'\n",
        log.display()
    ));
    let d = env.start_daemon();
    let s = d.session(&["--name", "fake"], &["sh", AGENT]);
    let id = id_of(&s);
    wait_state(&d, &id, "waiting_input");
    for round in 1..=2 {
        d.ok(&["send", &id, "approve"]);
        wait_state(&d, &id, "needs_approval");
        d.ok(&["send", &id, "1"]);
        wait_state(&d, &id, "waiting_input");
        wait_until(&format!("hook run {round}"), DEADLINE, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.lines().count() == round).then_some(())
        });
    }
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["kind"], "state", "{e}");
        assert_eq!(e["to"], "needs_approval", "{e}");
    }
    // A state that does not exist is an error at start.
    let bad = Env::new();
    bad.write_config("[[hooks]]\non = [\"state\"]\nto = [\"sleepy\"]\nrun = \"true\"\n");
    let out = bad
        .command(&["daemon"])
        .stdin(std::process::Stdio::null())
        .output_bounded();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hooks[0].to"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const AGENT_UI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/agent-ui.sh");

/// A shipped profile (no config file) reads the fixture that draws its agent's text
/// through every state, one event per change, and `hearth profile test` on the session's
/// recording gives the same timeline.
fn shipped_profile_reads(look: &str, profile: &str, limit_field: Option<(&str, &str)>) {
    let d = TestDaemon::start();
    let s = d.session(&["--name", look], &["sh", AGENT_UI, look]);
    let id = id_of(&s);
    let recording = s["recording"].as_str().unwrap().to_string();
    let s = wait_state(&d, &id, "waiting_input");
    assert_eq!(s["profile"], profile, "{s}");
    let mut seen = states(&d, &id).len();
    // Each step: what to type, and the states it goes through, exactly.
    let steps: [(&str, &[&str]); 6] = [
        ("work", &["working", "waiting_input"]),
        ("approve", &["working", "needs_approval"]),
        ("1", &["working", "waiting_input"]),
        ("error", &["working", "error"]),
        ("limit", &["working", "rate_limited"]),
        // The echo of `quit` may be read as output before the exit is.
        ("quit", &["working", "exited"]),
    ];
    for (typed, mut wanted) in steps {
        d.ok(&["send", &id, typed]);
        let events = wait_until(&format!("{look}: {typed} -> {wanted:?}"), DEADLINE, || {
            let events = states(&d, &id);
            let done = events.len() >= seen + wanted.len()
                || (typed == "quit" && events.last().is_some_and(|e| e["to"] == "exited"));
            done.then_some(events)
        });
        if typed == "quit" && events.len() == seen + 1 {
            wanted = &wanted[1..];
        }
        let to: Vec<&str> = events[seen..]
            .iter()
            .map(|e| e["to"].as_str().unwrap())
            .collect();
        assert_eq!(to, wanted, "{look}: after {typed:?}: {events:#?}");
        seen += wanted.len();
        if typed == "limit"
            && let Some((key, value)) = limit_field
        {
            let s = d.ok(&["status", &id]);
            assert_eq!(s["agent_fields"][key], value, "{s}");
        }
    }
    let live: Vec<String> = states(&d, &id)
        .iter()
        .map(|e| e["to"].as_str().unwrap().to_string())
        .filter(|s| s != "exited")
        .collect();
    let replayed = d.ok(&["profile", "test", profile, &recording]);
    assert_eq!(replayed["detected"], true, "{replayed}");
    let steps: Vec<String> = replayed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["to"].as_str().unwrap().to_string())
        .collect();
    assert!(steps.starts_with(&live), "live {live:?}; {replayed:#}");
}

#[test]
fn the_claude_code_profile_reads_its_fixture() {
    shipped_profile_reads(
        "claude",
        "claude-code",
        Some(("resets_at", "3pm (Europe/Paris)")),
    );
}

#[test]
fn the_codex_profile_reads_its_fixture() {
    // Its limit message runs over 80 columns: the profile reads it joined.
    shipped_profile_reads("codex", "codex", Some(("resets_at", "3:05 PM")));
}

#[test]
fn the_gemini_profile_reads_its_fixture() {
    shipped_profile_reads("gemini", "gemini", None);
}

#[test]
fn the_aider_profile_reads_its_fixture() {
    shipped_profile_reads("aider", "aider", Some(("retry_in", "0.5 seconds")));
}

/// `on_rate_limit`: once the reset time the screen gave has passed, the text is typed,
/// once; someone typing first cancels it; a time it cannot read is said, not guessed.
/// Each step is a `resume` event and in the audit trail.
#[test]
fn on_rate_limit_types_once_the_limit_resets_unless_someone_typed_first() {
    let env = Env::new();
    env.write_config(
        r#"
[[profiles]]
name = "fake"
detect = { banner = 'FakeAgent \d' }
on_rate_limit = { send = "continue\r", margin = "0s" }
[[profiles.rules]]
state = "rate_limited"
pattern = 'limit reached\. It resets (?:at )?(?P<resets_at>.+?)\.?$'
bottom = 2
[[profiles.rules]]
state = "waiting_input"
pattern = '^agent>\s*$'
bottom = 1
"#,
    );
    let d = env.start_daemon();
    let s = d.session(&["--name", "fake"], &["sh", AGENT]);
    let id = id_of(&s);
    let recording = s["recording"].as_str().unwrap().to_string();
    wait_state(&d, &id, "waiting_input");
    let resumes = |n: usize| {
        wait_until(&format!("{n} resume events"), DEADLINE, || {
            let out = d.cli(&["--json", "events", "--since", "1", &id]);
            let steps: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|e| e["kind"] == "resume")
                .collect();
            (steps.len() >= n).then_some(steps)
        })
    };

    // The limit resets in 2 s: scheduled, then typed.
    d.ok(&["send", &id, "limit in 2s"]);
    let steps = resumes(2);
    assert_eq!(steps[0]["step"], "scheduled", "{steps:#?}");
    assert!(steps[0]["at"].is_string(), "{steps:#?}");
    assert_eq!(steps[1]["step"], "sent", "{steps:#?}");
    wait_until("the agent to get it", DEADLINE, || {
        let screen = String::from_utf8_lossy(&d.cli(&["screen", &id]).stdout).into_owned();
        screen.contains("answer: continue").then_some(())
    });
    wait_state(&d, &id, "waiting_input");

    // Someone types before the reset: nothing is typed for them.
    d.ok(&["send", &id, "limit in 4s"]);
    let steps = resumes(3);
    assert_eq!(steps[2]["step"], "scheduled", "{steps:#?}");
    d.ok(&["send", &id, "I will handle it"]);
    let steps = resumes(4);
    assert_eq!(steps[3]["step"], "cancelled", "{steps:#?}");
    assert_eq!(steps[3]["reason"], "someone typed first", "{steps:#?}");

    // A time it cannot read.
    d.ok(&["send", &id, "limit at teatime"]);
    let steps = resumes(5);
    assert_eq!(steps[4]["step"], "cancelled", "{steps:#?}");
    assert!(
        steps[4]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot read a time in \"teatime\""),
        "{steps:#?}"
    );
    // Past the second limit's reset (a check that nothing happens waits out its time):
    // still typed only once.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let screen = String::from_utf8_lossy(&d.cli(&["screen", &id]).stdout).into_owned();
    assert_eq!(screen.matches("answer: continue").count(), 1, "{screen}");
    let steps = resumes(5);
    assert_eq!(steps.len(), 5, "{steps:#?}");

    // The audit trail has every step.
    d.ok(&["kill", &id]);
    let audit = std::fs::read_to_string(recording.replace(".cast", ".audit.jsonl")).unwrap();
    let logged: Vec<String> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "resume")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        logged,
        ["scheduled", "sent", "scheduled", "cancelled", "cancelled"],
        "{audit}"
    );
}

/// A session flooding output under a profile: read once as working while it floods (the
/// screen is never read mid-flood), then once settled; no flapping.
#[test]
fn a_flood_under_a_profile_is_one_working_spell() {
    let env = Env::new();
    env.write_config(
        "[[profiles]]\nname = \"any\"\ndetect = { command = '^sh$' }\n\
         [[profiles.rules]]\nstate = \"waiting_input\"\npattern = '^\\$ $'\nbottom = 1\n",
    );
    let d = env.start_daemon();
    let s = d.session(
        &[],
        &[
            "sh",
            "-c",
            "printf '$ '; read x; head -c 6000000 /dev/zero | od -v; printf '$ '; sleep 1000",
        ],
    );
    let id = id_of(&s);
    wait_state(&d, &id, "waiting_input");
    let before = states(&d, &id).len();
    d.ok(&["send", &id, "go"]);
    wait_until("the flood to end", DEADLINE * 3, || {
        let s = d.ok(&["status", &id]);
        let s = if s["session"].is_object() {
            s["session"].clone()
        } else {
            s
        };
        (s["output_bytes"].as_u64().unwrap_or(0) > 20_000_000
            && s["agent_state"] == "waiting_input")
            .then_some(())
    });
    let events = states(&d, &id);
    let to: Vec<&str> = events[before..]
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["working", "waiting_input"], "{events:#?}");
}
