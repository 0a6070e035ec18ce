#!/usr/bin/env bash
# Intake load test: signed `pull_request synchronize` webhooks (distinct deliveries, pull requests and heads)
# against `prodaudit serve` (release build) on loopback, backed by SQLite and then by PostgreSQL. Reports
# accepted/s, p50/p90/p99 acknowledgement latency, the peak RSS of serve, and checks that the deliveries and
# jobs stored in the database equal the 2xx acknowledged.
#
# Bounded: REQUESTS webhooks (default 20000) or MAX_SECONDS (default 60) per backend, whichever ends first.
# Workers run as configured but GitHub is a closed local port: each audit's GitHub client retries the
# refused connection with backoff, then the job is retried later. The point is intake under the workers'
# concurrent (light) database traffic: the summary counts the claims workers made during the run.
#
# The client is closed-loop (each connection waits for its answer before sending the next webhook), so the
# latency at 32 connections includes queueing behind the other 31; run several CONNECTIONS values.
# LOAD_LATENCY_LOG=FILE makes the client write each request's send time and latency.
#
#   bench/load.sh                      # both backends (BACKENDS="sqlite sqlite-normal postgres" adds
#                                      # SQLite with synchronous=normal)
#   BACKENDS=sqlite REQUESTS=5000 CONNECTIONS=16 bench/load.sh
#   LOG_LEVEL=info bench/load.sh       # the default log level writes one line per webhook (to a file here)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
requests=${REQUESTS:-20000}
connections=${CONNECTIONS:-32}
max_seconds=${MAX_SECONDS:-60}
backends=${BACKENDS:-"sqlite postgres"}
log_level=${LOG_LEVEL:-info}
pg_admin=${PROD_AUDIT_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}
work="$root/bench/.work/load"
secret="load-test-secret-$RANDOM$RANDOM"
mkdir -p "$work"

cargo build --release --locked --bin prodaudit --example load_webhooks >&2
target=${CARGO_TARGET_DIR:-$root/target}/release
bin="$target/prodaudit"
client="$target/examples/load_webhooks"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
# A port nothing listens on: GitHub calls are refused at once.
closed_port=$(free_port)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -srm)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); load average before: $(cut -d" " -f1-3 /proc/loadavg); requests=$requests connections=$connections max_seconds=$max_seconds log_level=$log_level"

serve_pid=
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

run_backend() {
  local backend=$1 database_url count_sql pg_db=
  case $backend in
    sqlite)
      rm -f "$work"/load.db*
      database_url="sqlite://$work/load.db?mode=rwc"
      ;;
    sqlite-normal)
      # WAL with synchronous=normal: a commit survives a crash of the process, not of the machine
      rm -f "$work"/load.db*
      database_url="sqlite://$work/load.db?mode=rwc&synchronous=normal"
      ;;
    postgres)
      if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        echo "postgres: skipped, no server on 127.0.0.1:5432"
        return 0
      fi
      pg_db="pa_load_$RANDOM$RANDOM"
      psql -q "$pg_admin" -c "CREATE DATABASE $pg_db" >/dev/null
      database_url="${pg_admin%/*}/$pg_db"
      ;;
  esac
  local port
  port=$(free_port)
  env -i PATH="$PATH" APP_ID=1 PRIVATE_KEY_PATH="$root/tests/fixtures/test-app-key.pem" \
    WEBHOOK_SECRET="$secret" GITHUB_API_URL="http://127.0.0.1:$closed_port" DATABASE_URL="$database_url" \
    HOST=127.0.0.1 PORT="$port" LOG_LEVEL="$log_level" GITHUB_TIMEOUT_SECS=2 SHUTDOWN_GRACE_SECS=2 \
    "$bin" serve 2>"$work/serve-$backend.log" &
  serve_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null
  local rss_before
  rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$serve_pid/status")
  local result
  result=$("$client" "http://127.0.0.1:$port/api/github/webhooks" "$secret" "$requests" "$connections" \
    "$max_seconds" "load-$backend-$RANDOM")
  local rss_peak rss_after
  rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")
  rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$serve_pid/status")
  kill -TERM "$serve_pid"
  wait "$serve_pid" || true
  serve_pid=
  local deliveries jobs claims
  case $backend in
    sqlite | sqlite-normal)
      read -r deliveries jobs claims < <(python3 - "$work/load.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("select count(*) from deliveries").fetchone()[0], db.execute("select count(*) from jobs").fetchone()[0],
      db.execute("select coalesce(sum(attempts), 0) from jobs").fetchone()[0])
PY
)
      ;;
    postgres)
      deliveries=$(psql -qtA "${pg_admin%/*}/$pg_db" -c "select count(*) from deliveries")
      jobs=$(psql -qtA "${pg_admin%/*}/$pg_db" -c "select count(*) from jobs")
      claims=$(psql -qtA "${pg_admin%/*}/$pg_db" -c "select coalesce(sum(attempts), 0) from jobs")
      psql -q "$pg_admin" -c "DROP DATABASE $pg_db WITH (FORCE)" >/dev/null
      ;;
  esac
  local acknowledged
  acknowledged=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["acknowledged"])' "$result")
  local errors
  errors=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$result")
  # Lost: acknowledged but not stored. Requests still in flight when the time bound cut the client off
  # (counted as errors) may be stored without an acknowledgement the client saw.
  local verdict=ok
  if [ "$deliveries" -lt "$acknowledged" ] || [ "$jobs" -lt "$acknowledged" ]; then
    verdict="LOST $((acknowledged - deliveries))"
  elif [ $((deliveries - acknowledged)) -gt "$errors" ]; then
    verdict="MISMATCH (more stored than sent)"
  fi
  echo "$backend: $result (load average after: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "$backend: serve RSS idle ${rss_before} KiB, peak ${rss_peak} KiB, after ${rss_after} KiB; stored deliveries=$deliveries jobs=$jobs acknowledged=$acknowledged: $verdict; worker claims during the run: $claims"
  [ "$verdict" = ok ]
}

status=0
for backend in $backends; do
  run_backend "$backend" || status=1
done
exit $status
