#!/usr/bin/env bash
# Side-by-side benchmark of emptydirfs (issue 6): each backend measured in the same run
# as the kernel filesystem it replaces and as a FUSE peer.
#
#   scripts/bench.sh [--out FILE] [--chart PNG] [ROUNDS]      (as root, with cargo on PATH;
#                     through sudo: sudo env PATH="$PATH" scripts/bench.sh ...)
#   scripts/bench.sh --latency-only [ROUNDS]
#   scripts/bench.sh --scratch-only [--out FILE] [ROUNDS]
#
#   ROUNDS        rounds of every measurement (default 3); figures are medians of rounds,
#                 ratios are computed per round against the same round's reference
#   --latency-only  only setup/teardown latency, as the full run measures it: each round's
#                 median and the spread (min-max) of every run, on stderr; no report
#   --scratch-only  only the scratch-work job (scripts/bench/scratch.sh) on its targets;
#                 the report has its section alone
#   --out FILE    the Markdown report, also printed on stdout (default target/bench/report.md)
#   --chart PNG   bar chart of the ratios (default target/bench/ratios.png; needs
#                 matplotlib, skipped with a message if it cannot be installed)
#
# Environment:
#   BENCH_QUICK=1     smoke test: small files, 1 s runs, few iterations (a few seconds
#                     per target); the figures are not comparable with a full run
#   BENCH_BIN=PATH    benchmark this emptydirfs binary instead of building one with
#                     `cargo build --release --locked`
#   BENCH_TMPDIR=DIR  where the run's temporary directory goes (default /var/tmp; it
#                     holds the 4 GiB ext4 image, so not on tmpfs)
#   BINDFS_OPTS       bindfs options (default --multithreaded; bindfs is single-threaded
#                     by default)
#   BENCH_PASSTHROUGH_HP=PATH  libfuse's example passthrough_hp, built outside this
#                     repository: a FUSE peer of the scratch-work job (skipped without it)
#   BENCH_PASSTHROUGH_HP_OPTS  options added to its command line (default none: its
#                     defaults, kernel passthrough for reads and writes included)
#
# Targets, all set up by this run and torn down on exit, whatever happens:
#   tmpfs    a kernel tmpfs mount (size=3g)
#   ext4     a directory on a fresh journaled ext4 on a loop device (4 GiB sparse image)
#   memory   emptydirfs serve --medium memory --size-limit 3Gi
#   disk     emptydirfs serve --medium disk --backing <dir on that ext4> --size-limit 3Gi
#   bindfs   bindfs over a directory on that ext4 (not in the scratch-work job)
#   passthrough_hp  libfuse's passthrough_hp over a directory on that ext4 (the
#            scratch-work job only; with BENCH_PASSTHROUGH_HP)
# Workloads: the fio jobs in scripts/bench/*.fio (ioengine=psync), the metadata job
# scripts/bench/metadata.c, PostgreSQL's pgbench, the page cache a file written and read
# once costs (disk targets), setup/teardown latency of a volume against mount/umount of
# a tmpfs, a memory daemon's RSS idle, holding data and after deleting it, and the
# scratch-work job (untar, git add + commit, cold grep -r, sort spilling to the volume,
# rm -rf of a generated 12,000-file source tree: scripts/bench/scratch.sh).
# Needs root, /dev/fuse and loop devices; installs fio, bindfs, e2fsprogs, gcc, git and
# python3-matplotlib with apt-get if they are missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/scripts/bench
REPORT_PY=$BENCH_DIR/report.py
COMMAND="$0 $*"

ROUNDS=3
OUT=$ROOT/target/bench/report.md
CHART=$ROOT/target/bench/ratios.png
LATENCY_ONLY=0
SCRATCH_ONLY=0
QUICK=${BENCH_QUICK:-0}
[ "$QUICK" = 0 ] || QUICK=1
BINDFS_OPTS=${BINDFS_OPTS:---multithreaded}
TARGETS=(tmpfs memory ext4 disk bindfs)
SIZE_LIMIT=3Gi

if [ "$QUICK" = 1 ]; then
    SEQ_SIZE=128m RAND_SIZE=32m RUNTIME=1 META_BATCHES=4 META_FILES=500 LAT_ITERS=5 RSS_MIB=128
    PGBENCH_SECONDS=2 PAGECACHE_MIB=32
