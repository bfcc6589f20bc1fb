#!/usr/bin/env bash
# The one test command: from a fresh Debian bookworm machine (as root) it installs what is
# missing, then runs every check: format, lints, the build, the Rust tests of every target (unit,
# property, SIGKILL, disk full, the outage suite against a real mosquitto, the benches as smoke
# tests on tiny sizes), the C tests under ASan/UBSan and valgrind with real nng, and the
# clean-link check of the shared library, then patched NanoMQ of both lines built from
# ../shared/upstream (or NMQ_NANOMQ_SRC, or a clone) and the real outage suite
# (nanomq_patch/suite.sh). Any failure stops it with a non-zero exit.
# The last line sums the tests: "test.sh: N passed, 0 failed".
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '== %s\n' "$*"; }

# A Rust toolchain from rustup is the one prerequisite.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "FAIL: no cargo on PATH (install Rust with rustup)"; exit 1; }

step "system packages"
pkgs=(build-essential pkg-config libclang-dev clang valgrind mosquitto libnng-dev iproute2
    cmake ninja-build libmbedtls-dev iptables ccache python3-pip)
missing=()
for p in "${pkgs[@]}"; do
    grep -q 'ok installed' <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_log=/tmp/nmq-outbox-apt.log
    echo "installing: ${missing[*]} (log: $apt_log)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } \
        >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log"
        echo "FAIL: apt-get (full log: $apt_log)"
        exit 1
    fi
fi
# rustfmt and clippy: added through rustup only when missing (a failed add is then fatal).
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# Everything that prints test counts also goes to this log, summed at the end.
log=$(mktemp /tmp/nmq-outbox-test.XXXXXX)
trap 'rm -f "$log"' EXIT

step "format and lints"
cargo fmt --all -- --check
cargo clippy -q --all-targets -- -D warnings
cargo clippy -q --all-targets --features nng -- -D warnings

step "build (the header check runs here: build.rs fails on any drift)"
cargo build -q

step "Rust tests, every target (benches as smoke tests on tiny sizes)"
NMQ_BENCH_N=1000 NMQ_BENCH_REPS=1 cargo test -q --all-targets 2>&1 | tee -a "$log"
cargo test -q --doc 2>&1 | tee -a "$log"

step "C tests (static library under ASan/UBSan, shared library under valgrind, real libnng)"
# cargo's output directory (CARGO_TARGET_DIR when set, as cargo itself takes it)
debug=$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug
# Right before linking: any cargo build without the feature replaces $debug/libnmq_outbox.*
cargo build -q --features nng
make -s -C c_tests clean LIBDIR="$debug"
make -s -C c_tests check LIBDIR="$debug" 2>&1 | tee -a "$log"

step "nanomq_patch scripts: syntax, apply.sh on synthetic trees, build.sh's early checks, make-archive.sh"
# Needs no NanoMQ source: tiny synthetic trees; make-archive.sh runs on the nng build's archive.
bash nanomq_patch/tests/scripts_test.sh "$debug/libnmq_outbox.a" 2>&1 | tee -a "$log"

step "clean link: the shared library exports exactly the headers' functions, no SQLite"
so=$debug/libnmq_outbox.so
exported=$(nm -D --defined-only "$so" | awk '{print $3}' | sort)
declared=$(grep -ohE '\bnmq_outbox_[a-z_]+\(' include/*.h | tr -d '(' | sort -u)
if grep -q sqlite3 <<<"$exported"; then
    echo "FAIL: $so exports SQLite symbols"
    exit 1
fi
if [ "$exported" != "$declared" ]; then
    echo "FAIL: exported symbols differ from the headers' declarations (< declared, > exported)"
    diff <(echo "$declared") <(echo "$exported") || true
    exit 1
fi
echo "$(echo "$exported" | wc -l) symbols, all declared in include/, none from SQLite"

step "real NanoMQ: both lines patched and built, the outage suite (nanomq_patch/suite.sh)"
# Skipped (one line, counted below, never as passed) only where no NanoMQ source can be had (the
# QUIC line: where no msquic source is);
# under CI=true it always runs.
bash nanomq_patch/suite.sh 2>&1 | tee -a "$log"
skipped=$(grep -cE '^nanomq suite( QUIC)?: SKIPPED' "$log" || true)

# cargo: "test result: ok. N passed; M failed; ..."   C: "<program>: N passed, M failed"
read -r passed failed < <(
    sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p;
             s/^[A-Za-z0-9_]+: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$log" |
        awk '{p += $1; f += $2} END {print p + 0, f + 0}'
)
if [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
    echo "FAIL: $passed passed, $failed failed"
    exit 1
fi
if [ "$skipped" -gt 0 ]; then
    echo "test.sh: $passed passed, $failed failed, $skipped skipped"
else
    echo "test.sh: $passed passed, $failed failed"
fi
