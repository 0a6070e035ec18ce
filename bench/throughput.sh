#!/usr/bin/env bash
# Throughput benchmark: prodaudit vs. ruff over one fixed corpus of real-world Python.
#
# Usage (from the repository root):   bash bench/throughput.sh
#
# Environment:
#   PRODAUDIT  the prodaudit binary (default: target/release/prodaudit, relative to the repo root)
#   PYTHON     the interpreter that creates the venv, and whose standard library is scanned (default: python3)
#   RUNS       timed runs per tool, after one untimed warm-up run (default: 3; the median is reported)
#
# What it does:
#   1. Creates (or reuses, when its pin list is unchanged) a throwaway venv in bench/.work/venv holding the
#      pinned packages below; ruff, the comparison tool, comes from the same venv. Only the top-level packages
#      are pinned; the resolved set (`pip freeze`) is written to bench/.work/venv/freeze.txt and its hash
#      printed, so a change in a transitive dependency is visible.
#   2. Builds the corpus bench/.work/corpus/ from scratch: every *.py file (regular files, no symlinks) of
#        stdlib/         the venv interpreter's standard library, WHOLE, including test/, idlelib/, lib2to3/
#                        and turtledemo/, but excluding its site-packages/ (that is the base interpreter's,
#                        not the venv's). The test suite is kept on purpose: it is real code, and it holds
#                        deliberately broken files (syntax errors, bad encodings, Python 2 sources for lib2to3)
#                        that a scanner must survive;
#        packages/       everything the venv's site-packages holds (the pinned stack, its dependencies, and
#                        pip/setuptools as the venv installed them). Not named site-packages/: prodaudit skips
#                        vendored folders (site-packages, vendor, third_party, .venv …) in the CLI as in the App,
#                        and this half is meant to be read as application code.
#      Only *.py is copied (no .pyi, .yml, Dockerfiles...), so both tools see exactly the same file list and
#      no .gitignore inside the corpus can hide anything.
#   3. Times each tool: one warm-up run (fills the page cache), then RUNS timed runs with
#      `/usr/bin/time -f '%e %M %U %S'` (wall s, peak RSS KiB, user s, sys s); the median of the timed runs is
#      reported. CPU time (user + sys) is reported too: on a busy machine it is steadier than wall time. The
#      1-minute load average before the runs is printed, with a warning when the machine is not idle.
#      A separate untimed run of each counts findings / diagnostics.
#   4. Times prodaudit again with its result cache (.prodaudit_cache/ at the corpus root, removed first): the
#      warm-up run fills the cache, the RUNS timed runs read it (nothing changed in between), and their JSON
#      must be byte-identical to the uncached run's. Reported in the notes below the table, with its ratio to
#      the same run's ruff --no-cache time.
#   5. Prints a markdown table row with the results.
#
# prodaudit finds the repository root with `git rev-parse --show-toplevel` from --repo, and --all-lines then
# walks that root. bench/.work lies inside this repository (and is git-ignored there), so without care it
# would audit the repository, not the corpus. GIT_CEILING_DIRECTORIES=bench/.work stops git's upward search,
# so the corpus is the root prodaudit walks.
#
# ruff flags: `--isolated` ignores every configuration file; `--no-cache` makes each run do all the work;
# `--exclude ''` replaces ruff's default exclude list (which names `site-packages`, `venv`, `dist`, `_build`,
# `node_modules`...: without it ruff would skip the whole site-packages/ half of the corpus);
# `--no-respect-gitignore` stops the enclosing repository's .gitignore (which ignores bench/.work) from
# mattering; `--no-force-exclude` is ruff's default, passed for clarity. The script checks that
# `ruff check --show-files` lists exactly as many files as the corpus holds.
#
# Network: only `pip install` (PyPI) when the venv must be (re)built. Runtime is bounded with `timeout`.

set -euo pipefail

# ---------------------------------------------------------------------------------------------------------
# Pins: exact versions available on the package index this project uses. Keep sorted.
PINS=(
  "aiohttp==3.14.5"
  "alembic==1.20.1"
  "fastapi==0.165.0"
  "httpx==0.28.1"
  "langchain==1.5.2"
  "langchain-core==1.8.3"
  "langchain-openai==1.7.4"
  "langgraph==1.2.24"
  "openai==3.57.0"
  "pydantic==2.14.4"
  "qdrant-client==1.20.0"
  "requests==2.34.2"
  "ruff==0.17.6"
  "sqlalchemy==2.1.9"
  "starlette==1.10.0"
  "uvicorn==0.54.0"
)
# ---------------------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WORK="$ROOT/bench/.work"
VENV="$WORK/venv"
CORPUS="$WORK/corpus"
PYTHON="${PYTHON:-python3}"
PRODAUDIT="${PRODAUDIT:-target/release/prodaudit}"
RUNS="${RUNS:-3}"
TOOL_TIMEOUT=900    # seconds, for one run of either tool
PIP_TIMEOUT=1800    # seconds, for building the venv

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export LC_ALL=C

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH (set PYTHON=...)"
[[ -x "$PRODAUDIT" ]] || die "no prodaudit binary at $PRODAUDIT (cargo build --release, or set PRODAUDIT=...)"
PRODAUDIT="$(cd "$(dirname "$PRODAUDIT")" && pwd)/$(basename "$PRODAUDIT")"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"

