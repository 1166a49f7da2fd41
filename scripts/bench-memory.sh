#!/usr/bin/env bash
# Daemon memory of a Memory volume: RSS when idle, holding 1 GiB of data, and after that
# data is deleted, next to the bytes stored. Prints a Markdown table.
#
#   sudo scripts/bench-memory.sh [DATA_MIB]      (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
cargo build --release --quiet
bin=target/release/emptydirfs
work=$(mktemp -d /tmp/emptydirfs-bench-mem-XXXXXX)
mnt=$work/mnt
mkdir "$mnt"
pid=
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    mountpoint -q "$mnt" && umount -l "$mnt" || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
"$bin" serve --medium memory --size-limit $((mib * 2))Mi "$mnt" 2>"$work/log" &
pid=$!
for _ in $(seq 200); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || { cat "$work/log"; exit 1; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }  # KiB
sleep 0.5
idle=$(rss)
dd if=/dev/urandom of="$mnt/data" bs=1M count="$mib" status=none
full=$(rss)
rm "$mnt/data"
sleep 1
after=$(rss)
echo "| state | daemon RSS | stored |"
echo "|---|---|---|"
echo "| idle | $((idle / 1024)) MiB | 0 |"
echo "| holding data | $((full / 1024)) MiB ($(awk "BEGIN {printf \"%.3f\", $full / 1024 / $mib}")x the data) | $mib MiB |"
echo "| after deleting it | $((after / 1024)) MiB | 0 |"
