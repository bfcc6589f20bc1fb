#!/usr/bin/env bash
# docker/build.sh - builds the container image of NanoMQ with the nmq-outbox bridge hooks from
# a NanoMQ source tree, through nanomq_patch/build.sh inside the image build (Dockerfile here).
#
#   nanomq_patch/docker/build.sh [--vendor] <nanomq-source-tree> <image-tag> [-- <build.sh options>]
#   nanomq_patch/docker/build.sh --print-engine   (only picks the engine as below, prints its name)
#
# e.g. nanomq_patch/docker/build.sh ~/src/nanomq nanomq-outbox:0.25.6
#      nanomq_patch/docker/build.sh ~/src/nanomq-e1966dd3 nanomq-outbox:0.25.5 -- --fix-sub0-adapter
#
# Environment:
#   BASE_IMAGE  the image of both stages (default debian:trixie-slim; its packaged Rust must be
#               >= 1.77, so Debian trixie or newer)
#   ENGINE      docker or podman, taken as is (default: the first of docker, podman whose engine
#               answers '<engine> info' within ENGINE_INFO_TIMEOUT seconds, default 20: a docker
#               CLI without a running daemon is passed over; the choice and why is printed)
#   JOBS        parallel build jobs inside the image build (default: nproc)
#   ENGINE_ARGS extra arguments for '<engine> build' (e.g. --network=host, --no-cache)
# --vendor: runs 'cargo vendor' on this machine and puts the crates into the build context, so
#   the image build needs no access to crates.io (only to the Debian archive).
set -euo pipefail
me=docker/build.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

# pick_engine: sets $engine to $ENGINE when set, else to the first of docker, podman whose
# 'info' answers in time; says which and why on stderr; returns 1 (naming both) when none does.
pick_engine() {
	local e out rc last why=
	if [ -n "${ENGINE:-}" ]; then
		engine=$ENGINE
		echo "$me: ENGINE=$ENGINE: using $engine" >&2
		return 0
	fi
	for e in docker podman; do
		if ! command -v "$e" >/dev/null 2>&1; then
			why+="$e: not found; "
			continue
		fi
		out=$(timeout "${ENGINE_INFO_TIMEOUT:-20}" "$e" info 2>&1 >/dev/null) && rc=0 || rc=$?
		if [ "$rc" -eq 0 ]; then
			engine=$e
			echo "$me: ${why}$e answers: using $e" >&2
			return 0
		fi
		last=$(tail -n 1 <<<"$out")
		if [ "$rc" -eq 124 ]; then
			why+="$e: '$e info' did not answer within ${ENGINE_INFO_TIMEOUT:-20} s; "
		elif [ "$e" = docker ]; then
			why+="docker: no daemon answers${last:+ ($last)}; "
		else
			why+="$e: '$e info' failed${last:+ ($last)}; "
		fi
	done
	echo "$me: neither docker nor podman answers: ${why%; } (start one, or set ENGINE)" >&2
	return 1
}

if [ "${1:-}" = --print-engine ]; then
	pick_engine || exit 2
	echo "$engine"
	exit 0
fi
vendor=
if [ "${1:-}" = --vendor ]; then vendor=1; shift; fi
[ $# -ge 2 ] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2; }
tree=$1 tag=$2; shift 2
[ "${1:-}" = -- ] && shift
build_sh_args=$*
[ -d "$tree" ] || { echo "$me: $tree: no such directory" >&2; exit 2; }
tree=$(cd "$tree" && pwd -P)
[ -f "$tree/nanomq/bridge.c" ] && [ -f "$tree/nng/src/mqtt/protocol/mqtt/mqtt_client.c" ] ||
	{ echo "$me: $tree is not a NanoMQ source tree with its NanoNNG sources in nng/" >&2; exit 2; }
for f in etc/nanomq.conf deploy/docker/docker-entrypoint.sh; do
	[ -f "$tree/$f" ] || { echo "$me: $tree/$f missing (the image takes NanoMQ's own)" >&2; exit 2; }
done
pick_engine || exit 2
base=${BASE_IMAGE:-debian:trixie-slim}

ctx=$(mktemp -d "${TMPDIR:-/tmp}/nmq-outbox-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/nmq-outbox" "$ctx/nanomq"
# This repository without build output; the git-tracked files when it is a checkout.
if git -C "$repo" rev-parse --show-toplevel >/dev/null 2>&1 &&
	[ "$(git -C "$repo" rev-parse --show-toplevel)" = "$repo" ]; then
	git -C "$repo" ls-files -z | (cd "$repo" && tar --null -T - -cf -) | tar -C "$ctx/nmq-outbox" -xf -
else
	tar -C "$repo" --exclude=./target --exclude=./.git -cf - . | tar -C "$ctx/nmq-outbox" -xf -
fi
# The NanoMQ tree, without a top-level build directory.
tar -C "$tree" --exclude=./build --exclude=.git -cf - . | tar -C "$ctx/nanomq" -xf -
cp "$here/Dockerfile" "$ctx/Dockerfile"
if [ -n "$vendor" ]; then
	mkdir -p "$ctx/nmq-outbox/.cargo"
	# (not -q: it would also suppress the source replacement printed for the config file)
	(cd "$ctx/nmq-outbox" && cargo vendor --locked vendor >.cargo/config.toml 2>"$ctx/vendor.log") ||
		{ cat "$ctx/vendor.log" >&2; echo "$me: cargo vendor failed" >&2; exit 1; }
	grep -q 'vendored-sources' "$ctx/nmq-outbox/.cargo/config.toml" ||
		{ echo "$me: cargo vendor printed no source replacement" >&2; exit 1; }
	echo "$me: crates vendored into the build context ($(du -sh "$ctx/nmq-outbox/vendor" | cut -f1))"
fi
echo "$me: context $(du -sh "$ctx" | cut -f1), base image $base, engine $engine"
# shellcheck disable=SC2086
"$engine" build ${ENGINE_ARGS:-} --build-arg BASE_IMAGE="$base" \
	--build-arg BUILD_SH_ARGS="$build_sh_args" --build-arg JOBS="${JOBS:-}" \
	-t "$tag" "$ctx"
echo "$me: built $tag"
banner=$("$engine" run --rm --entrypoint nanomq "$tag" 2>&1 || true)
if ! echo "$banner" | grep "nmq-outbox"; then
	case $banner in
	*"error setting rlimit"*)
		# the image is built; the engine cannot start a container with its default ulimits
		echo "$me: $tag is built, but $engine cannot start a container here: $banner" >&2
		echo "$me: the container ulimits exceed this host's; set them at most the host's" \
			"(ulimit -Hn: $(ulimit -Hn)), e.g. in /etc/containers/containers.conf:" \
			'[containers] default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]' \
			"(see nanomq_patch/README.md, \"The container image\"), then re-run" >&2
		exit 1 ;;
	esac
	echo "$me: the image's nanomq does not name nmq-outbox: $banner" >&2
	exit 1
fi
"$engine" image ls "$tag"