TIME_BIN=/usr/bin/time
if ! "$TIME_BIN" -f '%e %M' true >/dev/null 2>&1; then
  die "GNU time is needed at $TIME_BIN (apt-get install -y time)"
fi

mkdir -p "$WORK"
TMP="$(mktemp -d "$WORK/tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# --- 1. the venv -----------------------------------------------------------------------------------------
PIN_FILE="$VENV/bench-pins.txt"
want_pins="$("$PYTHON" -c 'import sys; print("python", sys.version.split()[0], sys.executable)')"
want_pins+=$'\n'"$(printf '%s\n' "${PINS[@]}")"
if [[ -f "$PIN_FILE" && -x "$VENV/bin/python" && "$(cat "$PIN_FILE")" == "$want_pins" ]]; then
  log "reusing venv $VENV (pins unchanged)"
else
  log "creating venv $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  timeout "$PIP_TIMEOUT" "$VENV/bin/python" -m pip install --quiet --no-input "${PINS[@]}" \
    || die "pip install failed"
  "$VENV/bin/python" -m pip freeze --all >"$VENV/freeze.txt"
  printf '%s\n' "$want_pins" >"$PIN_FILE"
fi
RUFF="$VENV/bin/ruff"
[[ -x "$RUFF" ]] || die "no ruff in $VENV"
freeze_hash="$(sha256sum "$VENV/freeze.txt" | cut -c1-12)"
log "venv: $(wc -l <"$VENV/freeze.txt") packages installed, freeze.txt sha256 $freeze_hash"

# --- 2. the corpus ---------------------------------------------------------------------------------------
read -r STDLIB PURELIB PLATLIB < <("$VENV/bin/python" -c \
  'import sysconfig as s; p = s.get_paths(); print(p["stdlib"], p["purelib"], p["platlib"])')
[[ -d "$STDLIB" && -d "$PURELIB" ]] || die "cannot find the stdlib ($STDLIB) or site-packages ($PURELIB)"

# copy_py SRC DEST [find-args...]: every regular *.py file under SRC, same relative layout under DEST.
copy_py() {
  local src="$1" dest="$2"
  shift 2
  mkdir -p "$dest"
  (cd "$src" && find . "$@" -type f -name '*.py' -print0 | tar --null -T - -cf -) | tar -xf - -C "$dest"
}

log "building corpus $CORPUS"
rm -rf "$CORPUS"
copy_py "$STDLIB" "$CORPUS/stdlib" -path ./site-packages -prune -o
copy_py "$PURELIB" "$CORPUS/packages"
if [[ "$PLATLIB" != "$PURELIB" ]]; then
  copy_py "$PLATLIB" "$CORPUS/packages"
fi

files="$(find "$CORPUS" -type f -name '*.py' | wc -l)"
bytes="$(find "$CORPUS" -type f -name '*.py' -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
mib="$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')"
stdlib_files="$(find "$CORPUS/stdlib" -type f -name '*.py' | wc -l)"
site_files="$(find "$CORPUS/packages" -type f -name '*.py' | wc -l)"
big_files="$(find "$CORPUS" -type f -name '*.py' -size +1024k | wc -l)"
log "corpus: $files .py files ($stdlib_files stdlib, $site_files site-packages), $mib MiB; $big_files over 1 MiB"

# --- 3. the commands -------------------------------------------------------------------------------------
# The table's prodaudit column is the cold run (--no-cache: every file analysed); PA_WARM_CMD reads the cache.
PA_WARM_CMD=(env "GIT_CEILING_DIRECTORIES=$WORK" "$PRODAUDIT" audit --all-lines --no-progress --format json
  --repo "$CORPUS")
PA_CMD=("${PA_WARM_CMD[@]}" --no-cache)
RUFF_FLAGS=(--no-cache --isolated --exclude '' --no-respect-gitignore --no-force-exclude
  --select 'ASYNC,S113,T201' --exit-zero)
RUFF_CMD=("$RUFF" check "${RUFF_FLAGS[@]}" --output-format concise "$CORPUS")

