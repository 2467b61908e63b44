#!/usr/bin/env bash
# mkrootfs.sh DIR — build stasis' minimal default root filesystem in DIR.
#
# The rootfs is one static busybox binary plus a symlink per applet, a few
# empty mount-point directories and the handful of /etc files that shells and
# tools expect. A static busybox needs no libraries, so the tree is ~2 MB and
# works with any runtime, and it is what `stasis run` uses when no image/rootfs
# is given.
#
# Idempotent and atomic: if DIR/bin/busybox already exists nothing is done;
# otherwise the tree is built in a temporary sibling directory (same
# filesystem) and renamed into place, so a reader never sees a half-built
# rootfs and an interrupted run leaves no partial DIR behind.
set -euo pipefail

die() { echo "mkrootfs: $*" >&2; exit 1; }

[[ $# -eq 1 && -n $1 ]] || die "usage: mkrootfs.sh DIR"
dir=${1%/}

if [[ -e $dir/bin/busybox ]]; then
  exit 0  # already built
fi

# busybox-static's binary. Prefer /bin/busybox (the package's path); it must be
# static, because the rootfs has no libc or dynamic loader of its own.
busybox=${STASIS_BUSYBOX:-/bin/busybox}
[[ -x $busybox ]] || die "$busybox not found: apt-get install busybox-static"
if command -v file >/dev/null 2>&1 && ! file -L "$busybox" | grep -q 'statically linked'; then
  die "$busybox is not statically linked (install busybox-static, not busybox)"
fi

# A directory that exists but is empty (e.g. a mount point) can be replaced by
# rename(2); anything else we refuse to clobber.
if [[ -e $dir ]]; then
  [[ -d $dir ]] || die "$dir exists and is not a directory"
  [[ -z $(ls -A "$dir") ]] || die "$dir exists, is not empty and has no bin/busybox; refusing to overwrite"
fi

parent=$(dirname "$dir")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.$(basename "$dir").tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"  # mktemp makes it 0700; the rootfs' / must be world-readable

mkdir -p "$tmp"/{bin,dev,proc,sys,tmp,etc,root,var,run}
chmod 1777 "$tmp/tmp"
chmod 0700 "$tmp/root"
cp "$busybox" "$tmp/bin/busybox"
chmod 0755 "$tmp/bin/busybox"

# One relative symlink per applet, all in bin/ so a plain PATH=/bin finds them.
# --list prints bare applet names (no paths).
while IFS= read -r applet; do
  [[ -n $applet && $applet != busybox ]] || continue
  ln -s busybox "$tmp/bin/$applet"
done < <("$tmp/bin/busybox" --list)
[[ -e $tmp/bin/sh ]] || die "busybox has no sh applet"

cat >"$tmp/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$tmp/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo stasis >"$tmp/etc/hostname"
cat >"$tmp/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
chmod 0644 "$tmp"/etc/{passwd,group,hostname,hosts}

if [[ -d $dir ]]; then
  rmdir "$dir"  # empty (checked above); rename cannot replace it otherwise
fi
mv -T "$tmp" "$dir"
trap - EXIT
