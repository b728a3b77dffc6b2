# hearth developer commands. `just ci` runs exactly what CI (.ci/run) runs.

default: ci

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

test:
    cargo test --workspace --locked --no-fail-fast

doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

# Exactly what CI runs (it also installs missing test tools on Debian).
ci:
    ./.ci/run

# Benchmarks (not part of CI): echo latency and fan-out throughput.
# (builds every binary: the bench runs the `hearth` next to it)
bench *ARGS:
    cargo build --release --locked --bins
    ./target/release/hearth-bench {{ARGS}}

# What an agent profile costs a session during a flood (docs/performance.md).
bench-profile-cost ROUNDS="4":
    cargo build --release --locked --bins
    ./contrib/bench/profile-cost.sh {{ROUNDS}}

# The 20 MB flood to one session's viewers, many times: flood time and session CPU,
# medians; give several build directories to alternate them (docs/performance.md, part 8).
bench-floods *ARGS:
    cargo build --release --locked --bins
    ./contrib/bench/floods.py {{ARGS}}

# `hearth grep` over 1 GiB of recordings beside ripgrep (docs/performance.md; needs rg).
bench-grep *ARGS:
    cargo build --release --locked --bins
    ./contrib/bench/grep.py {{ARGS}}
