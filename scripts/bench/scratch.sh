# shellcheck shell=bash
# The scratch-work job of scripts/bench.sh (issue 21), sourced by it: what a pod's CI
# build or package install does to its scratch volume, timed phase by phase, in seconds.
#
#   untar   tar -xf of a source tree (scripts/bench/scratch-tree.py: 12,000 files,
#           157 MB; the tar is read from the page cache)
#   git     git add -A && git commit of that tree into a fresh repository (git init
#           untimed), with git's background work off: gc.auto=0, maintenance.auto=false,
#           core.fsmonitor=false; no system or global git configuration
#   grep    grep -rn TODO over the tree (.git left out), cold: sync and
#           echo 3 >/proc/sys/vm/drop_caches first (untimed)
#   sort    sort -T <volume> -S $SCRATCH_SORT_BUFFER -o <volume>/sorted of a 200 MB file
#           of log lines outside the volume (read from the page cache): the temporary
#           runs and the output go to the volume
#   rm      rm -rf of everything the job left on the volume
#   total   the sum of the five
#
# Everything runs with LC_ALL=C. Each target's run is checked against the first
# target's of the run: the same git tree id, the same number of grep matches, the same
# sorted bytes, and nothing left after rm; a difference is a failure of the run.
#
# Targets: tmpfs, memory, ext4, disk (those of bench.sh) and passthrough_hp, libfuse's
# example passthrough_hp (C++, with the kernel's FUSE passthrough for reads and writes,
# its default) over a directory of the run's ext4, a FUSE peer without limits. It is
# not part of this repository: BENCH_PASSTHROUGH_HP=PATH names a binary built outside
# it (libfuse 3.18's example/passthrough_hp); without it that target is skipped, with a
# message. BENCH_PASSTHROUGH_HP_OPTS adds options to its command line. It runs with
# the limit of open files raised to fs.nr_open where the run may raise it (below).
#
# It uses bench.sh's QUICK, WORK, BENCH_DIR, ROOT, DIR, FAILURES, log, die, record and
# start_daemon.

SCRATCH_TARGETS=(tmpfs memory ext4 disk passthrough_hp)
if [ "$QUICK" = 1 ]; then
    SCRATCH_SORT_BUFFER=1M
else
    SCRATCH_SORT_BUFFER=8M
fi
SCRATCH= # the directory holding the tar, the sort input and the git configuration
PTHP_OPTS=${BENCH_PASSTHROUGH_HP_OPTS:-}
PTHP_NOFILE=$(cat /proc/sys/fs/nr_open) # its limit of open files (start_passthrough_hp)
PTHP_LIMITED=
declare -A SCRATCH_REF # what the first target's run gave, for checking the others

# Writes the tree's tar and the sort input into the run's temporary directory.
scratch_prepare() {
    SCRATCH=$WORK/scratch
    mkdir -p "$SCRATCH"
    local quick=()
    [ "$QUICK" = 0 ] || quick=(--quick)
    log "generating the scratch job's tree and sort input"
    python3 "$BENCH_DIR/scratch-tree.py" "$SCRATCH/tree.tar" "$SCRATCH/sort-input" "${quick[@]}" \
        2>"$WORK/logs/scratch-tree.log" || die "scratch-tree.py failed: $(cat "$WORK/logs/scratch-tree.log")"
    log "$(cat "$WORK/logs/scratch-tree.log")"
    cat >"$SCRATCH/gitconfig" <<'EOF'
[user]
	name = bench
	email = bench@example.invalid
[gc]
	auto = 0
[maintenance]
	auto = false
[core]
	fsmonitor = false
[commit]
	gpgsign = false
[init]
	defaultBranch = main
EOF
}

# Mounts passthrough_hp over a directory of the run's ext4, if BENCH_PASSTHROUGH_HP
# names it; otherwise drops the target from SCRATCH_TARGETS, saying why.
start_passthrough_hp() {
    local bin=${BENCH_PASSTHROUGH_HP:-} why=
    if [ -z "$bin" ]; then
        why="BENCH_PASSTHROUGH_HP is not set"
    elif [ ! -x "$bin" ]; then
        why="BENCH_PASSTHROUGH_HP=$bin is not an executable file"
    fi
    if [ -n "$why" ]; then
        log "skipping the passthrough_hp target: $why (give it the path of libfuse's" \
            "example/passthrough_hp, built outside this repository)"
        SCRATCH_TARGETS=(tmpfs memory ext4 disk)
        return
    fi
    mkdir -p "$WORK/ext4/passthrough_hp-source"
    # It holds a descriptor for every inode the kernel knows: about 27,000 by the end of
    # the git phase (the tree and git's objects), more than a default limit of open
    # files may allow. At the limit it fails FLUSH with EBADF (close(dup(fd)) of a
    # failed dup), and git with it. So it may open as many as the kernel allows a
    # process, where this run may raise its limit (CAP_SYS_RESOURCE).
    if ! prlimit --nofile="$PTHP_NOFILE" -- true 2>/dev/null; then
        PTHP_NOFILE=$(ulimit -Hn)
        PTHP_LIMITED=" (could not be raised here; at the limit its git phase fails with EBADF)"
        log "warning: passthrough_hp keeps a descriptor open per inode, about 27,000 in the" \
            "full job, and the limit of open files cannot be raised above $PTHP_NOFILE" \
            "here: its git phase will fail if the kernel keeps that many inodes"
    fi
    # shellcheck disable=SC2086 # PTHP_OPTS is a list of options
    start_daemon passthrough_hp "$WORK/passthrough_hp" \
        prlimit --nofile="$PTHP_NOFILE" -- \
        "$bin" --foreground $PTHP_OPTS "$WORK/ext4/passthrough_hp-source" "$WORK/passthrough_hp"
    DIR["passthrough_hp"]=$WORK/passthrough_hp
}

