#!/usr/bin/env bash
# A long soak on both media: rounds of fsx (a new seed each round, every operation
# enabled) and of the fio verify jobs, until the time is up or something fails.
#
#   scripts/soak.sh [MINUTES]        (as root; default 60; FSX_OPS per round, default 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
ops=${FSX_OPS:-200000}
scripts/install-test-deps.sh
cargo build --locked --release --quiet --tests
end=$(( $(date +%s) + minutes * 60 ))
round=0
while [ "$(date +%s)" -lt "$end" ]; do
    round=$((round + 1))
    seed=$((1000 + round))
    echo "== round $round: fsx and fio seed $seed ($ops fsx operations), on tmpfs, memory, disk"
    FSX_OPS=$ops FSX_SEED=$seed FIO_SEED=$seed cargo test --locked --release --quiet --test integration \
        -- --test-threads=3 fsx_finds_no_miscompare fio_jobs_verify_every_block
    for t in tmpfs memory disk; do
        echo "   $t: fsx $(cat target/tmp/conformance/fsx-$t.txt); fio $(cat target/tmp/conformance/fio-verify-$t.txt)"
    done
done
echo "soak: $round rounds in $minutes minutes, no failure"
