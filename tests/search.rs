//! `grep` over every recording, live and ended, and `replay --from` a hit: the real daemon,
//! real sessions and recordings (and recordings written by hand for an earlier daemon, an
//! old one, a corrupt one).

mod common;

use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

fn recordings(d: &TestDaemon) -> std::path::PathBuf {
    d.home.join(".local/state/hearth/recordings")
}

/// `hearth --json grep ARGS`: (status, hits).
fn grep(d: &TestDaemon, args: &[&str]) -> (i32, Vec<Value>, String) {
    let mut all = vec!["--json", "grep"];
    all.extend_from_slice(args);
    let out: Output = d.cli(&all);
    let hits = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        hits,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Hits for `pattern` once there are any (a recording is written within a second).
fn hits_for(d: &TestDaemon, args: &[&str]) -> Vec<Value> {
    wait_until(&format!("hits for {args:?}"), DEADLINE, || {
        let (status, hits, _) = grep(d, args);
        (status == 0).then_some(hits)
    })
}

fn lines(hits: &[Value]) -> Vec<&str> {
    hits.iter().map(|h| h["line"].as_str().unwrap()).collect()
}

/// A recording as an earlier daemon left it, started `ago` seconds ago.
fn old_recording(d: &TestDaemon, id: &str, ago: u64, events: &[&str]) {
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - ago;
    let mut text =
        format!("{{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": {start}}}\n");
    for e in events {
        text.push_str(e);
        text.push('\n');
    }
    std::fs::create_dir_all(recordings(d)).unwrap();
    let path = recordings(d).join(format!("{id}.cast"));
    std::fs::write(&path, text).unwrap();
    // Last written then, too.
    let touched = std::process::Command::new("touch")
        .args(["-d", &format!("@{}", start + 3)])
        .arg(&path)
        .status()
        .unwrap();
    assert!(touched.success());
}

