#!/usr/bin/env bash
# soak.sh N — runs the project's test command N times (the `npm test` part of
# scripts/test.sh: the suite against the compiled dist/stasis, then under Node;
# the host setup is skipped: run scripts/setup.sh once first), then prints, per
# test that failed at least once, how often it failed. The logs of each run are
# kept in the folder it names. Exit status: 0 when every run was green.
# `npm run soak -- N` is the same.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/sbin:/usr/local/bin:$PATH"
runs=${1:-5}
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/soak.sh N (N >= 1 runs of the suite)" >&2
  exit 2
fi
logs=$(mktemp -d "${TMPDIR:-/tmp}/stasis-soak-XXXXXX")
echo "soak.sh: $runs runs; logs in $logs" >&2
red=0
for ((i = 1; i <= runs; i++)); do
  started=$SECONDS
  status=0
  for pass in compiled node; do
    log="$logs/run-$i-$pass.log"
    # npm test builds dist/stasis first: the compiled pass runs what it built.
    if [[ $pass == compiled ]]; then
      STASIS_TEST_BIN="$PWD/dist/stasis" npm test >"$log" 2>&1
    else
      STASIS_CRASH_POINTS=${STASIS_CRASH_POINTS:-20} npm test >"$log" 2>&1
    fi
    code=$?
    echo "$code" >"${log%.log}.status"
    ((code == 0)) || status=1
  done
  ((status == 0)) || red=$((red + 1))
  echo "soak.sh: run $i/$runs $([[ $status == 0 ]] && echo green || echo RED) in $((SECONDS - started)) s" >&2
done
node scripts/soak-table.mjs "$logs" "$runs"
echo "soak.sh: $red of $runs runs red; logs in $logs" >&2
((red == 0))
