#!/usr/bin/env bash
# setup/containerd.sh — what test/integration/cri.test.ts needs, for the tests
# only (scripts/test.sh runs it; the user set-up does not):
#   - containerd 2.1.9 (Debian forky's `containerd`: ctr, the runc shim),
#     docker-registry (Debian's) and the CNI loopback plugin (Debian's
#     containernetworking-plugins), each unpacked with `dpkg -x` into a private
#     prefix, /opt/stasis/containerd (a link to containerd-VERSION): nothing is
#     installed system-wide and nothing on the host is replaced;
#   - a static `pause` binary (gcc -static) for the pod sandbox image.
# The .deb files are kept in /var/cache/stasis/containerd. Idempotent: when the
# prefix is complete it changes nothing and takes well under a second.
set -euo pipefail

ROOT=/opt/stasis
VERSION=${STASIS_CONTAINERD_VERSION:-2.1.9+ds1-5}
SUITE=${STASIS_CONTAINERD_SUITE:-forky}
PREFIX=$ROOT/containerd-${VERSION%%+*}
LINK=$ROOT/containerd
CACHE=/var/cache/stasis/containerd
APT_LOCK=(-o DPkg::Lock::Timeout=900)

log() { echo "setup/containerd.sh: $*" >&2; }
die() { log "$*"; exit 1; }
[[ $EUID -eq 0 ]] || die "run as root (it writes to $ROOT and $CACHE)"

complete() {
  [[ -x $1/usr/bin/containerd && -x $1/usr/bin/containerd-shim-runc-v2 && -x $1/usr/bin/ctr &&
     -x $1/usr/bin/docker-registry && -x $1/usr/lib/cni/loopback && -x $1/pause ]]
}

if complete "$PREFIX" && [[ $(readlink "$LINK" 2>/dev/null) == "$PREFIX" ]]; then
  log "containerd ${VERSION%%+*}, docker-registry and the loopback CNI plugin already in $PREFIX"
  exit 0
fi

start=$SECONDS
mkdir -p "$CACHE"
# download NAME[=VERSION] [apt options] — into the cache, unless a .deb of it is there.
download() {
  local name=${1%%=*}
  if compgen -G "$CACHE/${name}_*.deb" >/dev/null; then return; fi
  log "downloading $1"
  # apt-get download writes into the current folder; _apt cannot write to the
  # cache, so apt warns it downloads unsandboxed (harmless).
  (cd "$CACHE" && apt-get "${APT_LOCK[@]}" download "${@:2}" "$1" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
    { apt-get "${APT_LOCK[@]}" update >&2 && (cd "$CACHE" && apt-get "${APT_LOCK[@]}" download "${@:2}" "$1" >&2); }
  compgen -G "$CACHE/${name}_*.deb" >/dev/null || die "apt-get download $1 gave no .deb"
}
download "containerd=$VERSION" -t "$SUITE"
download docker-registry
download containernetworking-plugins

tmp=$(mktemp -d "$ROOT/.containerd-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for deb in "$CACHE"/containerd_*.deb "$CACHE"/docker-registry_*.deb "$CACHE"/containernetworking-plugins_*.deb; do
  dpkg -x "$deb" "$tmp"
done
# containerd's CRI runs the sandbox ("pause") image's entrypoint; this one
# sleeps until a signal ends it.
command -v gcc >/dev/null || die "gcc is needed to build the pause binary (scripts/setup.sh installs it)"
cat > "$tmp/pause.c" <<'EOF'
#include <signal.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGTERM, quit);
  signal(SIGINT, quit);
  for (;;) pause();
}
EOF
gcc -static -Os -o "$tmp/pause" "$tmp/pause.c" && rm "$tmp/pause.c"
complete "$tmp" || die "the unpacked packages lack a binary the tests need (see complete() in $0)"
rm -rf "$PREFIX"
mv "$tmp" "$PREFIX"
trap - EXIT
ln -sfn "$PREFIX" "$LINK"
"$PREFIX/usr/bin/containerd" --version >&2
log "unpacked into $PREFIX in $((SECONDS - start)) s"
