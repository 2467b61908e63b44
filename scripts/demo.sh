#!/usr/bin/env bash
# demo.sh — a one-minute tour of stasis: run a container, checkpoint it,
# restore it, and show that its process kept its state (a counter) across.
#
# Uses the installed `stasis` command (scripts/setup.sh links it into
# /usr/local/bin) with a throw-away state dir and checkpoint dir, so it never
# touches real containers; everything is removed on exit, even on failure.
# Needs root (runc and CRIU do) and the default rootfs built by setup.sh.
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:$PATH"  # our criu/node/stasis first

ROOTFS=/var/lib/stasis/rootfs/busybox
[[ -x $ROOTFS/bin/busybox ]] || { echo "demo: $ROOTFS missing; run scripts/setup.sh first" >&2; exit 1; }
command -v stasis >/dev/null || { echo "demo: stasis is not on PATH; run scripts/setup.sh first" >&2; exit 1; }

STATE_DIR=$(mktemp -d /tmp/stasis-demo-state.XXXXXX)
CHECKPOINT_DIR=$(mktemp -d /tmp/stasis-demo-checkpoints.XXXXXX)
# Every call goes through this, so all of the demo's state stays in the temp dirs.
st() { stasis --state-dir "$STATE_DIR" --checkpoint-dir "$CHECKPOINT_DIR" "$@"; }
cleanup() {
  st delete -f demo >/dev/null 2>&1 || true
  rm -rf "$STATE_DIR" "$CHECKPOINT_DIR"
}
trap cleanup EXIT

# Bold headings on a terminal only; nothing decorative reaches a pipe.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
# Echo the command as it could be pasted (quoting only the arguments that need it).
show() {
  local a line='$ stasis'
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then line+=" $a"; else line+=" '${a//\'/\'\\\'\'}'"; fi
  done
  printf '%s\n' "$line"
  st "$@"
}

step "Start a detached container 'demo' from the busybox rootfs; it prints a counter every second."
# shellcheck disable=SC2016 # $i is for the container's shell
show run -d demo --rootfs "$ROOTFS" -- sh -c 'i=0; while true; do echo "count $i"; i=$((i+1)); sleep 1; done'
sleep 3

step "Its last two log lines: the counter is running."
show logs demo --tail 2

step "Checkpoint it: CRIU dumps the process tree to an image folder (printed below) and stops it."
show checkpoint demo

step "List containers: 'demo' is now checkpointed, not running."
show ps

step "Restore the latest checkpoint in place: the same process resumes from its dumped memory."
show restore demo
sleep 2

step "The last three log lines: the counter continued where it stopped instead of starting again at 0."
show logs demo --tail 3

step "Remove the container (the temporary state and checkpoint dirs go with the exit trap)."
show delete -f demo
