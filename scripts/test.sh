#!/usr/bin/env bash
# test.sh — the project's test command (README, CI): make sure the host is set
# up (quick when it already is), then run the test suite from the repo root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# setup.sh installs node >= 22 and criu into /usr/local; the tests must find
# those, not the system's node 20 or Debian's criu 3.17 in /usr.
export PATH="/usr/local/sbin:/usr/local/bin:$PATH"
bash scripts/setup.sh --no-demo
# The tests' own tools, not the user's set-up: containerd 2.1.9, a
# docker-registry and the CNI loopback plugin unpacked into /opt/stasis
# (test/integration/cri.test.ts); about 30 s the first time, instant after.
bash scripts/setup/containerd.sh
# The Debian 12 tree (postgresql, nginx, redis-server from Debian's packages)
# that test/integration/debian-services.test.ts runs real services in; built
# once (a few minutes) and cached by its package list, so later runs take a
# second. STASIS_TEST_NO_DEBIAN=1 leaves it out (those tests then skip, saying so).
if [[ ${STASIS_TEST_NO_DEBIAN:-0} != 1 ]]; then
  bash scripts/setup/debian-rootfs.sh
fi
# The suite runs twice: against the compiled executable (dist/stasis, the
# same bytes setup installed as /usr/local/bin/stasis: what users get), then
# against bin/stasis under Node (what `npm i -g` gives). STASIS_TEST_BIN picks
# the binary the tests run; this repo's own dist/stasis, not the machine-wide
# copy, which another checkout's setup may replace meanwhile.
if [[ -x dist/stasis ]]; then
  echo "test.sh: the suite against the compiled dist/stasis" >&2
  STASIS_TEST_BIN="$PWD/dist/stasis" npm test
  echo "test.sh: the suite against bin/stasis under Node $(node --version)" >&2
  # The kill -9 test at 100 points a command ran above, against what users get; 20 here.
  export STASIS_CRASH_POINTS=${STASIS_CRASH_POINTS:-20}
fi
exec npm test
