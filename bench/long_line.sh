#!/usr/bin/env bash
# Writes the hostile input of issue 15 item 2: a Python file of ONE line, `x = [requests.get(u), ...]`, of
# about SIZE bytes (default 2,000,000). With `--async` the same line sits in an `async def` (three lines in
# all), where two detectors report every call instead of one.
# Usage: bench/long_line.sh [--async] OUT.py [SIZE]
set -euo pipefail
mode=module
if [ "${1:-}" = "--async" ]; then
  mode=async
  shift
fi
out=${1:?usage: bench/long_line.sh [--async] OUT.py [SIZE]}
size=${2:-2000000}
python3 - "$mode" "$out" "$size" <<'PY'
import sys
mode, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
head = "x = [" if mode == "module" else "import requests\nasync def handler(u):\n    x = ["
call = "requests.get(u), "
n = max(1, (size - len(head) - 2) // len(call))
with open(out, "w") as f:
    f.write(head + call * n + "]\n")
PY
