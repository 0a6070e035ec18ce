#!/usr/bin/env python3
"""I1 recall on the labelled tenant leaks (eval/judgments/*-i1-recall.tsv).

Usage: recall.py OUTDIR calibration|evaluation ROOT... [-v]

A label counts as found when the run has an I1 finding inside the function that holds the label's line (its
decorators included), in the application's checkout under ROOT/<name>.
"""
import ast, csv, glob, json, os, sys

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = [a for a in sys.argv[1:] if a != "-v"]
verbose = "-v" in sys.argv
if len(args) < 3:
    sys.exit(__doc__)
outdir, half, roots = args[0], args[1], args[2:]
apps = {r["repo"]: r for r in csv.DictReader(open(os.path.join(here, "apps.tsv")), delimiter="\t")}

def span(path, line):
    try:
        tree = ast.parse(open(path, encoding="utf-8", errors="replace").read())
    except (OSError, SyntaxError):
        return (line, line)
    best = (line, line)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if start <= line <= node.end_lineno and (best == (line, line) or start >= best[0]):
                best = (start, node.end_lineno)
    return best

found = total = 0
for p in sorted(glob.glob(os.path.join(here, "judgments", "*-i1-recall.tsv"))):
    for row in csv.DictReader(open(p), delimiter="\t"):
        if row["set"] != half:
            continue
        app = apps.get(row["repo"])
        if app is None:
            continue
        name = app["name"]
        root = next((r for r in roots if os.path.isdir(os.path.join(r, name))), None)
        report = os.path.join(outdir, name + ".json")
        if root is None or not os.path.exists(report):
            continue
        rel, line = row["route path:line"].rsplit(":", 1)
        lo, hi = span(os.path.join(root, name, rel), int(line))
        hits = [f for f in json.load(open(report))["findings"]
                if f["rule"] == "I1" and f["path"].lstrip("/") == rel and lo <= f["line"] <= hi]
        total += 1
        found += bool(hits)
        if verbose:
            mark = "FOUND" if hits else "missed"
            print(f"{mark}\t{name}\t{rel}:{line}\t{','.join(sorted({h['check'] for h in hits}))}\t{row['shape'][:160]}")
print(f"{half} I1 recall: {found}/{total}")
