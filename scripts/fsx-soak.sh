#!/usr/bin/env bash
# A long fsx run: every operation enabled (tests/conformance/fsx.toml), OPS operations per
# seed, each seed on tmpfs and on every emptydirfs medium; stops at the first miscompare.
#
#   scripts/fsx-soak.sh [OPS] [SEED...]      (as root; default 1000000 operations, seeds 1 2 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ops=${1:-1000000}
shift || true
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
