#!/usr/bin/env python3
"""Precision of an audit run against the judged findings in eval/judgments/.

Usage: score.py OUTDIR calibration|evaluation [--all] [--by-detector] [--markdown] [--unjudged FILE]

OUTDIR holds <name>.json reports from audit-apps.sh. A finding is matched to a judged row by
(repo, commit, detector, path:line); when a finding was judged more than once, the row of the latest
session file wins. Critical+high precision is always printed; --all adds every severity; --markdown prints the
per-detector figures as a Markdown table (the one RULES.md quotes).
"""
import csv, glob, json, os, re, sys
from collections import Counter, defaultdict

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
if len(args) < 2:
    sys.exit(__doc__)
outdir, half = args[0], args[1]
want_all = "--all" in args
by_det = "--by-detector" in args
markdown = "--markdown" in args
unjudged_file = args[args.index("--unjudged") + 1] if "--unjudged" in args else None

apps = {}
with open(os.path.join(here, "apps.tsv")) as f:
    for row in csv.DictReader(f, delimiter="\t"):
        apps[row["name"]] = row

def session_key(path):
    m = re.search(r"session(\d+)", os.path.basename(path))
    return (int(m.group(1)) if m else -1, os.path.basename(path))

verdicts = {}
for path in sorted(glob.glob(os.path.join(here, "judgments", "*.tsv")), key=session_key):
    with open(path) as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) < 6 or row[0] != half or row[5] not in ("TP", "FP", "debatable"):
                continue
            verdicts[(row[1], row[2], row[3], row[4])] = row[5]

counts = {"ch": Counter(), "all": Counter()}
det_counts = defaultdict(Counter)
unjudged = []
for name, app in sorted(apps.items()):
    if app["set"] != half:
        continue
    report = os.path.join(outdir, name + ".json")
    if not os.path.exists(report):
        continue
    with open(report) as f:
        findings = json.load(f)["findings"]
    for fi in findings:
        path = fi["path"].lstrip("/")
        key = (app["repo"], app["commit"], fi["check"], f"{path}:{fi['line']}")
        v = verdicts.get(key, "unjudged")
        classes = ["all"] + (["ch"] if fi["severity"] in ("critical", "high") else [])
        for c in classes:
            counts[c][v] += 1
        det_counts[(fi["check"], fi["severity"])][v] += 1
        if v == "unjudged" and (want_all or "ch" in classes):
            unjudged.append((half, app["repo"], app["commit"], fi["check"], f"{path}:{fi['line']}", fi["severity"], fi["message"][:200]))

def line(label, c):
    judged = c["TP"] + c["FP"] + c["debatable"]
    pct = f"{100 * c['TP'] / judged:.0f} %" if judged else "n/a"
    return f"{label}: TP {c['TP']} / judged {judged} = {pct} (FP {c['FP']}, debatable {c['debatable']}, unjudged {c['unjudged']})"

print(line(f"{half} critical+high", counts["ch"]))
if want_all:
    print(line(f"{half} all severities", counts["all"]))
if by_det:
    for (det, sev), c in sorted(det_counts.items()):
        if want_all or sev in ("critical", "high"):
            print("  " + line(f"{det} [{sev}]", c))
if markdown:
    print("| detector | severity | findings | judged | TP | FP | debatable | precision (judged) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (det, sev), c in sorted(det_counts.items()):
        if not (want_all or sev in ("critical", "high")):
            continue
        judged = c["TP"] + c["FP"] + c["debatable"]
        total = judged + c["unjudged"]
        pct = f"{100 * c['TP'] / judged:.0f} %" if judged else "—"
        print(f"| {det} | {sev} | {total} | {judged} | {c['TP']} | {c['FP']} | {c['debatable']} | {pct} |")
if unjudged_file:
    with open(unjudged_file, "w") as f:
        for r in unjudged:
            f.write("\t".join(r) + "\n")
    print(f"{len(unjudged)} unjudged findings written to {unjudged_file}")
