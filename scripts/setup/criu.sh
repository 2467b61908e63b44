# criu.sh — 2c. which CRIU to use (an earlier install, the distribution's, or the private prefix), verified; the pipe size post-copy needs.
# Sourced by scripts/setup.sh (its settings and helpers are in scope); not run alone.
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
