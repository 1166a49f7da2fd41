#!/usr/bin/env bash
# The pause a hand-off puts on a volume's requests, measured three ways, with a release
# build (see docs/BENCHMARKS.md, "Hand-offs"):
#
#   1. an idle Memory volume: a prober issues statfs (always answered by the daemon)
#      back to back; the pause is the longest wait for one answer across the hand-off;
#   2. a Memory volume holding 1 GiB in 100,000 files: the same prober;
#   3. fio 4 KiB random reads and writes (O_DIRECT, 2 jobs) on a Memory and a disk
#      volume for 6 s with a hand-off at 3 s: completion latency p50, p99, p99.9 and max,
#      against the same job with no hand-off, in the same run;
#
# and the daemon's memory (RssAnon + RssFile + the memfd) and `df` counters before and
# after. Usage: scripts/bench-handoff.sh [ROUNDS] (default 3). Writes
# target/bench/handoff.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 2; }
command -v fio >/dev/null || { echo "needs fio (scripts/install-test-deps.sh)" >&2; exit 2; }
cargo build --release --quiet
BIN=$PWD/target/release/emptydirfs
OUT=target/bench
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/emptydirfs-bench-handoff-XXXXXX)
POD=0f7e3c2a-9b1d-4e5f-8a6b-1c2d3e4f5a6b
cleanup() {
    for v in idle big fio-mem fio-disk; do
        "$BIN" teardown --pod-uid "$POD" --volume "$v" --kubelet-root "$WORK/kubelet" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/kubelet"
setup() { "$BIN" setup --pod-uid "$POD" --volume "$1" --kubelet-root "$WORK/kubelet" "${@:2}"; }
upgrade() { "$BIN" upgrade --pod-uid "$POD" --volume "$1" --kubelet-root "$WORK/kubelet" >/dev/null; }
daemon() { pgrep -f "emptydirfs serve .*volumes/kubernetes.io~empty-dir/$1\$"; }
memory() { # RssAnon + RssFile + the memfd's blocks, KiB
    local pid=$1 rss memfd
    rss=$(awk '/^RssAnon|^RssFile/ {s += $2} END {print s}' "/proc/$pid/status")
    memfd=$(for fd in /proc/"$pid"/fd/*; do
        [[ $(readlink "$fd") == "/memfd:emptydirfs-memory"* ]] && stat -L -c %b "$fd"
    done | awk '{s += $1 * 512 / 1024} END {print s + 0}')
    echo $((rss + memfd))
}

# The prober: statfs back to back; prints the longest wait (ms) once told to stop.
cat > "$WORK/probe.py" <<'PY'
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
worst, n = 0.0, 0
while not os.path.exists(stop):
    t = time.perf_counter()
    os.statvfs(path)
    worst = max(worst, time.perf_counter() - t)
    n += 1
print(f"{worst * 1000:.2f} {n}")
PY

pause() { # volume -> "pause_ms upgrade_ms"
    local v=$1 dir=$2 stop="$WORK/stop" result
    rm -f "$stop"
    python3 "$WORK/probe.py" "$dir" "$stop" > "$WORK/probe.out" &
    local prober=$!
    sleep 0.5
    local t0 t1
    t0=$(date +%s%N)
    upgrade "$v"
    t1=$(date +%s%N)
    sleep 0.5
    touch "$stop"
    wait "$prober"
    result=$(cut -d' ' -f1 "$WORK/probe.out")
    echo "$result $(( (t1 - t0) / 1000000 ))"
}

report="$OUT/handoff.md"
{
    echo "# Hand-off pause: \`scripts/bench-handoff.sh $ROUNDS\`"
    echo
    echo "$(date -u +%F), $(uname -r), $(nproc) CPUs, release build $(git rev-parse --short HEAD 2>/dev/null || echo ?)."
    echo
} > "$report"

# 1. Idle.
IDLE=$(setup idle --medium Memory --size-limit 1Gi)
echo "| volume | round | longest wait for a statfs across the hand-off | \`upgrade\` wall time | daemon memory before -> after | df used/inodes before -> after |" >> "$report"
echo "|---|---|---|---|---|---|" >> "$report"
df_of() { df -B1 --output=used,iused "$1" | tail -1 | tr -s ' ' | sed 's/^ //'; }
for r in $(seq "$ROUNDS"); do
    m0=$(memory "$(daemon idle)"); d0=$(df_of "$IDLE")
    read -r p u < <(pause idle "$IDLE")
    m1=$(memory "$(daemon idle)"); d1=$(df_of "$IDLE")
    echo "| idle Memory | $r | ${p} ms | ${u} ms | ${m0} -> ${m1} KiB | ${d0} -> ${d1} |" >> "$report"
done

# 2. 1 GiB in 100,000 files.
BIG=$(setup big --medium Memory --size-limit 2Gi)
python3 - "$BIG" <<'PY'
import os, sys
root = sys.argv[1]
block = os.urandom(11 << 10)
for d in range(100):
    os.mkdir(f"{root}/d{d:02}")
    for f in range(1000):
        n = d * 1000 + f
        with open(f"{root}/d{d:02}/f{f:03}", "wb") as fh:
            fh.write(block[: (10 << 10) + n % 1024])
PY
for r in $(seq "$ROUNDS"); do
    m0=$(memory "$(daemon big)"); d0=$(df_of "$BIG")
    read -r p u < <(pause big "$BIG")
    m1=$(memory "$(daemon big)"); d1=$(df_of "$BIG")
    echo "| 1 GiB in 100,000 files, Memory | $r | ${p} ms | ${u} ms | ${m0} -> ${m1} KiB | ${d0} -> ${d1} |" >> "$report"
done
"$BIN" teardown --pod-uid "$POD" --volume big --kubelet-root "$WORK/kubelet" >/dev/null

# 3. fio latency across a hand-off.
fio_run() { # dir handoff(0/1) volume -> json
    local dir=$1 with=$2 v=$3
    fio --name=lat --directory="$dir" --ioengine=psync --direct=1 --rw=randrw --bs=4k \
        --size=64m --numjobs=2 --time_based --runtime=6 --group_reporting \
        --output-format=json --output="$WORK/fio.json" >/dev/null &
    local f=$!
    if [ "$with" = 1 ]; then sleep 3; upgrade "$v"; fi
    wait "$f"
    python3 - "$WORK/fio.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
lat = []
for d in ("read", "write"):
    p = j[d]["clat_ns"]["percentile"]
    lat.append((p["50.000000"], p["99.000000"], p["99.900000"], j[d]["clat_ns"]["max"], j[d]["iops"]))
p50 = max(l[0] for l in lat) / 1e3
p99 = max(l[1] for l in lat) / 1e3
p999 = max(l[2] for l in lat) / 1e3
mx = max(l[3] for l in lat) / 1e6
iops = sum(l[4] for l in lat)
print(f"{p50:.0f} µs | {p99:.0f} µs | {p999:.0f} µs | {mx:.1f} ms | {iops:.0f}")
PY
}
{
    echo
    echo "fio, 2 jobs of 4 KiB random reads and writes (\`--direct=1 --rw=randrw\`), 6 s, hand-off at 3 s; completion latency, the worse of reads and writes:"
    echo
    echo "| volume | round | run | p50 | p99 | p99.9 | max | IOPS |"
    echo "|---|---|---|---|---|---|---|---|"
} >> "$report"
FMEM=$(setup fio-mem --medium Memory --size-limit 1Gi)
FDISK=$(setup fio-disk --size-limit 1Gi)
for r in $(seq "$ROUNDS"); do
    for pair in "Memory:$FMEM:fio-mem" "disk:$FDISK:fio-disk"; do
        IFS=: read -r name dir v <<< "$pair"
        echo "| $name | $r | no hand-off | $(fio_run "$dir" 0 "$v") |" >> "$report"
        echo "| $name | $r | hand-off at 3 s | $(fio_run "$dir" 1 "$v") |" >> "$report"
    done
done
cat "$report"
