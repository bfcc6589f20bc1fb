#!/usr/bin/env bash
# The main job: from a fresh Debian bookworm machine (as root), installs what is missing and
# runs the reported outage through the outbox against a real mosquitto, then prints the table.
# Options go to the demo: --full (the real 100 s timeline), --broker HOST:PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(build-essential pkg-config libclang-dev clang mosquitto)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]} (log: /tmp/nmq-outbox-apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >/tmp/nmq-outbox-apt.log 2>&1
    apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/nmq-outbox-apt.log 2>&1
fi
exec cargo run --quiet --release --example demo -- "$@"
