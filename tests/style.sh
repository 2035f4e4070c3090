#!/usr/bin/env bash
# style.sh SRC: every function in SRC short and simple enough to read whole: at most 60 lines of
# code and cyclomatic complexity 20 (lizard, from .venv/lint: scripts/venv.sh lint), but for at most
# three that say why with a "#lizard forgives" comment. Exit 77 (skipped) without lizard.
set -euo pipefail
src=${1:?usage: tests/style.sh SRC_DIR}
lizard="$(dirname "$0")/../.venv/lint/bin/lizard"
[ -x "$lizard" ] || { echo "no lizard in .venv/lint (scripts/venv.sh lint): skipped"; exit 77; }
forgiven=$( (grep -rc "#lizard forgives" "$src" || true) | awk -F: '{n += $2} END {print n + 0}')
if [ "$forgiven" -gt 3 ]; then
  grep -rn "#lizard forgives" "$src"
  echo "style: $forgiven functions are forgiven their length or complexity; at most 3 may be"
  exit 1
fi
"$lizard" --length 60 --CCN 20 --warnings_only "$src" && echo "style: every function in $src within 60 lines and complexity 20 ($forgiven forgiven)"
