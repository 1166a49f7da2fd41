#!/usr/bin/env bash
# A long fsx run: every operation enabled (tests/conformance/fsx.toml), OPS operations per
# seed, each seed on tmpfs and on every emptydirfs medium; stops at the first miscompare.
#
#   scripts/fsx-soak.sh [OPS] [SEED...]      (as root; default 200000 operations, seeds 1 2 3)
#
# At most 300000 operations a seed: fsx 0.3.2 never unmaps what its mapread maps (one
# mapping left per mapread, about 1 operation in 6), and past vm.max_map_count (65530)
# its next mmap fails on every filesystem. The leaked mappings also make each direct
# write on the disk medium unmap its range from all of them (the kernel's invalidation
# of a FUSE_DIRECT_IO write), so a disk run slows as it goes: more seeds, not more
# operations.
set -euo pipefail
cd "$(dirname "$0")/.."
ops=${1:-200000}
shift || true
if ! [[ $ops =~ ^[0-9]+$ ]] || [ "$ops" -lt 1 ] || [ "$ops" -gt 300000 ]; then
    echo "fsx-soak.sh: OPS must be a number from 1 to 300000 (got '$ops'); fsx 0.3.2 leaks a mapping per mapread" >&2
    exit 2
fi
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
scripts/install-test-deps.sh
for seed in "${seeds[@]}"; do
    echo "== seed $seed, $ops operations"
    FSX_OPS=$ops FSX_SEED=$seed cargo test --locked --release --test integration fsx_finds_no_miscompare -- --test-threads=3
    for t in tmpfs memory disk; do
        echo "$t: $(cat target/tmp/conformance/fsx-$t.txt)"
    done
done
