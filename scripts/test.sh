#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (network-namespace
# tests need root and say SKIPPED otherwise; under CI=true they must run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
