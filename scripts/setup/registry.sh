#!/usr/bin/env bash
# scripts/setup/registry.sh — install what `--image docker://…` and the image
# tests need: skopeo (stasis's client of the registry protocol: it copies
# images between a registry and local OCI layouts) and docker-registry (the
# tests start their own on 127.0.0.1, with their own config and storage).
#
# Idempotent: installed packages are left alone. Debian's docker-registry
# package starts a system registry on port 5000; it is kept from starting
# during the install (policy-rc.d) and disabled after, so nothing listens
# that the tests did not start. Called by scripts/setup.sh; runnable alone.
set -euo pipefail

PACKAGES=(skopeo docker-registry)
log() { echo "setup/registry: $*" >&2; }
pkg_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

missing=()
for p in "${PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_SAVED=$POLICY_RC.stasis-registry-saved
MARK='Written by stasis scripts/setup/registry.sh for one apt-get install: no service starts.'
restore_policy() {
  if grep -qs "$MARK" "$POLICY_RC"; then
    rm -f "$POLICY_RC"
    if [[ -e $POLICY_RC_SAVED ]]; then mv -f "$POLICY_RC_SAVED" "$POLICY_RC"; fi
  fi
}

if ((${#missing[@]})); then
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    log "apt-get update"
    apt-get -o DPkg::Lock::Timeout=900 update -qq
  fi
  if [[ -x $POLICY_RC ]] && ! grep -qs "$MARK" "$POLICY_RC"; then mv -f "$POLICY_RC" "$POLICY_RC_SAVED"; fi
  trap restore_policy EXIT
  printf '%s\n' '#!/bin/sh' "# $MARK" 'exit 101' >"$POLICY_RC"
  chmod 0755 "$POLICY_RC"
  log "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  restore_policy
  trap - EXIT
fi

# The system registry stays off, now and at boot (every run: cheap, and a
# host where someone enabled it again gets it turned off for the tests).
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
fi
update-rc.d docker-registry disable >/dev/null 2>&1 || true
if [[ -x /etc/init.d/docker-registry ]] && /etc/init.d/docker-registry status >/dev/null 2>&1; then
  /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi

for bin in skopeo docker-registry; do
  command -v "$bin" >/dev/null || { log "ERROR: $bin is not on PATH after the install"; exit 1; }
done
if ((${#missing[@]})); then log "installed ${missing[*]}"; else log "already present (${PACKAGES[*]})"; fi
