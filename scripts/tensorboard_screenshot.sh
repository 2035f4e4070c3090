#!/usr/bin/env bash
# tensorboard_screenshot.sh LOGDIR OUT.png [WIDTHxHEIGHT]: TensorBoard's scalars dashboard for LOGDIR, as
# Debian's headless Chromium draws it, into OUT.png (docs/figures/tensorboard-mnist-and-keras.png is one).
# Installs chromium and .venv/tensorboard if missing; serves on a free local port only while it shoots.
set -euo pipefail
cd "$(dirname "$0")/.."
logdir="${1:?usage: scripts/tensorboard_screenshot.sh LOGDIR OUT.png [WIDTHxHEIGHT]}" out="${2:?usage: ... LOGDIR OUT.png}"
size="${3:-1400x900}"
scripts/apt.sh chromium
py=$(scripts/venv.sh tensorboard)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$(dirname "$py")/tensorboard" --logdir "$logdir" --host 127.0.0.1 --port "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port" >/dev/null && break; sleep 0.5; done
# SwiftShader draws the charts' WebGL without a GPU; virtual time lets the dashboard load its data first.
chromium --headless --no-sandbox --use-gl=angle --use-angle=swiftshader --enable-unsafe-swiftshader --hide-scrollbars \
  --window-size="${size/x/,}" --virtual-time-budget=30000 --screenshot="$out" "http://127.0.0.1:$port/#scalars" 2>/dev/null
echo "wrote $out"
