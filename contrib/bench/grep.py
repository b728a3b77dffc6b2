#!/usr/bin/env python3
"""`hearth grep` over a large store of recordings, beside ripgrep (#30).

Writes SIZE_MB of asciicast recordings (default 1024) into a fresh HOME, generated from
varied output (compiler errors with colours, test runs, logs, JSON, progress bars redrawn
with \\r, a full-screen redraw, wide characters), SESSIONS files, the newest last written.
A rare word is planted once in the newest recording and once in the oldest. Then, with a
release `hearth daemon` on that HOME:

- cold: `hearth grep RARE` when no index exists (indexes every recording);
- warm: the same again (`--runs` times): time to the first hit, time to the end;
- rg: `rg RARE` over the same text, extracted to plain files (the index's text files,
  copied elsewhere), same runs;
- memory: the daemon's peak RSS (VmHWM) before and after the searches.

Needs: a release build (`cargo build --release --locked --bins`) and `rg` on PATH.
Usage: contrib/bench/grep.py [--size-mb 1024] [--sessions 64] [--runs 5]
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEARTH = os.path.join(ROOT, "target", "release", "hearth")
RARE = "zanzibarquux"

WORDS = ("the build of crate foo failed because a value moved out of a borrowed context "
         "while the agent retried the request with a smaller batch and a longer timeout "
         "then wrote the file and ran the tests again").split()


def chunk(rng):
    """One piece of varied terminal output."""
    kind = rng.randrange(8)
    if kind == 0:
        n = rng.randrange(1000)
        return (f"\x1b[1m\x1b[91merror[E0{n:03d}]\x1b[0m\x1b[1m: mismatched types\x1b[0m\r\n"
                f"  \x1b[1m\x1b[94m-->\x1b[0m src/module_{n}.rs:{rng.randrange(900)}:{rng.randrange(80)}\r\n")
    if kind == 1:
        return "".join(f"test tests::case_{rng.randrange(10**6)} ... \x1b[32mok\x1b[0m\r\n"
                       for _ in range(rng.randrange(1, 6)))
    if kind == 2:
        return (f"2026-11-{rng.randrange(1, 30):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z "
                f"INFO request id={rng.getrandbits(48):x} took {rng.randrange(900)}ms "
                + " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 14))) + "\r\n")
    if kind == 3:
        return json.dumps({"id": rng.getrandbits(32), "event": rng.choice(WORDS),
                           "path": f"/srv/app/{rng.choice(WORDS)}.py"}) + "\r\n"
    if kind == 4:
        return "".join(f"\rDownloading {rng.choice(WORDS)} [{'#' * p}{' ' * (20 - p)}] {p * 5}%"
                       for p in range(0, 21, 4)) + "\r\n"
    if kind == 5:
        return ("\x1b[H\x1b[2J" + "".join(f"\x1b[{r};1H\x1b[2K {r:2d} {rng.choice(WORDS)} {rng.choice(WORDS)}"
                                             for r in range(1, 12)))
    if kind == 6:
        return f"日本語のテキスト {rng.choice(WORDS)} 완료 ✓ {rng.randrange(100)}\r\n"
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 20))) + "\r\n"


def write_store(rec_dir, size_mb, sessions, seed=7):
    os.makedirs(rec_dir, mode=0o700, exist_ok=True)
    rng = random.Random(seed)
    per = size_mb * 1024 * 1024 // sessions
    now = int(time.time())
    total = 0
    for i in range(sessions):
        sid = f"{i:08x}"
        start = now - (sessions - i) * 3600
        path = os.path.join(rec_dir, f"{sid}.cast")
        with open(path, "w") as f:
            f.write(json.dumps({"version": 2, "width": 120, "height": 40, "timestamp": start}) + "\n")
            t, written = 0.0, 0
            plant = i in (0, sessions - 1)
            while written < per:
                t += rng.random() * 0.05
                data = chunk(rng)
                if plant and written > per // 2:
                    data += f"the agent said {RARE} here\r\n"
                    plant = False
                line = json.dumps([round(t, 6), "o", data], ensure_ascii=False) + "\n"
                f.write(line)
                written += len(line.encode())
        total += os.path.getsize(path)
        os.utime(path, (start + 1800, start + 1800))
    return total


def timed_lines(cmd, env):
    """Run cmd; (seconds to the first stdout line, seconds to the end, lines)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = None
    lines = 0
    for _ in p.stdout:
        lines += 1
        if first is None:
            first = time.monotonic() - t0
    p.wait()
    return first, time.monotonic() - t0, lines


def vmhwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--sessions", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    if not os.access(HEARTH, os.X_OK) or not shutil.which("rg"):
        sys.exit("needs target/release/hearth (cargo build --release --locked --bins) and rg")
    d = tempfile.mkdtemp(prefix="hearth-grep-bench-")
    home = os.path.join(d, "home")
    rec = os.path.join(home, ".local", "state", "hearth", "recordings")
    env = dict(os.environ, HOME=home, HEARTH_SOCKET=os.path.join(d, "sock"), HEARTH_LOG="warn",
               HEARTH_NO_AUTOSTART="1")
    for k in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        env.pop(k, None)
    t = time.monotonic()
    total = write_store(rec, a.size_mb, a.sessions)
    print(f"store: {total / 2**20:.0f} MiB of recordings in {a.sessions} sessions "
          f"(written in {time.monotonic() - t:.0f} s)")
    # A large recording cap: the bench's store must not be pruned.
    os.makedirs(os.path.join(home, ".config", "hearth"), exist_ok=True)
    with open(os.path.join(home, ".config", "hearth", "config.toml"), "w") as f:
        f.write("[recording]\nmax_total_bytes = 107374182400\n")
    daemon = subprocess.Popen([HEARTH, "daemon"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if subprocess.run([HEARTH, "version"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        rss0 = vmhwm(daemon.pid)
        grep = [HEARTH, "grep", RARE]
        first, end, n = timed_lines(grep, env)
        print(f"cold (indexing {a.sessions} recordings): first hit {first:.3f} s, end {end:.2f} s, {n} hits")
        rss1 = vmhwm(daemon.pid)
        index_bytes = sum(os.path.getsize(os.path.join(rec, x)) for x in os.listdir(rec)
                          if ".search." in x)
        text_dir = os.path.join(d, "text")
        os.mkdir(text_dir)
        for x in os.listdir(rec):
            if x.endswith(".search.txt"):
                shutil.copy(os.path.join(rec, x), os.path.join(text_dir, x[:-len(".search.txt")] + ".txt"))
        text_bytes = sum(os.path.getsize(os.path.join(text_dir, x)) for x in os.listdir(text_dir))
        ours, theirs = [], []
        for i in range(a.runs):
            # Alternate the order: the second of a pair tends to be slower.
            pair = [("hearth", grep), ("rg", ["rg", "--no-heading", RARE, text_dir])]
            if i % 2:
                pair.reverse()
            for who, cmd in pair:
                r = timed_lines(cmd, env)
                (ours if who == "hearth" else theirs).append(r)
        rss2 = vmhwm(daemon.pid)
        med = lambda rs, k: statistics.median(r[k] for r in rs)
        print(f"warm, median of {a.runs}: hearth grep first hit {med(ours, 0) * 1000:.0f} ms, "
              f"end {med(ours, 1) * 1000:.0f} ms ({ours[0][2]} hits)")
        print(f"rg on the extracted text ({text_bytes / 2**20:.0f} MiB in {a.sessions} files): "
              f"first hit {med(theirs, 0) * 1000:.0f} ms, end {med(theirs, 1) * 1000:.0f} ms "
              f"({theirs[0][2]} hits)")
        print(f"ratio hearth/rg to the end: {med(ours, 1) / med(theirs, 1):.2f}x")
        print(f"index on disk: {index_bytes / 2**20:.0f} MiB ({100 * index_bytes / total:.0f}% of the recordings)")
        print(f"daemon peak RSS: {rss0} MiB before, {rss1} MiB after indexing, {rss2} MiB after the warm runs")
    finally:
        subprocess.run([HEARTH, "shutdown"], env=env, capture_output=True)
        daemon.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
