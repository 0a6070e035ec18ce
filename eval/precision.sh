#!/usr/bin/env bash
# Precision from judged findings: per set, per severity class (critical+high vs all) and per detector.
# Usage: bash eval/precision.sh eval/judgments/FILE.tsv [more.tsv...]
# Severity is not in the judgment rows (a detector's severity can change); pass SEVERITIES=FILE, a two-column
# "detector<TAB>severity" list (e.g. from `prodaudit rules list --format tsv` or a JSON report), to split by it.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 FILE.tsv..." >&2; exit 2; }
awk -F'\t' -v sevfile="${SEVERITIES:-}" '
BEGIN { if (sevfile != "") while ((getline line < sevfile) > 0) { split(line, a, "\t"); sev[a[1]] = a[2] } }
FNR == 1 && $1 == "set" { next }
{
  set = $1; det = $4; v = $6
  key = set "\t" det
  n[key]++; if (v == "TP") tp[key]++
  all[set]++; if (v == "TP") alltp[set]++
  s = (det in sev) ? sev[det] : ""
  if (s == "critical" || s == "high") { ch[set]++; if (v == "TP") chtp[set]++ }
}
END {
  for (s in all) {
    printf "%s: all severities %d/%d = %.0f%%", s, alltp[s], all[s], 100 * alltp[s] / all[s]
    if (ch[s] > 0) printf "; critical+high %d/%d = %.0f%%", chtp[s], ch[s], 100 * chtp[s] / ch[s]
    printf "\n"
  }
  for (k in n) printf "  %s\t%d/%d\n", k, tp[k], n[k] | "sort"
}' "$@"
