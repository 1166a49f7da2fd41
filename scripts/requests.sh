#!/usr/bin/env bash
# FUSE requests the kernel sends a volume per phase of small scratch work on 100 files of
# 3 KiB, as root (see docs/BENCHMARKS.md, "Requests per file"): untar, grep -r cold and
# warm, rewriting every file (open O_TRUNC, write, close), rm -rf, and git add of a fresh
# copy. Counted from the daemon's own log (fuser logs every request at debug level).
# Usage: scripts/requests.sh memory|disk [BINARY] (default: a release build of this tree).
set -euo pipefail
cd "$(dirname "$0")/.."
MEDIUM=${1:?usage: scripts/requests.sh memory|disk [BINARY]}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 2; }
case "$MEDIUM" in memory | disk) ;; *) echo "medium: memory or disk" >&2; exit 2 ;; esac
if [ -n "${2:-}" ]; then
    BIN=$(realpath "$2")
else
    cargo build --release --quiet
    BIN=$PWD/target/release/emptydirfs
fi
command -v git >/dev/null || { echo "needs git" >&2; exit 2; }
WORK=$(mktemp -d /tmp/emptydirfs-requests-XXXXXX)
PID=
cleanup() {
    cd /
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    umount -l "$WORK/mnt" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/mnt" "$WORK/back" "$WORK/src/t"
for i in $(seq -w 1 100); do head -c 2304 /dev/urandom | base64 -w 0 >"$WORK/src/t/f$i.txt"; done # 3,072 bytes each
tar -cf "$WORK/t.tar" -C "$WORK/src" t
args=(--medium "$MEDIUM" --size-limit 1Gi)
[ "$MEDIUM" = disk ] && args+=(--backing "$WORK/back")
RUST_LOG=fuser=debug "$BIN" serve "${args[@]}" "$WORK/mnt" 2>"$WORK/log" &
PID=$!
for _ in $(seq 100); do mountpoint -q "$WORK/mnt" && break; sleep 0.1; done
mountpoint -q "$WORK/mnt" || { echo "the volume did not mount" >&2; exit 1; }

# The log is still growing while background requests (RELEASE, FORGET) come in.
settle() {
    local a=-1 b
    while :; do
        sleep 0.3
        b=$(wc -l <"$WORK/log")
        [ "$a" = "$b" ] && break
        a=$b
    done
}
phase() {
    local name=$1 start
    shift
    settle
    start=$(wc -l <"$WORK/log")
    "$@" >/dev/null 2>&1 || true
    settle
    tail -n +$((start + 1)) "$WORK/log" | grep -o 'ino 0x[0-9a-f]* [A-Z_]*' | awk '{print $3}' |
        sort | uniq -c | sort -rn |
        awk -v n="$name" '{s += $1; l = l $2 " " $1 ", "} END {printf "%-10s %5d  %s\n", n, s, l}'
}
cold() { sync; echo 2 >/proc/sys/vm/drop_caches; }
cd "$WORK/mnt"
echo "$MEDIUM volume, $("$BIN" --version 2>/dev/null || echo "$BIN"), 100 files of 3 KiB"
phase untar tar -xf "$WORK/t.tar"
cold
phase grep-cold grep -r zzzzqqq t
phase grep-warm grep -r zzzzqqq t
phase rewrite sh -c 'for f in t/*; do echo x > "$f"; done'
cold
phase rm-rf rm -rf t
tar -xf "$WORK/t.tar"
cold
phase git-add sh -c 'cd t && git init -q && git -c gc.auto=0 add .'
