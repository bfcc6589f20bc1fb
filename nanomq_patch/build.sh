#!/usr/bin/env bash
# build.sh - builds NanoMQ with the nmq-outbox bridge hooks from a NanoMQ source tree the user
# supplies, and verifies the result. It builds NOTHING that is not asked for and never changes
# NanoMQ code beyond our hooks (apply.sh) unless an opt-in fix below is given.
#
#   nanomq_patch/build.sh [options] <nanomq-source-tree> <out-dir> [-- <extra cmake args>]
#
# Steps: prerequisites -> the library (cargo, profile edge, honours CARGO_TARGET_DIR) -> the link archive
# (make-archive.sh) -> the hooks (apply.sh) -> NanoMQ's CMake (Release, tests off, SQLite and
# TLS on, -DNMQ_OUTBOX=ON) -> build -> <out-dir>/nanomq (+ nanomq_cli) -> verification:
#   1. every nmq_outbox_* function of the archive is in the binary, and the version banner
#      (`nanomq` without arguments) names nmq-outbox;
#   2. a short start of the binary with a bridge + cache config (loopback only: the bridge
#      points at a closed port on 127.0.0.1) logs that the outbox is attached, and its file
#      appears under the cache directory.
# Any failure stops it with a message naming the step and a non-zero exit.
#
# Options:
#   --build-dir DIR      NanoMQ's CMake build directory (default <out-dir>/build); it is
#                        reused by later runs (incremental build)
#   --jobs N             parallel build jobs (default: nproc; env JOBS)
#   --fix-sub0-adapter   opt-in compatibility fix for NanoMQ e1966dd3 with NanoNNG f2acbcf25,
#                        whose apps/broker.c calls nng_sub0_msg_adapter() with 2 arguments
#                        where nng declares 3: passes NULL (no default topic) as the third.
#                        Without it, that mismatch is reported and the build stops.
#   --quic               also MQTT over QUIC bridges (-DNNG_ENABLE_QUIC=ON): NanoNNG builds msquic
#                        and its quictls from <tree>/nng/extern/msquic (about 2 1/4 minutes of one
#                        core the first time). A tree without it gets it unpacked from
#                        msquic-2.5.9.tar.gz: NMQ_MSQUIC_TARBALL, else the one in NMQ_UPSTREAM_DIR
#                        (default ../shared/upstream beside this checkout), checked against the
#                        SHA256SUMS beside it. Only the 0.25.5 line is known to build with it.
#   --no-verify-start    skip verification 2 (e.g. where no process may be started)
#   --keep-debug         keep the debug sections in <out-dir>'s copies (by default they get
#                        strip --strip-debug: the Rust code brings line tables, NanoMQ's
#                        Release build none; symbols stay, so nm still shows nmq_outbox_*)
# Environment: CARGO_TARGET_DIR (where cargo builds the library; default <repo>/target),
#   LIBSQLITE3_FLAGS (the bundled SQLite's options; default: build.sh's NMQ_SQLITE_FLAGS),
#   CARGO (default cargo), CMAKE_GENERATOR (default Ninja when ninja exists, else make),
#   JOBS, NMQ_CARGO_OFFLINE=1 (cargo --offline, e.g. with vendored crates), NMQ_UPSTREAM_DIR and
#   NMQ_MSQUIC_TARBALL (--quic).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
me=build.sh
die() { echo "$me: ERROR: $*" >&2; exit 1; }
say() { echo "$me: $*"; }
step() { echo "== $me: $*"; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2; }

build_dir= jobs=${JOBS:-} fix_sub0= verify_start=1 keep_debug= quic=
args=() extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--build-dir) build_dir=${2:?--build-dir needs a directory}; shift 2 ;;
	--build-dir=*) build_dir=${1#*=}; shift ;;
	--jobs|-j) jobs=${2:?--jobs needs a number}; shift 2 ;;
	--fix-sub0-adapter) fix_sub0=1; shift ;;
	--no-verify-start) verify_start=; shift ;;
	--quic) quic=1; shift ;;
	--keep-debug) keep_debug=1; shift ;;
	-h|--help) usage ;;
	--) shift; extra=("$@"); break ;;
	-*) echo "$me: unknown option $1" >&2; usage ;;
	*) args+=("$1"); shift ;;
	esac
