#!/bin/sh
# apply.sh - applies the nmq-outbox hooks to a NanoMQ source tree whose nng/ directory holds
# the NanoNNG sources (git clone with its submodule, or a release tarball), and copies the
# CMake glue and the C glue. It patches sources only; nanomq_patch/build.sh does the whole build.
#
# Per NanoMQ line three patches: nanomq-<v>.patch (NanoMQ), nanonng-<v>.patch (NanoNNG) and
# nanonng-<v>-receive-quota.patch, an upstream bug fix of NanoNNG kept apart from the hooks
# (MQTT 5 publishers' receive quota, README "N11"); each applies on its own.
#
# The C glue (nanomq_patch/glue/) is the hooks' code that is the same on every NanoMQ line,
# written once: each file is copied to the same path in the tree (glue/nanomq/x.c ->
# <tree>/nanomq/x.c, glue/nng/... -> <tree>/nng/...), where the patched file includes it. The
# per-line patches hold only call sites and the #include lines.
#
#   nanomq_patch/apply.sh <nanomq-tree> [0.25.6|0.24.6]     (default: try 0.25.6, then 0.24.6)
#   nanomq_patch/apply.sh --check <nanomq-tree> [version]   dry run: what would be done
#
# Works wherever the tree is: a git clone, a tarball with no .git, or a tree unpacked inside
# another git work tree (git apply is kept from discovering that outer repository, which would
# make it skip every file and still exit 0). Idempotent: a tree that already carries the hooks
# is reported as such, exit 0. When a patch does not fit, every hunk that does not fit is named
# (file, hunk number, its @@ header). Exit codes: 0 applied or already applied, 1 no patch pair
# fits, 2 usage or not a NanoMQ tree.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
check=
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: apply.sh [--check] <nanomq-tree> [0.25.6|0.24.6]" >&2; exit 2; }
command -v git >/dev/null 2>&1 || { echo "apply.sh: git is needed (git apply), not found" >&2; exit 2; }
[ -d "$1" ] || { echo "apply.sh: $1: no such directory" >&2; exit 2; }
tree=$(cd "$1" && pwd -P)
[ -f "$tree/nanomq/bridge.c" ] && [ -f "$tree/nng/src/mqtt/protocol/mqtt/mqtt_client.c" ] || {
	echo "apply.sh: $tree is not a NanoMQ tree with its NanoNNG sources in nng/" >&2
	echo "apply.sh: (a git clone needs 'git submodule update --init nng')" >&2
	exit 2
}
versions=${2:-0.25.6 0.24.6}
for v in $versions; do
	[ -f "$here/nanomq-$v.patch" ] || { echo "apply.sh: no patch for version $v (have: 0.25.6 0.24.6)" >&2; exit 2; }
done

# git apply in <dir>, never looking above <ceiling> for a repository: in a tarball inside
# another work tree it then works like patch(1) on the files under <dir>; in a clone (or the nng
# submodule) it finds that clone's own .git in <dir> itself.
gapply() { # <dir> <ceiling> <git apply args...>
	_d=$1 _c=$2; shift 2
	(cd "$_d" && GIT_CEILING_DIRECTORIES=$_c git apply "$@")
}
tree_up=$(dirname "$tree")
# state <dir> <ceiling> <patch>: prints fits | applied | misfit
state() {
	if gapply "$1" "$2" --check "$3" 2>/dev/null; then echo fits
	elif gapply "$1" "$2" --check -R "$3" 2>/dev/null; then echo applied
	else echo misfit; fi
}

