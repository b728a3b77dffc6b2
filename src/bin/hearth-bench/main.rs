//! `hearth-bench` (`just bench`): hearth side by side with OpenSSH sshd + tmux, measured in
//! the same run with real OpenSSH `ssh -tt` clients on loopback:
//! - keystroke echo latency (p50, p99) for one typist while N viewers read, and how long
//!   until a viewer sees the same keystroke (typist-to-viewer, p50, p99);
//! - fan-out: time until the last viewer has seen the end marker of ~20 MB of output (the
//!   median of three floods; the server's CPU over a flood likewise), and at one viewer
//!   over two floors: the flood through a PTY to a reader that discards it,
//!   and (with the baseline) sshd running the flood straight in its PTY for one client;
//! - server memory (PSS) per viewer; join time (ssh start to the first byte of the screen),
//!   for the N viewers joining at once and for 20 more joining one at a time;
//! - isolation: one stalled viewer (a pipe nobody reads) during the flood;
//! - the control plane during the flood (hearth): `hearth ps` and `hearth screen` round
//!   trips, and one `hearth logs ID` (its time and peak RSS);
//! - 500 viewers on one hearth session (`--big N`): the typist and the timed viewer are
//!   `ssh -tt`, the rest russh clients multiplexed in this process (`many::Crowd`; a
//!   thousand `ssh` processes on the same two cores measured the harness, not the server),
//!   or with `--big-ssh` `ssh` processes too;
//! - `--idle N`: N idle sessions, with sessions in the daemon's process and in processes of
//!   their own: total PSS of hearth's processes per session, and the time to start one;
//! - `--model`: the screen model alone (no daemon, no ssh): bytes per second parsed for a
//!   plain flood and for a full-screen agent UI redrawing, and the time of one late-joiner
//!   repaint (the numbers to compare screen models or patches to one by);
//! - `--many SxV`: S sessions printing a line a second with V viewers on each, the viewers
//!   multiplexed in this process (`many.rs`): joins, memory per idle viewer, owner's echo.
//!
//! `--pin` (#32's latency case): the servers on core 0, the harness and every client on core
//! 1, and the crowd (every viewer but the timed one, its `ssh` and the harness thread reading
//! it) at nice 19, so the typist and the timed viewer are not queued behind 49 clients
//! decrypting the same echo: what is left of the latency is the server's.
//!
//! Prints a table with hearth/baseline ratios and writes JSON (`--out`). Not part of CI:
//! speed is measured here, never asserted in tests.

mod many;
mod procs;
mod systems;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use systems::System;

struct Args {
    viewers: Vec<usize>,
    samples: usize,
    flood_bytes: u64,
    big: usize,
    /// The flood in the big case (bytes).
    big_flood: u64,
    /// The big case's crowd as `ssh` processes (default: multiplexed in this process).
    big_ssh: bool,
    baseline: bool,
    out: PathBuf,
    /// Measure the screen model alone, then stop.
    model: bool,
    /// Measure this many idle sessions, then stop.
    idle: Option<usize>,
    /// hearth's sessions in the daemon's process (default: each in its own).
    in_daemon: bool,
    /// An agent profile reads every session (the shipped Claude Code rules on the shell).
    profile: bool,
    /// Servers on core 0, the harness and its clients on core 1.
    pin: bool,
    /// Browsers on the web view during the flood (hearth only): the cases with and
    /// without them, alternated.
    web: usize,
    /// `--many SxV`: S sessions printing a line a second, V viewers on each.
    many: Option<(usize, usize)>,
}

/// A profile that applies to every program, with the rules of the shipped Claude Code
/// profile: the cost of reading states during the flood.
const PROFILE: &str = r#"
[[profiles]]
name = "bench"
detect = { command = '.' }
[[profiles.rules]]
state = "rate_limited"
pattern = '(?i)limit reached(?:[^\n]*?\bresets?(?: at)? (?P<resets_at>\d{1,2}(?::\d{2})?\s?[ap]m))?'
bottom = 12
[[profiles.rules]]
state = "needs_approval"
pattern = 'Do you want to (?:proceed|make this edit|create|allow)|Would you like to proceed\?'
bottom = 15
[[profiles.rules]]
state = "working"
pattern = 'esc to interrupt'
bottom = 8
[[profiles.rules]]
state = "error"
pattern = '^\s*⎿?\s*API Error'
bottom = 8
[[profiles.rules]]
state = "waiting_input"
pattern = '^[│\s]*>(?:\s|$)'
bottom = 6
quiet_ms = 500
"#;

