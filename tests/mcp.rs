//! `hearth mcp` driven as an MCP client would: newline-delimited JSON-RPC over its stdio.
//! initialize, tools/list, then a whole supervision loop, and the errors a model will make.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::mpsc;

use common::*;
use serde_json::{Value, json};

struct Mcp {
    child: std::process::Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    next_id: u64,
}

impl Mcp {
    fn start(d: &TestDaemon) -> Mcp {
        let mut child = d
            .command(&["mcp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut m = Mcp {
            child,
            stdin,
            lines,
            next_id: 1,
        };
        let init = m.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "hearth-test", "version": "0"}}),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "hearth", "{init}");
        m.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        m
    }

    fn send(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Send a request and return its response (every stdout line must be JSON-RPC).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(90))
                .expect("no answer from hearth mcp");
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-protocol line ({e}): {line}"));
            assert_eq!(v["jsonrpc"], "2.0", "{v}");
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Call a tool; (is_error, structuredContent).
    fn tool(&mut self, name: &str, args: Value) -> (bool, Value) {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}));
        let result = &r["result"];
        assert!(
            result.is_object(),
            "a protocol error instead of a tool result: {r}"
        );
        let text = result["content"][0]["text"].as_str().unwrap_or("");
        assert!(!text.is_empty(), "no text content: {r}");
        (
            result["isError"] == true,
            result["structuredContent"].clone(),
        )
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        "send_message",
        "list_events",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
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
        json!({"session": id, "pattern": "^mcp-42$", "from": sent["offset"], "timeout_ms": 20000}),
    );
    assert!(!err && w["reason"] == "match", "{w}");
    let (_, screen) = m.tool("read_screen", json!({"session": "mcp-shell"}));
    assert!(screen["screen"].as_str().unwrap().contains("mcp-42"));
    let (_, out) = m.tool("read_output", json!({"session": id, "since": 0}));
    assert!(out["text"].as_str().unwrap().contains("mcp-42"));
    let (_, status) = m.tool("session_status", json!({"session": id}));
    assert_eq!(status["last_input_by"], "api");
    let (_, ps) = m.tool("list_sessions", json!({}));
    assert_eq!(ps.as_array().map(Vec::len), Some(1), "{ps}");
    let (err, _) = m.tool(
        "send_message",
        json!({"session": id, "text": "hello humans"}),
    );
    assert!(!err);
    let (_, evs) = m.tool("list_events", json!({"session": id}));
    let kinds: Vec<&str> = evs["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"created") && kinds.contains(&"message"),
        "{kinds:?}"
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
