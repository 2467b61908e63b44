# criu-check.sh — 2a. how the set-up tells that a CRIU works here: criu check, then a real dump and restore.
# Sourced by scripts/setup.sh (its settings and helpers are in scope); not run alone.
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