done
[ ${#args[@]} -eq 2 ] || usage
[ -d "${args[0]}" ] || die "${args[0]}: no such directory (the NanoMQ source tree)"
tree=$(cd "${args[0]}" && pwd -P)
mkdir -p "${args[1]}"
out=$(cd "${args[1]}" && pwd -P)
build_dir=${build_dir:-$out/build}
mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd -P)
jobs=${jobs:-$(nproc 2>/dev/null || echo 2)}
cargo=${CARGO:-cargo}

# --------------------------------------------------------------------------------------------
step "1/7 the NanoMQ tree $tree"
[ -f "$tree/nanomq/bridge.c" ] && [ -f "$tree/CMakeLists.txt" ] ||
	die "$tree is not a NanoMQ source tree (no nanomq/bridge.c)"
[ -f "$tree/nng/src/mqtt/protocol/mqtt/mqtt_client.c" ] ||
	die "$tree/nng holds no NanoNNG sources (a git clone needs: git -C $tree submodule update --init nng)"
[ -f "$tree/nng/include/nng/nng.h" ] || die "$tree/nng/include/nng/nng.h missing"
sq=$tree/nng/src/supplemental/sqlite/sqlite3.c
if [ ! -s "$sq" ]; then
	echo "$me: $sq is missing." >&2
	echo "$me:   NanoNNG compiles SQLite from this amalgamation (NNG_ENABLE_SQLITE=ON, as in the" >&2
	echo "$me:   official full images). A clone with its submodule or a NanoMQ release tarball" >&2
	echo "$me:   has it; a tree exported without large files (git archive of a partial clone," >&2
	echo "$me:   some mirrors) does not. Put SQLite's amalgamation sqlite3.c there" >&2
	echo "$me:   (https://sqlite.org/download.html, sqlite-amalgamation-*.zip) and run again." >&2
	die "no SQLite amalgamation in the NanoNNG tree"
fi
ver=$(awk '/NANO_VER_(MAJOR|MINOR|PATCH)/ {v = v (v ? "." : "") $3} END {print v}' "$tree/nanomq/include/version.h" 2>/dev/null || true)
say "NanoMQ version.h: ${ver:-unknown}"

# NanoMQ e1966dd3 + NanoNNG f2acbcf25: broker.c calls nng_sub0_msg_adapter(msg, snode) while
# nng's mqtt_parser.h declares it with a third argument; it does not compile.
hdr=$tree/nng/include/nng/protocol/mqtt/mqtt_parser.h
brk=$tree/nanomq/apps/broker.c
if [ -f "$hdr" ] && [ -f "$brk" ] &&
	grep -q 'default_topic' <<<"$(grep -A1 'nng_sub0_msg_adapter(' "$hdr")" &&
	grep -qE 'nng_sub0_msg_adapter\([^,()]+,[^,()]+\);' "$brk"; then
	if [ -z "$fix_sub0" ]; then
		grep -nE 'nng_sub0_msg_adapter\([^,()]+,[^,()]+\);' "$brk" | sed "s|^|$me:   $brk:|" >&2
		echo "$me:   calls nng_sub0_msg_adapter() with 2 arguments; $hdr declares 3" >&2
		echo "$me:   (char *default_topic): this NanoMQ commit does not match its NanoNNG and" >&2
		echo "$me:   will not compile. Use matching sources, or pass --fix-sub0-adapter to have" >&2
		echo "$me:   build.sh pass NULL (no default topic) as the third argument in broker.c." >&2
		die "NanoMQ and NanoNNG sources do not match (nng_sub0_msg_adapter arity)"
	fi
	sed -i -E 's/nng_sub0_msg_adapter\(([^,()]+),([^,()]+)\);/nng_sub0_msg_adapter(\1,\2, NULL);/' "$brk"
	say "--fix-sub0-adapter: $brk now passes NULL as nng_sub0_msg_adapter()'s third argument"
fi

# --quic: msquic (with quictls) in nng/extern/msquic, where NanoNNG's CMake looks for it
if [ -n "$quic" ] && [ ! -f "$tree/nng/extern/msquic/CMakeLists.txt" ]; then
	up=${NMQ_UPSTREAM_DIR:-$repo/../shared/upstream}
	mtb=${NMQ_MSQUIC_TARBALL:-$up/msquic-2.5.9.tar.gz}
	[ -f "$mtb" ] || die "--quic: $tree/nng/extern/msquic is empty and there is no $mtb (set NMQ_MSQUIC_TARBALL or NMQ_UPSTREAM_DIR)"
	sums=$(dirname "$mtb")/SHA256SUMS
	if [ -f "$sums" ] && grep -q " $(basename "$mtb")\$" "$sums"; then
		(cd "$(dirname "$mtb")" && grep " $(basename "$mtb")\$" SHA256SUMS | sha256sum --quiet -c -) ||
			die "--quic: $mtb does not match $sums"
		say "--quic: $mtb (checksum in $sums checked)"
	else
		say "--quic: $mtb (no checksum for it in $sums: not checked)"
	fi
	mt=$(mktemp -d "$tree/nng/extern/.msquic.XXXXXX")
	tar xzf "$mtb" -C "$mt" || die "--quic: $mtb did not unpack"
	top=$(ls "$mt")
	[ "$(echo "$top" | wc -l)" -eq 1 ] && [ -f "$mt/$top/CMakeLists.txt" ] ||
		die "--quic: $mtb does not hold one msquic source directory"
	rm -rf "$tree/nng/extern/msquic"
	mv "$mt/$top" "$tree/nng/extern/msquic"
	rmdir "$mt"
	say "--quic: msquic unpacked into $tree/nng/extern/msquic"
fi

# --------------------------------------------------------------------------------------------
step "2/7 prerequisites"
missing=()
need() { # <command> <debian package>
	command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian/Ubuntu package: $2)")
}
need "$cargo" "cargo, or rustup: Rust >= 1.77"
need cc "build-essential"
need c++ "build-essential"
need cmake "cmake"
need git "git"
need ld "binutils"
need objcopy "binutils"
need ar "binutils"
need nm "binutils"
need size "binutils"
need strip "binutils"
need timeout "coreutils"
if [ -n "${CMAKE_GENERATOR:-}" ]; then gen=$CMAKE_GENERATOR
elif command -v ninja >/dev/null 2>&1; then gen=Ninja
else gen="Unix Makefiles"; need make "make (or ninja-build)"; fi
if command -v "$cargo" >/dev/null 2>&1; then
	rv=$(rustc --version 2>/dev/null | awk '{print $2}')
	if [ -z "$rv" ] || [ "$(printf '%s\n1.77.0\n' "${rv%%-*}" | sort -V | head -1)" != 1.77.0 ]; then
		missing+=("rustc >= 1.77 (found: ${rv:-none}; the crate's rust-version)")
	fi
