#!/usr/bin/env bash
# Installs, as root on Debian, the programs the tests drive: fio (data verification),
# attr (setfattr/getfattr), and fuse3 (fusermount3, for people unmounting by hand).
# Does nothing when they are all there already.
set -euo pipefail
need=()
command -v fio >/dev/null || need+=(fio)
command -v setfattr >/dev/null || need+=(attr)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -e /dev/fuse ] || modprobe fuse
