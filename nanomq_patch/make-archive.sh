#!/bin/sh
# make-archive.sh - turns cargo's static library into the archive that NanoMQ links
# (NmqOutbox.cmake's default NMQ_OUTBOX_LIBRARY), free of symbol clashes with NanoNNG.
#
# NanoNNG built with NNG_ENABLE_SQLITE=ON puts its own SQLite (global sqlite3_* symbols) into
# libnng.a; our library bundles another SQLite (rusqlite "bundled") and the Rust standard
# library. This script links everything our exports need into ONE relocatable object
# (ld -r, starting from the nmq_outbox_* entry points, and --gc-sections drops every function
# and datum they cannot reach: about a fifth of the code), makes every global definition except
# nmq_outbox_* local (objcopy --keep-global-symbols) and archives that object. Our SQLite,
# std and compiler-builtins copies are then private to the object: NanoMQ's link sees exactly
# one global SQLite (NanoNNG's), and nmq_outbox_* are the only names we add. Undefined
# references (libc, libgcc_s, and nng_* for the nng entry points) stay undefined and are
# resolved by the final link.
#
# It builds nothing of NanoMQ. Usage, from the nmq-outbox checkout (build.sh does both steps,
# with the reduced SQLite feature set of its NMQ_SQLITE_FLAGS in LIBSQLITE3_FLAGS):
#   cargo rustc --profile edge --lib --no-default-features --features nng --crate-type staticlib
#   nanomq_patch/make-archive.sh [in: <target>/edge/libnmq_outbox.a] [out dir: <target>/nanomq]
# <target> is $CARGO_TARGET_DIR when set (as cargo uses it), else the checkout's target/.
# Any libnmq_outbox.a built with the nng feature works as input (e.g. <target>/release/...).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
case ${CARGO_TARGET_DIR:-} in
"") target=$top/target ;;
/*) target=$CARGO_TARGET_DIR ;;
*) target=$(pwd)/$CARGO_TARGET_DIR ;;
esac
in=${1:-$target/edge/libnmq_outbox.a}
out=${2:-$target/nanomq}
[ -f "$in" ] || { echo "make-archive.sh: no $in (cargo rustc --profile edge --lib --no-default-features --features nng --crate-type staticlib)" >&2; exit 2; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# The C ABI: every nmq_outbox_* function the cargo archive defines.
nm -g --defined-only "$in" 2>/dev/null | awk '$2 == "T" && $3 ~ /^nmq_outbox_/ { print $3 }' |
	sort -u > "$tmp/exports"
[ -s "$tmp/exports" ] || { echo "make-archive.sh: $in defines no nmq_outbox_* function" >&2; exit 1; }

# One relocatable object holding what the exports need (ld keeps scanning the archive until
# nothing new is pulled in). The exports are the roots of --gc-sections (rustc and the cc crate
# put every function and datum in a section of its own): what they cannot reach is dropped.
# .init_array, .fini_array and .note sections are kept by ld itself.
undef=$(sed 's/^/-u /' "$tmp/exports")
# shellcheck disable=SC2086
ld -r --gc-sections $undef -o "$tmp/nmq_outbox.o" "$in"

# Only the exports stay global. The embedded LLVM bitcode (.llvmbc/.llvmcmd) is dropped: it
# serves no C link, and binutils' LLVM plugin chokes on the merged sections.
objcopy --keep-global-symbols="$tmp/exports" \
	--remove-section=.llvmbc --remove-section=.llvmcmd \
	"$tmp/nmq_outbox.o" "$tmp/nmq_outbox_nanomq.o"
rm -f "$out/libnmq_outbox_nanomq.a"
ar rcs "$out/libnmq_outbox_nanomq.a" "$tmp/nmq_outbox_nanomq.o"

# Checks: the global definitions are exactly the exports; no SQLite symbol is global.
nm -g --defined-only "$out/libnmq_outbox_nanomq.a" | awk 'NF == 3 { print $3 }' | sort -u > "$tmp/globals"
if ! cmp -s "$tmp/globals" "$tmp/exports"; then
	echo "make-archive.sh: unexpected global symbols:" >&2
	diff "$tmp/exports" "$tmp/globals" >&2 || true
	exit 1
fi
# Our SQLite must resolve every sqlite3_* call of rusqlite itself: one left undefined (e.g. a
# function that a SQLITE_OMIT_* flag removed) would bind to NanoNNG's SQLite at the final link.
usql=$(nm -u "$out/libnmq_outbox_nanomq.a" | awk 'NF == 2 && $2 ~ /^sqlite3/ { print $2 }')
if [ -n "$usql" ]; then
	rm -f "$out/libnmq_outbox_nanomq.a"
	echo "make-archive.sh: SQLite functions the bundled SQLite does not define (check LIBSQLITE3_FLAGS):" $usql >&2
	exit 1
fi
nsql=$(nm --defined-only "$out/libnmq_outbox_nanomq.a" | grep -c ' [tTdDbBrR] sqlite3_' || true)
nglob=$(nm -g --defined-only "$out/libnmq_outbox_nanomq.a" | grep -c ' sqlite3_' || true)
echo "make-archive.sh: $out/libnmq_outbox_nanomq.a:" \
	"$(wc -l < "$tmp/exports") global symbols (nmq_outbox_*)," \
	"$nsql sqlite3_* symbols, $nglob of them global"
echo "make-archive.sh: undefined, resolved by the final link:" \
	"$(nm -u "$out/libnmq_outbox_nanomq.a" | awk 'NF == 2 { print $2 }' | grep -c '^nng_' || true) nng_*," \
	"$(nm -u "$out/libnmq_outbox_nanomq.a" | awk 'NF == 2 { print $2 }' | grep -vc '^nng_' || true) from libc/libgcc_s"