# scratch_phase ROUND TARGET PHASE COMMAND...: runs COMMAND (output to the phase's log),
# records its seconds and adds them to SCRATCH_TOTAL; on failure records `fail`, and the
# total is `fail` too (the later phases still run, on what the failed one left).
scratch_phase() {
    local round=$1 target=$2 phase=$3 t0 t1 secs
    shift 3
    local logf=$WORK/logs/r$round-$target-scratch-$phase.log
    t0=${EPOCHREALTIME/[.,]/}
    if "$@" >"$logf" 2>&1; then
        t1=${EPOCHREALTIME/[.,]/}
        secs=$(awk -v us=$((t1 - t0)) 'BEGIN {printf "%.3f", us / 1e6}')
        [ "$SCRATCH_TOTAL" = fail ] \
            || SCRATCH_TOTAL=$(awk -v a="$SCRATCH_TOTAL" -v b="$secs" 'BEGIN {printf "%.3f", a + b}')
    else
        secs=fail SCRATCH_TOTAL=fail
        FAILURES+=("round $round, scratch $phase on $target: $(tail -n 3 "$logf" | tr '\n' ' ')")
    fi
    record "$round" "scratch-$phase" "$target" "$secs"
    SCRATCH_TIMES+=("$phase $secs")
}

# scratch_check ROUND TARGET WHAT VALUE: the first target's VALUE is the reference; a
# later one that differs is a failure.
scratch_check() {
    local round=$1 target=$2 what=$3 value=$4
    if [ -z "${SCRATCH_REF[$what]:-}" ]; then
        SCRATCH_REF[$what]=$value
    elif [ "${SCRATCH_REF[$what]}" != "$value" ]; then
        FAILURES+=("round $round, scratch on $target: $what is $value, not ${SCRATCH_REF[$what]} as on ${SCRATCH_TARGETS[0]}")
        log "round $round: scratch on $target: $what is $value, not ${SCRATCH_REF[$what]}"
    fi
}

# The phases' commands, run in the job's directory; git sees no system or global
# configuration but the run's (scratch_prepare).
scratch_git() {
    GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$SCRATCH/gitconfig git "$@"
}
scratch_commit() { scratch_git add -A && scratch_git commit -q -m "the tree"; }
scratch_grep() { LC_ALL=C grep -rn --exclude-dir=.git TODO . | wc -l >"$SCRATCH/grep-count"; }
scratch_sort() {
    LC_ALL=C sort -T "$1/sort-tmp" -S "$SCRATCH_SORT_BUFFER" -o "$1/sorted" "$SCRATCH/sort-input"
}

# One run of the job in TARGET's directory.
run_scratch() {
    local round=$1 target=$2
    local job=${DIR[$target]}/job
    SCRATCH_TOTAL=0 SCRATCH_TIMES=()
    mkdir "$job"
    cat "$SCRATCH/tree.tar" >/dev/null # read from the page cache below
    scratch_phase "$round" "$target" untar tar -xf "$SCRATCH/tree.tar" -C "$job"

    cd "$job" || return
    scratch_git init -q
    scratch_phase "$round" "$target" git scratch_commit
    scratch_check "$round" "$target" "git tree" "$(scratch_git rev-parse -q --verify 'HEAD^{tree}' || echo none)"

    sync
    echo 3 >/proc/sys/vm/drop_caches
    rm -f "$SCRATCH/grep-count"
    scratch_phase "$round" "$target" grep scratch_grep
    scratch_check "$round" "$target" "grep matches" "$(cat "$SCRATCH/grep-count" 2>/dev/null || echo none)"
    cd "$ROOT" || return

    cat "$SCRATCH/sort-input" >/dev/null
    mkdir "$job/sort-tmp"
    scratch_phase "$round" "$target" sort scratch_sort "$job"
    scratch_check "$round" "$target" "sorted output" "$(sha256sum <"$job/sorted" | cut -c1-16)"

    scratch_phase "$round" "$target" rm rm -rf "$job"
    local left
    left=$(find "${DIR[$target]}" -mindepth 1 -maxdepth 1 | head -n 3 | tr '\n' ' ')
    [ -z "$left" ] || FAILURES+=("round $round, scratch on $target: left after rm -rf: $left")
    record "$round" scratch-total "$target" "$SCRATCH_TOTAL"
    log "round $round: scratch on $target: ${SCRATCH_TIMES[*]}; total $SCRATCH_TOTAL s"
}

# After the runs: passthrough_hp says on stderr if the kernel refused its passthrough
# (it then serves reads and writes itself); a run measuring that must say so.
scratch_passthrough_note() {
    local logf=$WORK/logs/passthrough_hp.log
    [ -n "${DIR[passthrough_hp]:-}" ] || return 0
    if grep -q 'fuse_passthrough_open failed' "$logf" 2>/dev/null; then
        FAILURES+=("passthrough_hp: the kernel refused its passthrough: $(grep -m1 'passthrough_open failed' "$logf")")
    fi
}
