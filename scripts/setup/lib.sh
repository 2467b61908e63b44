# lib.sh — apt, package and file helpers of the set-up.
# Sourced by scripts/setup.sh (its settings and helpers are in scope); not run alone.

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
