//! Sessions in processes of their own (`[sessions] processes = "own"`): they outlive the
//! daemon. Real daemons, real session host processes, real PTYs, OpenSSH clients in tmux.

mod common;

use std::path::Path;
use std::time::Duration;

use std::process::Stdio;

use common::*;
use serde_json::Value;

/// `hearth --json events --follow`, read as it prints.
struct Follower {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    partial: String,
    seen: Vec<Value>,
}

impl Follower {
    fn start(d: &TestDaemon) -> Follower {
        let mut child = d
            .command(&["--json", "events", "--follow", "--since", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rx = drain(child.stdout.take().unwrap());
        Follower {
            child,
            rx,
            partial: String::new(),
            seen: Vec::new(),
        }
    }

    /// Read until `done` holds for what was seen.
    fn until(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) {
        wait_until(what, DEADLINE, || {
            while let Ok(chunk) = self.rx.try_recv() {
                self.partial.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(n) = self.partial.find('\n') {
                    let line: String = self.partial.drain(..=n).collect();
                    self.seen.push(serde_json::from_str(line.trim()).unwrap());
                }
            }
            done(&self.seen).then_some(())
        });
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon whose sessions each get a process of their own (the default, said anyway), and
/// the guard that makes sure none of them outlives the test (bind it first: it goes after
/// the daemon).
fn split_daemon() -> (NoLeftovers, TestDaemon) {
    let env = Env::new();
    env.write_config("[sessions]\nprocesses = \"own\"\n");
    (NoLeftovers(env.socket.clone()), env.start_daemon())
}

/// Pids of the session hosts serving sessions of the daemon on `socket`.
fn hosts_of(socket: &Path) -> Vec<(i32, String)> {
    let dir = socket.parent().unwrap().join("sessions");
    let dir = dir.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let zombie = state.rsplit(')').next()?.trim_start().starts_with('Z');
            (cmd.contains("session-host") && cmd.contains(dir) && !zombie).then_some((pid, cmd))
        })
        .collect()
}

/// The host serving session `id`.
fn host_of(socket: &Path, id: &str) -> i32 {
    let hosts = hosts_of(socket);
    hosts
        .iter()
        .find(|(_, cmd)| cmd.contains(&format!("{id}.sock")))
        .unwrap_or_else(|| panic!("no session host for {id} among {hosts:?}"))
        .0
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Whatever the test's end, no session host of it is left running.
struct NoLeftovers(std::path::PathBuf);

impl Drop for NoLeftovers {
    fn drop(&mut self) {
        for (pid, _) in hosts_of(&self.0) {
            // SAFETY: a plain syscall on a process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn ids(list: &Value) -> Vec<(String, String, u64, i64)> {
    let mut v: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap_or("").to_string(),
                s["port"].as_u64().unwrap(),
                s["pid"].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn sessions_clients_and_recordings_outlive_a_daemon_killed_with_sigkill() {
    outlive_the_daemon(Away::Crash);
}

/// The upgrade path under the same load: a new binary on disk takes over.
#[test]
fn sessions_clients_and_recordings_outlive_daemon_replace() {
    outlive_the_daemon(Away::Replace);
}

/// How the daemon goes away.
enum Away {
    /// `kill -9`, then a new daemon.
    Crash,
    /// `hearth daemon --replace` from a new binary on disk.
    Replace,
}

/// 3 sessions, 2 OpenSSH clients in one, an events follower; the daemon goes away `how`:
/// the clients stay and keep working while no daemon runs, the next daemon has the same
/// sessions (ids, names, ports, pids), every call works, the follower goes on without a
/// gap or a repeat, and the recording has it all.
fn outlive_the_daemon(how: Away) {
    let (_cleanup, mut d) = split_daemon();
    let a = d.session(&["--name", "a"], &["/bin/sh"]);
    d.session(&["--name", "b"], &["/bin/sh"]);
    d.session(&["--name", "c"], &["sh", "-c", "while :; do sleep 1; done"]);
    let (id, port) = (id_of(&a), port_of(&a));
    let before = ids(&d.ok(&["ps"]));
    assert_eq!(before.len(), 3);
    assert_eq!(hosts_of(&d.socket).len(), 3, "one process per session");

    let tmux = Tmux::new(d.dir.path());
    let line = format!("ssh {} -tt 127.0.0.1", ssh_args(&d.owner, port).join(" "));
    tmux.run("one", 80, 24, &line);
    tmux.run("two", 80, 24, &line);
    wait_until("both clients to attach", DEADLINE, || {
        (d.peer_count(&id) == 2).then_some(())
    });

    // A follower of every event, started before the crash.
    let mut follower = Follower::start(&d);
    d.ok(&["msg", "a", "before the crash"]);
    follower.until("the follower to see the message", |seen| {
        seen.iter().any(|e| e["kind"] == "message")
    });

    match how {
        Away::Crash => {
            d.crash();
            // No daemon runs: what one client types reaches the program and the other.
            tmux.type_text("one", "echo away-$((6*7))\r");
            tmux.wait_for("two", "away-42");
            d.restart();
        }
        Away::Replace => {
            let installed = replace_daemon(&mut d);
            tmux.type_text("one", "echo away-$((6*7))\r");
            tmux.wait_for("two", "away-42");
            let pid = d.pid();
            let version = d.ok(&["version"]);
            assert_eq!(version["daemon"]["pid"], pid, "{version}");
            assert_eq!(
                std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
                installed,
                "the new daemon is the binary now on disk"
            );
        }
    }
    assert_eq!(
        ids(&d.ok(&["ps"])),
        before,
        "same ids, names, ports and pids"
    );
    assert_eq!(d.peer_count(&id), 2, "both clients are still attached");
    let sent = d.ok(&["send", "a", "echo back-$((2*21))"]);
    let from = sent["offset"].as_u64().unwrap().to_string();
    let waited = d.ok(&["wait", "a", "--from", &from, "--match", "back-42"]);
    assert_eq!(waited["reason"], "match", "{waited}");
    tmux.wait_for("one", "back-42");
    let screen = d.cli(&["screen", "a"]);
    assert!(String::from_utf8_lossy(&screen.stdout).contains("back-42"));
    let logs = d.cli(&["logs", "a"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("away-42"));

    // The follower went on across the restart: every event once, in order, with what
    // happened while no daemon ran (the client typing).
    d.ok(&["msg", "a", "after the restart"]);
    follower.until("the follower to see the second message", |seen| {
        seen.iter().filter(|e| e["kind"] == "message").count() == 2
    });
    let seen = &follower.seen;
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no repeat: {seqs:?}"
    );
    let first = seen.iter().position(|e| e["kind"] == "message").unwrap();
    assert!(
        seen[first..]
            .iter()
            .any(|e| e["kind"] == "input" && e["session"] == id.as_str()),
        "the client's typing while no daemon ran: {seen:?}"
    );

    let killed = d.ok(&["kill", "a"]);
    let recording = killed[0]["recording"].as_str().unwrap().to_string();
    let cast = std::fs::read_to_string(&recording).unwrap();
    assert!(
        cast.contains("away-42"),
        "the recording kept what was printed while no daemon ran"
    );
    wait_until("a's process to end", DEADLINE, || {
        (hosts_of(&d.socket).len() == 2).then_some(())
    });
}

#[test]
fn a_session_process_killed_with_sigkill_is_lost_alone() {
    let (_cleanup, d) = split_daemon();
    let a = d.session(&["--name", "a"], &["sh", "-c", "sleep 1000 & sleep 1000"]);
    let b = d.session(&["--name", "b"], &["/bin/sh"]);
    let (a_id, b_id) = (id_of(&a), id_of(&b));
    let program = a["pid"].as_i64().unwrap();

    let host = host_of(&d.socket, &a_id);
    // SAFETY: a plain syscall on the host this test's daemon started.
    unsafe { libc::kill(host, libc::SIGKILL) };

    wait_until("a to be reported lost", DEADLINE, || {
        let ps = d.ok(&["ps"]);
        (ps.as_array().unwrap().len() == 1).then_some(())
    });
    // By id: once a is gone, "a" could be a prefix of b's id.
    let events = d.cli(&["--json", "events", "--since", "1", &a_id]);
    let events = String::from_utf8_lossy(&events.stdout).into_owned();
    assert!(
        events.lines().any(|l| l.contains("\"kind\":\"lost\"")),
        "{events}"
    );
    wait_until("a's history record to say lost", DEADLINE, || {
        let history = d.ok(&["history"]);
        let record = history
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == a_id.as_str())
            .cloned();
        (record?["lost"] == true).then_some(())
    });
    wait_until("a's program to be ended", DEADLINE, || {
        (!alive(program)).then_some(())
    });
    // b and its process are untouched.
    let sent = d.ok(&["send", &b_id, "echo still-$((3*3))"]);
    let from = sent["offset"].as_u64().unwrap().to_string();
    let waited = d.ok(&["wait", &b_id, "--from", &from, "--match", "still-9"]);
    assert_eq!(waited["reason"], "match", "{waited}");
    assert_eq!(hosts_of(&d.socket).len(), 1);
}

#[test]
fn shutdown_ends_every_session_process_and_what_it_started() {
    let (_cleanup, d) = split_daemon();
    let programs: Vec<i64> = (0..2)
        .map(|_| {
            d.session(&[], &["sh", "-c", "sleep 1000"])["pid"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(hosts_of(&d.socket).len(), 2);
    let out = d.ok(&["shutdown"]);
    assert_eq!(out["sessions_ended"], 2, "it says so: {out}");
    wait_until("every session process to end", DEADLINE, || {
        hosts_of(&d.socket).is_empty().then_some(())
    });
    for p in programs {
        wait_until("the programs to end", DEADLINE, || {
            (!alive(p)).then_some(())
        });
    }
}

#[test]
fn a_request_a_session_process_refuses_leaves_nothing_running() {
    let (_cleanup, d) = split_daemon();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let message = d.err(
        &[
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--",
            "/bin/sh",
        ],
        "port_unavailable",
    );
    assert!(message.contains(&port), "{message}");
    let message = d.err(
        &[
            "server",
            "--bind",
            "127.0.0.1",
            "--",
            "/nonexistent/program",
        ],
        "spawn",
    );
    assert!(message.contains("/nonexistent/program"), "{message}");
    // A refused host answers, then ends.
    wait_until("the refused hosts to end", DEADLINE, || {
        hosts_of(&d.socket).is_empty().then_some(())
    });
    wait_until(
        "the refused hosts' sockets to go",
        Duration::from_secs(5),
        || {
            let dir = d.socket.parent().unwrap().join("sessions");
            let left: Vec<_> = std::fs::read_dir(&dir)
                .map(|r| r.filter_map(|e| e.ok()).collect())
                .unwrap_or_default();
            left.is_empty().then_some(())
        },
    );
    // And a good one still starts.
    d.shell(&[]);
}

#[test]
fn sigterm_and_shutdown_keep_sessions_stop_only_the_daemon() {
    let (_cleanup, mut d) = split_daemon();
    let a = d.session(&["--name", "a"], &["sh", "-c", "sleep 1000"]);
    let program = a["pid"].as_i64().unwrap();

    let out = d.ok(&["shutdown", "--keep-sessions"]);
    assert_eq!(out["sessions_kept"], 1, "{out}");
    let mut old = d.child.take().unwrap();
    wait_until("the daemon to exit", DEADLINE, || {
        old.try_wait().unwrap().map(|_| ())
    });
    assert!(alive(program), "the session's program still runs");
    assert_eq!(hosts_of(&d.socket).len(), 1);

    d.restart();
    assert_eq!(ids(&d.ok(&["ps"]))[0].0, id_of(&a));
    assert!(d.terminate(), "SIGTERM stops the daemon");
    assert!(alive(program), "SIGTERM stops only the daemon");

    d.restart();
    assert_eq!(ids(&d.ok(&["ps"]))[0].0, id_of(&a));
    d.ok(&["shutdown"]);
    wait_until("shutdown to end the session too", DEADLINE, || {
        (hosts_of(&d.socket).is_empty() && !alive(program)).then_some(())
    });
}

#[test]
fn keep_sessions_is_refused_by_a_daemon_that_holds_its_sessions() {
    let d = TestDaemon::start_in_daemon();
    d.shell(&[]);
    let message = d.err(&["shutdown", "--keep-sessions"], "invalid_state");
    assert!(message.contains("processes = \"own\""), "{message}");
    assert_eq!(
        d.ok(&["ps"]).as_array().unwrap().len(),
        1,
        "nothing stopped"
    );
}

/// Install a new binary (a new file, as an upgrade does) and run `daemon --replace` from
/// it; returns once the old daemon has handed over and exited and the new one answers.
fn replace_daemon(d: &mut TestDaemon) -> std::path::PathBuf {
    let bin = d.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let installed = bin.join("hearth");
    std::fs::copy(BIN, &installed).unwrap();
    let log = d.dir.path().join("daemon.log");
    let mut old = d.child.take().unwrap();
    let new = d
        .script(
            &format!(
                "exec '{}' daemon --replace --kill-grace 1 --login-grace 2 2>>'{}'",
                installed.display(),
                log.display()
            ),
            &bin,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the old daemon to hand over and exit", DEADLINE, || {
        old.try_wait().unwrap().map(|_| ())
    });
    d.child = Some(new);
    d.wait_ready();
    installed
}
