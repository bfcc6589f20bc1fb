#!/usr/bin/env bash
# The one test command: from a fresh Debian bookworm machine (as root) it installs what is
# missing, then runs every check: format, lints, Rust tests (unit, property, kill, disk-full,
# outage suite against a real mosquitto), the C tests under ASan/UBSan and valgrind with real
# nng, and the clean-link check of the shared library.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "system packages"
pkgs=(build-essential pkg-config libclang-dev clang valgrind mosquitto libnng-dev iproute2)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]} (log: /tmp/nmq-outbox-apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >/tmp/nmq-outbox-apt.log 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/nmq-outbox-apt.log 2>&1
else
    echo "all present"
fi
for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

step "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features nng -- -D warnings

step "Rust tests"
cargo test

step "C tests (static library under ASan/UBSan, shared library under valgrind, real libnng)"
cargo build --features nng
make -s -C c_tests clean
make -s -C c_tests check

step "clean link: the shared library exports our symbols only, no SQLite"
so=target/debug/libnmq_outbox.so
exported=$(nm -D --defined-only "$so" | awk '{print $3}' | sort)
declared=$(grep -ohE '\bnmq_outbox_[a-z_]+\(' include/*.h | tr -d '(' | sort -u)
if echo "$exported" | grep -q sqlite3; then
    echo "FAIL: $so exports SQLite symbols"; exit 1
fi
if [ "$exported" != "$declared" ]; then
    echo "FAIL: exported symbols differ from the headers' declarations"
    diff <(echo "$declared") <(echo "$exported") || true
    exit 1
fi
echo "$(echo "$exported" | wc -l) symbols, all declared in include/, none from SQLite"

step "all tests passed"
