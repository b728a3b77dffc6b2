//! `--many SESSIONSxVIEWERS` (#32 target 5): many sessions, each printing a line a second,
//! with many viewers on each, all from this one process. The viewers are russh clients
//! multiplexed on one tokio runtime (one `ssh` process per viewer would not fit 10,000 on
//! a 2-core machine); each connects, authenticates with the bench's key, asks for a pty
//! and a shell like `ssh -tt`, and reads (and drops) what it is sent. The owner of the
//! first session types through a real OpenSSH `ssh -tt`, as in the other cases, and a
//! second `ssh` watches that session, for the typist-to-viewer time.
//!
//! Measures: how many viewers joined and how fast (connect to the first byte of the
//! screen, all at once, 256 handshakes in flight), the server's PSS (the daemon and every
//! session process) per viewer once all are idle, this process's memory per connection
//! (the client side, for scale), the owner's echo while every session prints a line a
//! second to every viewer, and the server's CPU over that phase. Limits are raised in the
//! bench's own config (`systems::Hearth`), never by changing defaults.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use russh::ChannelMsg;
use russh::keys::PrivateKeyWithHashAlg;
use serde_json::json;

use crate::systems::{self, System};
use crate::{OWN_PROCESSES, cpu, echo_latencies, joined_reader, marker_in, mem_kib, pct, procs};

/// The client handler: the bench trusts its own loopback server's key.
struct Accept;

impl russh::client::Handler for Accept {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// What one viewer did: its join time, or why it failed.
type Joined = Result<(Duration, ViewerConn), String>;

/// A joined viewer, kept open until the case ends.
struct ViewerConn {
    _handle: russh::client::Handle<Accept>,
    _reader: tokio::task::JoinHandle<()>,
}

/// Parse `100x100`.
pub fn parse(spec: &str) -> anyhow::Result<(usize, usize)> {
    let (s, v) = spec
        .split_once('x')
        .context("--many takes SESSIONSxVIEWERS, e.g. 100x100")?;
    let (s, v): (usize, usize) = (s.parse()?, v.parse()?);
    if s == 0 || v == 0 {
        bail!("--many needs at least one session and one viewer");
    }
    Ok((s, v))
}

/// Let this process hold one descriptor per viewer.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// This process's resident set (KiB): the client side.
fn own_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// How many of a crowd's viewers saw the flood's end marker in the current round
/// ([`Crowd::arm`] starts one).
#[derive(Default)]
struct Marks {
    round: AtomicU64,
    seen: AtomicUsize,
}

impl Marks {
    /// A reader that saw the marker (counted once per viewer and round).
    fn saw(&self, last_round: &mut u64) {
        let round = self.round.load(Ordering::Acquire);
        if *last_round != round {
            *last_round = round;
            self.seen.fetch_add(1, Ordering::AcqRel);
        }
    }
}

async fn viewer(
    port: u16,
    key: Arc<russh::keys::PrivateKey>,
    config: Arc<russh::client::Config>,
    received: Arc<AtomicU64>,
    marks: Option<Arc<Marks>>,
) -> Joined {
    let started = Instant::now();
    let mut handle = russh::client::connect(config, ("127.0.0.1", port), Accept)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let auth = handle
        .authenticate_publickey("viewer", PrivateKeyWithHashAlg::new(key, None))
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if !auth.success() {
        return Err("auth refused".into());
    }
    let mut channel = handle
        .channel_open_session()
        .await
        .map_err(|e| format!("channel: {e}"))?;
    channel
        .request_pty(false, "xterm-256color", 80, 24, 0, 0, &[])
        .await
        .map_err(|e| format!("pty: {e}"))?;
    channel
        .request_shell(false)
        .await
        .map_err(|e| format!("shell: {e}"))?;
    // The first byte of the screen is the join.
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Data { data }) => {
                received.fetch_add(data.len() as u64, Ordering::Relaxed);
                break;
            }
            Some(ChannelMsg::Close | ChannelMsg::Eof) | None => {
                return Err("closed before the screen".into());
            }
            Some(_) => {}
        }
    }
    let joined = started.elapsed();
    let reader = tokio::spawn(async move {
        // The end of what was read, for a marker split across two reads.
        let mut tail: Vec<u8> = Vec::new();
        let mut last_round = 0;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    received.fetch_add(data.len() as u64, Ordering::Relaxed);
                    if let Some(marks) = &marks
                        && marker_in(&mut tail, &data)
                    {
                        marks.saw(&mut last_round);
                    }
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    });
    Ok((
        joined,
        ViewerConn {
            _handle: handle,
            _reader: reader,
        },
    ))
}

