# criu-prefix.sh — 2b. a newer CRIU from another Debian suite in a private prefix: wrappers, the suite's apt source, unpacking and switching.
# Sourced by scripts/setup.sh (its settings and helpers are in scope); not run alone.
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
