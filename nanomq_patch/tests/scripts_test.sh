#!/usr/bin/env bash
# Checks of the nanomq_patch scripts that need no NanoMQ source and no NanoMQ build (run by
# scripts/test.sh): syntax of every script; apply.sh on tiny synthetic trees (inside another git
# work tree, no .git, as its own repository, already patched, misfit, the second version);
# build.sh's tree and prerequisite checks, which come before any build; docker/build.sh's
# choice of engine (fake docker and podman commands: nothing is built); make-archive.sh
# honouring CARGO_TARGET_DIR (with the library archive when one is given as $1).
# Last line: "nanomq_patch_scripts: N passed, M failed".
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lib_archive=${1:-}
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { # <description> <command...>: passes when the command succeeds
	local d=$1; shift
	if "$@"; then ok "$d"; else bad "$d"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t

# --- syntax ---------------------------------------------------------------------------------
for f in build.sh docker/build.sh tests/scripts_test.sh; do
	check "bash -n $f" bash -n "$here/$f"
done
for f in apply.sh make-archive.sh; do
	check "sh -n $f" sh -n "$here/$f"
done
# A pipe into 'grep -q' under pipefail fails when grep exits at its match before the writer
# has written everything (SIGPIPE): build.sh once reported a verified build as "does not name
# nmq-outbox" that way, on a loaded machine. Such checks read here-strings or files instead.
for f in build.sh docker/build.sh ../scripts/test.sh ../scripts/demo.sh; do
	check "$f: no pipe into grep -q (pipefail)" bash -c '! grep -nE "\|[[:space:]]*grep -[a-zA-Z]*q" "$1"' _ "$here/$f"
done
for f in scenarios/run.py scenarios/throughput.py scenarios/bench.py; do
	check "python3 parses $f" python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$here/$f"
done

# --- a synthetic NanoMQ tree and patches ----------------------------------------------------
# Files with the paths apply.sh looks at; the patches change lines 5 and 25 of bridge.c
# (two hunks) and line 3 of mqtt_client.c. The "0.24.6" pair expects other context, so that a
# tree fitting only it exercises the version fallback.
mk_tree() { # <dir> [variant]
	mkdir -p "$1/nanomq" "$1/nng/src/mqtt/protocol/mqtt" "$1/cmake"
	seq 1 30 | sed "s/^/${2:-line} /" >"$1/nanomq/bridge.c"
	seq 1 10 | sed "s/^/${2:-line} /" >"$1/nng/src/mqtt/protocol/mqtt/mqtt_client.c"
}
mk_patch() { # <out> <path> <orig> <new>
	{ echo "diff --git a/$2 b/$2"; diff -u --label "a/$2" --label "b/$2" "$3" "$4"; } >"$1"
}
pd=$tmp/nanomq_patch
mkdir -p "$pd/cmake"
cp "$here/apply.sh" "$pd/"
echo "# glue" >"$pd/cmake/NmqOutbox.cmake"
mkdir -p "$pd/glue/nanomq" "$pd/glue/nng/src/mqtt/protocol/mqtt"
echo "/* bridge glue */" >"$pd/glue/nanomq/nmq_outbox_glue_bridge.c"
echo "/* client glue */" >"$pd/glue/nng/src/mqtt/protocol/mqtt/nmq_outbox_glue_client.c"
mk_tree "$tmp/proto"
mk_tree "$tmp/proto24" old
for v in 0.25.6 0.24.6; do
	src=$tmp/proto; [ $v = 0.24.6 ] && src=$tmp/proto24
	sed 's/ 5$/ 5 hooked/; s/ 25$/ 25 hooked/' "$src/nanomq/bridge.c" >"$tmp/b.new"
	mk_patch "$pd/nanomq-$v.patch" nanomq/bridge.c "$src/nanomq/bridge.c" "$tmp/b.new"
	f=src/mqtt/protocol/mqtt/mqtt_client.c
	sed 's/ 3$/ 3 hooked/' "$src/nng/$f" >"$tmp/c.new"
	mk_patch "$pd/nanonng-$v.patch" "$f" "$src/nng/$f" "$tmp/c.new"
	# the upstream fix kept apart (receive quota): its own patch of another line
	sed 's/ 8$/ 8 fixed/' "$src/nng/$f" >"$tmp/q.new"
	mk_patch "$pd/nanonng-$v-receive-quota.patch" "$f" "$src/nng/$f" "$tmp/q.new"
done
sums() { find "$1" -type f ! -path '*/.git/*' | sort | xargs md5sum; }

# 1. a tarball unpacked inside another git work tree
mkdir -p "$tmp/outer" && git -C "$tmp/outer" init -q && touch "$tmp/outer/README" &&
	git -C "$tmp/outer" add README && git -C "$tmp/outer" commit -qm init
cp -a "$tmp/proto" "$tmp/outer/t"
out=$("$pd/apply.sh" "$tmp/outer/t" 2>&1); rc=$?
check "inside another work tree: exit 0" [ $rc -eq 0 ]
check "inside another work tree: bridge.c hunks applied" [ "$(grep -c hooked "$tmp/outer/t/nanomq/bridge.c")" = 2 ]
check "inside another work tree: mqtt_client.c applied" grep -q '3 hooked' "$tmp/outer/t/nng/src/mqtt/protocol/mqtt/mqtt_client.c"
check "inside another work tree: the receive-quota fix applied" grep -q '8 fixed' "$tmp/outer/t/nng/src/mqtt/protocol/mqtt/mqtt_client.c"
check "inside another work tree: glue copied" cmp -s "$pd/cmake/NmqOutbox.cmake" "$tmp/outer/t/cmake/NmqOutbox.cmake"
check "inside another work tree: names the version" grep -q 'hooks for NanoMQ 0.25.6' <<<"$out"
check "inside another work tree: C glue copied (nanomq)" cmp -s "$pd/glue/nanomq/nmq_outbox_glue_bridge.c" "$tmp/outer/t/nanomq/nmq_outbox_glue_bridge.c"
check "inside another work tree: C glue copied (nng)" cmp -s "$pd/glue/nng/src/mqtt/protocol/mqtt/nmq_outbox_glue_client.c" "$tmp/outer/t/nng/src/mqtt/protocol/mqtt/nmq_outbox_glue_client.c"
# 2. idempotent
before=$(sums "$tmp/outer/t")
out=$("$pd/apply.sh" "$tmp/outer/t" 2>&1); rc=$?
check "already patched: exit 0" [ $rc -eq 0 ]
check "already patched: says so" grep -q 'nanomq-0.25.6.patch: already applied' <<<"$out"
check "already patched: the fix too" grep -q 'nanonng-0.25.6-receive-quota.patch: already applied' <<<"$out"
check "already patched: tree unchanged" [ "$before" = "$(sums "$tmp/outer/t")" ]
# 3. --check changes nothing
cp -a "$tmp/proto" "$tmp/outer/c"
before=$(sums "$tmp/outer/c")
out=$("$pd/apply.sh" --check "$tmp/outer/c" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q 'would apply' <<<"$out"; then ok "--check: exit 0, would apply"; else bad "--check: exit 0, would apply"; fi
check "--check: tree unchanged" [ "$before" = "$(sums "$tmp/outer/c")" ]
check "--check: names the C glue" grep -q 'would copy glue/nanomq/nmq_outbox_glue_bridge.c' <<<"$out"
# 4. a misfit names file and hunk, changes nothing
cp -a "$tmp/proto" "$tmp/outer/m"
sed -i 's/^line 24$/line 24 changed upstream/' "$tmp/outer/m/nanomq/bridge.c"
before=$(sums "$tmp/outer/m")
out=$("$pd/apply.sh" "$tmp/outer/m" 2>&1); rc=$?
check "misfit: exit 1" [ $rc -eq 1 ]
check "misfit: names nanomq/bridge.c hunk #2" grep -q 'nanomq-0.25.6.patch: nanomq/bridge.c: hunk #2 does not fit: @@ -22' <<<"$out"
check "misfit: does not blame hunk #1" bash -c '! grep -q "hunk #1 does not fit" <<<"$1" ' _ "$(grep 0.25.6 <<<"$out")"
check "misfit: tree unchanged" [ "$before" = "$(sums "$tmp/outer/m")" ]
# 5. the second version
cp -a "$tmp/proto24" "$tmp/outer/v24"
out=$("$pd/apply.sh" "$tmp/outer/v24" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q 'hooks for NanoMQ 0.24.6' <<<"$out"; then ok "0.24.6 tree: exit 0, picks 0.24.6"; else bad "0.24.6 tree: exit 0, picks 0.24.6"; fi
# 6. a clone with its own .git and nng as a nested repository (submodule-like)
cp -a "$tmp/proto" "$tmp/outer/g"
git -C "$tmp/outer/g/nng" init -q && git -C "$tmp/outer/g/nng" add -A && git -C "$tmp/outer/g/nng" commit -qm nng
git -C "$tmp/outer/g" init -q && git -C "$tmp/outer/g" add nanomq cmake && git -C "$tmp/outer/g" commit -qm mq
out=$("$pd/apply.sh" "$tmp/outer/g" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q '3 hooked' "$tmp/outer/g/nng/src/mqtt/protocol/mqtt/mqtt_client.c" && [ "$(grep -c hooked "$tmp/outer/g/nanomq/bridge.c")" = 2 ]; then ok "own git repo + nested nng repo: applied"; else bad "own git repo + nested nng repo: applied"; fi
# 7. not a NanoMQ tree
mkdir -p "$tmp/empty"
"$pd/apply.sh" "$tmp/empty" >/dev/null 2>&1; rc=$?
check "not a NanoMQ tree: exit 2" [ $rc -eq 2 ]

# --- build.sh: checks that come before anything is built ------------------------------------
bt=$tmp/outer/bt
mk_tree "$bt"
echo 'cmake_minimum_required(VERSION 3.13)' >"$bt/CMakeLists.txt"
mkdir -p "$bt/nng/include/nng" "$bt/nng/src/supplemental/sqlite" "$bt/nanomq/include" \
	"$bt/nanomq/apps" "$bt/nng/include/nng/protocol/mqtt"
touch "$bt/nng/include/nng/nng.h"
printf '#define NANO_VER_MAJOR 0\n#define NANO_VER_MINOR 25\n#define NANO_VER_PATCH 6\n' >"$bt/nanomq/include/version.h"
out=$("$here/build.sh" "$bt" "$tmp/bout" 2>&1); rc=$?
check "build.sh: no sqlite3.c: exit 1" [ $rc -eq 1 ]
check "build.sh: no sqlite3.c: says so" grep -q 'sqlite3.c is missing' <<<"$out"
echo '/* amalgamation */' >"$bt/nng/src/supplemental/sqlite/sqlite3.c"
printf 'NNG_DECL nng_msg *nng_sub0_msg_adapter(\n    nng_msg *origin, conf_nng_sub_node *snode, char *default_topic);\n' \
	>"$bt/nng/include/nng/protocol/mqtt/mqtt_parser.h"
printf '\t\t\tmqtt_msg = nng_sub0_msg_adapter(msg, snode);\n' >"$bt/nanomq/apps/broker.c"
out=$("$here/build.sh" "$bt" "$tmp/bout" 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q 'nng_sub0_msg_adapter arity' <<<"$out"; then ok "build.sh: sub0 adapter arity mismatch reported, exit 1"; else bad "build.sh: sub0 adapter arity mismatch reported, exit 1"; fi
check "build.sh: broker.c untouched without --fix-sub0-adapter" grep -q 'adapter(msg, snode);' "$bt/nanomq/apps/broker.c"
printf '\t\t\tmqtt_msg = nng_sub0_msg_adapter(msg, snode, NULL);\n' >"$bt/nanomq/apps/broker.c"
# a PATH without cmake and ninja: the prerequisites step lists cmake
mkdir -p "$tmp/bin"
for d in /usr/local/bin /usr/bin /bin /usr/sbin /sbin; do
	[ -d "$d" ] || continue
	for f in "$d"/*; do
		n=${f##*/}
		case $n in cmake|ninja) continue ;; esac
		[ -e "$tmp/bin/$n" ] || ln -s "$f" "$tmp/bin/$n"
	done
done
cargo_bin=$(command -v cargo || true)
[ -n "$cargo_bin" ] && ln -sf "$cargo_bin" "$tmp/bin/cargo" && ln -sf "$(command -v rustc)" "$tmp/bin/rustc"
out=$(PATH=$tmp/bin "$here/build.sh" "$bt" "$tmp/bout" 2>&1); rc=$?
check "build.sh: missing cmake: exit 1" [ $rc -eq 1 ]
check "build.sh: missing cmake: named" grep -q 'missing: cmake (Debian/Ubuntu package: cmake)' <<<"$out"

# --- docker/build.sh: the engine is the first of docker, podman that answers 'info' ------------
# Fake docker and podman commands log each call to $calls: "nodaemon" fails 'info' as a
# docker CLI without a daemon does, "fails" fails it otherwise, "hangs" never answers, "ok"
# answers and, for the build below, fakes 'build', 'run' (the banner) and 'image ls'.
calls=$tmp/engine-calls
mk_engine() { # <dir> <name> <nodaemon|fails|hangs|ok>
	mkdir -p "$1"
	cat >"$1/$2" <<-EOF
	#!/bin/sh
	echo "$2 \$*" >>"$calls"
	case "$3 \$1" in
	"nodaemon info") echo "Client: fake $2"; echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2; exit 1 ;;
	"fails info") echo "Error: fake $2 cannot reach its service" >&2; exit 125 ;;
	"hangs info") exec sleep 30 ;;
	"ok info") echo "host: fake $2"; exit 0 ;;
	"ok run") echo "NanoMQ Broker with nmq-outbox (fake)"; exit 0 ;;
	"ok build"|"ok image") exit 0 ;;
	esac
	echo "fake $2: unexpected call: \$*" >&2; exit 3
	EOF
	chmod +x "$1/$2"
}
# a PATH with everything of this machine but docker and podman
mkdir -p "$tmp/noeng"
for d in /usr/local/bin /usr/bin /bin /usr/sbin /sbin; do
	[ -d "$d" ] || continue
	for f in "$d"/*; do
		n=${f##*/}
		case $n in docker|podman) continue ;; esac
		[ -e "$tmp/noeng/$n" ] || ln -s "$f" "$tmp/noeng/$n"
	done
