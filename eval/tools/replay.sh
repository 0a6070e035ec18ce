#!/usr/bin/env bash
# Replay merged pull requests: each merge audited as `audit --base <merge>^1 --head <merge>` into OUTDIR/<app>/<sha>.json.
# Usage: bash eval/tools/replay.sh BIN OUTDIR REPLAYROOT app...
# REPLAYROOT/<app> is a clone of the app's history and REPLAYROOT/<app>.merges lists the merge commits, one per line.
set -euo pipefail
bin=$(realpath "$1"); out=$2; root=$3; shift 3
for app in "$@"; do
  mkdir -p "$out/$app"
  while read -r sha; do
    [ -n "$sha" ] || continue
    PRODAUDIT_NO_CACHE=1 "$bin" audit --repo "$root/$app" --base "$sha^1" --head "$sha" --format json \
      --no-progress --fail-on never > "$out/$app/$sha.json" 2> "$out/$app/$sha.err" \
      || echo "$app $sha: audit failed (see $out/$app/$sha.err)" >&2
  done < "$root/$app.merges"
done