else
    SEQ_SIZE=1g RAND_SIZE=256m RUNTIME=5 META_BATCHES=4 META_FILES=5000 LAT_ITERS=20 RSS_MIB=1024
    PGBENCH_SECONDS=10 PAGECACHE_MIB=256
fi
# shellcheck source=scripts/bench/scratch.sh
source "$BENCH_DIR/scratch.sh"

# State the cleanup needs; filled in as things are set up.
WORK= LOOP= KROOT= BIN=
PIDS=()
FAILURES=()
declare -A DIR  # target -> the directory its jobs run in

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --out) OUT=$(realpath -m "$2"); shift 2 ;;
            --chart) CHART=$(realpath -m "$2"); shift 2 ;;
            --latency-only) LATENCY_ONLY=1; shift ;;
            --scratch-only) SCRATCH_ONLY=1; shift ;;
            -h|--help) usage; exit 0 ;;
            [0-9]*) ROUNDS=$1; shift ;;
            *) usage >&2; exit 2 ;;
        esac
    done
    [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: ROUNDS must be a positive number" >&2; exit 2; }
}

# ---------------------------------------------------------------------------- set-up

install_deps() {
    local need=()
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    command -v gcc >/dev/null || need+=(gcc libc6-dev)
    command -v losetup >/dev/null || need+=(mount)
    command -v python3 >/dev/null || need+=(python3)
    command -v git >/dev/null || need+=(git)
    if [ "$SCRATCH_ONLY" = 0 ]; then
        command -v fio >/dev/null || need+=(fio)
        command -v bindfs >/dev/null || need+=(bindfs)
        ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
    fi
    if [ ${#need[@]} -gt 0 ]; then
        log "installing: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    [ -e /dev/fuse ] || modprobe fuse
}

# Prints a python interpreter that has matplotlib, installing Debian's if none has it;
# prints nothing if that fails (the chart is then skipped).
chart_python() {
    local py
    for attempt in 1 2; do
        for py in python3 /usr/bin/python3; do
            if command -v "$py" >/dev/null && "$py" -c 'import matplotlib' 2>/dev/null; then
                command -v "$py"
                return
            fi
        done
        [ "$attempt" = 1 ] || break
        log "installing python3-matplotlib for the chart"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3-matplotlib >/dev/null 2>&1 \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                     --no-install-recommends python3-matplotlib >/dev/null 2>&1; } || true
    done
}

build() {
    local src
    if [ -n "${BENCH_BIN:-}" ]; then
        src=$(realpath "$BENCH_BIN")
        log "using $src as is (BENCH_BIN; not built by this run)"
    else
        log "cargo build --release --locked"
        (cd "$ROOT" && cargo build --release --locked --quiet)
        src=$ROOT/target/release/emptydirfs
    fi
    # A copy, so that a rebuild during the run does not swap the binary under it.
    mkdir -p "$WORK/bin"
    cp "$src" "$WORK/bin/emptydirfs"
    BIN=$WORK/bin/emptydirfs
    gcc -O2 -Wall -o "$WORK/bin/metadata" "$BENCH_DIR/metadata.c"
}

make_workdir() {
    local base=${BENCH_TMPDIR:-/var/tmp}
    WORK=$(mktemp -d "$(realpath "$base")/emptydirfs-bench.XXXXXX")
    chmod 755 "$WORK" # PostgreSQL runs as its own user below it
    [ "$(findmnt -n -o FSTYPE -T "$WORK")" != tmpfs ] \
        || log "warning: $WORK is on tmpfs, so the ext4 image lives in memory"
    mkdir -p "$WORK"/{out,logs}
}

# Waits until MOUNTPOINT is mounted, failing if the daemon PID dies first.
wait_mounted() {
    local mnt=$1 pid=$2 logf=$3
    for _ in $(seq 200); do
        mountpoint -q "$mnt" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    cat "$logf" >&2
    die "$mnt did not come up"
}

# Starts a daemon in the background, waits for its mount; sets DAEMON_PID.
start_daemon() {
    local name=$1 mnt=$2
    shift 2
    mkdir -p "$mnt"
    "$@" 2>"$WORK/logs/$name.log" &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    wait_mounted "$mnt" "$DAEMON_PID" "$WORK/logs/$name.log"
}

# Memory a memory volume holds, in MiB: its daemon's own pages (RssAnon + RssFile) and
# the volume's data, its used blocks (`df`): shmem pages of a tmpfs of its own (a memfd
# of the daemon's before issue 21), never part of VmRSS. Without a mount point ($2): the
# daemon's own pages alone.
rss_mib() {
    local own data=0
    own=$(awk '/^(RssAnon|RssFile):/ {kib += $2} END {print kib * 1024}' "/proc/$1/status")
    [ -z "${2:-}" ] || data=$(($(stat -f -c '(%b - %f) * %S' "$2")))
    awk -v b=$((own + data)) 'BEGIN {printf "%.1f", b / 1048576}'
}

setup_targets() {
    mkdir -p "$WORK/tmpfs" "$WORK/ext4"
    mount -t tmpfs -o size=3g tmpfs "$WORK/tmpfs"
    DIR[tmpfs]=$WORK/tmpfs

    # Fresh journaled ext4 (data=ordered). The inode tables and journal are initialised
    # now, so ext4lazyinit does not write behind the benchmark.
    truncate -s 4G "$WORK/ext4.img"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/ext4.img"
    LOOP=$(losetup --find --show "$WORK/ext4.img")
    mount "$LOOP" "$WORK/ext4"
    mkdir "$WORK/ext4/plain" "$WORK/ext4/disk-backing"
    DIR[ext4]=$WORK/ext4/plain

    start_daemon memory "$WORK/memory" \
        "$BIN" serve --medium memory --size-limit "$SIZE_LIMIT" "$WORK/memory"
    DIR[memory]=$WORK/memory

    start_daemon disk "$WORK/disk" "$BIN" serve --medium disk \
        --backing "$WORK/ext4/disk-backing" --size-limit "$SIZE_LIMIT" "$WORK/disk"
    DIR[disk]=$WORK/disk
    sleep 0.5
    record 1 rss-idle disk "$(rss_mib "$DAEMON_PID")"

    start_passthrough_hp
    [ "$SCRATCH_ONLY" = 0 ] || return 0
    mkdir "$WORK/ext4/bindfs-source"
    # shellcheck disable=SC2086 # BINDFS_OPTS is a list of options
    start_daemon bindfs "$WORK/bindfs" \
        bindfs -f $BINDFS_OPTS "$WORK/ext4/bindfs-source" "$WORK/bindfs"
    DIR[bindfs]=$WORK/bindfs
}

# ---------------------------------------------------------------------------- cleanup

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Drops PID from the daemons the cleanup stops (it was stopped already).
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Undoes everything: volumes made by `setup`, daemons, mounts, the loop device and the
# work directory. Runs on EXIT (so also after INT and TERM) and must not stop midway.
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [ -n "$WORK" ] || exit "$rc"
    log "cleaning up $WORK"
    local vol uid
    if [ -n "$KROOT" ] && [ -n "$BIN" ]; then
        for vol in "$KROOT"/pods/*/volumes/kubernetes.io~empty-dir/*; do
            [ -e "$vol" ] || continue
            uid=${vol#"$KROOT"/pods/}
            uid=${uid%%/*}
            "$BIN" teardown --grace 2 --pod-uid "$uid" --volume "$(basename "$vol")" \
                --kubelet-root "$KROOT" >/dev/null 2>&1
        done
    fi
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    # Whatever is still mounted under WORK, the deepest first (FUSE over ext4 before it).
    findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r | while read -r mnt; do
        umount -l "$mnt" || log "warning: could not unmount $mnt"
    done
    # On a device still busy this sets autoclear: it goes when its last user does.
    [ -z "$LOOP" ] || losetup -d "$LOOP" || log "warning: could not detach $LOOP"
    # The logs, for a look after the run (the work directory goes).
    mkdir -p "$ROOT/target/bench" && rm -rf "$ROOT/target/bench/logs" \
        && cp -r "$WORK/logs" "$ROOT/target/bench/logs"
    if findmnt -rn -o TARGET | grep -qF "$WORK/"; then
        log "warning: mounts left under $WORK; not deleting it"
    else
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}

# ---------------------------------------------------------------------------- measuring

RESULTS= # the TSV file: round, workload, target, value
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

clear_dir() { find "$1" -mindepth 1 -delete; }

# run_fio ROUND TARGET JOB [keep]: runs scripts/bench/JOB.fio in the target's directory
# and records its figure; `keep` runs it twice and keeps the second (a warm read).
run_fio() {
    local round=$1 target=$2 job=$3 warm=${4:-}
    local dir=${DIR[$target]} json=$WORK/out/r$round-$target-$job.json
    local logf=$WORK/logs/r$round-$target-$job.log
    local direction=write kind=iops value rc=0
    [[ $job == *read* ]] && direction=read
    [[ $job == seq* ]] && kind=bw
    local fio=(fio --output-format=json --output="$json" --directory="$dir" "$BENCH_DIR/$job.fio")
    if [ -n "$warm" ]; then
        "${fio[@]}" >"$logf" 2>&1 || rc=$?
    fi
    [ "$rc" != 0 ] || "${fio[@]}" >>"$logf" 2>&1 || rc=$?
    if [ "$rc" = 0 ] && value=$(python3 "$REPORT_PY" fio "$json" "$direction" "$kind"); then
        :
    elif [[ $job == *direct* ]] && grep -qE 'Invalid argument|direct=1' "$logf" "$json" 2>/dev/null; then
        value=n/a
        log "$target refused O_DIRECT in $job: recorded n/a"
    else
        value=fail
        FAILURES+=("round $round, $job on $target: $(tail -n 3 "$logf" | tr '\n' ' ')")
        log "$job on $target failed; log:"
        tail -n 20 "$logf" >&2
    fi
    record "$round" "$job" "$target" "$value"
    log "round $round: $job on $target: $value $([ "$kind" = bw ] && echo MB/s || echo IOPS)"
}

run_metadata() {
    local round=$1 target=$2 dir=${DIR[$target]}/meta out value
    mkdir "$dir"
    if out=$("$WORK/bin/metadata" "$dir" "$META_BATCHES" "$META_FILES" 2>&1); then
        value=$(awk '/^files\/s/ {print $2}' <<<"$out")
    else
        value=fail
        FAILURES+=("round $round, metadata on $target: $out")
    fi
    record "$round" metadata "$target" "$value"
    log "round $round: metadata on $target: $value files/s"
}

# Page cache a file written once and read once costs: the growth of the node's page cache
# (Cached minus Shmem, from /proc/meminfo, after dropping caches), in units of the file's
# size, not counting the loop device's own cache of the ext4 image (a node's disk has
# none). A FUSE passthrough of the node's disk can hold the data twice (its own pages
# and the backing file's).
run_pagecache() {
    local round=$1 target=$2 f=${DIR[$target]}/pagecache before after
    cached() { # KiB: the page cache, less the ext4 image's pages
        local img
        img=$(fincore --bytes --noheadings --output RES "$WORK/ext4.img" | tr -d ' ')
        awk -v img="$img" '/^Cached:/ {c = $2} /^Shmem:/ {s = $2} END {print c - s - img / 1024}' /proc/meminfo
    }
    sync
    echo 3 >/proc/sys/vm/drop_caches
    before=$(cached)
    dd if=/dev/zero of="$f" bs=1M count="$PAGECACHE_MIB" conv=fsync status=none
    cat "$f" >/dev/null
    after=$(cached)
    local value
    value=$(awk -v a="$after" -v b="$before" -v m="$PAGECACHE_MIB" 'BEGIN {printf "%.2f", (a - b) / 1024 / m}')
    record "$round" pagecache "$target" "$value"
    log "round $round: page cache of a $PAGECACHE_MIB MiB file written and read on $target: ${value}x its size"
}

# PostgreSQL's pgbench (TPC-B like, fsync on): initdb in the target, pgbench -i, then
# PGBENCH_SECONDS of `pgbench -c 4 -j 2`; records tps.
run_pgbench() {
    local round=$1 target=$2 dir=${DIR[$target]}/pg bin port out value
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    port=$((55400 + round * 10 + ${#target}))
    mkdir -p "$dir" "$WORK/pgsock"
    chown postgres "$dir" "$WORK/pgsock"
    local as=(runuser -u postgres --)
    local opts="-k $WORK/pgsock -p $port -c listen_addresses=''"
    if "${as[@]}" "$bin/initdb" -A trust -D "$dir/data" >"$WORK/logs/pg-$target.log" 2>&1         && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -o "$opts" -w -l "$dir/log" start >>"$WORK/logs/pg-$target.log" 2>&1         && "${as[@]}" "$bin/pgbench" -q -i -s 10 -h "$WORK/pgsock" -p "$port" postgres >>"$WORK/logs/pg-$target.log" 2>&1         && out=$("${as[@]}" "$bin/pgbench" -c 4 -j 2 -T "$PGBENCH_SECONDS" -h "$WORK/pgsock" -p "$port" postgres 2>>"$WORK/logs/pg-$target.log"); then
        value=$(awk '/^tps = / {printf "%.1f", $3; exit}' <<<"$out")
    else
        value=fail
        FAILURES+=("round $round, pgbench on $target: $(tail -n 3 "$WORK/logs/pg-$target.log" | tr '\n' ' ')")
    fi
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    record "$round" pgbench "$target" "${value:-fail}"
    log "round $round: pgbench on $target: $value tps"
}

# Runs one workload on every target, emptying each target's directory afterwards.
workload() {
    local round=$1 name=$2 target targets=("${TARGETS[@]}")
    [ "$name" != scratch ] || targets=("${SCRATCH_TARGETS[@]}")
    for target in "${targets[@]}"; do
        case $name in
            scratch) run_scratch "$round" "$target" ;;
            seq)
                run_fio "$round" "$target" seqwrite
                run_fio "$round" "$target" seqread warm
                ;;
            metadata) run_metadata "$round" "$target" ;;
            pgbench) run_pgbench "$round" "$target" ;;
            pagecache)
                # Only where a node's disk is served: the others hold data in memory.
                case $target in ext4 | disk | bindfs) run_pagecache "$round" "$target" ;; esac
                ;;
            *) run_fio "$round" "$target" "$name" ;;
        esac
        clear_dir "${DIR[$target]}"
        sync
    done
}

median() { python3 "$REPORT_PY" median; }

# "MIN-MAX" milliseconds of the runs given as arguments (microseconds written "NNNe-3").
spread() {
    printf '%s\n' "$@" | sed 's/e-3$//' | sort -n \
        | awk 'NR == 1 {min = $1} {max = $1} END {printf "%.1f-%.1f", min / 1000, max / 1000}'
}

# Every run's milliseconds, over all rounds (for the spread).
ALL_SETUP=() ALL_TEARDOWN=()

# Median ms of LAT_ITERS `emptydirfs setup` and `teardown` of a Memory volume in a
# kubelet root of our own, and of `mount -t tmpfs` and `umount` of a directory.
measure_latency() {
    # Times in microseconds from $EPOCHREALTIME (no fork to read the clock).
    local round=$1 i t0 t1 t2 uid
    local setup_ms=() teardown_ms=() mount_ms=() umount_ms=()
    KROOT=$WORK/kubelet
    mkdir -p "$KROOT" "$WORK/lat-tmpfs"
    for i in $(seq "$LAT_ITERS"); do
        uid=bench-r$round-$i
        t0=${EPOCHREALTIME/[.,]/}
        "$BIN" setup --pod-uid "$uid" --volume v --medium Memory --size-limit 64Mi \
            --kubelet-root "$KROOT" >/dev/null 2>>"$WORK/logs/setup.log" \
            || die "setup failed: $(tail -n 3 "$WORK/logs/setup.log")"
        t1=${EPOCHREALTIME/[.,]/}
        "$BIN" teardown --pod-uid "$uid" --volume v --kubelet-root "$KROOT" \
            >/dev/null 2>>"$WORK/logs/setup.log" \
            || die "teardown failed: $(tail -n 3 "$WORK/logs/setup.log")"
        t2=${EPOCHREALTIME/[.,]/}
        setup_ms+=("$(((t1 - t0)))e-3") teardown_ms+=("$(((t2 - t1)))e-3")

        t0=${EPOCHREALTIME/[.,]/}
        mount -t tmpfs -o size=64m tmpfs "$WORK/lat-tmpfs"
        t1=${EPOCHREALTIME/[.,]/}
        umount "$WORK/lat-tmpfs"
        t2=${EPOCHREALTIME/[.,]/}
        mount_ms+=("$(((t1 - t0)))e-3") umount_ms+=("$(((t2 - t1)))e-3")
    done
    record "$round" setup emptydirfs "$(median <<<"${setup_ms[*]}")"
    record "$round" teardown emptydirfs "$(median <<<"${teardown_ms[*]}")"
    record "$round" setup tmpfs "$(median <<<"${mount_ms[*]}")"
    record "$round" teardown tmpfs "$(median <<<"${umount_ms[*]}")"
    ALL_SETUP+=("${setup_ms[@]}") ALL_TEARDOWN+=("${teardown_ms[@]}")
    log "round $round: setup/teardown $(median <<<"${setup_ms[*]}")/$(median <<<"${teardown_ms[*]}") ms" \
        "(runs $(spread "${setup_ms[@]}") / $(spread "${teardown_ms[@]}") ms);" \
        "tmpfs mount/umount $(median <<<"${mount_ms[*]}")/$(median <<<"${umount_ms[*]}") ms"
}

# --latency-only: setup/teardown latency alone, ROUNDS rounds, summed up on stderr.
latency_only() {
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    make_workdir
    RESULTS=$WORK/results.tsv
    : >"$RESULTS"
    build
    local round
    for round in $(seq "$ROUNDS"); do
        measure_latency "$round"
    done
    local what
    for what in setup teardown; do
        local medians
        medians=$(awk -F'\t' -v w="$what" '$2 == w && $3 == "emptydirfs" {print $4}' "$RESULTS" | paste -sd' ')
        log "$what: median of the round medians $(median <<<"$medians") ms (rounds: $medians ms)"
    done
    log "every run, setup: $(spread "${ALL_SETUP[@]}") ms; teardown: $(spread "${ALL_TEARDOWN[@]}") ms" \
        "($LAT_ITERS runs per round, $ROUNDS rounds)"
    log "command: $COMMAND; load average before and after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
    machine_info | grep -E '^(date|machine|emptydirfs):' >&2
}

# RSS of a fresh memory daemon: idle, holding RSS_MIB of random data, after deleting it.
measure_rss() {
    local round=$1 mnt=$WORK/rss-r$round pid idle full after
    # Random data, written once: 64 MiB repeated (reading /dev/urandom for 1 GiB is slow).
    [ -f "$WORK/random-64m" ] || head -c 64M /dev/urandom >"$WORK/random-64m"
    start_daemon "rss-r$round" "$mnt" "$BIN" serve --medium memory --size-limit "$SIZE_LIMIT" "$mnt"
    pid=$DAEMON_PID
    sleep 0.5
    idle=$(rss_mib "$pid" "$mnt")
    for _ in $(seq $((RSS_MIB / 64))); do cat "$WORK/random-64m"; done >"$mnt/data"
    sync "$mnt/data"
    full=$(rss_mib "$pid" "$mnt")
    rm "$mnt/data"
    sleep 1.5
    after=$(rss_mib "$pid" "$mnt")
    stop_pid "$pid"
    forget_pid "$pid"
    ! mountpoint -q "$mnt" || umount -l "$mnt"
    record "$round" rss-data memory "$RSS_MIB"
    record "$round" rss-idle memory "$idle"
    record "$round" rss-full memory "$full"
    record "$round" rss-after memory "$after"
    log "round $round: memory daemon RSS idle $idle MiB, holding $RSS_MIB MiB $full MiB, after $after MiB"
}

# ---------------------------------------------------------------------------- report

machine_info() {
    local commit
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -z "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] \
        || commit="$commit + uncommitted changes"
    local cmd=$COMMAND var
    for var in BENCH_BIN BENCH_TMPDIR BINDFS_OPTS BENCH_QUICK BENCH_PASSTHROUGH_HP BENCH_PASSTHROUGH_HP_OPTS; do
        [ -z "${!var:-}" ] || [ "$var$SCRATCH_ONLY" = BINDFS_OPTS1 ] || cmd="$var=${!var} $cmd"
    done
    local pthp="not run (BENCH_PASSTHROUGH_HP not given)"
    [ -z "${DIR[passthrough_hp]:-}" ] \
        || pthp="\`prlimit --nofile=$PTHP_NOFILE -- $BENCH_PASSTHROUGH_HP --foreground ${PTHP_OPTS:+$PTHP_OPTS }<dir on the ext4> <mountpoint>\`; open files limit $PTHP_NOFILE$PTHP_LIMITED"
    cat <<EOF
command: \`$cmd\`
date: $(date -u '+%Y-%m-%d %H:%M UTC')
load average (1, 5, 15 min) before and after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)
machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)
emptydirfs: $("$BIN" --version 2>/dev/null || echo "?"), commit $commit${BENCH_BIN:+ (binary given by BENCH_BIN)}
ext4: a fresh 4 GiB image (mkfs.ext4 -q -F: journaled, data=ordered) on a loop device (no direct I/O) over a file on $(findmnt -n -o FSTYPE,SOURCE -T "$WORK" | tr -s ' ')
scratch job: $(cat "$WORK/logs/scratch-tree.log" 2>/dev/null); $(tar --version | head -n 1), $(git --version), $(grep --version | head -n 1), $(sort --version | head -n 1), LC_ALL=C, sort -S $SCRATCH_SORT_BUFFER
passthrough_hp: $pthp
EOF
    [ "$SCRATCH_ONLY" = 1 ] || cat <<EOF
tools: $(fio --version), bindfs $(bindfs --version 2>&1 | awk '{print $2; exit}') ($BINDFS_OPTS), $(gcc --version | head -n 1)
sizes: seq file $SEQ_SIZE; random $RAND_SIZE per job x 2 jobs, ${RUNTIME} s; metadata $META_BATCHES x $META_FILES files; pgbench -s 10, ${PGBENCH_SECONDS} s; page cache with $PAGECACHE_MIB MiB; $LAT_ITERS setups per round; RSS with $RSS_MIB MiB
EOF
}

write_report() {
    local py='' chart_args=() quick=()
    [ "$QUICK" = 0 ] || quick=(--quick)
    [ "$SCRATCH_ONLY" = 0 ] || quick+=(--scratch-only)
    [ "$SCRATCH_ONLY" = 1 ] || py=$(chart_python)
    if [ "$SCRATCH_ONLY" = 1 ]; then
        : # the chart is of the other jobs' ratios
    elif [ -n "$py" ]; then
        if "$py" "$REPORT_PY" chart "$RESULTS" "$CHART" "${quick[@]}"; then
            chart_args=(--chart "$CHART")
            log "chart: $CHART"
        else
            log "the chart failed; report without it"
        fi
    else
        log "matplotlib is not available and could not be installed: no chart"
    fi
    machine_info >"$WORK/machine.txt"
    python3 "$REPORT_PY" report "$RESULTS" "$WORK/machine.txt" --out "$OUT" \
        --rounds "$ROUNDS" --latency-iters "$LAT_ITERS" "${chart_args[@]}" "${quick[@]}"
    if [ ${#FAILURES[@]} -gt 0 ]; then
        printf '\n## Failures\n\n' | tee -a "$OUT"
        printf -- '- %s\n' "${FAILURES[@]}" | tee -a "$OUT"
    fi
    mkdir -p "$(dirname "$OUT")"
    cp "$RESULTS" "${OUT%.md}.tsv"
    log "report: $OUT (raw figures: ${OUT%.md}.tsv)"
}

main() {
    parse_args "$@"
    [ "$(id -u)" = 0 ] || { echo "bench.sh: it mounts filesystems; run it as root" >&2; exit 2; }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if [ "$LATENCY_ONLY" = 1 ]; then
        latency_only
        return
    fi
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    install_deps
    make_workdir
    RESULTS=$WORK/results.tsv
    : >"$RESULTS"
    build
    export BENCH_SEQ_SIZE=$SEQ_SIZE BENCH_RAND_SIZE=$RAND_SIZE BENCH_RUNTIME=$RUNTIME
    scratch_prepare
    setup_targets
    local round w workloads=(seq randread-buffered randread-direct randwrite-buffered
        randwrite-direct metadata pgbench pagecache scratch)
    [ "$SCRATCH_ONLY" = 0 ] || workloads=(scratch)
    for round in $(seq "$ROUNDS"); do
        log "round $round of $ROUNDS"
        for w in "${workloads[@]}"; do
            workload "$round" "$w"
        done
        [ "$SCRATCH_ONLY" = 1 ] || { measure_latency "$round"; measure_rss "$round"; }
    done
    scratch_passthrough_note
    write_report
    [ ${#FAILURES[@]} -eq 0 ]
}

# Run unless sourced (sourcing gives the functions, for testing them).
[[ ${BASH_SOURCE[0]} != "$0" ]] || main "$@"
