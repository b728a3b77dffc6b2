#!/usr/bin/env python3
"""What idle sessions cost (#32, target 6): N sessions running `sleep`, nobody attached,
nothing printed. Prints the PSS of the daemon and of the session processes (total and per
session), and the wake-ups per second of all of hearth's threads over a quiet window
(voluntary + involuntary context switches from /proc), with the threads that woke most,
by name. The programs themselves (`sleep`) are not counted.

Needs a release build (`cargo build --release --locked --bins`).
Usage: contrib/bench/idle.py [--sessions 100] [--window 10] [--in-daemon]
"""

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEARTH = os.path.join(ROOT, "target", "release", "hearth")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def hearth_pids(daemon_pid):
    """The daemon and every process named hearth whose parent chain reaches it or that a
    previous scan found (session hosts are re-parented to their subreaper)."""
    pids = [daemon_pid]
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != daemon_pid and read(f"/proc/{p}/comm").strip() == "hearth":
            env = read(f"/proc/{p}/cmdline")
            if "session-host" in env:
                pids.append(int(p))
    return pids


def pss_kib(pid):
    for line in read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def switches(pids):
    """{(pid, thread name): context switches so far}."""
    out = collections.Counter()
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            status = read(f"/proc/{pid}/task/{tid}/status")
            n = sum(int(l.split()[1]) for l in status.splitlines()
                    if l.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
            name = read(f"/proc/{pid}/task/{tid}/comm").strip()
            out[(pid, tid, name)] += n
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--in-daemon", action="store_true", help="[sessions] processes = \"daemon\"")
    a = ap.parse_args()
    if not os.access(HEARTH, os.X_OK):
        sys.exit("needs target/release/hearth (cargo build --release --locked --bins)")
    d = tempfile.mkdtemp(prefix="hearth-idle-bench-")
    home = os.path.join(d, "home")
    os.makedirs(os.path.join(home, ".config", "hearth"))
    with open(os.path.join(home, ".config", "hearth", "config.toml"), "w") as f:
        f.write("[limits]\nmax_sessions = 1000\n")
        if a.in_daemon:
            f.write("[sessions]\nprocesses = \"daemon\"\n")
    env = dict(os.environ, HOME=home, HEARTH_SOCKET=os.path.join(d, "sock"), HEARTH_LOG="warn",
               HEARTH_NO_AUTOSTART="1")
    for k in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        env.pop(k, None)
    daemon = subprocess.Popen([HEARTH, "daemon"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if subprocess.run([HEARTH, "version"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        base_pss = pss_kib(daemon.pid)
        for i in range(a.sessions):
            subprocess.run([HEARTH, "server", "--bind", "127.0.0.1", "--name", f"idle{i}", "--",
                            "sleep", "100000"], env=env, capture_output=True, check=True)
        time.sleep(5)  # settle: idle reports, first recording flushes
        pids = hearth_pids(daemon.pid)
        before = switches(pids)
        time.sleep(a.window)
        after = switches(pids)
        delta = collections.Counter({k: after[k] - before.get(k, 0) for k in after})
        total = sum(delta.values())
        pss_daemon = pss_kib(daemon.pid)
        pss_hosts = sum(pss_kib(p) for p in pids if p != daemon.pid)
        mode = "in the daemon" if a.in_daemon else "each in its own process"
        print(f"{a.sessions} idle sessions ({mode}), {len(pids)} hearth processes")
        print(f"PSS: daemon {base_pss} KiB empty -> {pss_daemon} KiB; session processes "
              f"{pss_hosts} KiB; per session {(pss_daemon - base_pss + pss_hosts) / a.sessions:.0f} KiB")
        print(f"wake-ups: {total / a.window:.1f}/s in all ({total / a.window / a.sessions:.2f}/s per session)")
        by_name = collections.Counter()
        for (pid, tid, name), n in delta.items():
            by_name[(name, "daemon" if pid == daemon.pid else "host")] += n
        for (name, where), n in by_name.most_common(8):
            if n:
                print(f"  {where:6} {name:16} {n / a.window:8.1f}/s")
    finally:
        subprocess.run([HEARTH, "shutdown"], env=env, capture_output=True)
        daemon.wait(timeout=60)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
