#!/usr/bin/env python3
"""Pull-request replay against the judged comments (set `evaluation-replay` or `calibration-replay`).

Usage: replay_score.py OUTDIR SET [--unjudged FILE]
OUTDIR/<app>/<merge sha>.json from replay.sh. Prints, per app and in all, the PRs replayed, commented, with a wrong
(FP) comment, with an FP or debatable one, and the comments' verdicts.
"""
import csv, glob, json, os, re, sys
from collections import Counter

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if len(sys.argv) < 3:
    sys.exit(__doc__)
outdir, half = sys.argv[1], sys.argv[2]
unjudged_file = sys.argv[sys.argv.index("--unjudged") + 1] if "--unjudged" in sys.argv else None
apps = {r["name"]: r for r in csv.DictReader(open(os.path.join(here, "apps.tsv")), delimiter="\t")}

def session_key(path):
    m = re.search(r"session(\d+)", os.path.basename(path))
    return (int(m.group(1)) if m else -1, os.path.basename(path))

verdicts = {}
for p in sorted(glob.glob(os.path.join(here, "judgments", "*.tsv")), key=session_key):
    for row in csv.reader(open(p), delimiter="\t"):
        if len(row) >= 6 and row[0] == half and row[5] in ("TP", "FP", "debatable"):
            verdicts[(row[1], row[2], row[3], row[4])] = row[5]

total = Counter()
unjudged = []
for app in sorted(os.listdir(outdir)):
    if app not in apps or not os.path.isdir(os.path.join(outdir, app)):
        continue
    repo = apps[app]["repo"]
    c = Counter()
    for report in sorted(glob.glob(os.path.join(outdir, app, "*.json"))):
        sha = os.path.basename(report)[:-5]
        try:
            findings = json.load(open(report))["findings"]
        except (OSError, ValueError):
            c["unreadable"] += 1
            continue
        c["prs"] += 1
        vs = []
        for f in findings:
            key = (repo, sha, f["check"], f"{f['path'].lstrip('/')}:{f['line']}")
            v = verdicts.get(key, "unjudged")
            vs.append(v)
            c[v] += 1
            if v == "unjudged":
                unjudged.append((half, repo, sha, f["check"], key[3], f["severity"], f["message"][:200]))
        c["commented"] += bool(vs)
        c["wrong"] += "FP" in vs
        c["wrong_or_debatable"] += ("FP" in vs or "debatable" in vs)
    total.update(c)
    print(f"{app}: {c['prs']} PRs ({c['unreadable']} unreadable), {c['commented']} commented, {c['wrong']} with an FP comment, "
          f"{c['wrong_or_debatable']} with an FP or debatable one; comments TP {c['TP']} / FP {c['FP']} / debatable {c['debatable']} / unjudged {c['unjudged']}")
n = total["prs"] or 1
print(f"all: {total['prs']} PRs, {total['commented']} commented, {total['wrong']} ({100 * total['wrong'] / n:.0f} %) with an FP comment, "
      f"{total['wrong_or_debatable']} with an FP or debatable one; comments TP {total['TP']} / FP {total['FP']} / debatable {total['debatable']} / unjudged {total['unjudged']}")
if unjudged_file:
    with open(unjudged_file, "w") as f:
        for r in unjudged:
            f.write("\t".join(r) + "\n")