done
pick() { # <docker kind|-> <podman kind|-> [VAR=value...]: runs --print-engine, sets out and rc
	local d=$tmp/eng-$1-$2
	rm -rf "$d" "$calls"
	mkdir -p "$d"
	[ "$1" = - ] || mk_engine "$d" docker "$1"
	[ "$2" = - ] || mk_engine "$d" podman "$2"
	shift 2
	out=$(env PATH="$d:$tmp/noeng" "$@" bash "$here/docker/build.sh" --print-engine 2>&1); rc=$?
}
# "check <description> eval '<a && b>'": the whole chain decides the check
last_is() { [ "$(tail -n 1 <<<"$out")" = "$1" ]; }
pick nodaemon ok
check "docker/build.sh: docker without daemon, podman answers: podman" eval '[ $rc -eq 0 ] && last_is podman'
check "docker/build.sh: says why: docker: no daemon answers; podman answers: using podman" grep -q 'docker: no daemon answers (Cannot connect to the Docker daemon.*); podman answers: using podman' <<<"$out"
pick ok ok
check "docker/build.sh: both answer: docker, podman not asked" eval '[ $rc -eq 0 ] && last_is docker && grep -q "docker answers: using docker" <<<"$out" && ! grep -q podman "$calls"'
pick nodaemon fails
check "docker/build.sh: neither answers: exit 2" [ $rc -eq 2 ]
check "docker/build.sh: neither answers: names both" grep -q "neither docker nor podman answers: docker: no daemon answers (Cannot connect.*); podman: 'podman info' failed (Error: fake podman cannot reach its service) (start one, or set ENGINE)" <<<"$out"
pick - -
check "docker/build.sh: neither found: exit 2, both named" eval '[ $rc -eq 2 ] && grep -q "docker: not found; podman: not found" <<<"$out"'
pick - ok
check "docker/build.sh: no docker CLI, podman answers: podman" eval '[ $rc -eq 0 ] && last_is podman && grep -q "docker: not found; podman answers: using podman" <<<"$out"'
pick hangs ok ENGINE_INFO_TIMEOUT=1
check "docker/build.sh: docker info hangs: bounded (ENGINE_INFO_TIMEOUT), podman" eval '[ $rc -eq 0 ] && last_is podman && grep -q "docker: .docker info. did not answer within 1 s; podman answers" <<<"$out"'
pick nodaemon ok ENGINE=docker
check "docker/build.sh: ENGINE taken as is, no engine asked" eval '[ $rc -eq 0 ] && last_is docker && [ ! -e "$calls" ]'
# the image build itself goes to the engine picked (fakes: nothing is built)
et=$tmp/engtree
mk_tree "$et"
mkdir -p "$et/etc" "$et/deploy/docker"
touch "$et/etc/nanomq.conf" "$et/deploy/docker/docker-entrypoint.sh"
pick nodaemon ok
out=$(PATH="$tmp/eng-nodaemon-ok:$tmp/noeng" bash "$here/docker/build.sh" "$et" fake:tag 2>&1); rc=$?
check "docker/build.sh: the build runs on the engine picked (podman build, run, image ls)" eval '[ $rc -eq 0 ] && grep -q "^podman build .*-t fake:tag" "$calls" && grep -q "^podman run --rm --entrypoint nanomq fake:tag" "$calls" && grep -q "^podman image ls fake:tag" "$calls" && ! grep -q "^docker build" "$calls"'
[ $rc -eq 0 ] || echo "$out"