/// Echo samples one keystroke every 20 ms, so they spread over many of the sessions'
/// seconds rather than falling between two of their lines (and include what waking an
/// idle machine costs, as typing does). Sorted (typist, typist-to-viewer).
fn paced_echo(
    typist: &mut crate::Client,
    chunks: &std::sync::mpsc::Receiver<Vec<u8>>,
    watcher: &std::sync::mpsc::Receiver<Vec<u8>>,
    samples: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut lat, mut seen) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        std::thread::sleep(Duration::from_millis(20));
        while chunks.try_recv().is_ok() {}
        while watcher.try_recv().is_ok() {}
        let (l, s) = echo_latencies(typist, chunks, watcher, 1)?;
        lat.extend(l);
        seen.extend(s);
    }
    lat.sort_by(f64::total_cmp);
    seen.sort_by(f64::total_cmp);
    Ok((lat, seen))
}

/// A session that prints a line (digits only: the owner's echo is letters) every second.
fn ticker(h: &systems::Hearth) -> anyhow::Result<u16> {
    let v = h.server(&["/bin/sh", "-c", "while :; do date +%s; sleep 1; done"])?;
    Ok(v["port"].as_u64().context("port")? as u16)
}

/// `per` viewers on each port, all at once (256 handshakes in flight, so no listener's
/// backlog overflows); each one's join time or why it failed.
async fn connect_all(
    ports: &[u16],
    per: usize,
    key_path: &std::path::Path,
    received: &Arc<AtomicU64>,
    marks: Option<&Arc<Marks>>,
) -> anyhow::Result<Vec<Joined>> {
    let key = Arc::new(russh::keys::load_secret_key(key_path, None)?);
    let config = Arc::new(russh::client::Config::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(ports.len() * per);
    for _ in 0..per {
        for &port in ports {
            let (key, config, received, gate, marks) = (
                Arc::clone(&key),
                Arc::clone(&config),
                Arc::clone(received),
                Arc::clone(&gate),
                marks.cloned(),
            );
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                tokio::time::timeout(
                    Duration::from_secs(120),
                    viewer(port, key, config, received, marks),
                )
                .await
                .map_err(|_| "no screen within 120 s".to_string())?
            }));
        }
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    Ok(out)
}

/// The owner of the first session typing through `ssh -tt`, and a second `ssh` watching.
struct Owner {
    typist: crate::Client,
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    watcher: std::sync::mpsc::Receiver<Vec<u8>>,
    _watcher_ssh: crate::Client,
}

/// Echo samples, sorted: the typist's, and the watcher's typist-to-viewer.
struct Echo {
    lat: Vec<f64>,
    seen: Vec<f64>,
}

impl Owner {
    /// Join `port` and start the owner's own line a second (digits, as the others).
    fn join(key: &std::path::Path, port: u16) -> anyhow::Result<Owner> {
        use std::io::Write;
        let (mut typist, chunks) = joined_reader(key, port)?;
        typist
            .stdin
            .write_all(b"(while :; do date +%s; sleep 1; done) &\r")?;
        let (watcher_ssh, watcher) = joined_reader(key, port)?;
        Ok(Owner {
            typist,
            chunks,
            watcher,
            _watcher_ssh: watcher_ssh,
        })
    }

    fn echo(&mut self, samples: usize) -> anyhow::Result<Echo> {
        let (lat, seen) = paced_echo(&mut self.typist, &self.chunks, &self.watcher, samples)?;
        Ok(Echo { lat, seen })
    }
}

