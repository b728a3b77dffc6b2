#!/usr/bin/env python3
"""The standard 20 MB flood to one session's `ssh -tt` viewers, many times (round 3, part 8).

The bench (`hearth-bench`) times a few floods per case; on a 2-core VM one flood's time moves
by a third between runs, too much to show a 10% change. This sends the same flood FLOODS
times to one session and reports, for each build given, the median and minimum of:

- the flood's time: from `hearth send` to the first viewer seeing an end marker the shell
  computes (so the typed command line never matches it);
- the session process's CPU over the flood (utime + stime from /proc);
- how busy the flood kept the whole machine (CPU seconds, every core, from /proc/stat): the
  producer, the kernel's PTY work, the server, the viewers' `ssh` and this script alike.

Give two builds' directories (each holding a release `hearth`) to compare them; they are
alternated ROUNDS times, each round on a fresh daemon in a fresh HOME.

Needs: `ssh`, `ssh-keygen`. Usage:
  contrib/bench/floods.py [--floods 8] [--rounds 3] [--viewers 1] [DIR ...]
(default DIR: target/release)
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLOOD = "head -c 15000000 /dev/urandom | base64 -w 100; echo D$(({n}+1000))NE"
DEADLINE = 60.0


def machine_busy():
    """The whole machine's busy CPU seconds so far (every core; idle and iowait are not)."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Viewer:
    """One `ssh -tt` viewer; a thread keeps the tail of what it received."""

    def __init__(self, port, key, env):
        self.proc = subprocess.Popen(
            ["ssh", "-tt", "-p", str(port), "-i", key, "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=error", "127.0.0.1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.tail = b""
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            data = self.proc.stdout.read1(65536)
            if not data:
                return
            with self.cond:
                self.tail = (self.tail + data)[-64:]
                self.cond.notify_all()

    def wait_for(self, marker):
        end = time.monotonic() + DEADLINE
        with self.cond:
            while marker not in self.tail:
                if time.monotonic() > end:
                    raise TimeoutError(f"no {marker!r} within {DEADLINE} s")
                self.cond.wait(1.0)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def run(bindir, floods, viewers):
    hearth = os.path.join(bindir, "hearth")
    d = tempfile.mkdtemp(prefix="hearth-floods-")
    home = os.path.join(d, "home")
    os.makedirs(os.path.join(home, ".ssh"))
    key = os.path.join(home, ".ssh", "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    env = dict(os.environ, HOME=home, HEARTH_SOCKET=os.path.join(d, "sock"), HEARTH_LOG="warn")
    daemon = subprocess.Popen([hearth, "daemon"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clients = []
    try:
        for _ in range(100):
            if subprocess.run([hearth, "ps"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        out = subprocess.run([hearth, "--json", "server", "--bind", "127.0.0.1", "--no-record",
                              "--", "/bin/sh"], env=env, capture_output=True, check=True).stdout
        session = json.loads(out)
        host = subprocess.run(["pgrep", "-f", f"session-host --socket {d}"],
                              capture_output=True, text=True).stdout.split()
        pid = int(host[0])
        clients = [Viewer(session["port"], key, env) for _ in range(viewers)]
        time.sleep(2)
        times, cpus, busy = [], [], []
        for n in range(floods):
            marker = f"D{n + 1000}NE".encode()
            b0, c0, t0 = machine_busy(), cpu_seconds(pid), time.monotonic()
            subprocess.run([hearth, "send", session["id"], FLOOD.format(n=n)], env=env,
                           capture_output=True, check=True)
            clients[0].wait_for(marker)
            times.append(time.monotonic() - t0)
            cpus.append(cpu_seconds(pid) - c0)
            busy.append(machine_busy() - b0)
            subprocess.run([hearth, "send", session["id"], "clear"], env=env, capture_output=True)
            time.sleep(0.3)
        return times, cpus, busy
    finally:
        for c in clients:
            c.close()
        subprocess.run([hearth, "shutdown"], env=env, capture_output=True)
        daemon.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--floods", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--viewers", type=int, default=1)
    ap.add_argument("dirs", nargs="*", default=[os.path.join(ROOT, "target", "release")])
    args = ap.parse_args()
    for r in range(args.rounds):
        for bindir in args.dirs:
            times, cpus, busy = run(bindir, args.floods, max(1, args.viewers))
            print(f"round {r + 1} {bindir}: flood median {statistics.median(times):.3f} s "
                  f"(min {min(times):.3f}), session CPU median {statistics.median(cpus):.2f} s "
                  f"(min {min(cpus):.2f}), machine busy median {statistics.median(busy):.2f} "
                  f"CPU-s", flush=True)


if __name__ == "__main__":
    main()