# --- make-archive.sh honours CARGO_TARGET_DIR -----------------------------------------------
out=$(CARGO_TARGET_DIR=$tmp/tdir "$here/make-archive.sh" 2>&1); rc=$?
if [ $rc -eq 2 ] && grep -q "$tmp/tdir/edge/libnmq_outbox.a" <<<"$out"; then ok "make-archive.sh: looks in \$CARGO_TARGET_DIR/edge"; else bad "make-archive.sh: looks in \$CARGO_TARGET_DIR/edge"; fi
if [ -n "$lib_archive" ]; then
	mkdir -p "$tmp/tdir/edge"
	ln -s "$(cd "$(dirname "$lib_archive")" && pwd)/$(basename "$lib_archive")" "$tmp/tdir/edge/libnmq_outbox.a"
	out=$(cd "$tmp" && CARGO_TARGET_DIR=tdir "$here/make-archive.sh" 2>&1); rc=$?
	if [ $rc -eq 0 ] && [ -f "$tmp/tdir/nanomq/libnmq_outbox_nanomq.a" ]; then ok "make-archive.sh: relative CARGO_TARGET_DIR, archive in <target>/nanomq"; else bad "make-archive.sh: relative CARGO_TARGET_DIR, archive in <target>/nanomq"; fi
	check "make-archive.sh: no global sqlite3_* symbol" grep -q ', 0 of them global' <<<"$out"
	[ $rc -eq 0 ] || echo "$out"
