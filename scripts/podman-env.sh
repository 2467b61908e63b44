#!/usr/bin/env bash
# podman-env.sh DIR [DRIVER] — a private podman configuration under DIR, for tests.
#
# Writes DIR/containers.conf, DIR/storage.conf and DIR/registries.conf, with every
# place podman keeps state inside DIR (graphroot, runroot, tmp_dir, file locks, the
# events log, network configs, volumes), so podman runs beside the host's config
# and changes nothing outside DIR. DRIVER is the storage driver: vfs (the default:
# works on any filesystem) or overlay.
#
# Sourced (`source scripts/podman-env.sh DIR`), it exports CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF; run, it prints them as
# NAME=VALUE lines, for `export $(scripts/podman-env.sh DIR)` or
# `env $(...) podman ...`, or for a test to add to podman's environment. DIR must
# be an absolute path without spaces or shell quoting characters. Rerunning it on
# the same DIR rewrites the files and keeps the storage.
#
# What the configuration sets, and why:
#   netns = "none"            no network setup at all (no CNI, no iptables rules);
#                             podman checkpoints such a container like any other
#   cgroup_manager = cgroupfs no systemd on these machines (or a systemd to leave alone)
#   events_logger = "file"    no journald; the log is DIR/events.log
#   runtime = "runc"          Debian 12's podman would look for crun first
#   default_ulimits           nofile pinned to this shell's hard limit, nproc to it
#                             or 32768 if lower: as root podman asks for 1048576 of
#                             each, and root here lacks CAP_SYS_RESOURCE, so runc
#                             fails to raise them ("error setting rlimit type 7").
#                             podman 4.3.1 runs itself with an nproc hard limit of
#                             32768 (measured), so the shell's 96363 fails as well
#   lock_type = "file"        locks in DIR/tmp/locks, not the one /dev/shm/libpod_lock
#                             segment every root podman on the host would share
#   registries.conf           no search registries: an unqualified name is never
#                             looked up on the network
#
# Verified by hand on Debian 12 (podman 4.3.1, runc 1.1.5, conmon 2.1.6, CRIU 4.2.1
# on PATH as /usr/local/sbin/criu, kernel 6.18, cgroup v1), as root, with
# DIR=$(mktemp -d), both drivers, nothing written to /var/lib/containers/storage,
# /run/containers or /run/libpod:
#   export $(scripts/podman-env.sh "$DIR")
#   tar -C /var/lib/stasis/rootfs/busybox -c . | podman import - localhost/busybox
#   podman run -d --name c1 localhost/busybox sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 1; done'
#   podman container checkpoint --export "$DIR/c1.tar.gz" c1   (c1 stops; the archive
#                                        is zstd whatever its name: podman's default)
#   podman container restore --import "$DIR/c1.tar.gz" --name c2  (the counter goes on)
#   podman container checkpoint --create-image localhost/c2-ckpt c2  (an image in DIR)
#   podman rm -f c2; podman container restore localhost/c2-ckpt   (c2 again, counting)
#   podman rm -f -a; podman rmi -a -f
# `podman run --rootfs R` runs and `checkpoint --export`s, but podman writes into R
# (etc/mtab, run/.containerenv: never give it /var/lib/stasis/rootfs/busybox itself;
# a copy, or R:O for an overlay, which leaves R as it was), and `restore --import`
# of such a checkpoint fails ("repository name must have at least one component"):
# tests should use the imported image.

podman_env_main() {
  local dir=${1:-} driver=${2:-vfs}
  if [[ $dir != /* || $dir =~ [[:space:]\'\"\\\$\`] ]]; then
    echo "podman-env.sh: usage: podman-env.sh DIR [vfs|overlay] (DIR absolute, without spaces or quotes)" >&2
    return 2
  fi
  case $driver in
    vfs | overlay) ;;
    *) echo "podman-env.sh: unknown storage driver: $driver (vfs or overlay)" >&2; return 2 ;;
  esac
  dir=${dir%/}
  mkdir -p "$dir/storage" "$dir/run" "$dir/tmp" "$dir/networks" || return 1

  local nofile nproc ulimits=()
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  if [[ $nproc == unlimited ]] || ((nproc > 32768)); then nproc=32768; fi
  [[ $nofile == unlimited ]] || ulimits+=("\"nofile=$nofile:$nofile\"")
  ulimits+=("\"nproc=$nproc:$nproc\"")
  local IFS=,

  cat >"$dir/containers.conf" <<EOF || return 1
# Written by stasis scripts/podman-env.sh: a private podman configuration.
[containers]
netns = "none"
default_ulimits = [${ulimits[*]}]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
runtime = "runc"
lock_type = "file"
tmp_dir = "$dir/tmp"
static_dir = "$dir/storage/libpod"
volume_path = "$dir/storage/volumes"

[network]
network_config_dir = "$dir/networks"
EOF

  cat >"$dir/storage.conf" <<EOF || return 1
# Written by stasis scripts/podman-env.sh: private image and container storage.
[storage]
driver = "$driver"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF

  cat >"$dir/registries.conf" <<EOF || return 1
# Written by stasis scripts/podman-env.sh: no registry is ever searched.
unqualified-search-registries = []
EOF

  PODMAN_ENV_LINES="CONTAINERS_CONF=$dir/containers.conf
CONTAINERS_STORAGE_CONF=$dir/storage.conf
CONTAINERS_REGISTRIES_CONF=$dir/registries.conf"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  podman_env_main "$@"
  echo "$PODMAN_ENV_LINES"
else
  # Sourced: export the variables into the caller's shell (whose options
  # this leaves as they were); the status says whether it worked.
  if podman_env_main "$@"; then
    while IFS= read -r podman_env_line; do export "${podman_env_line?}"; done <<<"$PODMAN_ENV_LINES"
    unset -f podman_env_main
    unset PODMAN_ENV_LINES podman_env_line
  else
    unset -f podman_env_main
    false
  fi
fi