/// The config that gives each session a process of its own (the default).
const OWN_PROCESSES: &str = "[sessions]\nprocesses = \"own\"\n";
/// The config that keeps sessions in the daemon's process.
const IN_DAEMON: &str = "[sessions]\nprocesses = \"daemon\"\n";

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        viewers: vec![1, 10, 50],
        samples: 200,
        flood_bytes: 20_000_000,
        big: 500,
        big_flood: 2_000_000,
        big_ssh: false,
        baseline: true,
        out: PathBuf::from("target/bench.json"),
        model: false,
        idle: None,
        in_daemon: false,
        profile: false,
        pin: false,
        web: 0,
        many: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut val = || it.next().context("missing value");
        match arg.as_str() {
            "--viewers" => {
                a.viewers = val()?
                    .split(',')
                    .map(|n| n.parse().context("--viewers takes numbers"))
                    .collect::<anyhow::Result<_>>()?
            }
            "--samples" => a.samples = val()?.parse()?,
            "--flood-mb" => a.flood_bytes = val()?.parse::<u64>()? * 1_000_000,
            "--big" => a.big = val()?.parse()?,
            "--big-flood-mb" => a.big_flood = val()?.parse::<u64>()? * 1_000_000,
            "--big-ssh" => a.big_ssh = true,
            "--no-baseline" => a.baseline = false,
            "--model" => a.model = true,
            "--idle" => a.idle = Some(val()?.parse()?),
            "--sessions-in-daemon" => a.in_daemon = true,
            "--profile" => a.profile = true,
            "--pin" => a.pin = true,
            "--web" => a.web = val()?.parse()?,
            "--many" => a.many = Some(many::parse(val()?)?),
            "--out" => a.out = PathBuf::from(val()?),
            "-h" | "--help" => {
                println!(
                    "hearth-bench [--viewers 1,10,50] [--samples 200] [--flood-mb 20] [--big 500] [--big-flood-mb 2] [--big-ssh] [--no-baseline] [--sessions-in-daemon] [--profile] [--pin] [--out FILE] | --model | --idle N | --web N [--viewers 50] | --many 100x100 [--samples N]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// Browsers on the web view (`hearth share`) during the standard flood: the SSH viewers'
/// fan-out and the typist's echo with `args.web` browsers against the same case without
/// them (alternated three times; medians compared), and the daemon's memory per browser.
fn web_bench(args: &Args) -> anyhow::Result<()> {
    let mut hearth = systems::Hearth::start_with(&format!("{OWN_PROCESSES}[web]\nport = 0\n"))?;
    let n = *args.viewers.iter().max().unwrap_or(&50);
    let mut rows: Vec<Value> = Vec::new();
    for _round in 0..3 {
        for web in [0, args.web] {
            let mut r = run_case(
                &mut hearth,
                n,
                args.samples,
                args.flood_bytes,
                false,
                web,
                false,
            )?;
            print_row(&r);
            if web > 0 {
                println!(
                    "           {web} browsers: {:.1} KiB of server PSS each, {} bytes sent to them in all",
                    r["pss_kib_per_web_viewer"].as_f64().unwrap_or(0.0),
                    r["web_bytes"]
                );
            }
            r["web_viewers"] = web.into();
            rows.push(r);
        }
    }
    let median = |web: usize, key: &str| {
        let v = rows
            .iter()
            .filter(|r| r["web_viewers"] == web)
            .filter_map(|r| r[key].as_f64())
            .collect();
        median_of(v).unwrap_or(f64::NAN)
    };
    println!(
        "\n{} browsers vs none, {n} SSH viewers (medians of 3):",
        args.web
    );
    for key in [
        "fanout_seconds",
        "echo_p50_ms",
        "echo_p99_ms",
        "viewer_p50_ms",
        "server_cpu_s",
    ] {
        let (without, with) = (median(0, key), median(args.web, key));
        println!(
            "  {key:<16} {without:>9.3} -> {with:>9.3}  ({:+.1}%)",
            (with / without - 1.0) * 100.0
        );
    }
    println!("machine: {}", machine_facts());
    let doc = json!({"machine": machine_facts(), "web": args.web, "viewers": n, "results": rows});
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)?)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// `n` browsers reading the live view of the current session until `stop`: each a thread
/// with a plain HTTP/1.1 request, counting what it reads.
fn open_browsers(
    c: &systems::Control,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<u64>>> {
    let out = Command::new(&c.bin)
        .args(["--json", "share", &c.session])
        .envs(c.env.iter().cloned())
        .output()
        .context("hearth share")?;
    let v: Value = serde_json::from_slice(&out.stdout).context("hearth share's answer")?;
    let url = v["url"].as_str().context("no url")?.to_string();
    let rest = url.strip_prefix("http://").context("url")?;
    let (host, path) = rest.split_once('/').context("url")?;
    let (host, path) = (host.to_string(), format!("/{path}/live"));
    let mut threads = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(&host)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n")?;
        let stop = Arc::clone(stop);
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            while !stop.load(Ordering::Acquire) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => total += k as u64,
                    Err(_) => {}
                }
            }
            total
        }));
    }
    Ok(threads)
}

/// The standard flood of `flood_bytes` (base64 lines of 100), then a marker only the
/// shell's arithmetic prints.
fn flood_cmd(flood_bytes: u64) -> String {
    format!(
        "head -c {} /dev/urandom | base64 -w 100; echo END-$((1+1))",
        flood_bytes * 3 / 4
    )
}

/// The standard flood through a PTY (80x24) to a reader that discards everything, as fast
/// as the kernel and the shell make it: the floor any server's fan-out at one viewer is
/// compared with (median of 3), and how busy it kept the machine.
fn pty_floor(flood_bytes: u64) -> anyhow::Result<Floors> {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let mut times = Vec::new();
    let mut busy = Vec::new();
    let mut all = Vec::new();
    for _ in 0..3 {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| anyhow::anyhow!("openpty: {e}"))?;
        let mut cmd = CommandBuilder::new("sh");
        cmd.args(["-c", &flood_cmd(flood_bytes)]);
        let mut reader = pair
            .master
            .try_clone_reader()
            .map_err(|e| anyhow::anyhow!("pty reader: {e}"))?;
        let machine = procs::MachineCpu::now();
        let t0 = Instant::now();
        let mut child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|e| anyhow::anyhow!("spawn: {e}"))?;
        drop(pair.slave);
        systems::read_until(&mut reader, MARKER)
            .context("the floor's flood ended without its marker")?;
        times.push(t0.elapsed().as_secs_f64());
        let used = machine.elapsed();
        busy.push(used.busy);
        all.push(used.all);
        let _ = child.wait();
    }
    Ok(Floors {
        pty: median_of(times).context("no floor measured")?,
        pty_busy: median_of(busy).unwrap_or(f64::NAN),
        pty_all: median_of(all).unwrap_or(f64::NAN),
        transport: None,
    })
}

/// `n` idle `/bin/sh` sessions, in the daemon's process and then each in its own: the
/// PSS of every hearth process (daemon and session hosts; not the shells) per session,
/// and the time `server` takes for one.
fn idle_bench(n: usize) -> anyhow::Result<()> {
    for (mode, extra) in [
        ("in the daemon", IN_DAEMON),
        ("own processes", OWN_PROCESSES),
    ] {
        let h = systems::Hearth::start_with(extra)?;
        let start = Instant::now();
        for _ in 0..n {
            h.shell()?;
        }
        let create_ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
        // Settled: every session's first output is long past (idle after 2 s).
        std::thread::sleep(Duration::from_secs(4));
        let hearths: Vec<u32> = procs::tree(h.daemon_pid())
            .into_iter()
            .filter(|p| procs::name(*p) == "hearth")
            .collect();
        let pss: u64 = hearths.iter().map(|p| procs::pss_kib(*p)).sum();
        let cpu: f64 = hearths.iter().map(|p| procs::cpu_secs(*p)).sum();
        std::thread::sleep(Duration::from_secs(5));
        let cpu_idle: f64 = hearths.iter().map(|p| procs::cpu_secs(*p)).sum::<f64>() - cpu;
        println!(
            "idle {n} sessions, {mode}: {} hearth processes, PSS {:.1} MiB in all, {:.0} KiB \
             per session; `server` {create_ms:.0} ms each; CPU while idle {:.2} s over 5 s",
            hearths.len(),
            pss as f64 / 1024.0,
            pss as f64 / n as f64,
            cpu_idle
        );
    }
    Ok(())
}

