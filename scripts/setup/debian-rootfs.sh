#!/usr/bin/env bash
# debian-rootfs.sh [--print] — build the Debian 12 root filesystem the
# integration tests run real services in (test/integration/debian-services),
# from Debian's own packages, and cache it.
#
# One tree holds postgresql (15), nginx and redis-server, installed by
# `mmdebstrap --variant=apt --include=...  bookworm`: their maintainer scripts
# ran as Debian runs them, so the users (postgres, redis, www-data), Debian's
# nginx.conf, postgresql's 15/main cluster configuration and redis.conf are
# the packages' own. The tests use it read-only as a `--rootfs` base.
#
# Cached under /var/cache/stasis/rootfs/debian-<key>, where <key> is a hash of
# the suite, variant and package list: a second run finds the tree and takes
# well under a second; changing the package list builds a new tree. The
# build goes into a temporary sibling and is renamed into place, so an
# interrupted run leaves no half-made tree that a later run would trust.
# A link /var/cache/stasis/rootfs/debian points at the current tree (what the
# tests look for; STASIS_DEBIAN_ROOTFS overrides it there).
#
# --print: print the tree's path (building it first if needed) on stdout.
#
# Needs the Debian mirror configured on the host (deb.debian.org) and
# installs mmdebstrap with apt when it is missing. A fresh build takes a few
# minutes (download + unpack of ~90 packages); the summary goes to stderr.
set -euo pipefail

PRINT=0
for arg in "$@"; do
  case $arg in
    --print) PRINT=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "debian-rootfs.sh: unknown argument: $arg (usage: debian-rootfs.sh [--print])" >&2; exit 2 ;;
  esac
done

SUITE=bookworm
VARIANT=apt
MIRROR=${STASIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# procps: ps/pgrep in the container, for the tests' own checks.
PACKAGES=(postgresql nginx redis-server procps)
CACHE=/var/cache/stasis/rootfs
# Bumped when the steps after mmdebstrap change, so that a cached tree made
# by older steps is not used.
RECIPE=2

key=$(printf '%s\n' "$RECIPE" "$SUITE" "$VARIANT" "${PACKAGES[@]}" | sha256sum | cut -c1-12)
tree=$CACHE/debian-$key
link=$CACHE/debian

finish() {
  # The link the tests use; replaced atomically (ln -sfn + mv -T).
  if [[ "$(readlink "$link" 2>/dev/null)" != "debian-$key" ]]; then
    ln -sfn "debian-$key" "$link.tmp.$$" && mv -T "$link.tmp.$$" "$link"
  fi
  # Trees of older recipes or package lists: nothing uses them any more.
  for old in "$CACHE"/debian-*; do
    [[ $old == "$tree" || -L $old || ! -d $old ]] || rm -rf "$old"
  done
  if ((PRINT)); then echo "$tree"; fi
}

if [[ -d $tree/etc ]]; then  # renamed into place only once complete
  echo "debian-rootfs: $tree already built" >&2
  finish
  exit 0
fi

[[ $(id -u) -eq 0 ]] || { echo "debian-rootfs.sh: must run as root (mmdebstrap's root mode)" >&2; exit 1; }
if ! command -v mmdebstrap >/dev/null 2>&1; then
  echo "debian-rootfs: installing mmdebstrap" >&2
  apt-get -o DPkg::Lock::Timeout=900 install -y mmdebstrap >&2 \
    || { apt-get update >&2 && apt-get -o DPkg::Lock::Timeout=900 install -y mmdebstrap >&2; }
fi

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.debian-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
echo "debian-rootfs: building $tree (${PACKAGES[*]}) from $MIRROR" >&2
# mmdebstrap wants an empty or missing target: build into tmp/root.
includes=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --quiet --variant="$VARIANT" --include="$includes" \
  "$SUITE" "$tmp/root" "$MIRROR" >&2
# What a booted Debian has but a container's init does not make: the
# run-time folders systemd-tmpfiles makes from the packages' tmpfiles.d
# ("d PATH MODE USER GROUP" lines: /run/postgresql) and the ones their units
# ask systemd for (RuntimeDirectory=: /run/redis; nginx needs none). Owners
# are the tree's own users, so chown runs in the tree (chroot).
{
  cat "$tmp/root"/usr/lib/tmpfiles.d/*.conf 2>/dev/null | awk '$1 == "d" && $2 ~ /^\/run\// {print $2, $3, $4, $5}'
  echo "/run/redis 2755 redis redis"
} | while read -r path mode user group; do
  chroot "$tmp/root" sh -c 'mkdir -p "$1" && chown "$3:$4" "$1" && chmod "$2" "$1"' sh "$path" "$mode" "$user" "$group"
done
# Drop the downloaded .debs and apt lists: the tests never run apt.
rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"* 2>/dev/null || true
mv -T "$tmp/root" "$tree"
rm -rf "$tmp"
trap - EXIT
echo "debian-rootfs: built $tree in $((SECONDS - start)) s" >&2
finish
