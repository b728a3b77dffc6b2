//! An MCP client for the tests: `hearth mcp` driven as an agent would, newline-delimited
//! JSON-RPC over its stdio.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};

use super::TestDaemon;

pub struct Mcp {
    child: std::process::Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    next_id: u64,
    /// Each tool's `outputSchema`, from `tools/list` (every result is checked against it).
    schemas: std::collections::HashMap<String, Value>,
}

impl Mcp {
    pub fn start(d: &TestDaemon) -> Mcp {
        Mcp::spawn(d.command(&["mcp"]))
    }

    /// `hearth mcp` as `command` runs it (its environment, say), initialized.
    pub fn spawn(mut command: Command) -> Mcp {
        let mut child = command
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
            schemas: Default::default(),
        };
        let init = m.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "hearth-test", "version": "0"}}),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "hearth", "{init}");
        m.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        let list = m.request("tools/list", json!({}));
        for t in list["result"]["tools"].as_array().unwrap() {
            m.schemas.insert(
                t["name"].as_str().unwrap().into(),
                t["outputSchema"].clone(),
            );
        }
        m
    }

    pub fn send(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Send a request and return its response (every stdout line must be JSON-RPC).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
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

    /// The next message the server sends (every stdout line must be JSON-RPC).
    pub fn next_message(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(std::time::Duration::from_secs(90))
            .expect("no message from hearth mcp");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-protocol line ({e}): {line}"))
    }

    /// Write raw bytes to the server's stdin (a request too large to build as a value).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Call a tool; (is_error, structuredContent).
    pub fn tool(&mut self, name: &str, args: Value) -> (bool, Value) {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}));
        let result = &r["result"];
        assert!(
            result.is_object(),
            "a protocol error instead of a tool result: {r}"
        );
        let text = result["content"][0]["text"].as_str().unwrap_or("");
        assert!(!text.is_empty(), "no text content: {r}");
        let structured = result["structuredContent"].clone();
        // MCP: structured content is an object, and conforms to the tool's outputSchema.
        assert!(
            structured.is_object(),
            "structuredContent is not an object: {r}"
        );
        let schema = self
            .schemas
            .get(name)
            .unwrap_or_else(|| panic!("{name} has no outputSchema"));
        if let Err(why) = conforms(&structured, schema, "$") {
            panic!("{name}'s structuredContent does not match its outputSchema: {why}\n{r}");
        }
        (result["isError"] == true, structured)
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON Schema subset hearth's output schemas use: `type` (one or a list), object
/// `properties`, `required` and `additionalProperties: false`, array `items`.
pub fn conforms(v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    let type_ok = |t: &str| match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    };
    let ok = match &schema["type"] {
        Value::String(t) => type_ok(t),
        Value::Array(ts) => ts.iter().any(|t| t.as_str().is_some_and(type_ok)),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {v} is not {}", schema["type"]));
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema["properties"].as_object()) {
        for (k, sub) in props {
            if let Some(x) = obj.get(k) {
                conforms(x, sub, &format!("{at}.{k}"))?;
            }
        }
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap_or_default();
            if !obj.contains_key(r) {
                return Err(format!("{at}: {r} is required"));
            }
        }
        if schema["additionalProperties"] == false
            && let Some(k) = obj.keys().find(|k| !props.contains_key(*k))
        {
            return Err(format!("{at}: {k} is not allowed"));
        }
    }
    if let (Some(items), Some(schema)) = (v.as_array(), schema.get("items")) {
        for (i, x) in items.iter().enumerate() {
            conforms(x, schema, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}