# Does ruff see every corpus file?
ruff_files="$(timeout "$TOOL_TIMEOUT" "$RUFF" check "${RUFF_FLAGS[@]}" --show-files "$CORPUS" | grep -c '\.py$' || true)"
log "ruff --show-files: $ruff_files files (corpus: $files)"

# ok_exit TOOL RC: prodaudit exits 0 (no findings) or 1 (findings); ruff with --exit-zero exits 0.
ok_exit() {
  case "$1:$2" in
    prodaudit:0 | prodaudit:1 | prodaudit_warm:0 | prodaudit_warm:1 | ruff:0) return 0 ;;
    *) return 1 ;;
  esac
}

# run_once TOOL OUT CMD...: one run under GNU time; prints "wall_s peak_rss_kib user_s sys_s".
run_once() {
  local tool="$1" out="$2" rc=0
  shift 2
  timeout "$TOOL_TIMEOUT" "$TIME_BIN" -f '%e %M %U %S' -o "$TMP/time" "$@" >"$out" 2>"$TMP/stderr" || rc=$?
  if ! ok_exit "$tool" "$rc"; then
    log "$tool failed (exit $rc): $*"
    head -c 2000 "$TMP/stderr" >&2
    exit 2
  fi
  # GNU time writes "Command exited with non-zero status N" before its line when the exit is not 0.
  tail -n 1 "$TMP/time"
}

# measure TOOL CMD...: one warm-up run, then RUNS timed runs; writes "median_wall_s median_rss_mib median_cpu_s" to
# $TMP/TOOL.result (not to stdout: a failure inside a command substitution would not stop the script).
measure() {
  local tool="$1" i
  shift
  log "$tool: warm-up run"
  run_once "$tool" /dev/null "$@" >/dev/null
  : >"$TMP/$tool.times"
  for ((i = 1; i <= RUNS; i++)); do
    run_once "$tool" /dev/null "$@" >>"$TMP/$tool.times"
    log "$tool: run $i: $(tail -n 1 "$TMP/$tool.times" |
      awk '{printf "%s s wall, %.2f s cpu, %.0f MiB", $1, $3 + $4, $2 / 1024}')"
  done
  local wall rss cpu
  wall="$(awk '{print $1}' "$TMP/$tool.times" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')"
  rss="$(awk '{print $2}' "$TMP/$tool.times" | sort -g | awk '{v[NR] = $1} END {printf "%.0f", v[int((NR + 1) / 2)] / 1024}')"
  cpu="$(awk '{printf "%.2f\n", $3 + $4}' "$TMP/$tool.times" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')"
  printf '%s %s %s\n' "$wall" "$rss" "$cpu" >"$TMP/$tool.result"
}

load="$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null || echo '?')"
if awk -v l="$load" -v n="$(nproc)" 'BEGIN {exit !(l + 0 > n / 4)}'; then
  log "warning: load average $load on $(nproc) cpus: other work is running, wall times will be noisy"
fi
measure prodaudit "${PA_CMD[@]}"
measure ruff "${RUFF_CMD[@]}"
rm -rf "$CORPUS/.prodaudit_cache"
measure prodaudit_warm "${PA_WARM_CMD[@]}"
read -r pa_wall pa_rss pa_cpu <"$TMP/prodaudit.result"
read -r ruff_wall ruff_rss ruff_cpu <"$TMP/ruff.result"
read -r warm_wall warm_rss warm_cpu <"$TMP/prodaudit_warm.result"
warm_ratio="$(awk -v a="$warm_wall" -v b="$ruff_wall" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}')"
cache_entries="$(find "$CORPUS/.prodaudit_cache" -name '*.json' | wc -l)"
cache_kib="$(du -sk "$CORPUS/.prodaudit_cache" | cut -f 1)"
load_after="$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null || echo '?')"
ratio="$(awk -v a="$pa_wall" -v b="$ruff_wall" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}')"

# --- counts, from separate untimed runs ------------------------------------------------------------------
log "counting findings (untimed runs)"
pa_rc=0
timeout "$TOOL_TIMEOUT" "${PA_CMD[@]}" >"$TMP/pa.json" 2>"$TMP/pa.err" || pa_rc=$?
ok_exit prodaudit "$pa_rc" || { head -c 2000 "$TMP/pa.err" >&2; die "prodaudit exited $pa_rc"; }
warm_rc=0
timeout "$TOOL_TIMEOUT" "${PA_WARM_CMD[@]}" >"$TMP/pa-warm.json" 2>"$TMP/pa-warm.err" || warm_rc=$?
ok_exit prodaudit "$warm_rc" || { head -c 2000 "$TMP/pa-warm.err" >&2; die "prodaudit (cache) exited $warm_rc"; }
if cmp -s "$TMP/pa.json" "$TMP/pa-warm.json"; then
  warm_same="byte-identical to the uncached run's"
