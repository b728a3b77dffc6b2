//! Share links and the web viewer: the real daemon with `[web] port = 0`, real sessions
//! (in processes of their own, and in the daemon's), and a browser-free client that speaks
//! HTTP/1.1 and Server-Sent Events over a plain TCP socket, as a browser would.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WEB: &str = "[web]\nport = 0\n";

fn daemon(in_daemon: bool) -> TestDaemon {
    let env = Env::new();
    env.write_config(&format!("{}{WEB}", if in_daemon { IN_DAEMON } else { "" }));
    env.start_daemon()
}

/// (address, path) of a link.
fn split(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    (host.parse().unwrap(), format!("/{path}"))
}

fn share(d: &TestDaemon, args: &[&str]) -> (String, Value) {
    let mut all = vec!["share"];
    all.extend_from_slice(args);
    let v = d.ok(&all);
    (v["url"].as_str().unwrap().to_string(), v)
}

/// Connect to `addr` from `from` (a loopback address of our choosing).
fn connect(addr: SocketAddr, from: &str) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor we own; the address structs outlive them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let local: std::net::Ipv4Addr = from.parse().unwrap();
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from(local).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(libc::bind(fd, (&raw const sa).cast(), len), 0);
        let SocketAddr::V4(v4) = addr else { panic!() };
        sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
        sa.sin_port = v4.port().to_be();
        assert_eq!(libc::connect(fd, (&raw const sa).cast(), len), 0, "connect");
        <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
    }
}

/// GET `url` from `from`: (status, body).
fn get(url: &str, suffix: &str, from: &str) -> (u16, String) {
    let (addr, path) = split(url);
    let mut s = connect(addr, from);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    // A refused connection is answered before its request is read: a write may fail.
    let _ = write!(s, "GET {path}{suffix} HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    let status = all
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = all
        .split_once("\r\n\r\n")
        .map(|b| b.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// A browser's event stream, and the screen it has built from it.
struct Viewer {
    r: BufReader<TcpStream>,
    lines: Vec<String>,
    ended: Option<String>,
    bytes: usize,
}

impl Viewer {
    fn open(url: &str) -> Viewer {
        Self::open_from(url, "127.0.0.1")
    }

    fn open_from(url: &str, from: &str) -> Viewer {
        let (addr, path) = split(url);
        let mut s = connect(addr, from);
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            s,
            "GET {path}/live HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        wait_until("the response", DEADLINE, || {
            r.read_line(&mut status).ok().filter(|n| *n > 0)
        });
        assert!(status.contains(" 200 "), "{status}");
        // The head.
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) > 0 && line == "\r\n" {
                break;
            }
        }
        Viewer {
            r,
            lines: Vec::new(),
            ended: None,
            bytes: 0,
        }
    }

    fn text(runs: &Value) -> String {
        runs.as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect::<String>()
            .trim_end()
            .to_string()
    }

    /// Read one event if one comes soon; apply it.
    fn step(&mut self) {
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) => {
                    self.ended.get_or_insert_with(|| "closed".into());
                    return;
                }
                Ok(n) => self.bytes += n,
                Err(_) => return,
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.into();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = d.into();
            }
        }
        if event.is_empty() {
            return;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        match event.as_str() {
            "screen" => {
                self.lines = v["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(Self::text)
                    .collect()
            }
            "rows" => {
                for (i, runs) in v.as_object().unwrap() {
                    self.lines[i.parse::<usize>().unwrap()] = Self::text(runs);
                }
            }
            "end" => self.ended = Some(v["reason"].as_str().unwrap().into()),
            other => panic!("unexpected event {other}"),
        }
    }

    fn screen(&self) -> String {
        self.lines.join("\n")
    }

    fn wait(&mut self, what: &str, check: impl Fn(&Viewer) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; screen:\n{}\nended: {:?}",
                self.screen(),
                self.ended
            );
            if self.ended.is_some() {
                panic!("the stream ended ({:?}) before {what}", self.ended);
            }
            self.step();
        }
    }

    fn wait_end(&mut self) -> String {
        let start = Instant::now();
        while self.ended.is_none() {
            assert!(start.elapsed() < DEADLINE, "the stream did not end");
            self.step();
        }
        self.ended.clone().unwrap()
    }
}

