#!/usr/bin/env bash
# test.sh [ctest args]: set up (packages, build, data) and run the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
