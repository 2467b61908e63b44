#!/usr/bin/env bash
# setup.sh [--no-demo] — install everything stasis needs on a Debian 12 host.
#
# Run as root from a clone of the repo. Installs:
#   - runc, conmon, iptables, busybox-static, zstd, tar; for the tests iproute2,
#     util-linux, gcc, libc6-dev, podman, openssh-server (kept off: the tests run
#     their own sshd) and -client; go-md2man, bash-completion (Debian packages)
#   - CRIU >= 4.2 and checkpointctl: Debian's own criu if its candidate is
#     >= 4.2, else (Debian 12's 3.17 cannot dump on this kernel, and 13's 4.1.1
#     cannot dump TCP sockets on Linux >= 6.16) forky's criu and libraries
#     unpacked into a private prefix (/opt/stasis/criu, a link to
#     /opt/stasis/criu-VERSION), run through wrappers in /usr/local/sbin/criu
#     and /usr/local/bin/checkpointctl
#   - skopeo and docker-registry (scripts/setup/registry.sh; the registry
#     service Debian starts is disabled: the tests run their own)
#   - Node >= 22 (the package needs it; Debian 12 machines here have node 20)
#   - the repo's npm dependencies and build (dist/: the bundle, and the
#     executable compiled from it with Bun), the `stasis` command (that
#     executable, or bin/stasis under Node without it), man pages, bash and
#     zsh completion, and the default busybox rootfs
# then runs scripts/demo.sh unless --no-demo is given.
#
# Idempotent: every step first checks whether its result is already in place,
# so a second run on an installed machine changes nothing and takes seconds.
# The summary of what was installed / already present goes to stderr.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=1
for arg in "$@"; do
  case $arg in
    --no-demo) DEMO=0 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg (usage: setup.sh [--no-demo])" >&2; exit 2 ;;
  esac
done

# --- settings -------------------------------------------------------------
CRIU_ROOT=/opt/stasis
CRIU_PREFIX=$CRIU_ROOT/criu             # link to criu-VERSION: the suite's CRIU + its libraries
CRIU_WRAPPER=/usr/local/sbin/criu       # /usr/local/sbin precedes /usr/sbin on PATH
CHECKPOINTCTL_WRAPPER=/usr/local/bin/checkpointctl
# CRIU 4.1.1 (Debian 13) cannot dump any TCP or UDP socket on Linux >= 6.16
# ("Can't get 1:16 opt"); 4.2 can. Debian 12 has 3.17, so the private prefix
# takes criu from forky (Debian's testing), pinned low.
CRIU_MIN=4.2
CRIU_SUITE=${STASIS_CRIU_SUITE:-forky}
CRIU_VERSION=${STASIS_CRIU_VERSION:-4.2.1-1}
NODE_PREFIX=/opt/stasis/node
NODE_MIN_MAJOR=22
ROOTFS_DIR=/var/lib/stasis/rootfs/busybox
MAN_DIR=/usr/local/share/man/man1
BASH_COMPLETION=/etc/bash_completion.d/stasis
ZSH_COMPLETION=/usr/local/share/zsh/site-functions/_stasis
# runc, conmon, iptables (CRIU locks a container's network with it),
# busybox-static (the default rootfs, setup's CRIU test), zstd and tar
# (archives); for the tests: iproute2 (ip, ss), util-linux (nsenter, flock),
# gcc and libc6-dev (small C programs), podman (interop), openssh-server and
# -client (migrate over ssh); go-md2man (man pages); bash-completion; GNU time
# (bench/bench.mjs: the exit hook's peak memory).
APT_PACKAGES=(runc conmon iptables busybox-static zstd tar iproute2 util-linux socat gcc libc6-dev
  podman openssh-client openssh-server go-md2man bash-completion time)

# Our own installs live in /usr/local; make sure they win over /usr (root's
# usual PATH already has this order, but CI or sudo may not).
export PATH="/usr/local/sbin:/usr/local/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

# --- helpers --------------------------------------------------------------
SUMMARY=()
note() { SUMMARY+=("$1"); }
log() { echo "setup: $*" >&2; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (it installs packages and writes to /usr/local, /opt, /var/lib)"

# One setup at a time on a machine (test runs call it too). flock -o holds the
# lock in flock's own process, so nothing this script starts inherits it.
if [[ -z ${STASIS_SETUP_LOCKED:-} ]]; then
  export STASIS_SETUP_LOCKED=1
  mkdir -p /run/lock
  exec flock -o -w 1800 /run/lock/stasis-setup.lock bash "${BASH_SOURCE[0]}" "$@"
fi

# The parts, in order: each is a file of its own in scripts/setup/, sourced
# here so that it shares the settings and helpers above.
for part in lib packages criu-check criu-prefix criu node build install; do
  # shellcheck source=/dev/null
  source "$REPO/scripts/setup/$part.sh"
done

# --- summary --------------------------------------------------------------
{
  echo "stasis setup summary:"
  for line in "${SUMMARY[@]}"; do echo "  - $line"; done
} >&2

((build_ok)) || die "the build failed (see above); not running the demo"

if ((DEMO)); then
  bash "$REPO/scripts/demo.sh"
fi
