#!/usr/bin/env bash
# Writes a Python file of one line of `requests.get(u)` calls in an async function's list, of about SIZE bytes
# (default 2,000,000): the hostile input of issue 15 item 2 (memory = findings x line length).
# Usage: bench/long_line.sh OUT.py [SIZE]
set -euo pipefail
out=${1:?usage: bench/long_line.sh OUT.py [SIZE]}
size=${2:-2000000}
python3 - "$out" "$size" <<'PY'
import sys
out, size = sys.argv[1], int(sys.argv[2])
head = "import requests\nasync def handler(u):\n    x = ["
call = "requests.get(u), "
n = max(1, (size - len(head) - 2) // len(call))
with open(out, "w") as f:
    f.write(head + call * n + "]\n")
PY
