#!/bin/sh
# keras.sh SCRIPT [ARGS]: runs one of scripts/keras_*.py with the Keras of .venv/keras, from the
# repository root. Without that environment it exits 77, which ctest reports as skipped, with the
# reason in the test's output. `scripts/venv.sh keras` creates it (CI does).
py=.venv/keras/bin/python
if [ ! -f .venv/keras/requirements.sha256 ]; then
  echo "skipped: no Keras here (.venv/keras); scripts/venv.sh keras installs TensorFlow, Keras 3 and JAX"
  exit 77
fi
TF_CPP_MIN_LOG_LEVEL=3 exec "$py" "$@"
