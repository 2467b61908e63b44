#!/bin/bash
# Checkpoint and restore in place, timed in interleaved pairs (the order
# alternating), for what one change buys on a busy machine:
#
#   sudo bench/cr-pairs.sh [-n N] BIN_A BIN_B      two stasis executables
#   sudo bench/cr-pairs.sh [-n N] --cache BIN      one, CRIU's kernel cache off / on
#
# --cache unmounts /run/criu.kdat for the "off" samples and bind-mounts a copy
# of it (kept in a tmpfs of this script's) for the "on" ones; give it a stasis
# that does not make the cache itself (before 35354f7), or it puts it back.
# It needs the cache there to start with (any checkpoint by a newer stasis),
# and leaves it mounted at the end. Each side has its own state dir and a
# container running a shell loop, removed at the end. Prints each sample,
# then the medians.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:$PATH
reps=7
mode=pair
while [ $# -gt 0 ]; do
  case $1 in
    -n) reps=$2; shift 2 ;;
    --cache) mode=cache; shift ;;
    *) break ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "cr-pairs: needs root" >&2; exit 2; }
if [ $mode = cache ]; then [ $# = 1 ] || { echo "usage: cr-pairs.sh --cache BIN" >&2; exit 2; }; sides=(off on); bins=("$1" "$1")
else [ $# = 2 ] || { echo "usage: cr-pairs.sh BIN_A BIN_B" >&2; exit 2; }; sides=(a b); bins=("$1" "$2"); fi
KDAT=/run/criu.kdat
tmp=$(mktemp -d /tmp/stasis-cr-pairs-XXXXXX)
stasis() { "${bins[$1]}" --state-dir "$tmp/${sides[$1]}/state" --checkpoint-dir "$tmp/${sides[$1]}/cp" --criu /usr/local/sbin/criu "${@:2}"; }
cleanup() {
  for i in 0 1; do stasis $i delete -f "crp${sides[$i]}" >/dev/null 2>&1 || :; done
  if [ $mode = cache ]; then
    mountpoint -q $KDAT || { [ -e $KDAT ] || : > $KDAT; mount --bind "$tmp/kdat/criu.kdat" $KDAT; }
  fi
  # The copy's tmpfs stays referenced by the bind mount on /run/criu.kdat, if any.
  if mountpoint -q "$tmp/kdat" 2>/dev/null; then umount "$tmp/kdat"; fi
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT
if [ $mode = cache ]; then
  [ -s $KDAT ] || { echo "cr-pairs: no CRIU cache at $KDAT to copy (run a checkpoint with a stasis that makes it)" >&2; exit 2; }
  mkdir "$tmp/kdat" && mount -t tmpfs -o size=64k,mode=0700 cr-pairs-kdat "$tmp/kdat" && cp $KDAT "$tmp/kdat/criu.kdat"
fi
cache() {
  if mountpoint -q $KDAT; then umount $KDAT; fi
  if [ "$1" = on ]; then [ -e $KDAT ] || : > $KDAT; mount --bind "$tmp/kdat/criu.kdat" $KDAT; fi
}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
for i in 0 1; do
  stasis $i run -d "crp${sides[$i]}" --rootfs /var/lib/stasis/rootfs/busybox -- sh -c 'i=0; while true; do i=$((i+1)); sleep 0.1; done' >/dev/null
done
sleep 0.5
for rep in $(seq "$reps"); do
  order="0 1"; [ $((rep % 2)) = 0 ] && order="1 0"
  for i in $order; do
    [ $mode = cache ] && cache "${sides[$i]}"
    t=$(date +%s%N); stasis $i checkpoint "crp${sides[$i]}" >/dev/null; c=$(ms "$t")
    t=$(date +%s%N); stasis $i restore "crp${sides[$i]}" >/dev/null; r=$(ms "$t")
    echo "${sides[$i]} checkpoint $c restore $r"
  done
done | tee "$tmp/samples"
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
for side in "${sides[@]}"; do
  echo "$side: checkpoint $(awk -v s="$side" '$1==s {print $3}' "$tmp/samples" | median) ms, restore $(awk -v s="$side" '$1==s {print $5}' "$tmp/samples" | median) ms (medians of $reps)"
done
