#!/usr/bin/env bash
# GitHub requests per audit and wall time from webhook to completed check run, for pull requests of 1, 10,
# 50 and 300 changed Python files, against the in-process fake GitHub with 50 ms added to every answer.
# Release build; prints a markdown table (see docs/bench-app.md).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -srm)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
cargo test --locked --release --test app_bench -- --ignored --nocapture bench_requests_per_audit 2>&1 \
  | grep -E '^\|'
