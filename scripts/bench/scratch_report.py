"""The scratch-work job's section of bench.sh's report (scripts/bench/scratch.sh).

Its figures are seconds (lower is better), recorded as `scratch-PHASE` workloads; a
ratio is a target's time over the reference's time of the same round, so 2.0 means
twice as long.
"""

PHASES = [
    ("untar", "untar"),
    ("git", "git add -A + commit"),
    ("grep", "grep -r, cold"),
    ("sort", "sort spilling to the volume"),
    ("rm", "rm -rf"),
    ("total", "total"),
]
TARGETS = [
    ("tmpfs", "tmpfs"),
    ("memory", "memory volume"),
    ("ext4", "ext4"),
    ("disk", "disk volume"),
    ("passthrough_hp", "passthrough_hp"),
]
# Issue 21's targets for the total: (numerator, reference, maximum ratio, whether the
# maximum itself misses: "ahead of passthrough_hp" is strictly under 1).
GOALS = [
    ("memory", "tmpfs", 1.8, False),
    ("disk", "ext4", 2.0, False),
    ("memory", "passthrough_hp", 1.0, True),
    ("disk", "passthrough_hp", 1.0, True),
]


def workload(phase):
    return f"scratch-{phase}"


def present(data):
    return any(w.startswith("scratch-") for w, _ in data)


def section(data, out, median, ratio, check):
    """Appends the section's lines with OUT; MEDIAN(data, workload, target) and
    RATIO(data, workload, num, ref) are report.py's (per-round ratios, median)."""
    targets = [(t, label) for t, label in TARGETS if (workload("total"), t) in data]
    ids = [t for t, _ in targets]

    def cell(v, digits=2):
        if v is None:
            return "–"
        return f"{v:.{digits}f}" if isinstance(v, float) else v

    def times(r):
        return cell(r) + "x" if isinstance(r, float) else cell(r)

    out("## Real scratch work (issue 21)")
    out("")
    out(
        "A pod's scratch job on a generated source tree (scripts/bench/scratch-tree.py; "
        "its size is on the `scratch job` line above: a few levels of directories, text "
        "files of varied size and a few large ones), timed phase by phase in seconds, "
        "each target in turn in every round: `tar -xf` of the tree; `git "
        "add -A && git commit` (gc.auto=0, maintenance.auto=false, no fsmonitor); `grep -rn "
        "TODO` over it with the caches dropped first; `sort -T <volume> -S <small buffer>` "
        "of a file of log lines (outside the volume), its temporary files and output "
        "on the volume; `rm -rf` of all of it. Every run's git tree id, grep count and "
        "sorted bytes are checked against the first target's."
    )
    out("")
    out("| phase | " + " | ".join(label for _, label in targets) + " |")
    out("|---|" + "---:|" * len(targets))
    for phase, label in PHASES:
        cells = [cell(median(data, workload(phase), t)) for t in ids]
        if phase == "total":
            label, cells = f"**{label}**", [f"**{c}**" for c in cells]
        out(f"| {label} | " + " | ".join(cells) + " |")
    out("")

    for ref in ("tmpfs", "ext4"):
        if ref not in ids:
            continue
        others = [(t, label) for t, label in targets if t != ref]
        out(f"Time over {ref}'s in the same round (lower is better; median of the rounds):")
        out("")
        out("| phase | " + " | ".join(label for _, label in others) + " |")
        out("|---|" + "---:|" * len(others))
        for phase, label in PHASES:
            cells = [times(ratio(data, workload(phase), t, ref)) for t, _ in others]
            out(f"| {label} | " + " | ".join(cells) + " |")
        out("")

    rows = [goal for goal in GOALS if goal[0] in ids and goal[1] in ids]
    if rows:
        out("Issue 21's targets for the total (time ratios, per round):")
        out("")
        out("| total | ratio | target |")
        out("|---|---:|---|")
        for num, ref, goal, strict in rows:
            r = ratio(data, workload("total"), num, ref)
            c = times(r)
            if isinstance(r, float):
                c += check(r < goal if strict else r <= goal)
            want = f"< {goal}x (ahead of it)" if strict else f"≤ {goal}x"
            out(f"| {num} / {ref} | {c} | {want} |")
        out("")
