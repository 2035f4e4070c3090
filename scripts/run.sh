#!/usr/bin/env bash
# run.sh [mnist args]: set up (packages, build, data) and run build/mnist.
# With no arguments it trains the paper: build/mnist train --config configs/paper.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ $# -eq 0 ]; then set -- train --config configs/paper.json; fi
exec build/mnist "$@"
