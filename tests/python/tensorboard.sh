#!/bin/sh
# tensorboard.sh ARGS: tests/python/tensorboard_readback.py with the TensorBoard of .venv/tensorboard,
# from the repository root. scripts/setup.sh creates that environment; without it this exits 77,
# which ctest reports as skipped, with the reason in the test's output.
if [ ! -f .venv/tensorboard/requirements.sha256 ]; then
  echo "skipped: no TensorBoard here (.venv/tensorboard); scripts/venv.sh tensorboard installs it"
  exit 77
fi
exec .venv/tensorboard/bin/python tests/python/tensorboard_readback.py "$@"
