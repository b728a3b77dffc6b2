#!/bin/bash
# What an agent profile costs a session during a flood (#28): a 40 MB base64 flood (30 MB
# of random bytes) in one session with no viewers, its session process's CPU time (utime +
# stime from /proc) and the flood's wall time, with and without a profile that applies to
# the session (the shipped Claude Code rules), alternated; ROUNDS pairs (default 4), each
# pair in the other order from the last. Needs a release build: `just bench-profile-cost`.
set -euo pipefail
rounds=${1:-4}
B=$(cd "$(dirname "$0")/../.." && pwd)/target/release/hearth
[ -x "$B" ] || { echo "build first: cargo build --release --locked --bins" >&2; exit 1; }

one() {
    local mode=$1 d hp id t0 t1 s e
    d=$(mktemp -d)
    export HOME=$d/home HEARTH_SOCKET=$d/sock HEARTH_LOG=warn
    mkdir -p "$HOME/.config/hearth"
    if [ "$mode" = profile ]; then
        cat > "$HOME/.config/hearth/config.toml" <<'T'
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
state = "waiting_input"
pattern = '^[│\s]*>(?:\s|$)'
bottom = 6
quiet_ms = 500
T
    fi
    "$B" daemon >/dev/null 2>&1 &
    for _ in $(seq 100); do "$B" ps >/dev/null 2>&1 && break; sleep 0.1; done
    id=$("$B" --json server --bind 127.0.0.1 --no-record -- sh -c \
        'read x; head -c 30000000 /dev/urandom | base64 -w 100; echo END-$((1+1)); sleep 1000' \
        </dev/null | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
    hp=$(pgrep -f "session-host.*$id" | head -1)
    sleep 1
    t0=$(awk '{print $14 + $15}' "/proc/$hp/stat")
    s=$(date +%s%N)
    "$B" send "$id" go >/dev/null
    "$B" wait "$id" --match '^END-2$' --timeout 120s >/dev/null
    e=$(date +%s%N)
    t1=$(awk '{print $14 + $15}' "/proc/$hp/stat")
    awk -v m="$mode" -v c="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v w="$((e - s))" \
        'BEGIN { printf "%-10s session process CPU %5.2f s  flood %5.2f s\n", m, c / hz, w / 1e9 }'
    "$B" shutdown >/dev/null 2>&1 || true
    rm -rf "$d"
}

for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then one none; one profile; else one profile; one none; fi
done