/// The screen model alone: MB/s for a base64 flood and for an agent UI redrawing (colours,
/// cursor moves, erases, a scroll region), the same through the terminal-query filter, and
/// microseconds per 120x40 repaint.
fn model_bench() {
    use hearth::session::screen::Screen;
    let flood: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{:0>99}\r\n", i.wrapping_mul(2_654_435_761)).into_bytes())
        .collect();
    let mut frame = String::new();
    for i in 0..500u32 {
        frame.push_str("\x1b[H\x1b[2;38r");
        for row in 0..38u32 {
            let c = (i + row) % 256;
            frame.push_str(&format!(
                "\x1b[{};1H\x1b[38;5;{c}m\x1b[1m● \x1b[22;2mstep {row}\x1b[0m \x1b[48;2;30;30;{c}m\
                 reading src/session/mod.rs … {i}\x1b[K\x1b[0m",
                row + 2
            ));
        }
        frame.push_str("\x1b[r\x1b[40;1H\x1b[7m esc to interrupt \x1b[0m\x1b[K\x1bM\x1b[2L");
    }
    // Best and median of 5 runs each (a fresh screen per run).
    let timed = |bytes: &[u8]| -> (f64, f64) {
        let mut secs: Vec<f64> = (0..5)
            .map(|_| {
                let mut screen = Screen::new(40, 120);
                let start = Instant::now();
                for chunk in bytes.chunks(16 * 1024) {
                    screen.process(chunk);
                }
                start.elapsed().as_secs_f64()
            })
            .collect();
        secs.sort_by(f64::total_cmp);
        (secs[0], secs[2])
    };
    let frame = frame.into_bytes();
    for (name, bytes) in [("flood", &flood), ("agent-ui", &frame)] {
        let mb = bytes.len() as f64 / 1e6;
        let (best, median) = timed(bytes);
        println!(
            "model {name}: {mb:.1} MB, best {:.1} MB/s, median {:.1} MB/s",
            mb / best,
            mb / median
        );
    }
    // The terminal-query filter every read passes before the log, in the PTY's 4 KiB reads.
    for (name, bytes) in [("flood", &flood), ("agent-ui", &frame)] {
        let mut secs: Vec<f64> = (0..5)
            .map(|_| {
                let mut filter = hearth::session::query::QueryFilter::default();
                let start = Instant::now();
                for chunk in bytes.chunks(4096) {
                    std::hint::black_box(filter.feed(chunk));
                }
                start.elapsed().as_secs_f64()
            })
            .collect();
        secs.sort_by(f64::total_cmp);
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "filter {name}: best {:.0} MB/s, median {:.0} MB/s",
            mb / secs[0],
            mb / secs[2]
        );
    }
    let mut screen = Screen::new(40, 120);
    screen.process(&frame);
    let start = Instant::now();
    let mut len = 0;
    for _ in 0..2000 {
        len += screen.repaint().len();
    }
    println!(
        "model repaint 120x40: {:.1} us each ({} bytes)",
        start.elapsed().as_secs_f64() * 1e6 / 2000.0,
        len / 2000
    );
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if args.model {
        model_bench();
        return Ok(());
    }
    if let Some(n) = args.idle {
        return idle_bench(n);
    }
    if args.web > 0 {
        return web_bench(&args);
    }
    if let Some((sessions, per)) = args.many {
        return many::bench(sessions, per, args.samples, &args.out);
    }
    side_by_side(&args)
}

/// The standard run: hearth and the baseline through the same cases, then the report.
fn side_by_side(args: &Args) -> anyhow::Result<()> {
    if args.pin {
        procs::pin()?;
        println!(
            "pinned: servers on core 0, the harness and its clients on core 1; the viewers other than the timed one at nice 19"
        );
    }
    let processes = if args.in_daemon {
        IN_DAEMON
    } else {
        OWN_PROCESSES
    };
    let profile = if args.profile { PROFILE } else { "" };
    let hearth = systems::Hearth::start_with(&format!("{processes}{profile}"))?;
    let mut systems: Vec<Box<dyn System>> = vec![Box::new(hearth)];
    // The floor: the same flood through a PTY to a reader that discards it (no server).
    let mut floors = pty_floor(args.flood_bytes)?;
    println!(
        "floor: the flood through a PTY to a discarding reader: {:.3} s (median of 3); the machine busy {:.2} of {:.2} CPU-s meanwhile",
        floors.pty, floors.pty_busy, floors.pty_all
    );
    if args.baseline {
        let sshd = systems::Sshd::start()?;
        let t = sshd.transport_floor(&flood_cmd(args.flood_bytes), MARKER)?;
        println!(
            "transport floor: sshd running the flood in its PTY, one ssh client: {t:.3} s (median of 3)"
        );
        floors.transport = Some(t);
        systems.push(Box::new(sshd));
    }
    let mut results: Vec<Value> = Vec::new();
    for &n in &args.viewers {
        for sys in systems.iter_mut() {
            let r = run_case(
                sys.as_mut(),
                n,
                args.samples,
                args.flood_bytes,
                false,
                0,
                false,
            )?;
            print_row(&r);
            results.push(r);
        }
    }
    // Isolation: a 10-viewer case, and the same with one more viewer that never reads,
    // alternated three times with more samples; the ratio compares medians (one p99 of a
    // few hundred samples on a shared 2-core machine is too noisy to compare).
    let mut isolation: Vec<Value> = Vec::new();
    for sys in systems.iter_mut() {
        for _round in 0..3 {
            for stalled in [false, true] {
                let samples = args.samples * 2;
                let r = run_case(
                    sys.as_mut(),
                    10,
                    samples,
                    args.flood_bytes,
                    stalled,
                    0,
                    false,
                )?;
                print_row(&r);
                isolation.push(r);
            }
        }
    }
    if args.big > 0 {
        let r = run_case(
            systems[0].as_mut(),
            args.big,
            args.samples.min(100),
            args.big_flood,
            false,
            0,
            !args.big_ssh,
        )?;
        print_row(&r);
        results.push(r);
    }
    report(args, floors, results, isolation)
}

