# build.sh — 4. the repo: npm dependencies, the default rootfs, the build.
# Sourced by scripts/setup.sh (its settings and helpers are in scope); not run alone.
# --- 4. The repo: dependencies, build -------------------------------------
cd "$REPO"
# npm ci wipes and reinstalls node_modules, so only when it is missing or the
# lock file changed since (npm writes node_modules/.package-lock.json).
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  note "npm: ran npm ci"
else
  note "npm: node_modules up to date"
fi

# The default rootfs does not depend on the build; make it before the build
# so a build failure still leaves a usable host.
if [[ -e $ROOTFS_DIR/bin/busybox ]]; then
  note "rootfs: already present ($ROOTFS_DIR)"
else
  bash "$REPO/scripts/mkrootfs.sh" "$ROOTFS_DIR"
  note "rootfs: built $ROOTFS_DIR"
fi

# Always rebuild (the bundle and the compiled executable take a second or two): dist/ is not tracked,
# and a stale one would hide source changes.
build_ok=1
log "npm run build"
if npm run --silent build; then
  note "build: dist/ built"
else
  build_ok=0
  note "build: FAILED (npm run build); stasis will not run until it builds"
fi