impl Echo {
    fn print(&self, what: &str) {
        println!(
            "many: owner echo {what} p50 {:.2} ms, p99 {:.2} ms; typist-to-viewer p50 {:.2} \
             ms, p99 {:.2} ms ({} samples, one per 20 ms)",
            pct(&self.lat, 0.5),
            pct(&self.lat, 0.99),
            pct(&self.seen, 0.5),
            pct(&self.seen, 0.99),
            self.lat.len(),
        );
    }
}

/// The viewers that joined (kept open), their join times (ms, sorted) and the failures.
struct Viewers {
    conns: Vec<ViewerConn>,
    ms: Vec<f64>,
    errors: std::collections::BTreeMap<String, usize>,
}

fn tally(results: Vec<Joined>) -> Viewers {
    let mut j = Viewers {
        conns: Vec::new(),
        ms: Vec::new(),
        errors: Default::default(),
    };
    for r in results {
        match r {
            Ok((d, c)) => {
                j.ms.push(d.as_secs_f64() * 1000.0);
                j.conns.push(c);
            }
            Err(e) => *j.errors.entry(e).or_default() += 1,
        }
    }
    j.ms.sort_by(f64::total_cmp);
    j
}

/// Every viewer at once on `rt`, reported: those that joined, and how long all took (s).
fn join_all(
    rt: &tokio::runtime::Runtime,
    ports: &[u16],
    per: usize,
    key_path: &std::path::Path,
    received: &Arc<AtomicU64>,
) -> anyhow::Result<(Viewers, f64)> {
    let start = Instant::now();
    let joined = tally(rt.block_on(connect_all(ports, per, key_path, received, None))?);
    let all_joined = start.elapsed().as_secs_f64();
    println!(
        "many: {} of {} viewers joined in {all_joined:.1} s (each: p50 {:.0} ms, p99 {:.0} ms, \
         max {:.0} ms); failures: {:?}",
        joined.ms.len(),
        ports.len() * per,
        pct(&joined.ms, 0.5),
        pct(&joined.ms, 0.99),
        pct(&joined.ms, 1.0),
        joined.errors,
    );
    Ok((joined, all_joined))
}

