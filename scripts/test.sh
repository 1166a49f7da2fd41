#!/usr/bin/env bash
# Installs what the tests need and runs every test: the deploy/ manifests' validation,
# clippy (every warning an error: among them an unsafe block without a SAFETY comment),
# unit tests and the integration tests, which mount real FUSE volumes and so must run as
# root. Tests run under cargo-nextest, each in a process of its own with a deadline
# (tests/nextest.toml): a test that hangs fails by name instead of holding the run.
#
#   scripts/test.sh [extra cargo nextest run arguments, e.g. a filter]
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
cargo nextest run --locked --config-file tests/nextest.toml --no-tests=fail "$@"