else
  warm_same="DIFFERENT from the uncached run's"
  log "error: the cached run's JSON differs from the uncached run's"
fi
timeout "$TOOL_TIMEOUT" "$RUFF" check "${RUFF_FLAGS[@]}" --output-format json "$CORPUS" >"$TMP/ruff.json" \
  2>"$TMP/ruff.err"
ruff_unread="$(grep -c 'Failed to lint' "$TMP/ruff.err" || true)"

# prodaudit's JSON is either the full report ({"findings": [...], "summary": {...}}) or, in early builds,
# the bare findings array; both are handled.
pa_counts="$("$VENV/bin/python" - "$TMP/pa.json" <<'EOF'
import collections, json, sys
data = json.load(open(sys.argv[1]))
findings = data if isinstance(data, list) else data.get("findings", [])
summary = {} if isinstance(data, list) else data.get("summary", {})
rules = collections.Counter(f.get("rule") or f.get("rule_id") or f.get("id") or "?" for f in findings)
files = len({f.get("path") or f.get("file") for f in findings})
top = ", ".join(f"{r} {n}" for r, n in rules.most_common(8))
print(f"{len(findings)}\t{summary.get('files_analyzed', 'n/a')}\t{summary.get('files_skipped', 'n/a')}\t"
      f"{files}\t{top}")
EOF
)"
IFS=$'\t' read -r pa_findings pa_analyzed pa_skipped pa_finding_files pa_top <<<"$pa_counts"

ruff_counts="$("$VENV/bin/python" - "$TMP/ruff.json" <<'EOF'
import collections, json, sys
diags = json.load(open(sys.argv[1]))
codes = collections.Counter(d.get("code") or "syntax-error" for d in diags)
syntax = codes.pop("syntax-error", 0) + codes.pop("invalid-syntax", 0)
top = ", ".join(f"{c} {n}" for c, n in codes.most_common(8))
print(f"{sum(codes.values())}\t{syntax}\t{top}")
EOF
)"
IFS=$'\t' read -r ruff_diags ruff_syntax ruff_top <<<"$ruff_counts"

# --- 4. the report ---------------------------------------------------------------------------------------
cpu_model="$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)"
ram="$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || true)"
machine="$(nproc) cpu, ${cpu_model:-unknown cpu}, ${ram:-? GiB}"
pa_version="$("$PRODAUDIT" --version 2>/dev/null | head -n 1 || echo '?')"
commit="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo 'no commit')"
if [[ "$commit" != "no commit" ]] && [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  commit+="+dirty"
fi
ruff_version="$("$RUFF" --version)"
python_version="$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"

ruff_flags_shown=""
for arg in "${RUFF_FLAGS[@]}"; do
  ruff_flags_shown+="${ruff_flags_shown:+ }${arg:-''}"
done

cat <<EOF

| date | machine | prodaudit | commit | ruff | files | MiB | prodaudit wall s | prodaudit cpu s | prodaudit RSS MiB | ruff wall s | ruff cpu s | ruff RSS MiB | prodaudit/ruff wall |
| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| $(date -u +%Y-%m-%d) | $machine | $pa_version | $commit | $ruff_version | $files | $mib | $pa_wall | $pa_cpu | $pa_rss | $ruff_wall | $ruff_cpu | $ruff_rss | $ratio |

- corpus: Python $python_version stdlib ($stdlib_files files) + venv site-packages ($site_files files), freeze sha256 $freeze_hash; $big_files files over 1 MiB
- wall, cpu (user+sys) and peak RSS: medians of $RUNS runs after 1 warm-up (GNU time); load average $load before, $load_after after; prodaudit binary: $PRODAUDIT
- ruff flags: $ruff_flags_shown; ruff --show-files lists $ruff_files files, corpus has $files
- prodaudit: $pa_findings findings in $pa_finding_files files; files_analyzed $pa_analyzed, files_skipped $pa_skipped; top rules: ${pa_top:-none}
- prodaudit with a warm cache (same corpus, nothing changed since the warm-up run): $warm_wall s wall, $warm_cpu s cpu, $warm_rss MiB RSS; $warm_ratio x ruff --no-cache's wall time in this run; JSON $warm_same; cache $cache_entries entries, $cache_kib KiB
- ruff: $ruff_diags diagnostics, $ruff_syntax syntax errors, $ruff_unread files it could not read (not UTF-8); top codes: ${ruff_top:-none}
EOF

if [[ "$ruff_files" != "$files" ]]; then
  log "warning: ruff sees $ruff_files files, the corpus has $files"
fi
if [[ "$pa_analyzed" != "n/a" && "$pa_analyzed" != "$files" ]]; then
  log "warning: prodaudit analysed $pa_analyzed files (skipped $pa_skipped), the corpus has $files"
fi
