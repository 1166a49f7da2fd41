#!/usr/bin/env bash
# Installs what the tests need and runs every test: the deploy/ manifests' validation,
# clippy (every warning an error: among them an unsafe block without a SAFETY comment),
# unit tests and the integration tests, which mount real FUSE volumes and so must run as
# root.
#
#   scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the tests mount filesystems; run it as root" >&2
    exit 2
fi
scripts/install-test-deps.sh
scripts/validate-manifests.sh
if ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add clippy
fi
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked "$@"
