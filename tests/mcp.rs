//! `hearth mcp` driven as an MCP client would: newline-delimited JSON-RPC over its stdio.
//! initialize, tools/list, then a whole supervision loop, and the errors a model will make.

mod common;

use common::mcp::Mcp;
use common::*;
use std::time::Duration;

use serde_json::json;

#[test]
fn an_agent_supervises_a_session_over_mcp() {
    let d = TestDaemon::start();
    let mut m = Mcp::start(&d);
    let list = m.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for want in [
        "list_sessions",
        "start_session",
        "send_input",
        "read_screen",
        "read_output",
        "wait_for",
        "session_status",
        "kill_session",
        "restart_session",
        "list_history",
        "search_output",
        "send_message",
        "list_events",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        // Every result is checked against this by `Mcp::tool`.
        assert_eq!(t["outputSchema"]["type"], "object", "{t}");
        assert!(t["description"].as_str().unwrap().len() > 40, "{t}");
    }
    let (err, s) = m.tool(
        "start_session",
        json!({"command": ["/bin/sh"], "name": "mcp-shell"}),
    );
    assert!(!err, "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    let (err, sent) = m.tool(
        "send_input",
        json!({"session": id, "text": "echo mcp-$((6*7))"}),
    );
    assert!(!err, "{sent}");
    let (err, w) = m.tool(
        "wait_for",
        // Not anchored at the start: text sent before the shell's first prompt is run after
        // it, so the reply can follow the prompt on its line ("$ mcp-42").
        json!({"session": id, "pattern": "mcp-42$", "from": sent["offset"], "timeout_ms": 20000}),
    );
    assert!(!err && w["reason"] == "match", "{w}");
    let (_, screen) = m.tool("read_screen", json!({"session": "mcp-shell"}));
    assert!(screen["screen"].as_str().unwrap().contains("mcp-42"));
    let (_, out) = m.tool("read_output", json!({"session": id, "since": 0}));
    assert!(out["text"].as_str().unwrap().contains("mcp-42"));
    let (_, status) = m.tool("session_status", json!({"session": id}));
    assert_eq!(status["last_input_by"], "api");
    let (_, ps) = m.tool("list_sessions", json!({}));
    assert_eq!(ps["sessions"].as_array().map(Vec::len), Some(1), "{ps}");
    let (err, _) = m.tool(
        "send_message",
        json!({"session": id, "text": "hello humans"}),
    );
    assert!(!err);
    // The message event reaches the daemon's event log from the session's process a
    // moment after the reply (under CI load, after a first list): wait for it.
    wait_until(
        "the message in list_events",
        Duration::from_secs(10),
        || {
            let (_, evs) = m.tool("list_events", json!({"session": id}));
            let kinds: Vec<String> = evs["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap().to_string())
                .collect();
            (kinds.iter().any(|k| k == "created") && kinds.iter().any(|k| k == "message"))
                .then_some(())
        },
    );
    let (err, k) = m.tool("kill_session", json!({"session": id}));
    assert!(!err && k["killed"][0] == id.as_str(), "{k}");
}

#[test]
fn mistakes_are_tool_errors_with_the_clis_kind() {
    let d = TestDaemon::start();
    let mut m = Mcp::start(&d);
    let (err, e) = m.tool("read_screen", json!({"session": "nosuch"}));
    assert!(err);
    assert_eq!(e["error"]["kind"], "not_found", "{e}");
    let (id, _) = d.shell(&[]);
    let (err, e) = m.tool(
        "wait_for",
        json!({"session": id, "exit": true, "timeout_ms": 70000}),
    );
    assert!(err && e["error"]["kind"] == "invalid_argument", "{e}");
    let (err, e) = m.tool(
        "wait_for",
        json!({"session": id, "pattern": "x", "idle_ms": 100, "timeout_ms": 1000}),
    );
    assert!(
        err && e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one"),
        "{e}"
    );
    let (err, e) = m.tool(
        "wait_for",
        json!({"session": id, "pattern": "(", "timeout_ms": 1000}),
    );
    assert!(
        err && e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid regex"),
        "{e}"
    );
    let (err, e) = m.tool("send_input", json!({"session": id, "txt": "typo"}));
    assert!(
        err && e["error"]["message"].as_str().unwrap().contains("txt"),
        "{e}"
    );
    let (err, w) = m.tool(
        "wait_for",
        json!({"session": id, "pattern": "never", "timeout_ms": 500}),
    );
    assert!(!err && w["reason"] == "timeout", "{w}");
    let (err, e) = m.tool("list_events", json!({"wait_ms": 40000}));
    assert!(err, "{e}");
}

/// Oversized requests get an error reply and the server carries on (a 5 MiB send_input
/// broke its daemon connection for good; a 50 MB line got no reply at all); more calls in
/// flight than a daemon connection takes are all answered.
#[test]
fn oversized_requests_and_crowds_of_calls_get_answers() {
    let d = TestDaemon::start();
    let id = id_of(&d.session(&[], &["sleep", "1000"]));
    let mut m = Mcp::start(&d);
    // 5 MiB of text: over the request limit.
    let (err, v) = m.tool(
        "send_input",
        json!({"session": id, "text": "z".repeat(5 * 1024 * 1024)}),
    );
    assert!(err, "{v}");
    assert_eq!(v["error"]["kind"], "limit", "{v}");
    let (err, v) = m.tool("list_sessions", json!({}));
    assert!(!err, "the server carries on: {v}");
    // 2.5 MiB: under the request limit, over send's: refused before the daemon sees it.
    let (err, v) = m.tool(
        "send_input",
        json!({"session": id, "text": "z".repeat(2_500_000)}),
    );
    assert!(err && v["error"]["kind"] == "invalid_argument", "{v}");
    // A 50 MB line, written as it streams.
    let mut big = br#"{"jsonrpc":"2.0","id":777,"method":"tools/call","params":{"name":"send_input","arguments":{"session":"x","text":""#.to_vec();
    m.send_raw(&big);
    let chunk = vec![b'w'; 1 << 20];
    for _ in 0..50 {
        m.send_raw(&chunk);
    }
    big.clear();
    m.send_raw(b"\"}}}\n");
    let reply = m.next_message();
    assert_eq!(reply["id"], 777, "{reply}");
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    let (err, _) = m.tool("list_sessions", json!({}));
    assert!(!err);
    // 100 calls at once, each waiting up to 2 s: every one gets its answer.
    for i in 0..100 {
        m.send(
            json!({"jsonrpc": "2.0", "id": 1000 + i, "method": "tools/call",
                      "params": {"name": "wait_for", "arguments":
                          {"session": id, "idle_ms": 600_000, "timeout_ms": 2000}}}),
        );
    }
    let mut answered = std::collections::HashSet::new();
    while answered.len() < 100 {
        let r = m.next_message();
        assert_eq!(r["result"]["isError"], false, "{r}");
        assert_eq!(r["result"]["structuredContent"]["reason"], "timeout", "{r}");
        answered.insert(r["id"].as_u64().unwrap());
    }
}

/// Send, then wait without `from`: the wait starts at that send's offset, so the reply is
/// found however fast it came (it is usually printed before the wait starts). 1,000 of
/// 1,000 tries; then broadcast with selectors.
#[test]
fn send_then_wait_without_from_never_misses_the_reply() {
    let d = TestDaemon::start();
    let s = d.session(
        &["--name", "echoer"],
        &["sh", "-c", "while IFS= read -r l; do echo \"got:$l\"; done"],
    );
    let id = id_of(&s);
    let mut m = Mcp::start(&d);
    for i in 0..1000 {
        let (err, sent) = m.tool(
            "send_input",
            json!({"session": "echoer", "text": format!("n{i}")}),
        );
        assert!(!err, "{sent}");
        // The id, not the name: the same session either way.
        let (err, w) = m.tool(
            "wait_for",
            json!({"session": id, "pattern": format!("^got:n{i}$"), "timeout_ms": 5000}),
        );
        assert!(!err, "try {i}: {w}");
        assert_eq!(w["reason"], "match", "try {i}: {w}");
        assert_eq!(w["from"], sent["offset"], "try {i}: {w}");
    }
    // Broadcast: by name glob, every result with its offset; then the reply.
    d.session(
        &["--name", "echoer-2"],
        &["sh", "-c", "while IFS= read -r l; do echo \"got:$l\"; done"],
    );
    let (err, r) = m.tool("send_input", json!({"name": "echoer*", "text": "all"}));
    assert!(!err, "{r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{r}");
    for res in results {
        assert!(res["offset"].is_u64(), "{r}");
        let (err, w) = m.tool(
            "wait_for",
            json!({"session": res["session"], "pattern": "^got:all$", "timeout_ms": 5000}),
        );
        assert!(!err && w["reason"] == "match", "{w}");
    }
    // Neither a session nor a selector, or both: a tool error that says what to give.
    let (err, r) = m.tool("send_input", json!({"text": "x"}));
    assert!(err, "{r}");
    let (err, r) = m.tool(
        "send_input",
        json!({"session": id, "all": true, "text": "x"}),
    );
    assert!(err, "{r}");
    let (err, r) = m.tool("send_input", json!({"state": ["sleepy"], "text": "x"}));
    assert!(err && r.to_string().contains("unknown state"), "{r}");
}

/// `restart_session` and `list_history`: a model can bring back a session that exited, and
/// look back at the ones that ended, newest first.
#[test]
fn restart_session_and_list_history_over_mcp() {
    let d = TestDaemon::start();
    let mut m = Mcp::start(&d);
    let (err, s) = m.tool(
        "start_session",
        json!({"command": ["sh", "-c", "exit 3"], "name": "flaky"}),
    );
    assert!(!err, "{s}");
    let old = s["id"].as_str().unwrap().to_string();
    let (err, w) = m.tool(
        "wait_for",
        json!({"session": old, "exit": true, "timeout_ms": 10000}),
    );
    assert!(!err && w["exit_code"] == 3, "{w}");
    let (err, r) = m.tool("restart_session", json!({"session": "flaky"}));
    assert!(!err, "{r}");
    assert_eq!(r["restarted_from"], old.as_str(), "{r}");
    assert_eq!(r["name"], "flaky", "{r}");
    assert_ne!(r["id"], old.as_str(), "{r}");
    let (err, h) = m.tool("list_history", json!({}));
    assert!(!err, "{h}");
    let first = &h["sessions"][0];
    assert_eq!(first["id"], old.as_str(), "newest first: {h}");
    assert_eq!(first["exit_code"], 3, "{h}");
    let (err, h) = m.tool("list_history", json!({"session": "nosuch"}));
    assert!(
        err || h["sessions"].as_array().is_some_and(|a| a.is_empty()),
        "{h}"
    );
    // A running session is refused, with the CLI's kind.
    let (err, s) = m.tool(
        "start_session",
        json!({"command": ["sleep", "1000"], "name": "sleeper"}),
    );
    assert!(!err, "{s}");
    let (err, r) = m.tool("restart_session", json!({"session": "sleeper"}));
    assert!(err, "{r}");
    assert_eq!(r["error"]["kind"], "invalid_state", "{r}");
    // A restart policy: the program starts again in the same session, as `resume`.
    let (err, s) = m.tool(
        "start_session",
        json!({"command": ["sh", "-c", "exit 4"], "restart": "on-failure",
               "resume": ["sh", "-c", "echo resumed-by-mcp; sleep 1000"]}),
    );
    assert!(!err, "{s}");
    assert_eq!(s["restart"]["when"], "on-failure", "{s}");
    let (err, w) = m.tool(
        "wait_for",
        json!({"session": s["id"], "pattern": "^resumed-by-mcp$", "from": 0, "timeout_ms": 10000}),
    );
    assert!(!err && w["reason"] == "match", "{w}");
    let (err, r) = m.tool(
        "start_session",
        json!({"command": ["true"], "max_restarts": 2}),
    );
    assert!(err, "{r}");
    assert_eq!(r["error"]["kind"], "invalid_argument", "{r}");
}

/// A client that asks for progress (`_meta.progressToken`) hears from a long `wait_for`
/// every second, with its token, before the answer; one that does not, hears nothing.
#[test]
fn wait_for_reports_progress_when_asked() {
    let d = TestDaemon::start();
    let (id, _) = d.shell(&[]);
    let mut m = Mcp::start(&d);
    m.send(
        json!({"jsonrpc": "2.0", "id": 900, "method": "tools/call", "params": {
        "name": "wait_for",
        "arguments": {"session": id, "pattern": "^never-printed$", "timeout_ms": 3500},
        "_meta": {"progressToken": "w1"}}}),
    );
    let mut progress = Vec::new();
    let answer = loop {
        let v = m.next_message();
        if v["id"] == 900 {
            break v;
        }
        if v["method"] == "notifications/progress" {
            progress.push(v["params"].clone());
        }
    };
    assert_eq!(
        answer["result"]["structuredContent"]["reason"], "timeout",
        "{answer}"
    );
    assert!(progress.len() >= 2, "{progress:#?}");
    for p in &progress {
        assert_eq!(p["progressToken"], "w1", "{p}");
        assert_eq!(p["total"], 3.5, "{p}");
    }
    assert!(
        progress
            .windows(2)
            .all(|w| w[0]["progress"].as_f64() < w[1]["progress"].as_f64())
    );
    // Without a token: the answer only.
    m.send(
        json!({"jsonrpc": "2.0", "id": 901, "method": "tools/call", "params": {
        "name": "wait_for",
        "arguments": {"session": id, "pattern": "^never-printed$", "timeout_ms": 1500}}}),
    );
    let v = m.next_message();
    assert_eq!(v["id"], 901, "only the answer: {v}");
}

/// `search_output`: a supervisor looks back through what sessions printed; bounded, with
/// `more` when there was more; a bad regex is a clear error.
#[test]
fn search_output_finds_what_sessions_printed() {
    let d = TestDaemon::start();
    let mut m = Mcp::start(&d);
    let (err, s) = m.tool(
        "start_session",
        json!({"command": ["sh", "-c", "echo 'one mcp-needle'; echo 'two mcp-needle'; sleep 1000"], "name": "printer"}),
    );
    assert!(!err, "{s}");
    let hits = wait_until("the hits", DEADLINE, || {
        let (err, r) = m.tool(
            "search_output",
            json!({"pattern": "mcp-needle", "context": 1}),
        );
        assert!(!err, "{r}");
        (r["hits"].as_array().unwrap().len() == 2).then_some(r)
    });
    assert_eq!(hits["more"], false, "{hits}");
    let h = &hits["hits"][0];
    assert_eq!(
        (h["name"].as_str(), h["line"].as_str()),
        (Some("printer"), Some("one mcp-needle")),
        "{hits}"
    );
    assert_eq!(h["after"][0], "two mcp-needle", "{hits}");
    let (err, r) = m.tool(
        "search_output",
        json!({"pattern": "mcp-needle", "max": 1, "running": true}),
    );
    assert!(!err, "{r}");
    assert_eq!(
        (r["hits"].as_array().unwrap().len(), r["more"].as_bool()),
        (1, Some(true)),
        "{r}"
    );
    let (err, r) = m.tool(
        "search_output",
        json!({"pattern": "mcp-needle", "running": false}),
    );
    assert!(!err && r["hits"].as_array().unwrap().is_empty(), "{r}");
    let (err, r) = m.tool("search_output", json!({"pattern": "(unclosed"}));
    assert!(err, "{r}");
    assert_eq!(r["error"]["kind"], "invalid_argument", "{r}");
}
