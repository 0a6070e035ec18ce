#!/usr/bin/env bash
# Golden reports: prove that a refactor did not change what prodaudit reports.
#
# Usage:
#   bench/golden.sh save  DIR [ROOT...]   write the reports of the current binary to DIR (created, overwritten)
#   bench/golden.sh check DIR [ROOT...]   compare the current binary's reports with those saved in DIR; prints a
#                                         summary of every difference and exits 1 when there is one
#
# What is compared, per ROOT (a directory):
#   - `prodaudit audit --all-lines --no-progress --format json` on it, the findings sorted deterministically
#     (path, line, column, end position, check, fingerprint) and written one JSON object a line with sorted keys,
#     so messages, fixes and fingerprints are all compared byte for byte; the summary is kept too, with nothing
#     removed (it holds counts and skipped files only, no timings);
#   - once per run (not per root): `prodaudit rules list` and `prodaudit rules explain ID` for every rubric id that
#     has a rule file in rules/ (28 today).
#
# Default roots (each used only when present):
#   /work/corpus/{full-stack-fastapi-template,dispatch,polar,onyx,opengpts}   the five projects of RULES.md
#   deploy/ of this repository
#   bench/.work/corpus                                                       the benchmark corpus, built by
#                                                                             `bash bench/throughput.sh` (it installs a
#                                                                             pinned venv from PyPI once)
#
# How a root is audited: when ROOT is the top of a git work tree, `--repo ROOT`; when it lies inside one (deploy/),
# `--repo TOP PATH`; when it is in no git repository, GIT_CEILING_DIRECTORIES stops git's upward search at ROOT's
# parent (as bench/throughput.sh does), so ROOT itself is the root walked. GIT_OPTIONAL_LOCKS=0 keeps git from
# refreshing any index: the corpus checkouts are read-only and are never modified.
#
# The binary: PRODAUDIT=path (default target/release/prodaudit, built with `cargo build --release --locked` when
# missing). Exit status of prodaudit 0 or 1 is fine (1 = findings at or above fail-on); anything else stops here.

set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT_DIR"

log() { printf '%s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 2
}

usage() {
  sed -n '2,8p' "$0" >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
MODE="$1"
OUT="$2"
shift 2
case "$MODE" in save | check) ;; *) usage ;; esac

PRODAUDIT="${PRODAUDIT:-target/release/prodaudit}"
if [[ ! -x "$PRODAUDIT" ]]; then
  [[ "$PRODAUDIT" == target/release/prodaudit ]] || die "no prodaudit binary at $PRODAUDIT"
  log "building the release binary"
  cargo build --release --locked --quiet || die "cargo build failed"
fi
PRODAUDIT="$(cd "$(dirname "$PRODAUDIT")" && pwd)/$(basename "$PRODAUDIT")"
command -v python3 >/dev/null || die "python3 is needed to sort the reports"

ROOTS=("$@")
if [[ ${#ROOTS[@]} -eq 0 ]]; then
  for p in full-stack-fastapi-template dispatch polar onyx opengpts; do
    [[ -d "/work/corpus/$p" ]] && ROOTS+=("/work/corpus/$p")
  done
  ROOTS+=("$ROOT_DIR/deploy")
  [[ -d "$ROOT_DIR/bench/.work/corpus" ]] && ROOTS+=("$ROOT_DIR/bench/.work/corpus")
fi

NEW="$(mktemp -d)"
trap 'rm -rf "$NEW"' EXIT
export LC_ALL=C GIT_OPTIONAL_LOCKS=0

# name_of DIR: a file name for a root (its path with / turned into _).
name_of() { printf '%s' "$1" | sed 's#^/##; s#/#_#g'; }

# sort_report IN OUT: findings one a line, sorted, keys sorted; then the summary.
sort_report() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1], encoding="utf-8"))
findings = doc.get("findings", [])
def key(f):
    return (f.get("path", ""), f.get("line", 0), f.get("column", 0), f.get("end_line", 0),
            f.get("end_column", 0), f.get("check", ""), f.get("fingerprint", ""), f.get("message", ""))
with open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write(f"version {doc.get('version')}\n")
    for f in sorted(findings, key=key):
        out.write(json.dumps(f, sort_keys=True, ensure_ascii=False) + "\n")
    out.write("summary " + json.dumps(doc.get("summary", {}), sort_keys=True, ensure_ascii=False) + "\n")
EOF
}

for dir in "${ROOTS[@]}"; do
  [[ -d "$dir" ]] || die "no directory $dir"
  dir="$(cd "$dir" && pwd)"
  name="$(name_of "$dir")"
  top="$(git -C "$dir" rev-parse --show-toplevel 2>/dev/null || true)"
  env_args=()
  if [[ -z "$top" ]]; then
    env_args=("GIT_CEILING_DIRECTORIES=$(dirname "$dir")")
    cmd=("$PRODAUDIT" audit --all-lines --no-progress --format json --repo "$dir")
  elif [[ "$top" == "$dir" ]]; then
    cmd=("$PRODAUDIT" audit --all-lines --no-progress --format json --repo "$dir")
  else
    cmd=("$PRODAUDIT" audit --all-lines --no-progress --format json --repo "$top" "${dir#"$top"/}")
  fi
  log "auditing $dir"
  rc=0
  env "${env_args[@]}" "${cmd[@]}" >"$NEW/raw.json" 2>"$NEW/stderr" || rc=$?
  if [[ $rc -gt 1 ]]; then
    head -c 2000 "$NEW/stderr" >&2
    die "prodaudit exited $rc on $dir"
  fi
  sort_report "$NEW/raw.json" "$NEW/$name.report"
  rm -f "$NEW/raw.json" "$NEW/stderr"
done

log "rules list / explain"
"$PRODAUDIT" rules list >"$NEW/rules-list.txt"
for f in "$ROOT_DIR"/rules/*.yml; do
  id="$(basename "$f" .yml)"
  "$PRODAUDIT" rules explain "$id" >"$NEW/rules-explain-$id.txt"
done

if [[ "$MODE" == save ]]; then
  mkdir -p "$OUT"
  rm -f "$OUT"/*.report "$OUT"/rules-*.txt
  cp "$NEW"/* "$OUT"/
  log "saved $(ls "$NEW" | wc -l) files to $OUT"
  exit 0
fi

[[ -d "$OUT" ]] || die "no saved golden set at $OUT"
status=0
for f in "$NEW"/*; do
  base="$(basename "$f")"
  if [[ ! -f "$OUT/$base" ]]; then
    log "NEW    $base (not in the saved set)"
    status=1
  elif ! cmp -s "$f" "$OUT/$base"; then
    removed="$(diff "$OUT/$base" "$f" | grep -c '^<' || true)"
    added="$(diff "$OUT/$base" "$f" | grep -c '^>' || true)"
    log "DIFF   $base: $removed lines only in the saved set, $added only now; first lines:"
    diff "$OUT/$base" "$f" | head -n 10 | cut -c1-300 >&2 || true
    status=1
  else
    log "same   $base ($(wc -l <"$f") lines)"
  fi
done
for f in "$OUT"/*; do
  [[ -f "$NEW/$(basename "$f")" ]] || {
    log "GONE   $(basename "$f") (saved but not produced now)"
    status=1
  }
done
[[ $status -eq 0 ]] && log "golden: identical" || log "golden: DIFFERENT"
exit $status
