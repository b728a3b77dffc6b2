//! `hearth-bench` (`just bench`): measures a real hearth daemon with real OpenSSH `ssh -tt`
//! clients: keystroke echo latency (p50/p99) for one typist while N viewers read, fan-out
//! throughput (time until the last viewer has seen the end marker of ~20 MB), daemon memory
//! per viewer, and join time (ssh start to first byte of the screen).
//!
//! Not part of CI: speed is measured here, never asserted in tests. Prints a table and
//! writes JSON (`--out FILE`, default `target/bench.json`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

const FLOOD_BYTES: u64 = 20_000_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut viewers: Vec<usize> = vec![1, 10];
    let mut out = PathBuf::from("target/bench.json");
    let mut samples = 200usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--viewers" => {
                viewers = it
                    .next()
                    .context("--viewers N,N,...")?
                    .split(',')
                    .map(|n| n.parse().context("--viewers takes numbers"))
                    .collect::<anyhow::Result<_>>()?
            }
            "--out" => out = PathBuf::from(it.next().context("--out FILE")?),
            "--samples" => samples = it.next().context("--samples N")?.parse()?,
            "-h" | "--help" => {
                println!("hearth-bench [--viewers 1,10] [--samples 200] [--out FILE]");
                return Ok(());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let hearth = Hearth::start()?;
    let mut rows = Vec::new();
    for &n in &viewers {
        let r = run_case(&hearth, n, samples)?;
        println!(
            "hearth  viewers={n:<4} echo p50={:>7.3} ms p99={:>7.3} ms  fan-out {:>7.1} MB/s ({:.2} s)  rss/viewer {:>6.1} KiB  join {:>6.1} ms",
            r.p50_ms, r.p99_ms, r.mb_per_s, r.flood_s, r.kib_per_viewer, r.join_ms
        );
        rows.push(r);
    }
    let machine = machine_facts();
    let doc = json!({
        "machine": machine,
        "flood_bytes": FLOOD_BYTES,
        "results": rows.iter().map(|r| json!({
            "system": "hearth", "viewers": r.viewers,
            "echo_p50_ms": r.p50_ms, "echo_p99_ms": r.p99_ms,
            "fanout_seconds": r.flood_s, "fanout_mb_per_s": r.mb_per_s,
            "rss_kib_per_viewer": r.kib_per_viewer, "join_ms": r.join_ms,
        })).collect::<Vec<_>>(),
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    println!("machine: {machine}");
    println!("wrote {}", out.display());
    Ok(())
}

struct CaseResult {
    viewers: usize,
    p50_ms: f64,
    p99_ms: f64,
    flood_s: f64,
    mb_per_s: f64,
    kib_per_viewer: f64,
    join_ms: f64,
}

/// A daemon in a temp HOME with a fresh key, and a session running `/bin/sh`.
struct Hearth {
    dir: tempfile::TempDir,
    bin: PathBuf,
    daemon: Child,
    key: PathBuf,
}

impl Hearth {
    fn start() -> anyhow::Result<Hearth> {
        let bin = std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join("hearth");
        if !bin.exists() {
            bail!(
                "{} not found: build it first (cargo build --release)",
                bin.display()
            );
        }
        let dir = tempfile::tempdir()?;
        let ssh = dir.path().join("home/.ssh");
        std::fs::create_dir_all(&ssh)?;
        let key = ssh.join("id_ed25519");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&key)
            .status()
            .context("ssh-keygen")?;
        if !st.success() {
            bail!("ssh-keygen failed");
        }
        let log = std::fs::File::create(dir.path().join("daemon.log"))?;
        let mut h = Hearth {
            daemon: Command::new(&bin)
                .arg("daemon")
                .envs(Self::env_of(dir.path()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
            dir,
            bin,
            key,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !h.cli(&["ps"])?.status.success() {
            if Instant::now() > deadline {
                bail!("daemon did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = &mut h;
        Ok(h)
    }

    fn env_of(dir: &Path) -> Vec<(String, String)> {
        vec![
            ("HOME".into(), dir.join("home").display().to_string()),
            (
                "HEARTH_SOCKET".into(),
                dir.join("hearth.sock").display().to_string(),
            ),
            ("HEARTH_LOG".into(), "warn".into()),
        ]
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(Command::new(&self.bin)
            .args(args)
            .envs(Self::env_of(self.dir.path()))
            .output()?)
    }

    /// A fresh session; returns (id, port).
    fn session(&self) -> anyhow::Result<(String, u16)> {
        let out = self.cli(&["--json", "server", "--bind", "127.0.0.1", "--", "/bin/sh"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok((
            v["id"].as_str().context("id")?.to_string(),
            v["port"].as_u64().context("port")? as u16,
        ))
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.daemon.id())
    }
}

impl Drop for Hearth {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let _ = self.daemon.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// An `ssh -tt` client whose stdout is read by a thread.
struct Client {
    child: Child,
    stdin: ChildStdin,
    bytes: Arc<AtomicU64>,
    /// Receives every chunk (for the typist), or nothing (viewers).
    chunks: Option<mpsc::Receiver<Vec<u8>>>,
    saw_marker: Arc<AtomicBool>,
    first_byte: mpsc::Receiver<Instant>,
    started: Instant,
}

const MARKER: &[u8] = b"END-2";

fn ssh(key: &Path, port: u16, keep_chunks: bool) -> anyhow::Result<Client> {
    let started = Instant::now();
    let mut child = Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
            "-tt",
            "-p",
        ])
        .arg(port.to_string())
        .arg("127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("ssh")?;
    let stdin = child.stdin.take().context("stdin")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let bytes = Arc::new(AtomicU64::new(0));
    let saw_marker = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (ftx, frx) = mpsc::channel();
    let (b, m) = (Arc::clone(&bytes), Arc::clone(&saw_marker));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut tail: Vec<u8> = Vec::new();
        let mut first = true;
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            if first {
                let _ = ftx.send(Instant::now());
                first = false;
            }
            b.fetch_add(n as u64, Ordering::Relaxed);
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(MARKER.len()).any(|w| w == MARKER) {
                m.store(true, Ordering::Release);
            }
            let keep = tail.len().saturating_sub(MARKER.len());
            tail.drain(..keep);
            if keep_chunks && tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    Ok(Client {
        child,
        stdin,
        bytes,
        chunks: keep_chunks.then_some(rx),
        saw_marker,
        first_byte: frx,
        started,
    })
}

impl Client {
    fn join_ms(&self) -> anyhow::Result<f64> {
        let t = self
            .first_byte
            .recv_timeout(Duration::from_secs(20))
            .context("no first byte")?;
        Ok((t - self.started).as_secs_f64() * 1000.0)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_case(h: &Hearth, n: usize, samples: usize) -> anyhow::Result<CaseResult> {
    let (id, port) = h.session()?;
    let rss0 = h.rss_kib();
    let mut typist = ssh(&h.key, port, true)?;
    let join_ms = typist.join_ms()?;
    let mut viewers = Vec::new();
    for _ in 0..n {
        viewers.push(ssh(&h.key, port, false)?);
    }
    for v in &viewers {
        v.join_ms()?;
    }
    let rss1 = h.rss_kib();
    let chunks = typist.chunks.take().context("typist chunks")?;
    // Drain the prompt.
    std::thread::sleep(Duration::from_millis(300));
    while chunks.try_recv().is_ok() {}

    // Echo latency: one key at a time, wait for its echo.
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let c = b'a' + (i % 26) as u8;
        let t0 = Instant::now();
        typist.stdin.write_all(&[c])?;
        typist.stdin.flush()?;
        loop {
            let chunk = chunks
                .recv_timeout(Duration::from_secs(10))
                .context("echo never came")?;
            if chunk.contains(&c) {
                break;
            }
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        if i % 50 == 49 {
            typist.stdin.write_all(b"\x15")?; // ^U: clear the line
            std::thread::sleep(Duration::from_millis(20));
            while chunks.try_recv().is_ok() {}
        }
    }
    typist.stdin.write_all(b"\x15")?;
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];

    // Fan-out: ~20 MB of base64, then a marker only the shell's arithmetic prints.
    let before: Vec<u64> = viewers
        .iter()
        .map(|v| v.bytes.load(Ordering::Relaxed))
        .collect();
    let t0 = Instant::now();
    let cmd = format!(
        "head -c {} /dev/urandom | base64 -w 100; echo END-$((1+1))\r",
        FLOOD_BYTES * 3 / 4
    );
    typist.stdin.write_all(cmd.as_bytes())?;
    let deadline = t0 + Duration::from_secs(600);
    while !viewers
        .iter()
        .chain(std::iter::once(&typist))
        .all(|v| v.saw_marker.load(Ordering::Acquire))
    {
        if Instant::now() > deadline {
            bail!("flood did not finish");
        }
        while chunks.try_recv().is_ok() {}
        std::thread::sleep(Duration::from_millis(2));
    }
    let flood_s = t0.elapsed().as_secs_f64();
    let received: u64 = viewers
        .iter()
        .zip(before)
        .map(|(v, b)| v.bytes.load(Ordering::Relaxed) - b)
        .min()
        .unwrap_or(0);
    drop(viewers);
    drop(typist);
    let _ = h.cli(&["kill", &id]);
    Ok(CaseResult {
        viewers: n,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        flood_s,
        mb_per_s: received as f64 / 1e6 / flood_s,
        kib_per_viewer: (rss1.saturating_sub(rss0)) as f64 / (n + 1) as f64,
        join_ms,
    })
}

fn machine_facts() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k / 1024 / 1024);
    let ssh = Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} GiB RAM, {ssh}")
}