/// The big case's crowd (`hearth-bench --big N`): every viewer but the timed one as a
/// russh client multiplexed on one runtime in this process, reading and dropping what it is
/// sent and noting the flood's end marker. A thousand OpenSSH `ssh` processes on the
/// server's two cores used 21-31 s of CPU in that case against the server's 5-8 s, so the
/// typist's echo measured the harness; these cost a fraction of that, and the typist and
/// the timed viewer stay real `ssh -tt` clients (`--big-ssh` runs the crowd as `ssh`
/// processes, as before). With `--pin` its threads run at nice 19 on the clients' core.
pub struct Crowd {
    conns: Vec<ViewerConn>,
    marks: Arc<Marks>,
    /// Each viewer's join (connect to the first byte of the screen, all at once), ms, sorted.
    pub joins_ms: Vec<f64>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Crowd {
    /// `n` viewers on `port`, all joined, or an error naming why some did not.
    pub fn join(port: u16, n: usize, key_path: &std::path::Path) -> anyhow::Result<Crowd> {
        raise_fd_limit();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(if procs::pinned() { 1 } else { 2 })
            .on_thread_start(procs::crowd_thread)
            .enable_all()
            .build()?;
        let marks = Arc::new(Marks::default());
        let received = Arc::new(AtomicU64::new(0));
        let joined =
            tally(rt.block_on(connect_all(&[port], n, key_path, &received, Some(&marks)))?);
        if !joined.errors.is_empty() {
            bail!(
                "{} of {n} viewers did not join: {:?}",
                n - joined.ms.len(),
                joined.errors
            );
        }
        Ok(Crowd {
            conns: joined.conns,
            marks,
            joins_ms: joined.ms,
            rt: Some(rt),
        })
    }

    /// How many viewers.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// A new round: no viewer has seen the marker of what comes next.
    pub fn arm(&self) {
        self.marks.seen.store(0, Ordering::Release);
        self.marks.round.fetch_add(1, Ordering::AcqRel);
    }

    /// Every viewer has seen the marker since [`Crowd::arm`].
    pub fn all_marked(&self) -> bool {
        self.marks.seen.load(Ordering::Acquire) >= self.conns.len()
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.conns.clear();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

pub fn bench(
    sessions: usize,
    per: usize,
    samples: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    raise_fd_limit();
    let mut h = systems::Hearth::start_with(OWN_PROCESSES)?;
    let key_path = h.key().to_path_buf();
    let owner_port = h.fresh_session()?;
    let mut owner = Owner::join(&key_path, owner_port)?;
    // The reference, in the same run: the owner's session alone.
    let alone = owner.echo(samples)?;
    alone.print("alone");
    let start = Instant::now();
    let mut ports = vec![owner_port];
    for _ in 1..sessions {
        ports.push(ticker(&h)?);
    }
    println!(
        "many: {sessions} sessions up in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (mem_before, rss_before) = (mem_kib(&h), own_rss_kib());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let received = Arc::new(AtomicU64::new(0));
    let (joined, all_joined) = join_all(&rt, &ports, per, &key_path, &received)?;
    // Idle: every session printing its line a second, every viewer reading it.
    std::thread::sleep(Duration::from_secs(5));
    let (mem_after, rss_after) = (mem_kib(&h), own_rss_kib());
    let n = joined.ms.len().max(1) as f64;
    let per_viewer = mem_after.saturating_sub(mem_before) as f64 / n;
    let client_per = rss_after.saturating_sub(rss_before) as f64 / n;
    let hosts = h.server_pids().len();
    println!(
        "many: server PSS {:.1} MiB before the viewers, {:.1} MiB after ({hosts} hearth \
         processes): {per_viewer:.1} KiB per idle viewer; this process {client_per:.1} KiB \
         per client connection",
        mem_before as f64 / 1024.0,
        mem_after as f64 / 1024.0,
    );

    // The owner's echo while all sessions print.
    let (cpu0, bytes0, t0) = (cpu(&h), received.load(Ordering::Relaxed), Instant::now());
    let loaded = owner.echo(samples)?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu_share = (cpu(&h) - cpu0) / secs;
    let bytes_per_s = (received.load(Ordering::Relaxed) - bytes0) as f64 / secs;
    loaded.print("with every viewer,");
    println!(
        "many: over those {secs:.1} s the viewers received {:.0} KB/s; server CPU {:.0}% of \
         one core",
        bytes_per_s / 1e3,
        cpu_share * 100.0
    );
    let result = json!({
        "sessions": sessions,
        "viewers_per_session": per,
        "joined": joined.ms.len(),
        "failures": joined.errors,
        "all_joined_s": all_joined,
        "join_p50_ms": pct(&joined.ms, 0.5),
        "join_p99_ms": pct(&joined.ms, 0.99),
        "join_max_ms": pct(&joined.ms, 1.0),
        "server_pss_before_kib": mem_before,
        "server_pss_after_kib": mem_after,
        "server_processes": hosts,
        "pss_kib_per_idle_viewer": per_viewer,
        "client_kib_per_connection": client_per,
        "alone_echo_p50_ms": pct(&alone.lat, 0.5),
        "alone_echo_p99_ms": pct(&alone.lat, 0.99),
        "alone_viewer_p50_ms": pct(&alone.seen, 0.5),
        "alone_viewer_p99_ms": pct(&alone.seen, 0.99),
        "echo_p50_ms": pct(&loaded.lat, 0.5),
        "echo_p99_ms": pct(&loaded.lat, 0.99),
        "viewer_p50_ms": pct(&loaded.seen, 0.5),
        "viewer_p99_ms": pct(&loaded.seen, 0.99),
        "viewers_bytes_per_s": bytes_per_s,
        "server_cpu_share": cpu_share,
        "machine": crate::machine_facts(),
    });
    std::fs::write(out, serde_json::to_vec_pretty(&result)?)?;
    println!("wrote {}", out.display());
    drop(joined);
    rt.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}