# Names every hunk of <patch> that does not fit the files under <dir>: the patch is tried with
# --reject on a scratch copy of the files it touches (the tree itself is not changed).
diagnose() { # <dir> <patch> <label>
	_tmp=$(mktemp -d)
	sed -n 's|^diff --git a/\([^ ]*\) b/.*|\1|p' "$2" | while read -r f; do
		if [ -f "$1/$f" ]; then
			mkdir -p "$_tmp/$(dirname "$f")" && cp "$1/$f" "$_tmp/$f"
		else
			echo "apply.sh:   $3: $f: file missing" >&2
		fi
	done
	(cd "$_tmp" && GIT_CEILING_DIRECTORIES=$(dirname "$_tmp") git apply --reject "$2" >/dev/null 2>&1) || true
	find "$_tmp" -name '*.rej' | sort | while read -r rej; do
		f=${rej#"$_tmp"/}; f=${f%.rej}
		# the .rej holds the rejected hunks; their numbers come from the patch's own order
		grep '^@@' "$rej" | while read -r hdr; do
			n=$(awk -v f="$f" -v h="$hdr" '
				/^diff --git / { in_f = ($3 == "a/" f) ; k = 0; next }
				in_f && /^@@/ { k++; if ($0 == h) { print k; exit } }' "$2")
			echo "apply.sh:   $3: $f: hunk #${n:-?} does not fit: $hdr" >&2
		done
	done
	rm -rf "$_tmp"
}

for v in $versions; do
	mq=$here/nanomq-$v.patch
	nn=$here/nanonng-$v.patch
	nq=$here/nanonng-$v-receive-quota.patch
	s_mq=$(state "$tree" "$tree_up" "$mq")
	s_nn=$(state "$tree/nng" "$tree" "$nn")
	s_nq=applied
	[ -f "$nq" ] && s_nq=$(state "$tree/nng" "$tree" "$nq")
	[ "$s_mq" != misfit ] && [ "$s_nn" != misfit ] && [ "$s_nq" != misfit ] || continue
	set -- "nanomq:$tree:$tree_up:$mq:$s_mq" "nanonng:$tree/nng:$tree:$nn:$s_nn"
	[ -f "$nq" ] && set -- "$@" "receive-quota:$tree/nng:$tree:$nq:$s_nq"
	for p in "$@"; do
		IFS=: read -r what dir ceil patch st <<EOF
$p
EOF
		name=$(basename "$patch")
		if [ "$st" = applied ]; then
			echo "apply.sh: $name: already applied to $dir"
		elif [ -n "$check" ]; then
			echo "apply.sh: $name: would apply to $dir"
		else
			# --verbose: git names every file it patches, so a skipped file cannot go unseen
			out=$(gapply "$dir" "$ceil" --verbose "$patch" 2>&1) || {
				echo "$out" >&2; echo "apply.sh: $name: git apply failed in $dir" >&2; exit 1; }
			if echo "$out" | grep -q '^Skipped patch'; then
				echo "$out" >&2; echo "apply.sh: $name: git apply skipped files in $dir" >&2; exit 1
			fi
			echo "apply.sh: $name: applied to $dir ($(echo "$out" | grep -c '^Applied patch') files)"
		fi
	done
	if [ -n "$check" ]; then
		echo "apply.sh: would copy cmake/NmqOutbox.cmake to $tree/cmake/"
	elif ! cmp -s "$here/cmake/NmqOutbox.cmake" "$tree/cmake/NmqOutbox.cmake"; then
		cp "$here/cmake/NmqOutbox.cmake" "$tree/cmake/NmqOutbox.cmake"
		echo "apply.sh: copied cmake/NmqOutbox.cmake to $tree/cmake/"
	fi
	if [ -d "$here/glue" ]; then
		(cd "$here/glue" && find . -type f | sort) | while read -r g; do
			g=${g#./}
			if [ -n "$check" ]; then
				echo "apply.sh: would copy glue/$g to $tree/$g"
			elif ! cmp -s "$here/glue/$g" "$tree/$g"; then
				mkdir -p "$(dirname "$tree/$g")"
				cp "$here/glue/$g" "$tree/$g"
				echo "apply.sh: copied glue/$g to $tree/$g"
			fi
		done
	fi
	if [ -n "$check" ]; then verb="would carry"; else verb=carries; fi
	echo "apply.sh: $tree $verb the nmq-outbox hooks for NanoMQ $v"
	exit 0
done

echo "apply.sh: no patch pair fits $tree" >&2
for v in $versions; do
	for p in "nanomq-$v.patch:$tree:$tree_up" "nanonng-$v.patch:$tree/nng:$tree" \
		"nanonng-$v-receive-quota.patch:$tree/nng:$tree"; do
		IFS=: read -r name dir ceil <<EOF
$p
EOF
		[ -f "$here/$name" ] || continue
		st=$(state "$dir" "$ceil" "$here/$name")
		case $st in
		fits) echo "apply.sh:   $name: fits $dir" >&2 ;;
		applied) echo "apply.sh:   $name: already applied to $dir" >&2 ;;
		*) diagnose "$dir" "$here/$name" "$name" ;;
		esac
	done
done
exit 1