/// What the fan-out at one viewer is compared with.
struct Floors {
    /// The flood through a PTY to a reader that discards it.
    pty: f64,
    /// The whole machine's busy CPU seconds over that flood (the producer, the kernel's PTY
    /// work, the reader), and its CPU seconds in all (busy or idle, every core).
    pty_busy: f64,
    pty_all: f64,
    /// The flood over SSH to one client with no multiplexer (with the baseline only).
    transport: Option<f64>,
}

/// Print the ratios and the control plane's figures; write the JSON.
fn report(
    args: &Args,
    floors: Floors,
    results: Vec<Value>,
    isolation: Vec<Value>,
) -> anyhow::Result<()> {
    let ratios = ratios(
        &results,
        &isolation,
        *args.viewers.iter().max().unwrap_or(&1),
        &floors,
    );
    let machine = machine_facts();
    println!("\nratios (hearth / sshd+tmux, same run):");
    for (k, v) in ratios.as_object().into_iter().flatten() {
        println!("  {k:<34} {v}");
    }
    for r in results.iter().filter(|r| r["ctl_samples"].is_number()) {
        println!(
            "control plane during the flood, {} viewers: CLI ps p50 {} / p99 {} ms, screen p99 {} ms ({} samples); RPC list p50 {} / p99 {} ms, screen p99 {} ms ({} samples); logs {} ms, peak RSS {} KiB",
            r["viewers"],
            r["ctl_ps_p50_ms"],
            r["ctl_ps_p99_ms"],
            r["ctl_screen_p99_ms"],
            r["ctl_samples"],
            r["rpc_list_p50_ms"],
            r["rpc_list_p99_ms"],
            r["rpc_screen_p99_ms"],
            r["rpc_samples"],
            r["logs_ms"],
            r["logs_max_rss_kib"]
        );
    }
    if let Some(line) = budget(&results, &floors) {
        println!("{line}");
    }
    println!("machine: {machine}");
    let doc = json!({"machine": machine, "pinned": procs::pinned(), "flood_bytes": args.flood_bytes, "floor_seconds": floors.pty,
                     "floor_machine_busy_cpu_s": floors.pty_busy, "floor_machine_cpu_s": floors.pty_all,
                     "transport_floor_seconds": floors.transport, "results": results,
                     "isolation": isolation, "ratios": ratios});
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)?)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Target 2's CPU budget: at 1.2x the floor's time the machine has 1.2 times the floor's CPU
/// seconds in all; what the floor's own flood kept busy is taken, and the rest is what
/// delivering it to one viewer (the server, the viewer's `ssh`, the harness reading it, and
/// any wait between them) may use. Beside it, what each system's one-viewer flood kept busy
/// beyond the floor's. `None` without a one-viewer case.
fn budget(results: &[Value], floors: &Floors) -> Option<String> {
    let busy = |system| find(results, system, 1, false)?["flood_machine_busy_cpu_s"].as_f64();
    let hearth = busy("hearth")?;
    let left = 1.2 * floors.pty_all - floors.pty_busy;
    let mut line = format!(
        "target 2's budget: at 1.2x the floor the machine has {left:.2} CPU-s beyond the floor's own {:.2}; one viewer's flood kept it busy {:.2} CPU-s more through hearth",
        floors.pty_busy,
        hearth - floors.pty_busy
    );
    if let Some(base) = busy("sshd+tmux") {
        line.push_str(&format!(
            ", {:.2} more through sshd+tmux",
            base - floors.pty_busy
        ));
    }
    Some(line)
}

fn print_row(r: &Value) {
    println!(
        "{:<10} viewers={:<4}{:<8} echo p50={:>7.3} p99={:>7.3} ms  viewer p50={:>7.3} p99={:>7.3} ms  fan-out {:>6.2} s  mem/viewer {:>7.1} KiB  peak {:>7.1} MiB  join p50 {:>6.1} max {:>6.1} ms  cpu server {:>5.1}s harness {:>5.1}s",
        r["system"].as_str().unwrap_or(""),
        r["viewers"],
        if r["stalled_viewer"] == true {
            " +stall"
        } else {
            ""
        },
        r["echo_p50_ms"].as_f64().unwrap_or(0.0),
        r["echo_p99_ms"].as_f64().unwrap_or(0.0),
        r["viewer_p50_ms"].as_f64().unwrap_or(0.0),
        r["viewer_p99_ms"].as_f64().unwrap_or(0.0),
        r["fanout_seconds"].as_f64().unwrap_or(0.0),
        r["pss_kib_per_viewer"].as_f64().unwrap_or(0.0),
        r["peak_server_pss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
        r["join_ms"].as_f64().unwrap_or(0.0),
        r["join_max_ms"].as_f64().unwrap_or(0.0),
        r["server_cpu_s"].as_f64().unwrap_or(0.0),
        r["harness_cpu_s"].as_f64().unwrap_or(0.0),
    );
}

fn find<'a>(results: &'a [Value], system: &str, n: usize, stalled: bool) -> Option<&'a Value> {
    results
        .iter()
        .find(|r| r["system"] == system && r["viewers"] == n && r["stalled_viewer"] == stalled)
}

