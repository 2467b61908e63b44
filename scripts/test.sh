#!/usr/bin/env bash
# test.sh — the project's test command (README, CI): make sure the host is set
# up (quick when it already is), then run the test suite from the repo root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# setup.sh installs node >= 22 and criu into /usr/local; the tests must find
# those, not the system's node 20 or Debian's criu 3.17 in /usr.
export PATH="/usr/local/sbin:/usr/local/bin:$PATH"
bash scripts/setup.sh --no-demo
exec npm test
