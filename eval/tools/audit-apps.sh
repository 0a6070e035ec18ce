#!/usr/bin/env bash
# Audit every application of one half, whole files, into OUTDIR/<name>.json.
# Usage: bash eval/tools/audit-apps.sh BIN OUTDIR calibration|evaluation ROOT...
# Each application is looked for as ROOT/<name> (names in eval/apps.tsv), a one-commit checkout of the listed commit.
set -euo pipefail
bin=$(realpath "$1"); out=$2; half=$3; shift 3
here=$(dirname "$0")/..
mkdir -p "$out"
awk -F'\t' -v h="$half" 'NR > 1 && $2 == h { print $1 }' "$here/apps.tsv" | while read -r name; do
  dir=""
  for root in "$@"; do [ -d "$root/$name" ] && dir="$root/$name"; done
  [ -n "$dir" ] || { echo "skip $name: not under $*" >&2; continue; }
  (cd "$dir" && PRODAUDIT_NO_CACHE=1 "$bin" audit --all-lines --format json --no-progress --fail-on never \
     > "$out/$name.json" 2> "$out/$name.err") || echo "audit of $name failed (see $out/$name.err)" >&2
done