/// Hits in a running session, an exited one and ones from an earlier daemon; text split
/// across writes and drawn with escape sequences, redrawn lines, wide characters; context,
/// times and the filters; a bad regex and a corrupt recording.
#[test]
fn grep_finds_what_sessions_printed_as_the_terminal_showed_it() {
    let mut d = TestDaemon::start();
    // Before a daemon restart: an ended session.
    let earlier = id_of(&d.session(&["--name", "before"], &["sh", "-c", "echo needle-zero"]));
    wait_until("it to end", DEADLINE, || {
        (d.ok(&["status", &earlier])["activity"] == "exited").then_some(())
    });
    d.ok(&["kill", &earlier]);
    d.terminate();
    d.restart();
    // One that ends, its line split across two writes and coloured.
    let ended = id_of(&d.session(
        &["--name", "builder"],
        &["sh", "-c", "printf 'one\\r\\n\\033[1;31mbuild \\033[0mfail'; sleep 0.3; printf 'ed: needle-one\\r\\nafter\\r\\n'"],
    ));
    // One that runs on: a redrawn progress line, wide characters.
    let live = id_of(&d.session(
        &["--name", "runner"],
        &["sh", "-c", "printf 'progress 10%%\\rneedle-two 100%%\\r\\n'; echo '日本語 needle-three'; sleep 1000"],
    ));
    // Written by an earlier daemon a day ago, with no history record; and a corrupt one.
    old_recording(
        &d,
        "0ld00000",
        86_400,
        &[
            r#"[1.5, "o", "yesterday needle-four\r\n"]"#,
            "garbage",
            r#"[2.0, "o", "x\r\n"]"#,
        ],
    );
    std::fs::write(recordings(&d).join("bad00000.cast"), "not a recording\n").unwrap();
    // Its hit is reported as not live once the daemon has seen it end.
    wait_until("the builder to end", DEADLINE, || {
        (d.ok(&["status", &ended])["activity"] == "exited").then_some(())
    });

    let hits = hits_for(&d, &["needle-one", "-C", "1"]);
    assert_eq!(lines(&hits), ["build failed: needle-one"]);
    let h = &hits[0];
    assert_eq!(
        (
            h["session"].as_str(),
            h["name"].as_str(),
            h["live"].as_bool()
        ),
        (Some(ended.as_str()), Some("builder"), Some(false))
    );
    assert_eq!(
        (h["before"][0].as_str(), h["after"][0].as_str()),
        (Some("one"), Some("after"))
    );
    let offset = h["offset_secs"].as_f64().unwrap();
    assert!((0.2..5.0).contains(&offset), "{h}");
    assert!(
        humantime::parse_rfc3339(h["time"].as_str().unwrap()).is_ok(),
        "{h}"
    );

    let hits = hits_for(&d, &["needle-(two|three)"]);
    assert_eq!(lines(&hits), ["needle-two 100%", "日本語 needle-three"]);
    assert!(
        hits.iter()
            .all(|h| h["session"] == live.as_str() && h["live"] == true)
    );
    // Overwritten text is not what the terminal showed.
    assert_eq!(grep(&d, &["progress 10"]).0, 1);

    // The earlier daemon's session, by name; the old one, without a name.
    let hits = hits_for(&d, &["needle-zero"]);
    assert_eq!(
        (hits[0]["session"].as_str(), hits[0]["name"].as_str()),
        (Some(earlier.as_str()), Some("before"))
    );
    let (status, hits, stderr) = grep(&d, &["needle-four"]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(hits[0]["session"], "0ld00000");
    assert_eq!(hits[0]["offset_secs"], 1.5);
    // Skipped with a word, never fatal: a corrupt recording, unreadable lines.
    assert!(
        stderr.contains("skipped session bad00000") && stderr.contains("not an asciicast"),
        "{stderr}"
    );
    assert!(stderr.contains("session 0ld00000: 1 line(s)"), "{stderr}");

    // Newest first (by last write): the two sessions of this daemon, the earlier daemon's,
    // yesterday's.
    let all = hits_for(&d, &["needle-"]);
    let order: Vec<&str> = all.iter().map(|h| h["session"].as_str().unwrap()).collect();
    assert_eq!(order.len(), 5, "{all:#?}");
    assert_eq!(order[3..], [earlier.as_str(), "0ld00000"], "{all:#?}");
    // Filters: time, scope, sessions, case, max.
    assert_eq!(grep(&d, &["needle-four", "--since", "1h"]).0, 1);
    assert_eq!(grep(&d, &["needle-four", "--since", "2d"]).0, 0);
    assert_eq!(grep(&d, &["needle-one", "--until", "1h"]).0, 1);
    assert_eq!(grep(&d, &["needle-four", "--until", "1h"]).0, 0);
    assert_eq!(lines(&grep(&d, &["needle-", "--live"]).1).len(), 2);
    assert_eq!(lines(&grep(&d, &["needle-", "--ended"]).1).len(), 3);
    assert_eq!(
        lines(&grep(&d, &["needle-", "builder", &live[..4]]).1).len(),
        3
    );
    assert_eq!(grep(&d, &["NEEDLE-ONE"]).0, 1);
    assert_eq!(grep(&d, &["-i", "NEEDLE-ONE"]).0, 0);
    assert_eq!(grep(&d, &["needle-", "--max", "2"]).1.len(), 2);
    // Errors are clear, and status 2 (in JSON, an error object).
    for (args, says) in [
        (&["grep", "(unclosed"][..], "not a valid regex"),
        (&["grep", "x", "nosuch"], "'nosuch'"),
    ] {
        let out = d.cli(args);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
    let (status, hits, _) = grep(&d, &["(unclosed"]);
    assert_eq!(
        (status, hits[0]["error"]["kind"].as_str()),
        (2, Some("invalid_argument"))
    );

    // Human output: who, when, the line, escaped.
    let out = d.cli(&["grep", "needle-one"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("builder  20") && text.contains("build failed: needle-one"),
        "{text}"
    );

    // Once it ended, it is found among the ended.
    d.ok(&["kill", &live]);
    let hits = hits_for(&d, &["needle-two", "--ended"]);
    assert_eq!(hits.len(), 1);
    // Removed with their recordings: an index whose recording is gone goes too.
    std::fs::remove_file(recordings(&d).join("0ld00000.cast")).unwrap();
    assert_eq!(grep(&d, &["needle-four"]).0, 1);
    assert!(!recordings(&d).join("0ld00000.search.txt").exists());
}

/// `replay --from` starts at a hit: given its offset or its time; nonsense is refused.
#[test]
fn replay_starts_at_a_hit() {
    let d = TestDaemon::start();
    let id = id_of(&d.session(
        &[],
        &[
            "sh",
            "-c",
            "echo early-line; sleep 1.5; echo later-needle; echo tail-line",
        ],
    ));
    wait_until("it to end", DEADLINE, || {
        (d.ok(&["status", &id])["activity"] == "exited").then_some(())
    });
    let hit = hits_for(&d, &["later-needle"]).remove(0);
    let offset = hit["offset_secs"].as_f64().unwrap();
    assert!(offset >= 1.0, "{hit}");
    for from in [
        format!("{offset}s"),
        hit["time"].as_str().unwrap().to_string(),
    ] {
        let out = d.cli(&["replay", &id, "--from", &from]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        // Earlier output is written at once (the screen as it was), then on from the hit.
        assert!(
            text.contains("early-line")
                && text.contains("later-needle")
                && text.contains("tail-line"),
            "{text}"
        );
    }
    let out = d.cli(&["replay", &id, "--from", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let out = d.cli(&["replay", &id, "--from", "2001-01-01T00:00:00Z"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("starts at"));
    let _ = Duration::ZERO;
}

/// Many long hits with the most context never make a reply too big to carry: batches are
/// bounded in bytes too, and every hit arrives.
#[test]
fn long_lines_with_much_context_arrive_in_bounded_batches() {
    let d = TestDaemon::start();
    let id = id_of(&d.session(
        &[],
        &["sh", "-c", "i=0; while [ $i -lt 2000 ]; do printf 'needle%0600d%0600d\\n' $i $i; i=$((i+1)); done; sleep 1000"],
    ));
    wait_until("the last line recorded", DEADLINE, || {
        (grep(&d, &["needle0*1999", &id]).0 == 0).then_some(())
    });
    let (status, hits, stderr) = grep(&d, &["needle", "-C", "20", &id]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(hits.len(), 2000, "{stderr}");
    // Every hit has all its context, wherever a batch or a read ended.
    for (i, h) in hits.iter().enumerate() {
        let n = |k: &str| h[k].as_array().unwrap().len();
        assert_eq!(
            (n("before"), n("after")),
            (i.min(20), (1999 - i).min(20)),
            "hit {i}"
        );
    }
}
