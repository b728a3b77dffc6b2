//! Process facts from /proc: process trees, PSS, CPU time; and pinning servers and
//! clients to separate cores, the crowd of viewers below the timed clients (`--pin`).

use std::collections::HashMap;
use std::sync::OnceLock;

/// With `--pin`: the core the servers (and everything they start) run on; the harness and
/// its clients run on the other.
static SERVER_CPU: OnceLock<usize> = OnceLock::new();

/// Pin the calling thread (at start: the whole harness, since threads and children inherit
/// it) to `cpu`.
fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only read
    // and write that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Servers on core 0, the harness and its clients on core 1.
pub fn pin() -> anyhow::Result<()> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        anyhow::bail!("--pin needs two cores");
    }
    pin_to(1)?;
    let _ = SERVER_CPU.set(0);
    Ok(())
}

/// Whether `--pin` is on.
pub fn pinned() -> bool {
    SERVER_CPU.get().is_some()
}

/// Start `cmd` on the servers' core when pinned.
pub fn server(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    if let Some(&cpu) = SERVER_CPU.get() {
        // SAFETY: sched_setaffinity is a plain system call, safe between fork and exec.
        unsafe {
            cmd.pre_exec(move || pin_to(cpu));
        }
    }
    cmd
}

/// Start `cmd` (a viewer's `ssh` other than the timed ones) at nice 19 when pinned: on the
/// clients' core, the crowd decrypting an echo must not queue ahead of the typist and the
/// timed viewer (both systems alike), or the latency measured is the harness's.
pub fn crowd(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    if pinned() {
        // SAFETY: setpriority is a plain system call, safe between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpriority(libc::PRIO_PROCESS, 0, 19);
                Ok(())
            });
        }
    }
    cmd
}

/// The calling thread (the harness's reader of one of the crowd) at nice 19 when pinned.
pub fn crowd_thread() {
    if pinned() {
        // SAFETY: gettid and setpriority on the calling thread.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}

/// (pid, ppid) of every process.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok())) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// Fields of /proc/pid/stat after the command name (field 3 = index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// `root` and all its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let parents = parents();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Proportional set size in KiB (RSS if smaps_rollup is unavailable).
pub fn pss_kib(pid: u32) -> u64 {
    let field = |file: &str, key: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    field("smaps_rollup", "Pss:")
        .or_else(|| field("status", "VmRSS:"))
        .unwrap_or(0)
}

pub fn name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Clock ticks per second in /proc's CPU times on Linux.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of one process.
pub fn cpu_secs(pid: u32) -> f64 {
    stat_fields(pid)
        .and_then(|f| {
            let u: f64 = f.get(11)?.parse().ok()?;
            let s: f64 = f.get(12)?.parse().ok()?;
            Some((u + s) / USER_HZ)
        })
        .unwrap_or(0.0)
}

/// The whole machine's CPU seconds (every core), busy and in all: idle and iowait are not
/// busy.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    pub busy: f64,
    pub all: f64,
}

impl MachineCpu {
    /// So far, from the first line of /proc/stat.
    pub fn now() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        let all: f64 = fields.iter().sum();
        let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
        MachineCpu {
            busy: (all - idle) / USER_HZ,
            all: all / USER_HZ,
        }
    }

    /// Since this reading: how much of the cores the stretch kept busy, whoever used them.
    pub fn elapsed(self) -> MachineCpu {
        let now = MachineCpu::now();
        MachineCpu {
            busy: now.busy - self.busy,
            all: now.all - self.all,
        }
    }
}

/// CPU seconds of this process and of its reaped children.
pub fn own_and_children_cpu() -> (f64, f64) {
    let get = |who| {
        // SAFETY: getrusage writes into the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}
