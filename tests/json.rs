//! Every field `docs/json.md` lists is present in real `--json` output: the reference is
//! read from the document itself, so the two cannot drift apart.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

/// Section name -> documented fields (`- \`field\`: ...` bullets under `## name`; the
/// bullets after "Each check:" belong to `check`).
fn documented() -> BTreeMap<String, Vec<String>> {
    let doc = include_str!("../docs/json.md");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in doc.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            section = name.trim().to_string();
        } else if line.starts_with("Each check:") {
            section = "check".into();
        } else if let Some(rest) = line.strip_prefix("- `")
            && let Some(end) = rest.find('`')
        {
            out.entry(section.clone())
                .or_default()
                .push(rest[..end].to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_field_is_in_real_output() {
    let env = Env::new();
    // With a web front, for `share`.
    env.write_config("[web]\nport = 0\n");
    let d = env.start_daemon();
    let session = d.session(&["--name", "shape"], &["/bin/sh"]);
    let id = id_of(&session);
    let _client = SshClient::connect(port_of(&session), &d.owner, "al", 80, 24).await;
    let sent = d.ok(&["send", &id, "echo shape-$((1+1))"]);
    let offset = sent["offset"].as_u64().unwrap().to_string();
    let waited = d.ok(&[
        "wait",
        &id,
        "--match",
        "^shape-2$",
        "--from",
        &offset,
        "--timeout",
        "20s",
    ]);
    let events = d.cli(&["--json", "events", &id]);
    let event: Value = serde_json::from_str(
        String::from_utf8_lossy(&events.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let doctor = d.json(&["doctor"]).1;
    let gone = d.session(&[], &["true"]);
    d.ok(&["kill", &id_of(&gone)]);
    let ended = d.ok(&["ps", "--all"])["ended"][0].clone();
    // A grep hit, once the recording has the line.
    let hit: Value = wait_until("a grep hit", DEADLINE, || {
        let out = d.cli(&["--json", "grep", "^shape-2$", "-C", "1"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(text.lines().next()?).ok()
    });
    let mut shapes: BTreeMap<&str, Value> = BTreeMap::new();
    shapes.insert("grep", hit);
    shapes.insert("session", session.clone());
    shapes.insert("status", d.ok(&["status", &id]));
    shapes.insert("peer", d.ok(&["peers", &id])[0].clone());
    shapes.insert("send", sent);
    shapes.insert("share", d.ok(&["share", &id]));
    shapes.insert("wait", waited);
    shapes.insert("event", event);
    shapes.insert("known-hosts", d.ok(&["known-hosts"]));
    shapes.insert("check", doctor["checks"][0].clone());
    shapes.insert("doctor", doctor);
    shapes.insert("version", d.ok(&["version"]));
    shapes.insert("error", d.json(&["status", "nosuch"]).1);
    shapes.insert("ended", ended);
    shapes.insert("ps --hosts", d.ok(&["ps", "--hosts", "local"]));
    // Last: it stops the daemon.
    shapes.insert("shutdown", d.ok(&["shutdown"]));
    let doc = documented();
    assert!(doc.len() >= 11, "sections found: {:?}", doc.keys());
    for (section, fields) in &doc {
        let value = shapes
            .get(section.as_str())
            .unwrap_or_else(|| panic!("no real output checked for section {section}"));
        for f in fields {
            assert!(
                value.get(f).is_some(),
                "{section}: `{f}` is documented but missing: {value}"
            );
        }
    }
    // And the other way round for the session: nothing undocumented slips in.
    let listed = &doc["session"];
    for key in session.as_object().unwrap().keys() {
        assert!(
            listed.contains(key),
            "session field `{key}` is not documented"
        );
    }
}
