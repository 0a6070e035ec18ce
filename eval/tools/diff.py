#!/usr/bin/env python3
"""Findings added and removed between two audit runs: diff.py OUTDIR_A OUTDIR_B (by app, check, path, line, severity)."""
import glob, json, os, sys

def load(d):
    out = set()
    for p in glob.glob(os.path.join(d, "*.json")):
        app = os.path.basename(p)[:-5]
        with open(p) as f:
            for fi in json.load(f)["findings"]:
                out.add((app, fi["check"], fi["path"].lstrip("/"), fi["line"], fi["severity"]))
    return out

a, b = load(sys.argv[1]), load(sys.argv[2])
for sign, rows in (("-", sorted(a - b)), ("+", sorted(b - a))):
    for r in rows:
        print(sign, *r, sep="\t")
print(f"# {len(a)} -> {len(b)}: -{len(a - b)} +{len(b - a)}", file=sys.stderr)