fn ratios(results: &[Value], isolation: &[Value], n: usize, floors: &Floors) -> Value {
    let f = |r: Option<&Value>, k: &str| r.and_then(|r| r[k].as_f64());
    let (h, b) = (
        find(results, "hearth", n, false),
        find(results, "sshd+tmux", n, false),
    );
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 1000.0).round() / 1000.0),
        _ => Value::Null,
    };
    let median = |stalled: bool, k: &str| {
        let v = isolation
            .iter()
            .filter(|r| r["system"] == "hearth" && r["stalled_viewer"] == stalled)
            .filter_map(|r| r[k].as_f64())
            .collect();
        median_of(v)
    };
    let (h1, b1) = (
        find(results, "hearth", 1, false),
        find(results, "sshd+tmux", 1, false),
    );
    json!({
        format!("viewer_p50_at_{n} (target <= 1.0)"): div(f(h, "viewer_p50_ms"), f(b, "viewer_p50_ms")),
        format!("echo_p99_at_{n} (target <= 0.5 pinned)"): div(f(h, "echo_p99_ms"), f(b, "echo_p99_ms")),
        "fanout_throughput_at_1 (target >= 2)": div(f(b1, "fanout_seconds"), f(h1, "fanout_seconds")),
        format!("fanout_throughput_at_{n} (target >= 5)"): div(f(b, "fanout_seconds"), f(h, "fanout_seconds")),
        format!("mem_per_viewer_at_{n} (target <= 0.1)"): div(f(h, "pss_kib_per_viewer"), f(b, "pss_kib_per_viewer")),
        format!("join_p50_at_{n} (target <= 0.5)"): div(f(h, "join_ms"), f(b, "join_ms")),
        format!("hearth_join_max_over_min_at_{n} (target <= 1.3)"): div(f(h, "join_max_ms"), f(h, "join_min_ms")),
        format!("baseline_join_max_over_min_at_{n}"): div(f(b, "join_max_ms"), f(b, "join_min_ms")),
        format!("hearth_lone_join_max_over_min_at_{n} (target <= 1.3)"): div(f(h, "lone_join_max_ms"), f(h, "lone_join_min_ms")),
        format!("lone_join_p50_at_{n}"): div(f(h, "lone_join_p50_ms"), f(b, "lone_join_p50_ms")),
        "cpu_per_byte_at_1 (target <= 0.8)": div(f(h1, "cpu_ns_per_delivered_byte"), f(b1, "cpu_ns_per_delivered_byte")),
        "cpu_per_byte_at_10": div(
            f(find(results, "hearth", 10, false), "cpu_ns_per_delivered_byte"),
            f(find(results, "sshd+tmux", 10, false), "cpu_ns_per_delivered_byte"),
        ),
        format!("cpu_per_byte_at_{n} (target <= 0.5)"): div(f(h, "cpu_ns_per_delivered_byte"), f(b, "cpu_ns_per_delivered_byte")),
        "hearth_fanout_at_1_over_floor (target <= 1.2)": div(f(h1, "fanout_seconds"), Some(floors.pty)),
        "sshd+tmux_fanout_at_1_over_floor": div(f(b1, "fanout_seconds"), Some(floors.pty)),
        "hearth_fanout_at_1_over_transport_floor": div(f(h1, "fanout_seconds"), floors.transport),
        "sshd+tmux_fanout_at_1_over_transport_floor": div(f(b1, "fanout_seconds"), floors.transport),
        "hearth_stall_p99_change_medians (target < 1.2)": div(median(true, "echo_p99_ms"), median(false, "echo_p99_ms")),
        "hearth_stall_fanout_change_medians": div(median(true, "fanout_seconds"), median(false, "fanout_seconds")),
    })
}

/// An `ssh -tt` client; a thread reads its stdout (or nobody does: `stalled`).
struct Client {
    child: Child,
    stdin: ChildStdin,
    chunks: Option<mpsc::Receiver<Vec<u8>>>,
    saw_marker: Arc<AtomicBool>,
    first_byte: Option<mpsc::Receiver<Instant>>,
    started: Instant,
}

pub(crate) const MARKER: &[u8] = b"END-2";

/// Whether [`MARKER`] ends in `data`, or across the end of what came before it (`tail`: the
/// last bytes read, kept shorter than the marker).
pub(crate) fn marker_in(tail: &mut Vec<u8>, data: &[u8]) -> bool {
    tail.extend_from_slice(data);
    let seen = tail.windows(MARKER.len()).any(|w| w == MARKER);
    tail.drain(..tail.len().saturating_sub(MARKER.len()));
    seen
}

/// Joins timed one at a time in each case.
const LONE_JOINS: usize = 20;

fn ssh(key: &Path, port: u16, keep_chunks: bool, stalled: bool) -> anyhow::Result<Client> {
    ssh_as(key, port, keep_chunks, stalled, false)
}