fi

# --- suite.sh: where no NanoMQ source can be had, and the hooks' warnings check -------------
check "bash -n suite.sh" bash -n "$here/suite.sh"
for f in scenarios/suite.py scenarios/sigstress.py tests/hook_warnings.py; do
	check "python3 parses $f" python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$here/$f"
done
if [ "$(id -u)" -eq 0 ]; then
	nosrc=(env -u NMQ_NANOMQ_SRC NMQ_UPSTREAM_DIR="$tmp/none" NMQ_SUITE_NO_CLONE=1
		CARGO_TARGET_DIR="$tmp/suite-target")
	out=$("${nosrc[@]}" CI= bash "$here/suite.sh" 2>&1); rc=$?
	if [ $rc -eq 0 ] && [ "$(grep -c '^nanomq suite: SKIPPED' <<<"$out")" = 1 ]; then ok "suite.sh without a source: one SKIPPED line, exit 0"; else bad "suite.sh without a source: one SKIPPED line, exit 0"; fi
	out=$("${nosrc[@]}" CI=true bash "$here/suite.sh" 2>&1); rc=$?
	if [ $rc -ne 0 ] && grep -q 'CI runs the real-NanoMQ suite' <<<"$out"; then ok "suite.sh without a source under CI=true: a failure"; else bad "suite.sh without a source under CI=true: a failure"; fi
	out=$(NMQ_NANOMQ_SRC="$tmp/no-such-tree" CARGO_TARGET_DIR="$tmp/suite-target" bash "$here/suite.sh" 2>&1); rc=$?
	if [ $rc -ne 0 ] && grep -q "no-such-tree is neither a tree nor a tarball" <<<"$out"; then ok "suite.sh: NMQ_NANOMQ_SRC that does not exist: a failure naming it"; else bad "suite.sh: NMQ_NANOMQ_SRC that does not exist: a failure naming it"; fi
