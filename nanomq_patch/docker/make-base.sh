#!/bin/sh
# make-base.sh - makes a slim Debian base image locally, for machines that reach Debian's
# archive but no image registry: debootstrap (minbase) + the trimming of the official -slim
# images (no docs, man pages, locales, apt lists) + '<engine> import'. Needs root, debootstrap.
#
#   nanomq_patch/docker/make-base.sh [suite] [image-tag] [mirror]
#   default: trixie localhost/debian:trixie-slim http://deb.debian.org/debian
# then: BASE_IMAGE=localhost/debian:trixie-slim nanomq_patch/docker/build.sh <tree> <tag>
set -eu
suite=${1:-trixie}
tag=${2:-localhost/debian:$suite-slim}
mirror=${3:-http://deb.debian.org/debian}
engine=${ENGINE:-}
if [ -z "$engine" ]; then
	if command -v podman >/dev/null 2>&1; then engine=podman
	elif command -v docker >/dev/null 2>&1; then engine=docker
	else echo "make-base.sh: neither podman nor docker found (set ENGINE)" >&2; exit 2; fi
fi
command -v debootstrap >/dev/null 2>&1 || { echo "make-base.sh: debootstrap missing (apt-get install debootstrap)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "make-base.sh: debootstrap needs root" >&2; exit 2; }
root=$(mktemp -d "${TMPDIR:-/tmp}/nmq-base.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
debootstrap --variant=minbase "$suite" "$root" "$mirror"
# the trimming of the official -slim images, kept for later apt-get installs too
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
	"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d"
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/99norecommends"
tar -C "$root" -c . | "$engine" import --change 'CMD ["/bin/bash"]' - "$tag"
echo "make-base.sh: $tag ($suite from $mirror)"
