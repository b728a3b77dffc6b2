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
        Self::open_at(url, "/live", from)
    }

    /// Another stream of the link (`/play?...`).
    fn open_path(url: &str, suffix: &str) -> Viewer {
        Self::open_at(url, suffix, "127.0.0.1")
    }

    fn open_at(url: &str, suffix: &str, from: &str) -> Viewer {
        let (addr, path) = split(url);
        let mut s = connect(addr, from);
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        write!(
            s,
            "GET {path}{suffix} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n"
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
            "time" => {}
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
    // The page.
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

/// Chrome's DevTools protocol over a WebSocket, just enough to load a page, read its text and
/// take a screenshot (the test runs the real Debian `chromium`, headless).
mod cdp {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    pub struct Page {
        s: TcpStream,
        next: u64,
    }

    impl Page {
        /// Connect to a `ws://host:port/path` debugger URL.
        pub fn connect(url: &str) -> Page {
            let rest = url.strip_prefix("ws://").unwrap();
            let (host, path) = rest.split_once('/').unwrap();
            let mut s = TcpStream::connect(host).unwrap();
            // A browser that stops answering fails the test instead of hanging it.
            s.set_read_timeout(Some(super::DEADLINE)).unwrap();
            write!(
                s,
                "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.contains(" 101 "), "{line}");
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
            }
            // Nothing else was sent yet, so the buffered reader holds nothing more.
            assert!(r.buffer().is_empty());
            Page { s, next: 1 }
        }

        fn send(&mut self, text: &str) {
            let bytes = text.as_bytes();
            let mut frame = vec![0x81u8];
            match bytes.len() {
                n if n < 126 => frame.push(0x80 | n as u8),
                n if n < 65536 => {
                    frame.push(0x80 | 126);
                    frame.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    frame.push(0x80 | 127);
                    frame.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            let mask = [1u8, 2, 3, 4];
            frame.extend_from_slice(&mask);
            frame.extend(bytes.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            self.s.write_all(&frame).unwrap();
        }

        fn receive(&mut self) -> String {
            let mut message = Vec::new();
            loop {
                let mut head = [0u8; 2];
                self.s.read_exact(&mut head).unwrap();
                let len = match head[1] & 0x7f {
                    126 => {
                        let mut b = [0u8; 2];
                        self.s.read_exact(&mut b).unwrap();
                        u16::from_be_bytes(b) as usize
                    }
                    127 => {
                        let mut b = [0u8; 8];
                        self.s.read_exact(&mut b).unwrap();
                        u64::from_be_bytes(b) as usize
                    }
                    n => n as usize,
                };
                let mut payload = vec![0u8; len];
                self.s.read_exact(&mut payload).unwrap();
                message.extend_from_slice(&payload);
                if head[0] & 0x80 != 0 {
                    return String::from_utf8(message).unwrap();
                }
            }
        }

        /// Call `method` and return its result (events in between are skipped).
        pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
            let id = self.next;
            self.next += 1;
            self.send(
                &serde_json::json!({"id": id, "method": method, "params": params}).to_string(),
            );
            loop {
                let v: serde_json::Value = serde_json::from_str(&self.receive()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }

        pub fn eval(&mut self, expression: &str) -> serde_json::Value {
            self.call(
                "Runtime.evaluate",
                serde_json::json!({"expression": expression, "returnByValue": true}),
            )["result"]["value"]
                .clone()
        }
    }
}

/// A real browser: headless Chromium opens the link; the page (hearth's own script) shows
/// the session's text, then what the program prints next, and a screenshot is taken.
#[test]
#[cfg_attr(
    not(hearth_tests_chromium),
    ignore = "needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
)]
fn a_real_browser_shows_the_session() {
    use base64::Engine as _;
    let d = daemon(false);
    let id = id_of(&d.session(
        &["--name", "seen"],
        &["sh", "-c", "printf '\\033[1;32mhello from hearth\\033[0m 漢字\\n'; read x; echo \"then $x\"; sleep 600"],
    ));
    let (url, _) = share(&d, &["seen"]);
    let profile = d.dir.path().join("chromium");
    let chrome = std::process::Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1000,700",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _chrome = Kill(chrome);
    // Chromium writes its debugging port to DevToolsActivePort in the profile.
    let port: u16 = wait_until("chromium's debugging port", DEADLINE, || {
        std::fs::read_to_string(profile.join("DevToolsActivePort"))
            .ok()?
            .lines()
            .next()?
            .parse()
            .ok()
    });
    let targets: Value = wait_until("chromium's page", DEADLINE, || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .ok()?;
        // Chromium keeps the connection open: read as much as Content-Length says.
        let mut r = BufReader::new(s);
        let mut len = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).ok()?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().ok()?;
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).ok()?;
        serde_json::from_slice(&body).ok()
    });
    let ws = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .unwrap()["webSocketDebuggerUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let mut page = cdp::Page::connect(&ws);
    page.call("Page.navigate", serde_json::json!({"url": url}));
    let text = |page: &mut cdp::Page| {
        page.eval(
            "document.getElementById('screen') ? document.getElementById('screen').innerText : ''",
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    };
    wait_until("the page to show the session", DEADLINE, || {
        text(&mut page)
            .contains("hello from hearth 漢字")
            .then_some(())
    });
    assert_eq!(
        page.eval("document.getElementById('state').textContent"),
        "live"
    );
    d.ok(&["send", "seen", "the browser"]);
    wait_until("the page to show the update", DEADLINE, || {
        text(&mut page).contains("then the browser").then_some(())
    });
    // Colour from the session's escape sequences: the first run is bold green.
    let style = page.eval(
        "(function(){const s=document.querySelector('#screen div span');return getComputedStyle(s).color+' '+getComputedStyle(s).fontWeight})()",
    );
    assert_eq!(
        style, "rgb(0, 255, 0) 700",
        "bold green (bright, as xterm draws bold)"
    );
    let shot = page.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
    // Kept for a human to look at (CI can collect it).
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-viewer.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {}", out.display());

    // The timeline: a --replay link shows the live screen and the DVR bar; the slider goes
    // back to before the reply, and play runs it again.
    let (replay, _) = share(&d, &["seen", "--replay"]);
    page.call("Page.navigate", serde_json::json!({"url": replay}));
    wait_until("the timeline bar and the live screen", DEADLINE, || {
        (page.eval("document.getElementById('dvr').hidden") == false
            && text(&mut page).contains("then the browser"))
        .then_some(())
    });
    let before_reply = time_of(&d, &id, "hello from hearth") + 0.001;
    // (The recording has the reply once the recorder flushed it: within a second.)
    time_of(&d, &id, "then the browser");
    page.eval(&format!(
        "(function(){{const s=document.getElementById('seek'); s.value={before_reply}; \
         s.dispatchEvent(new Event('change')); return 1}})()"
    ));
    wait_until("the moment before the reply", DEADLINE, || {
        let t = text(&mut page);
        (t.contains("hello from hearth") && !t.contains("then the browser")).then_some(())
    });
    assert!(
        page.eval("document.getElementById('state').textContent")
            .as_str()
            .unwrap()
            .starts_with("replay"),
    );
    page.eval(
        "document.getElementById('speed').value='8'; document.getElementById('play').click(); 1",
    );
    wait_until("playback to reach the reply", DEADLINE, || {
        text(&mut page).contains("then the browser").then_some(())
    });
    let shot = page.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    std::fs::write(out.with_file_name("web-viewer-replay.png"), &png).unwrap();
}

/// `hearth screen`'s text, as the page's rows compare with it.
fn normal(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

/// The time of the first output event of `id`'s recording that contains `needle`.
fn time_of(d: &TestDaemon, id: &str, needle: &str) -> f64 {
    let cast = d
        .home
        .join(".local/state/hearth/recordings")
        .join(format!("{id}.cast"));
    wait_until(&format!("{needle:?} in the recording"), DEADLINE, || {
        let text = std::fs::read_to_string(&cast).ok()?;
        text.lines().skip(1).find_map(|l| {
            let e: Value = serde_json::from_str(l).ok()?;
            (e[1] == "o" && e[2].as_str()?.contains(needle)).then(|| e[0].as_f64())?
        })
    })
}

/// The screen the page gets from `/at?t=`.
fn screen_at(url: &str, t: f64) -> String {
    let (status, body) = get(url, &format!("/at?t={t}"), "127.0.0.1");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    normal(
        &v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(Viewer::text)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The timeline: any moment of the recording renders as `hearth screen` showed it then;
/// playback runs to the end; markers name joins and restarts; a link to a session that has
/// ended is its replay; a plain link to a live one has no timeline.
#[test]
fn the_timeline_shows_any_moment_as_hearth_screen_did() {
    let d = daemon(false);
    let s = d.session(
        &["--name", "dvr"],
        &[
            "sh",
            "-c",
            "echo one; read x; printf '\\033[1;31mtwo\\033[0m\\n'; read y; echo three; sleep 600",
        ],
    );
    let id = id_of(&s);
    let screen = || normal(&String::from_utf8_lossy(&d.cli(&["screen", "dvr"]).stdout));
    let first = wait_until("one", DEADLINE, || {
        let s = screen();
        s.contains("one").then_some(s)
    });
    let (plain, _) = share(&d, &["dvr"]);
    let (url, link) = share(&d, &["dvr", "--replay"]);
    assert_eq!(link["replay"], true);
    assert_eq!(
        get(&plain, "/timeline", "127.0.0.1").0,
        404,
        "no timeline unless asked"
    );
    // A browser joins: a marker.
    let mut v = Viewer::open(&url);
    v.wait("the screen", |v| v.screen().contains("one"));
    d.ok(&["send", "dvr", "a"]);
    let second = wait_until("two", DEADLINE, || {
        let s = screen();
        s.contains("two").then_some(s)
    });
    d.ok(&["send", "dvr", "b"]);
    let third = wait_until("three", DEADLINE, || {
        let s = screen();
        s.contains("three").then_some(s)
    });
    let (t_one, t_two, t_three) = (
        time_of(&d, &id, "one"),
        time_of(&d, &id, "two"),
        time_of(&d, &id, "three"),
    );
    assert_eq!(screen_at(&url, t_one + 0.0001), first);
    assert_eq!(screen_at(&url, t_two + 0.0001), second);
    assert_eq!(screen_at(&url, t_three + 0.0001), third);
    assert_eq!(screen_at(&url, 0.0), "");
    let (_, tl) = get(&url, "/timeline", "127.0.0.1");
    let tl: Value = serde_json::from_str(&tl).unwrap();
    assert_eq!(tl["live"], true);
    assert!(tl["duration"].as_f64().unwrap() >= t_three);
    assert!(
        tl["markers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m[1].as_str().unwrap().contains("web-1 joined (viewer)")),
        "{tl}"
    );
    // Playback from the start, fast: to the last screen, then `end`.
    let mut p = Viewer::open_path(&url, "/play?t=0&speed=16");
    assert_eq!(p.wait_end(), "finished");
    assert_eq!(normal(&p.screen()), third);
    // Ended: a plain link is now its replay, and a new link can be made to it.
    d.ok(&["kill", "dvr"]);
    assert_eq!(v.wait_end(), "exited");
    let (_, tl) = get(&plain, "/timeline", "127.0.0.1");
    let tl: Value = serde_json::from_str(&tl).unwrap();
    assert_eq!(tl["live"], false);
    assert_eq!(screen_at(&plain, 1e9), third);
    let (late, _) = share(&d, &[&id]);
    assert_eq!(screen_at(&late, t_two + 0.0001), second);
}

/// Garbage, an oversized head and a half-sent request cost the daemon nothing; a locked
/// session turns browsers away like SSH viewers, and says so.
#[test]
fn bad_requests_and_locked_sessions() {
    let d = daemon(false);
    d.session(&["--name", "x"], &["sh", "-c", "echo here; sleep 600"]);
    let (url, _) = share(&d, &["x"]);
    let (addr, _) = split(&url);
    // Not HTTP at all.
    let mut s = connect(addr, "127.0.0.5");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = s.write_all(b"\x00\x01\x02garbage\r\n\r\n");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains(" 200 "));
    // A head far bigger than allowed.
    let mut s = connect(addr, "127.0.0.5");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let big = format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = s.write_all(big.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains(" 200 "));
    // Nothing else but GET.
    let (_, path) = split(&url);
    let mut s = connect(addr, "127.0.0.6");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    // Still serving.
    assert_eq!(get(&url, "", "127.0.0.7").0, 200);
    let mut v = Viewer::open(&url);
    v.wait("the screen", |v| v.screen().contains("here"));
    // Locked: new browsers are turned away (the one watching stays).
    d.ok(&["lock", "x"]);
    let mut late = Viewer::open(&url);
    assert_eq!(late.wait_end(), "locked");
    assert_eq!(d.ok(&["share", "--list"])[0]["viewers"], 1);
}

/// `share NAME` of a session that has ended finds it by the name it had, even when NAME is
/// also the start of a live session's id (as `events`, `logs` and `replay` do).
#[test]
fn share_of_an_ended_name_that_starts_a_live_id() {
    let d = daemon(false);
    let (live, _) = d.shell(&[]);
    let name = &live[..2];
    let ended = id_of(&d.session(&["--name", name], &["sh", "-c", "echo gone; sleep 600"]));
    time_of(&d, &ended, "gone");
    d.ok(&["kill", name]);
    let (url, link) = share(&d, &[name]);
    assert_eq!(link["session"], ended.as_str());
    assert!(screen_at(&url, 1e9).contains("gone"));
    // The live one, by its whole id.
    assert_eq!(share(&d, &[&live]).1["session"], live.as_str());
}