fi
# hook_warnings.py: a warning on a line the hooks added fails; one on NanoMQ's own line does not
hw=$tmp/hw
mkdir -p "$hw/pristine/nanomq" "$hw/patched/nanomq" "$hw/build"
printf 'int f(int a) {\n\tint unused_theirs;\n\treturn a;\n}\n' >"$hw/pristine/nanomq/b.c"
# the hooks add a clean function: the file is touched, NanoMQ's own line keeps its warning
{ cat "$hw/pristine/nanomq/b.c"; printf 'int g(void) {\n\treturn 0;\n}\n'; } >"$hw/patched/nanomq/b.c"
printf '[{"directory": "%s", "file": "%s", "arguments": ["cc", "-c", "%s", "-o", "b.o"]}]\n' \
	"$hw/build" "$hw/patched/nanomq/b.c" "$hw/patched/nanomq/b.c" >"$hw/build/compile_commands.json"
out=$(python3 "$here/tests/hook_warnings.py" "$hw/pristine" "$hw/patched" "$hw/build" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q '1 passed, 0 failed' <<<"$out"; then ok "hook_warnings.py: NanoMQ's own warning is not ours"; else bad "hook_warnings.py: NanoMQ's own warning is not ours"; fi
sed -i 's/^\treturn a;/\tint unused_ours;\n\treturn a;/' "$hw/patched/nanomq/b.c"
out=$(python3 "$here/tests/hook_warnings.py" "$hw/pristine" "$hw/patched" "$hw/build" 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "nanomq/b.c:3: unused variable .unused_ours" <<<"$out" && ! grep -q unused_theirs <<<"$out"; then ok "hook_warnings.py: a warning on an added line fails"; else bad "hook_warnings.py: a warning on an added line fails"; fi

# --- the bridge keys of the hooks: both lines read and pass each one, README documents it -----
# The hooks' code of a line: its patches' added lines and the C glue (written once, every line).
for v in 0.25.6 0.24.6; do
	{ cat "$here/nanomq-$v.patch" "$here/nanonng-$v.patch"
	  [ -d "$here/glue" ] && find "$here/glue" -type f -name '*.c' -exec sed 's/^/+/' {} +
	} >"$tmp/hooks-$v"
done
for key in connect_timeout outbox_window outbox_dead_letter_limit outbox_max_attempts outbox_backoff; do
	for v in 0.25.6 0.24.6; do
		check "the $v hooks read $key" grep -q "^+.*\"$key\"" "$tmp/hooks-$v"
	done
	check "README documents bridges.mqtt.<name>.$key" grep -q "^| \`bridges.mqtt.<name>.$key\`" "$here/README.md"
done
for field in dead_letter_limit max_attempts backoff_ms; do
	for v in 0.25.6 0.24.6; do
		check "the $v hooks pass $field to the outbox" grep -q "^+.*cfg\.$field *= node->outbox_$field;" "$tmp/hooks-$v"
	done
done
# durations are parsed by the library (checked arithmetic), not by a strtoull of the hooks
for v in 0.25.6 0.24.6; do
	check "the $v hooks parse durations with nmq_outbox_parse_duration_ms" grep -q '^+.*nmq_outbox_parse_duration_ms(' "$tmp/hooks-$v"
	check "the $v hooks have no strtoull of their own" bash -c '! grep -q "^+.*strtoull" "$1"' _ "$tmp/hooks-$v"
done

echo "nanomq_patch_scripts: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