fn live_screen_and_peers(in_daemon: bool) {
    let d = daemon(in_daemon);
    let s = d.session(
        &["--name", "web"],
        &[
            "sh",
            "-c",
            "printf '\\033[1;32mfirst\\033[0m 漢字\\n'; while read l; do echo \"got $l\"; done",
        ],
    );
    let id = id_of(&s);
    let (url, link) = share(&d, &["web"]);
    assert_eq!(link["session"], id.as_str());
    assert_eq!(link["token"].as_str().unwrap().len(), 40);
    // The page, with the headers that keep the token to itself.
    let (status, page) = get(&url, "", "127.0.0.1");
    assert_eq!(status, 200);
    assert!(page.contains("/app.js"));
    // The screen at once, then what changes.
    let mut v = Viewer::open(&url);
    v.wait("the first screen", |v| v.screen().contains("first 漢字"));
    d.ok(&["send", "web", "hello there"]);
    v.wait("the reply", |v| v.screen().contains("got hello there"));
    // A peer like any other: kind web, a viewer, its address; counted in ps and the link.
    let peers = d.ok(&["peers", "web"]);
    let web: Vec<&Value> = peers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "web")
        .collect();
    assert_eq!(web.len(), 1, "{peers}");
    assert_eq!(web[0]["role"], "viewer");
    assert!(
        web[0]["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let ps = d.ok(&["ps"]);
    let row = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap();
    assert_eq!(row["clients"], 1, "{row}");
    assert_eq!(d.ok(&["share", "--list"])[0]["viewers"], 1);
    // Typing from the page is impossible; kicking it ends its stream, and it is told why.
    let name = web[0]["client"].as_str().unwrap().to_string();
    d.ok(&["kick", "web", &name]);
    assert_eq!(v.wait_end(), "kicked");
    wait_until("the viewer to leave", DEADLINE, || {
        (d.peer_count(&id) == 0).then_some(())
    });
    // The audit trail has its join.
    let audit = std::fs::read_to_string(
        d.home
            .join(".local/state/hearth/recordings")
            .join(format!("{id}.audit.jsonl")),
    )
    .unwrap();
    assert!(audit.contains("share:"), "{audit}");
}

#[test]
fn a_browser_sees_the_screen_then_its_changes_as_a_viewer_peer() {
    live_screen_and_peers(false);
}

#[test]
fn a_browser_sees_a_session_in_the_daemons_own_process_too() {
    live_screen_and_peers(true);
}

/// A browser that stops reading slows nobody, and once it reads again it gets the screen as
/// it is now, not the megabytes it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_browser_slows_nobody_and_skips_to_the_current_screen() {
    let d = daemon(false);
    let s = d.session(
        &["--name", "flood"],
        &[
            "sh",
            "-c",
            "read x; seq 1 300000; echo FLOOD-DONE; sleep 600",
        ],
    );
    let port = port_of(&s);
    let (url, _) = share(&d, &["flood"]);
    let mut stalled = Viewer::open(&url);
    stalled.step();
    let ssh = SshClient::connect(port, &d.owner, "own", 80, 24).await;
    d.ok(&["send", "flood", "go"]);
    // The SSH viewer gets the whole flood while the browser reads nothing.
    tokio::time::timeout(DEADLINE, ssh.wait_text("FLOOD-DONE"))
        .await
        .expect("the SSH client got the flood's end while the browser stalled");
    let flood_bytes = 300000 * 7;
    let stalled = tokio::task::spawn_blocking(move || {
        stalled.wait("the current screen", |v| v.screen().contains("FLOOD-DONE"));
        stalled
    })
    .await
    .unwrap();
    assert!(
        stalled.bytes < flood_bytes / 4,
        "the browser got {} bytes for a {flood_bytes}-byte flood: it should skip ahead",
        stalled.bytes
    );
    assert!(stalled.screen().contains("300000"));
}

/// Links expire and can be revoked, cutting their viewers; a wrong token is a missing page,
/// and a source that guesses is penalised while another source still gets in.
#[test]
fn links_expire_and_revoke_and_guessers_are_penalised() {
    let d = daemon(false);
    d.session(&["--name", "x"], &["sh", "-c", "echo here; sleep 600"]);
    let (short, _) = share(&d, &["x", "--expires", "2s"]);
    let mut v = Viewer::open(&short);
    v.wait("the screen", |v| v.screen().contains("here"));
    assert_eq!(v.wait_end(), "expired");
    assert_eq!(get(&short, "", "127.0.0.1").0, 404);

    let (url, link) = share(&d, &["x"]);
    let mut v = Viewer::open(&url);
    v.wait("the screen", |v| v.screen().contains("here"));
    let revoked = d.ok(&["share", "--revoke", link["id"].as_str().unwrap()]);
    assert_eq!(revoked[0]["id"], link["id"]);
    assert_eq!(v.wait_end(), "revoked");
    assert_eq!(get(&url, "", "127.0.0.1").0, 404);
    assert!(d.ok(&["share", "--list"]).as_array().unwrap().is_empty());
    d.err(&["share", "--revoke", "nope"], "not_found");

    // Guessing: the same answer as a missing page, then a penalty for that source only.
    let (good, _) = share(&d, &["x"]);
    let wrong = format!(
        "{}0000000000000000000000000000000000000000",
        &good[..good.rfind('/').unwrap() + 1]
    );
    for _ in 0..5 {
        assert_eq!(get(&wrong, "", "127.0.0.3").0, 404);
    }
    assert_eq!(get(&good, "", "127.0.0.3").0, 429);
    assert_eq!(get(&good, "", "127.0.0.4").0, 200);
    // Nothing but GET; nothing outside the links.
    assert_eq!(get(&good.replace("/s/", "/x/"), "", "127.0.0.4").0, 404);
}

/// Without `[web] port` the daemon serves no links and says how to turn them on.
#[test]
fn share_needs_the_web_front() {
    let d = TestDaemon::start();
    d.session(&["--name", "x"], &["sh", "-c", "sleep 600"]);
    let msg = d.err(&["share", "x"], "invalid_state");
    assert!(msg.contains("web-port"), "{msg}");
    d.err(&["share", "nosuch"], "invalid_state");
}
