# packages.sh — 1. Debian packages.
# Sourced by scripts/setup.sh (its settings and helpers are in scope); not run alone.
# --- 1. Debian packages ---------------------------------------------------
# --no-install-recommends: runc recommends criu, and Debian 12's criu 3.17
# does not work on this kernel (we bring our own CRIU below); podman's
# recommends (buildah, slirp4netns, fuse-overlayfs...) are not needed.
#
# No service may start during the install: openssh-server is only for the
# tests, which run their own sshd on a 127.0.0.1 port, and would otherwise
# start a system sshd on port 22. policy-rc.d exiting 101 is Debian's "not
# allowed" for invoke-rc.d and deb-systemd-invoke; one the host already has
# that says so is left alone, any other is set aside for the install.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_SAVED=$POLICY_RC.stasis-saved
block_service_starts() {
  local rc=0
  if [[ -x $POLICY_RC ]]; then
    "$POLICY_RC" ssh start >/dev/null 2>&1 || rc=$?
    ((rc == 101)) && return 0
    mv -f "$POLICY_RC" "$POLICY_RC_SAVED"
  fi
  trap allow_service_starts EXIT
  printf '%s\n' '#!/bin/sh' '# Written by stasis scripts/setup.sh for one apt-get install: no service starts.' 'exit 101' >"$POLICY_RC"
  chmod 0755 "$POLICY_RC"
}
allow_service_starts() {
  if grep -qs 'Written by stasis scripts/setup.sh' "$POLICY_RC"; then
    rm -f "$POLICY_RC"
    [[ -e $POLICY_RC_SAVED ]] && mv -f "$POLICY_RC_SAVED" "$POLICY_RC"
  fi
  trap - EXIT
}
# Sockets listening on port 22 (hex 0016, state 0A) in /proc/net/tcp and tcp6.
port22_listeners() { awk 'NR > 1 && $4 == "0A" && $2 ~ /:0016$/ {print $2}' /proc/net/tcp /proc/net/tcp6 2>/dev/null || true; }

missing=()
for p in "${APT_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  apt_update
  installing_sshd=0
  [[ " ${missing[*]} " == *" openssh-server "* ]] && installing_sshd=1
  listeners_before=$(port22_listeners)
  if ((installing_sshd)); then
    # Debian's ssh.service and /etc/init.d/ssh do nothing while this file
    # exists: the system sshd stays off at boot too. sshd itself ignores it.
    mkdir -p /etc/ssh
    [[ -e /etc/ssh/sshd_not_to_be_run ]] ||
      echo "Created by stasis scripts/setup.sh: openssh-server is installed for the tests' own sshd only." >/etc/ssh/sshd_not_to_be_run
  fi
  log "apt-get install ${missing[*]}"
  block_service_starts
  apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  allow_service_starts
  if ((installing_sshd)); then
    # Not enabled either (the file above already keeps it from starting).
    if command -v systemctl >/dev/null; then systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true; fi
    update-rc.d ssh disable >/dev/null 2>&1 || true
    if [[ -z $listeners_before && -n $(port22_listeners) ]]; then
      die "something listens on port 22 since openssh-server was installed: $(port22_listeners)"
    fi
  fi
  note "apt packages: installed ${missing[*]}"
else
  note "apt packages: already present (${APT_PACKAGES[*]})"
fi

# sshd needs its privilege separation folder, which only the (never started)
# system service makes; /run is emptied at boot, so check it every run.
[[ -d /run/sshd ]] || install -d -m 0755 /run/sshd

# skopeo (run --image docker://, checkpoint images pushed and pulled) and docker-registry (the image tests' own, on 127.0.0.1; the system service is kept off).
bash "$REPO/scripts/setup/registry.sh" && note "registry tools: skopeo, docker-registry (service disabled)"
