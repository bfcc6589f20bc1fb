#!/usr/bin/env bash
# The main job: the reported outage (test1..test5 at QoS 1,1,2,2,2; 10 s normal, 100 s link
# cut, 20 s more, drain) through the outbox against a real mosquitto on 127.0.0.1, then the
# table: sent, received, lost, duplicated, out of order, restore to last backlog message.
#
# From a fresh Debian bookworm machine, as root: installs what is missing (quietly; the log
# goes to /tmp/nmq-outbox-apt.log), builds, runs. Compressed 10x by default (about 15 s after
# the build). Options go to the demo:
#   --full               the real timeline (about 3 minutes)
#   --silent             a silent blackhole instead of a cut with RST
#   --broker HOST:PORT   an external broker instead of the embedded mosquitto
set -euo pipefail
cd "$(dirname "$0")/.."

log=/tmp/nmq-outbox-apt.log
pkgs=(build-essential pkg-config libclang-dev clang mosquitto)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}; run as root (or install them first)" >&2
        exit 1
    fi
    echo "installing: ${missing[*]} (log: $log)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$log" 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1
fi
# A Rust toolchain from rustup is the one prerequisite (Debian's cargo is older than the crate's
# rust-version).
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "no cargo on PATH: install Rust with rustup" >&2; exit 1; }

echo "building (cargo build --release --example demo)..."
cargo build --quiet --release --example demo
exec cargo run --quiet --release --example demo -- "$@"
