//! The dashboard in a real terminal (`hearth top` under tmux) and `hearth attach` with the
//! OpenSSH client.

mod common;

use common::*;

/// `env ... hearth ARGS` as a shell line for tmux, with this daemon's HOME and socket; its
/// exit status goes to `<dir>/<name>.status` (tmux 3.3 does not always record a dead
/// pane's).
fn hearth_line(d: &TestDaemon, name: &str, args: &str, extra_env: &str) -> String {
    format!(
        "env HOME={} HEARTH_SOCKET={} HEARTH_NO_AUTOSTART=1 TERM=xterm-256color {extra_env} {BIN} {args}; \
         echo $? > {}/{name}.status",
        d.home.display(),
        d.socket.display(),
        d.dir.path().display(),
    )
}

/// The exit status `hearth_line` wrote, once it has.
fn exit_status(d: &TestDaemon, name: &str) -> i32 {
    written_status(&d.dir.path().join(format!("{name}.status")))
}

#[test]
fn top_shows_sessions_as_they_come_busy_and_go() {
    let d = TestDaemon::start();
    d.session(
        &["--name", "first"],
        &["sh", "-c", "echo first-screen; sleep 1000"],
    );
    let tmux = Tmux::new(d.dir.path());
    // Debug logging: every RPC logs a line, and none may land on the dashboard.
    tmux.run(
        "top",
        100,
        30,
        &hearth_line(&d, "top", "top", "HEARTH_LOG=debug"),
    );
    tmux.wait_for("top", "hearth top");
    tmux.wait_for("top", "first");
    // The preview shows the selected session's screen.
    tmux.wait_for("top", "first-screen");
    // A session started elsewhere appears without a key pressed...
    d.session(&["--name", "second"], &["sh", "-c", "read x; exit 3"]);
    tmux.wait_for("top", "second");
    // ...and its exit changes its badge.
    d.ok(&["send", "second", "go"]);
    tmux.wait_for("top", "exited 3");
    let screen = tmux.capture("top");
    assert!(
        !screen.contains("DEBUG"),
        "a log line on the dashboard:\n{screen}"
    );
    // The filter hides the others; q quits cleanly.
    tmux.type_text("top", "/sec");
    let screen = wait_until("the filter", DEADLINE, || {
        let s = tmux.capture("top");
        (!s.contains("first ")).then_some(s)
    });
    assert!(screen.contains("second"), "{screen}");
    // (Esc then q at once would read as Alt-q: wait for the Esc to land.)
    tmux.send_keys("top", &["Escape"]);
    tmux.wait_for("top", "first ");
    tmux.type_text("top", "q");
    assert_eq!(exit_status(&d, "top"), 0);
}

#[test]
fn attach_joins_with_the_daemons_host_key_and_returns_sshs_status() {
    let d = TestDaemon::start();
    d.session(&["--name", "shell"], &["/bin/sh"]);
    let tmux = Tmux::new(d.dir.path());
    // BatchMode: an unknown host key would fail instead of prompting, so getting in
    // proves attach pinned the daemon's key.
    let ssh = format!(
        "HEARTH_SSH='ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR'",
        d.owner.path.display()
    );
    tmux.run("att", 80, 24, &hearth_line(&d, "att", "attach shell", &ssh));
    tmux.type_text("att", "echo typed-$((6*7))\r");
    tmux.wait_for("att", "typed-42");
    let logs = d.ok(&["logs", "shell"]);
    assert!(
        logs["text"].as_str().unwrap().contains("typed-42"),
        "{logs}"
    );
    tmux.type_text("att", "exit 5\r");
    // ssh's status is attach's.
    assert_eq!(exit_status(&d, "att"), 5);
    // An exited or unknown session is a clear error, not an ssh failure.
    let out = d.cli(&["attach", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}