fi
# bindgen (build.rs) loads libclang at run time
if [ -z "${LIBCLANG_PATH:-}" ] && ! grep -q 'libclang[-0-9.]*\.so' <<<"$(ldconfig -p 2>/dev/null)" &&
	! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
	missing+=("libclang (Debian/Ubuntu package: libclang-dev; or set LIBCLANG_PATH)")
fi
# NanoNNG's TLS (NNG_ENABLE_TLS=ON) uses Mbed TLS
if command -v cc >/dev/null 2>&1 && ! echo '#include <mbedtls/ssl.h>' | cc -E -x c - >/dev/null 2>&1; then
	missing+=("Mbed TLS headers (Debian/Ubuntu package: libmbedtls-dev)")
fi
if [ ${#missing[@]} -gt 0 ]; then
	for m in "${missing[@]}"; do echo "$me: missing: $m" >&2; done
	die "${#missing[@]} prerequisite(s) missing (Debian: apt-get install build-essential cmake ninja-build git binutils libclang-dev libmbedtls-dev cargo)"
fi
say "cargo $rv, cmake $(cmake --version | awk 'NR==1{print $3}'), generator $gen, $jobs jobs"

# --------------------------------------------------------------------------------------------
target=${CARGO_TARGET_DIR:-$repo/target}
case $target in /*) ;; *) target=$(pwd)/$target ;; esac
# The SQLite that the library bundles, with only what the outbox uses (libsqlite3-sys reads
# LIBSQLITE3_FLAGS; -U undoes one of its defaults): no full-text search, R-tree, dbstat,
# STAT4, soundex, column metadata, extension loading, JSON, deprecated APIs, shared cache or
# memory statistics. About 0.6 MB less code (benches/README.md, "Footprint"); make-archive.sh
# fails if rusqlite then calls a function this SQLite lacks. The CLI and the tests keep
# libsqlite3-sys's defaults. Set LIBSQLITE3_FLAGS to override (empty: the defaults).
NMQ_SQLITE_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5
 -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_ENABLE_STAT4 -USQLITE_SOUNDEX
 -USQLITE_ENABLE_COLUMN_METADATA -USQLITE_ENABLE_LOAD_EXTENSION -DSQLITE_OMIT_LOAD_EXTENSION
 -DSQLITE_OMIT_DEPRECATED -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_OMIT_JSON
 -DSQLITE_DEFAULT_MEMSTATUS=0"
sqlite_flags=${LIBSQLITE3_FLAGS-$NMQ_SQLITE_FLAGS}
step "3/7 the library (cargo rustc --profile edge --lib --features nng, target dir $target)"
offline=()
[ "${NMQ_CARGO_OFFLINE:-}" = 1 ] && offline=(--offline)
# Profile edge (Cargo.toml): release tuned for size. The library alone: no CLI dependencies.
# `cargo rustc --crate-type staticlib`: with the rlib and cdylib of Cargo.toml's crate-type in
# the same rustc run, rustc would not do the LTO, and the objects would carry LLVM bitcode that
# binutils' LTO plugin cannot read.
(cd "$repo" && NMQ_OUTBOX_NNG_INCLUDE="$tree/nng/include" CARGO_TARGET_DIR="$target" \
	LIBSQLITE3_FLAGS="$(echo $sqlite_flags)" \
	"$cargo" rustc --profile edge --locked "${offline[@]}" --lib --no-default-features --features nng \
	--crate-type staticlib) ||
	die "cargo build of the library failed (output above)"
archive_dir=$target/nanomq
CARGO_TARGET_DIR=$target "$repo/nanomq_patch/make-archive.sh" "$target/edge/libnmq_outbox.a" "$archive_dir" ||
	die "make-archive.sh failed (output above)"
archive=$archive_dir/libnmq_outbox_nanomq.a
libver=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)

# --------------------------------------------------------------------------------------------
step "4/7 the hooks (apply.sh)"
"$repo/nanomq_patch/apply.sh" "$tree" || die "apply.sh could not apply the hooks (see above)"

# --------------------------------------------------------------------------------------------
step "5/7 configure NanoMQ in $build_dir"
cmake -S "$tree" -B "$build_dir" -G "$gen" \
	-DCMAKE_BUILD_TYPE=Release \
	-DNNG_TESTS=OFF -DNANOMQ_TESTS=OFF -DNNG_ENABLE_SQLITE=ON -DNNG_ENABLE_TLS=ON \
	-DNMQ_OUTBOX=ON -DNMQ_OUTBOX_DIR="$repo" -DNMQ_OUTBOX_INCLUDE_DIR="$repo/include" \
	-DNMQ_OUTBOX_LIBRARY="$archive" ${quic:+-DNNG_ENABLE_QUIC=ON} "${extra[@]}" \
	>"$build_dir/nmq-configure.log" 2>&1 || {
	tail -n 40 "$build_dir/nmq-configure.log" >&2
	die "cmake configure failed (full log: $build_dir/nmq-configure.log)"
}
grep -q "NMQ_OUTBOX: $archive" "$build_dir/nmq-configure.log" ||
	die "cmake did not take the nmq-outbox glue (no 'NMQ_OUTBOX:' line in $build_dir/nmq-configure.log)"
say "configured (log: $build_dir/nmq-configure.log)"

# --------------------------------------------------------------------------------------------
step "6/7 build ($jobs jobs; log: $build_dir/nmq-build.log)"
if ! cmake --build "$build_dir" -j "$jobs" >"$build_dir/nmq-build.log" 2>&1; then
	grep -E 'error|Error|undefined reference' "$build_dir/nmq-build.log" | head -n 30 >&2 || true
	tail -n 20 "$build_dir/nmq-build.log" >&2
	die "NanoMQ build failed (full log: $build_dir/nmq-build.log)"
fi
bin=$build_dir/nanomq/nanomq
[ -x "$bin" ] || die "the build produced no $bin"
cp -f "$bin" "$out/nanomq"
got=nanomq
if [ -x "$build_dir/nanomq_cli/nanomq_cli" ]; then
	cp -f "$build_dir/nanomq_cli/nanomq_cli" "$out/nanomq_cli"
	got="nanomq nanomq_cli"
fi
if [ -z "$keep_debug" ]; then
	for f in $got; do strip --strip-debug "$out/$f"; done
fi
say "copied $got to $out${keep_debug:+ (with debug sections)}"

# --------------------------------------------------------------------------------------------
step "7/7 verify $out/nanomq"
# 1. symbols: every nmq_outbox_* function of the archive is in the binary
nm -g --defined-only "$archive" | awk 'NF == 3 && $3 ~ /^nmq_outbox_/ {print $3}' | sort -u >"$build_dir/nmq-exports"
nm "$out/nanomq" 2>/dev/null | awk '$3 ~ /^nmq_outbox_/ {print $3}' | sort -u >"$build_dir/nmq-in-binary"
want=$(wc -l <"$build_dir/nmq-exports")
absent=$(comm -23 "$build_dir/nmq-exports" "$build_dir/nmq-in-binary" | wc -l)
[ "$want" -gt 0 ] && [ "$absent" -eq 0 ] ||
	die "$out/nanomq lacks $absent of the $want nmq_outbox_* functions: it is NOT patched"
say "symbols: all $want nmq_outbox_* functions are in nanomq"
banner=$("$out/nanomq" 2>&1 || true)
grep -q "nmq-outbox $libver" <<<"$banner" ||
	die "'nanomq' (version banner) does not name nmq-outbox $libver: got: $(echo "$banner" | tr '\n' ' ')"
say "banner: $(echo "$banner" | grep "nmq-outbox")"

# 2. a short start with a bridge + cache config
if [ -n "$verify_start" ]; then
	vt=$(mktemp -d "${TMPDIR:-/tmp}/nmq-outbox-verify.XXXXXX")
	port=$((20000 + $$ % 20000))
	cat >"$vt/nanomq.conf" <<EOF
listeners.tcp {
    bind = "127.0.0.1:$port"
}
log {
    to = [file]
    level = info
    dir = "$vt"
    file = "nanomq.log"
}
bridges.mqtt.verify {
    server = "mqtt-tcp://127.0.0.1:9"
    proto_ver = 5
    clientid = "nmq_outbox_verify"
    keepalive = 60s
    forwards = [
        { remote_topic = "t", local_topic = "t", qos = 1 }
    ]
}
bridges.mqtt.cache {
    disk_cache_size = 1000
    mounted_file_path = "$vt/cache/"
    flush_mem_threshold = 10
}
EOF
	mkdir -p "$vt/cache"
	(cd "$vt" && NANOMQ_PID_FILE="$vt/nanomq.pid" exec "$out/nanomq" start --conf "$vt/nanomq.conf" \
		>"$vt/stdout.log" 2>&1) &
	pid=$!
	attached=
	# NanoMQ writes some lines to the console although log.to = [file]: look in both
	for _ in $(seq 1 100); do # at most 10 s
		if cat "$vt/nanomq.log" "$vt/stdout.log" 2>/dev/null |
			grep -qE "nmq-outbox [0-9][^:]*: bridge verify -> |bridge \[verify\]: durable outbox"; then
			attached=1; break; fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	if [ -z "$attached" ]; then
		echo "$me: nanomq.log of the verification start ($vt):" >&2
		tail -n 30 "$vt/nanomq.log" "$vt/stdout.log" >&2 2>/dev/null || true
		die "a start with a bridge + cache config did not log an attached outbox (kept: $vt)"
	fi
	dbs=$(find "$vt/cache" -name '*.db' | tr '\n' ' ')
	[ -n "$dbs" ] || die "the outbox was reported attached but no database file is in $vt/cache"
	cat "$vt/nanomq.log" "$vt/stdout.log" 2>/dev/null |
		grep -hoE "(nmq-outbox [0-9][^:]*: bridge verify -> .*|bridge \[verify\]: durable outbox .*)" |
		sort -u | sed "s/^/$me: start: /"
	rm -rf "$vt"
fi

say "OK: $out/nanomq is NanoMQ ${ver:-?}${quic:+ (QUIC)} with nmq-outbox $libver (verified)"
files=()
for f in $got; do files+=("$out/$f"); done
size "${files[@]}" | sed 's/^/    /'
ls -l "${files[@]}" | sed 's/^/    /'
