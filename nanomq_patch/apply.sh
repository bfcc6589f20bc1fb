#!/bin/sh
# apply.sh - applies the nmq-outbox hooks to a NanoMQ source tree whose nng/ directory holds
# the NanoNNG sources (git submodule or release tarball), and copies the CMake glue.
# It patches sources only; building stays with NanoMQ's own CMake (see README.md).
#
#   nanomq_patch/apply.sh <nanomq-tree> [0.25.6|0.24.6]     (default: try 0.25.6, then 0.24.6)
#   nanomq_patch/apply.sh --check <nanomq-tree> [version]   dry run (git apply --check)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
check=
if [ "${1:-}" = "--check" ]; then check=--check; shift; fi
tree=${1:?usage: apply.sh [--check] <nanomq-tree> [0.25.6|0.24.6]}
[ -f "$tree/nanomq/bridge.c" ] && [ -f "$tree/nng/src/mqtt/protocol/mqtt/mqtt_client.c" ] ||
	{ echo "apply.sh: $tree is not a NanoMQ tree with its nng sources" >&2; exit 2; }
for v in ${2:-0.25.6 0.24.6}; do
	if (cd "$tree" && git apply --check "$here/nanomq-$v.patch" 2>/dev/null) &&
	   (cd "$tree/nng" && git apply --check "$here/nanonng-$v.patch" 2>/dev/null); then
		if [ -z "$check" ]; then
			(cd "$tree" && git apply "$here/nanomq-$v.patch")
			(cd "$tree/nng" && git apply "$here/nanonng-$v.patch")
			cp "$here/cmake/NmqOutbox.cmake" "$tree/cmake/NmqOutbox.cmake"
		fi
		echo "apply.sh: nanomq-$v.patch and nanonng-$v.patch ${check:+would }apply to $tree"
		exit 0
	fi
done
echo "apply.sh: no patch pair applies to $tree" >&2
exit 1