/// [`ssh`], and with `crowd` one of the crowd: at nice 19 when pinned ([`procs::crowd`]).
fn ssh_as(
    key: &Path,
    port: u16,
    keep_chunks: bool,
    stalled: bool,
    crowd: bool,
) -> anyhow::Result<Client> {
    let started = Instant::now();
    let mut cmd = systems::ssh_tt(key, port);
    if crowd {
        procs::crowd(&mut cmd);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("ssh")?;
    let stdin = child.stdin.take().context("stdin")?;
    let saw_marker = Arc::new(AtomicBool::new(false));
    let mut client = Client {
        stdin,
        chunks: None,
        saw_marker: Arc::clone(&saw_marker),
        first_byte: None,
        started,
        child,
    };
    if stalled {
        // Keep the pipe open and never read it.
        std::mem::forget(client.child.stdout.take());
        return Ok(client);
    }
    let mut stdout = client.child.stdout.take().context("stdout")?;
    let (tx, rx) = mpsc::channel();
    let (ftx, frx) = mpsc::channel();
    std::thread::spawn(move || {
        if crowd {
            procs::crowd_thread();
        }
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
            if marker_in(&mut tail, &buf[..n]) {
                saw_marker.store(true, Ordering::Release);
            }
            if keep_chunks && tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    client.chunks = keep_chunks.then_some(rx);
    client.first_byte = Some(frx);
    Ok(client)
}

/// An `ssh -tt` client that has joined (its first byte came), and what it reads.
fn joined_reader(key: &Path, port: u16) -> anyhow::Result<(Client, mpsc::Receiver<Vec<u8>>)> {
    let mut client = ssh(key, port, true, false)?;
    client.join_ms()?;
    let chunks = client.chunks.take().context("no reader")?;
    Ok((client, chunks))
}

impl Client {
    fn join_ms(&self) -> anyhow::Result<f64> {
        let t = self
            .first_byte
            .as_ref()
            .context("no reader")?
            .recv_timeout(Duration::from_secs(60))
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

fn mem_kib(sys: &dyn System) -> u64 {
    sys.server_pids().into_iter().map(procs::pss_kib).sum()
}

fn cpu(sys: &dyn System) -> f64 {
    sys.server_pids().into_iter().map(procs::cpu_secs).sum()
}

fn run_case(
    sys: &mut dyn System,
    n: usize,
    samples: usize,
    flood_bytes: u64,
    stalled: bool,
    web: usize,
    mux: bool,
) -> anyhow::Result<Value> {
    let port = sys.fresh_session()?;
    let key = sys.key().to_path_buf();
    let (self0, children0) = procs::own_and_children_cpu();
    let (mut typist, chunks) = joined_reader(&key, port)?;
    std::thread::sleep(Duration::from_millis(300));
    while chunks.try_recv().is_ok() {}
    let mem_typist = mem_kib(sys);
    let cpu0 = cpu(sys);
    let Joined {
        mut viewers,
        crowd,
        joins,
        lone,
    } = join_viewers(&key, port, n, mux)?;
    let watcher = viewers
        .first_mut()
        .and_then(|v| v.chunks.take())
        .context("watcher chunks")?;
    let _stall = stalled.then(|| ssh(&key, port, false, true)).transpose()?;
    std::thread::sleep(Duration::from_millis(300));
    let mem_viewers = mem_kib(sys);
    // Browsers, if asked for: attached now, reading through the floods.
    let web_stop = Arc::new(AtomicBool::new(false));
    let (browsers, mem_web) = browsers_on(sys, web, &web_stop, mem_viewers)?;

    // Fan-out: the flood, then a marker only the shell's arithmetic prints.
    let cmd = format!("{}\r", flood_cmd(flood_bytes));
    let floods = floods(
        sys,
        &mut typist,
        (&viewers, crowd.as_ref()),
        (&chunks, &watcher),
        &cmd,
        mem_viewers,
    )?;

    // Echo latency after the flood (a stalled viewer, if any, is as stuck as it gets).
    let (lat, seen) = echo_latencies(&mut typist, &chunks, &watcher, samples)?;

    // The control plane during a second flood of the same size (its probes cost CPU: they
    // must not weigh on the fan-out figure above).
    let ctl = control_flood(sys, &mut typist, (&chunks, &watcher), &cmd)?;
    let server_cpu = cpu(sys) - cpu0;
    web_stop.store(true, Ordering::Release);
    let web_bytes: u64 = browsers.into_iter().filter_map(|t| t.join().ok()).sum();
    drop(viewers);
    drop(crowd);
    drop(typist);
    drop(_stall);
    let (self1, children1) = procs::own_and_children_cpu();
    let mut out = json!({
        "system": sys.name(),
        "viewers": n,
        "crowd": if mux { "russh clients in the harness" } else { "ssh processes" },
        "stalled_viewer": stalled,
        "echo_p50_ms": pct(&lat, 0.5),
        "echo_p90_ms": pct(&lat, 0.9),
        "echo_p99_ms": pct(&lat, 0.99),
        "echo_max_ms": pct(&lat, 1.0),
        "fanout_seconds": floods.fanout,
        "fanout_runs_seconds": floods.fanouts,
        "fanout_mb_per_s": flood_bytes as f64 / 1e6 / floods.fanout,
        "pss_kib_per_viewer": mem_viewers.saturating_sub(mem_typist) as f64 / (n as f64 + if stalled { 1.0 } else { 0.0 }),
        "server_pss_kib": mem_viewers,
        "peak_server_pss_kib": floods.peak_kib,
        "peak_runs_kib": floods.peaks_kib,
        "viewer_p50_ms": pct(&seen, 0.5),
        "viewer_p99_ms": pct(&seen, 0.99),
        "join_ms": pct(&joins, 0.5),
        "join_p90_ms": pct(&joins, 0.9),
        "join_max_ms": pct(&joins, 1.0),
        "join_min_ms": pct(&joins, 0.0),
        "lone_join_p50_ms": pct(&lone, 0.5),
        "lone_join_max_ms": pct(&lone, 1.0),
        "lone_join_min_ms": pct(&lone, 0.0),
        "server_cpu_s": server_cpu,
        "flood_cpu_s": floods.cpu,
        "flood_machine_busy_cpu_s": floods.busy,
        "cpu_ns_per_delivered_byte": floods.cpu * 1e9 / (flood_bytes as f64 * (n as f64 + 1.0)),
        "pss_kib_per_web_viewer": if web > 0 { mem_web.saturating_sub(mem_viewers) as f64 / web as f64 } else { 0.0 },
        "web_bytes": web_bytes,
        "harness_cpu_s": (self1 - self0) + (children1 - children0),
    });
    if let (Some(out), Value::Object(ctl)) = (out.as_object_mut(), ControlStats::json(ctl.as_ref()))
    {
        out.extend(ctl);
    }
    Ok(out)
}

/// `web` browsers on the system's web view (none without one), and the server's PSS once
/// they are there (`mem_viewers` without them).
fn browsers_on(
    sys: &dyn System,
    web: usize,
    stop: &Arc<AtomicBool>,
    mem_viewers: u64,
) -> anyhow::Result<(Vec<std::thread::JoinHandle<u64>>, u64)> {
    let browsers = match (web, sys.control()) {
        (0, _) | (_, None) => Vec::new(),
        (_, Some(c)) => open_browsers(&c, web, stop)?,
    };
    if browsers.is_empty() {
        return Ok((browsers, mem_viewers));
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok((browsers, mem_kib(sys)))
}

/// `n` viewers joining `port` at once (the first keeps what it reads: it times
/// typist-to-viewer latency), then [`LONE_JOINS`] more one at a time: the viewers, and the
/// join times of each group (ms, sorted).
/// A case's viewers, joined.
struct Joined {
    /// `ssh -tt` clients: the timed viewer first, then (without `mux`) the crowd.
    viewers: Vec<Client>,
    /// With `mux`: every viewer but the timed one, multiplexed in this process.
    crowd: Option<many::Crowd>,
    /// Each viewer's join, all at once (ms, sorted).
    joins: Vec<f64>,
    /// Joins one at a time with the others attached (ms, sorted).
    lone: Vec<f64>,
}

/// `n` viewers on `port`: the timed one an `ssh -tt` whose output is kept, the crowd either
/// more `ssh` processes or (`mux`) a [`many::Crowd`].
fn join_viewers(key: &Path, port: u16, n: usize, mux: bool) -> anyhow::Result<Joined> {
    let processes = if mux { n.min(1) } else { n };
    let mut viewers = Vec::with_capacity(processes);
    for i in 0..processes {
        viewers.push(ssh_as(key, port, i == 0, false, i != 0)?);
    }
    let crowd = if mux && n > 1 {
        Some(many::Crowd::join(port, n - 1, key)?)
    } else {
        None
    };
    let mut joins = Vec::with_capacity(n);
    for v in &viewers {
        joins.push(v.join_ms()?);
    }
    joins.extend(crowd.iter().flat_map(|c| c.joins_ms.iter().copied()));
    joins.sort_by(|a, b| a.total_cmp(b));
    // Joins one at a time with the others attached: a stall in the server (the 40 ms of
    // Nagle and delayed ACK that round 1 found) shows as a spread here, where joins at once
    // mostly measure 50 `ssh` clients queued on the same cores.
    let mut lone = Vec::with_capacity(LONE_JOINS);
    for _ in 0..LONE_JOINS {
        lone.push(ssh(key, port, false, false)?.join_ms()?);
    }
    lone.sort_by(|a, b| a.total_cmp(b));
    Ok(Joined {
        viewers,
        crowd,
        joins,
        lone,
    })
}

/// How many fan-out floods each case times (the median is reported, each in the JSON).
const FLOODS: usize = 3;

/// The middle of `values` (the upper middle of an even count; `None` for none).
fn median_of(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// What [`FLOODS`] fan-out floods took: the medians, and each flood's figures.
struct Floods {
    fanout: f64,
    fanouts: Vec<f64>,
    /// The server's CPU over a flood.
    cpu: f64,
    /// The whole machine's busy CPU over a flood.
    busy: f64,
    /// The first flood's peak PSS: each later one adds its output to the session's log,
    /// which keeps up to `log_bytes` (8 MiB) by design, so their peaks also hold the
    /// earlier floods (2 MB more each at `--big-flood-mb 2`).
    peak_kib: u64,
    peaks_kib: Vec<u64>,
}

/// [`flood`] [`FLOODS`] times (one flood's time moves by a third between runs on a 2-core
/// VM, so the median is kept).
fn floods(
    sys: &dyn System,
    typist: &mut Client,
    clients: (&[Client], Option<&many::Crowd>),
    readers: (&mpsc::Receiver<Vec<u8>>, &mpsc::Receiver<Vec<u8>>),
    cmd: &str,
    start_kib: u64,
) -> anyhow::Result<Floods> {
    let mut each = Vec::with_capacity(FLOODS);
    for _ in 0..FLOODS {
        each.push(flood(sys, typist, clients, readers, cmd, start_kib)?);
    }
    let fanouts: Vec<f64> = each.iter().map(|f| f.fanout).collect();
    let peaks_kib: Vec<u64> = each.iter().map(|f| f.peak_kib).collect();
    Ok(Floods {
        fanout: median_of(fanouts.clone()).unwrap_or(f64::NAN),
        fanouts,
        cpu: median_of(each.iter().map(|f| f.cpu).collect()).unwrap_or(f64::NAN),
        busy: median_of(each.iter().map(|f| f.busy).collect()).unwrap_or(f64::NAN),
        peak_kib: peaks_kib.first().copied().unwrap_or(start_kib),
        peaks_kib,
    })
}

/// What the fan-out flood took.
struct Flood {
    /// Until the typist and every viewer saw the marker.
    fanout: f64,
    /// The server's CPU over the flood alone.
    cpu: f64,
    /// The whole machine's busy CPU seconds over the flood.
    busy: f64,
    /// The server's peak PSS meanwhile (from `start_kib`).
    peak_kib: u64,
}

/// Type `cmd` (a flood that ends with the marker) and wait until the typist and every
/// viewer have seen the marker, draining what the timed readers kept.
fn flood(
    sys: &dyn System,
    typist: &mut Client,
    (viewers, crowd): (&[Client], Option<&many::Crowd>),
    (chunks, watcher): (&mpsc::Receiver<Vec<u8>>, &mpsc::Receiver<Vec<u8>>),
    cmd: &str,
    start_kib: u64,
) -> anyhow::Result<Flood> {
    if let Some(c) = crowd {
        c.arm();
    }
    for v in viewers.iter().chain(std::iter::once(&*typist)) {
        v.saw_marker.store(false, Ordering::Release);
    }
    let cpu0 = cpu(sys);
    let machine = procs::MachineCpu::now();
    let t0 = Instant::now();
    typist.stdin.write_all(cmd.as_bytes())?;
    let deadline = t0 + Duration::from_secs(900);
    let mut peak = start_kib;
    let mut last_poll = Instant::now();
    while !viewers
        .iter()
        .chain(std::iter::once(&*typist))
        .all(|v| v.saw_marker.load(Ordering::Acquire))
        || !crowd.is_none_or(many::Crowd::all_marked)
    {
        if Instant::now() > deadline {
            bail!(
                "{}: flood did not finish with {} viewers",
                sys.name(),
                viewers.len() + crowd.map_or(0, many::Crowd::len)
            );
        }
        while chunks.try_recv().is_ok() {}
        while watcher.try_recv().is_ok() {}
        if last_poll.elapsed() > Duration::from_millis(200) {
            peak = peak.max(mem_kib(sys));
            last_poll = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let fanout = t0.elapsed().as_secs_f64();
    let cpu = cpu(sys) - cpu0;
    let busy = machine.elapsed().busy;
    peak = peak.max(mem_kib(sys));
    std::thread::sleep(Duration::from_millis(500));
    while chunks.try_recv().is_ok() {}
    while watcher.try_recv().is_ok() {}
    Ok(Flood {
        fanout,
        cpu,
        busy,
        peak_kib: peak,
    })
}

/// The same flood again with the control plane probed meanwhile (hearth only; `None`
/// for a system without a CLI to probe).
fn control_flood(
    sys: &dyn System,
    typist: &mut Client,
    (chunks, watcher): (&mpsc::Receiver<Vec<u8>>, &mpsc::Receiver<Vec<u8>>),
    cmd: &str,
) -> anyhow::Result<Option<ControlStats>> {
    let Some(c) = sys.control() else {
        return Ok(None);
    };
    let stop = Arc::new(AtomicBool::new(false));
    let probes = control_during(c, Arc::clone(&stop));
    typist.saw_marker.store(false, Ordering::Release);
    typist.stdin.write_all(cmd.as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(900);
    while !typist.saw_marker.load(Ordering::Acquire) {
        if Instant::now() > deadline {
            bail!("{}: the second flood did not finish", sys.name());
        }
        while chunks.try_recv().is_ok() {}
        while watcher.try_recv().is_ok() {}
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Release);
    let stats = probes.join().ok();
    std::thread::sleep(Duration::from_millis(300));
    while chunks.try_recv().is_ok() {}
    Ok(stats)
}

/// Control-plane timings taken while the flood runs.
#[derive(Default)]
struct ControlStats {
    ps: Vec<f64>,
    screen: Vec<f64>,
    /// The same two calls over one kept connection: the daemon's answer alone.
    rpc_list: Vec<f64>,
    rpc_screen: Vec<f64>,
    logs_ms: Option<f64>,
    logs_rss_kib: Option<u64>,
}

impl ControlStats {
    /// The case's control-plane figures (nulls for a system without a CLI).
    fn json(ctl: Option<&ControlStats>) -> Value {
        json!({
            "ctl_samples": ctl.map(|c| c.ps.len()),
            "ctl_ps_p50_ms": ctl.and_then(|c| pct_of(&c.ps, 0.5)),
            "ctl_ps_p99_ms": ctl.and_then(|c| pct_of(&c.ps, 0.99)),
            "ctl_screen_p99_ms": ctl.and_then(|c| pct_of(&c.screen, 0.99)),
            "rpc_list_p50_ms": ctl.and_then(|c| pct_of(&c.rpc_list, 0.5)),
            "rpc_list_p99_ms": ctl.and_then(|c| pct_of(&c.rpc_list, 0.99)),
            "rpc_screen_p99_ms": ctl.and_then(|c| pct_of(&c.rpc_screen, 0.99)),
            "rpc_samples": ctl.map(|c| c.rpc_list.len()),
            "logs_ms": ctl.and_then(|c| c.logs_ms),
            "logs_max_rss_kib": ctl.and_then(|c| c.logs_rss_kib),
        })
    }
}

fn pct_of(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| pct(sorted, p))
}

/// The `p` quantile (0 to 1) of `sorted` (NaN if empty).
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `hearth ps` and `hearth screen ID` round trips (the whole CLI: start, connect,
/// handshake, call), one after the other until `stop`; and once, `hearth logs ID` with its
/// time and peak RSS.
fn control_during(
    c: systems::Control,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<ControlStats> {
    std::thread::spawn(move || {
        let mut stats = ControlStats::default();
        let run = |args: &[&str]| -> Option<f64> {
            let t = Instant::now();
            let ok = Command::new(&c.bin)
                .args(args)
                .envs(c.env.iter().cloned())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()?
                .success();
            ok.then(|| t.elapsed().as_secs_f64() * 1000.0)
        };
        // Let the flood get going first.
        std::thread::sleep(Duration::from_millis(100));
        if !stop.load(Ordering::Acquire) {
            let t = Instant::now();
            if let Ok(child) = Command::new(&c.bin)
                .args(["logs", &c.session])
                .envs(c.env.iter().cloned())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                let mut status = 0;
                // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
                let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
                let pid = child.id() as libc::pid_t;
                // SAFETY: reaping our own child; `child` is not waited on again.
                let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
                if r == pid {
                    stats.logs_ms = Some(t.elapsed().as_secs_f64() * 1000.0);
                    stats.logs_rss_kib = Some(usage.ru_maxrss as u64);
                }
                std::mem::forget(child);
            }
        }
        let rpc = {
            let (stop, session) = (Arc::clone(&stop), c.session.clone());
            let socket = c
                .env
                .iter()
                .find(|(k, _)| k == "HEARTH_SOCKET")
                .map(|(_, v)| PathBuf::from(v));
            std::thread::spawn(move || rpc_probe(socket, &session, &stop))
        };
        while !stop.load(Ordering::Acquire) {
            if let Some(ms) = run(&["--json", "ps"]) {
                stats.ps.push(ms);
            }
            if let Some(ms) = run(&["--json", "screen", &c.session]) {
                stats.screen.push(ms);
            }
        }
        if let Ok((list, screen)) = rpc.join() {
            (stats.rpc_list, stats.rpc_screen) = (list, screen);
        }
        for v in [
            &mut stats.ps,
            &mut stats.screen,
            &mut stats.rpc_list,
            &mut stats.rpc_screen,
        ] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        stats
    })
}

/// `list` and `screen` over one kept control connection until `stop`, in ms.
fn rpc_probe(socket: Option<PathBuf>, session: &str, stop: &AtomicBool) -> (Vec<f64>, Vec<f64>) {
    let (mut list, mut screen) = (Vec::new(), Vec::new());
    let Some(socket) = socket else {
        return (list, screen);
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return (list, screen);
    };
    rt.block_on(async {
        let Ok((client, _)) = hearth_rpc::socket::connect(&socket).await else {
            return;
        };
        let ctx = || {
            let mut c = tarpc::context::current();
            c.deadline = Instant::now() + Duration::from_secs(30);
            c
        };
        while !stop.load(Ordering::Acquire) {
            let t = Instant::now();
            if matches!(client.list(ctx()).await, Ok(Ok(_))) {
                list.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let t = Instant::now();
            if matches!(
                client.screen(ctx(), session.to_string(), false).await,
                Ok(Ok(_))
            ) {
                screen.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (list, screen)
}

/// `samples` echo round trips of one byte each, in ms, sorted; and for each, how long
/// until a viewer (`watcher`) saw it.
fn echo_latencies(
    typist: &mut Client,
    chunks: &std::sync::mpsc::Receiver<Vec<u8>>,
    watcher: &std::sync::mpsc::Receiver<Vec<u8>>,
    samples: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut lat = Vec::with_capacity(samples);
    let mut seen = Vec::with_capacity(samples);
    for i in 0..samples {
        let c = b'a' + (i % 26) as u8;
        let t = Instant::now();
        typist.stdin.write_all(&[c])?;
        typist.stdin.flush()?;
        wait_for_byte(chunks, c, "echo never came")?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        wait_for_byte(watcher, c, "the viewer never saw the keystroke")?;
        seen.push(t.elapsed().as_secs_f64() * 1000.0);
        if i % 40 == 39 {
            typist.stdin.write_all(b"\x15")?; // ^U: clear the line
            std::thread::sleep(Duration::from_millis(30));
            while chunks.try_recv().is_ok() {}
            while watcher.try_recv().is_ok() {}
        }
    }
    typist.stdin.write_all(b"\x15")?;
    lat.sort_by(|a, b| a.total_cmp(b));
    seen.sort_by(|a, b| a.total_cmp(b));
    Ok((lat, seen))
}

/// Read `chunks` until one holds `byte` (10 s at most).
fn wait_for_byte(
    chunks: &std::sync::mpsc::Receiver<Vec<u8>>,
    byte: u8,
    what: &'static str,
) -> anyhow::Result<()> {
    loop {
        let chunk = chunks.recv_timeout(Duration::from_secs(10)).context(what)?;
        if chunk.contains(&byte) {
            return Ok(());
        }
    }
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
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |k| k / 1024 / 1024);
    let version = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .map(|o| {
                let s = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&s)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default()
    };
    format!(
        "{cpu}, {cores} cores, {mem} GiB RAM; {}; {}",
        version("ssh", "-V"),
        version("tmux", "-V")
    )
}
