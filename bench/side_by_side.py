#!/usr/bin/env python3
"""The table of a side-by-side run (bench/side_by_side.sh): per seed and side, best-validation
and test accuracy and the median seconds per training epoch (the median resists epochs slowed
by other work on the machine), then the means and the difference of the test means.
    python3 bench/side_by_side.py DIR"""
import csv, json, os, statistics, sys

d = sys.argv[1]
rows, tests = [], {"ours": [], "torch": []}
seeds = sorted({int(n[4:]) for n in os.listdir(d) if n.startswith("ours") and n[4:].isdigit()})
for s in seeds:
    for side in ("ours", "torch"):
        run = os.path.join(d, f"{side}{s}")
        try:
            res = json.load(open(os.path.join(run, "results.json")))
        except OSError:
            continue
        secs = [float(r["seconds"]) for r in csv.DictReader(open(os.path.join(run, "metrics.csv")))]
        rows.append((side, s, res["val"], res["test"], statistics.median(secs), len(secs)))
        tests[side].append(res["test"])
name = {"ours": "convnet.c", "torch": "PyTorch"}
print("| run | seed | epochs | best val | test | median s/epoch |")
print("|---|---|---|---|---|---|")
for side, s, v, t, sec, n in rows:
    print(f"| {name[side]} | {s} | {n} | {v:.4f} | {t:.4f} | {sec:.1f} |")
if tests["ours"] and tests["torch"]:
    mo, mt = statistics.mean(tests["ours"]), statistics.mean(tests["torch"])
    print(f"\nmean test: convnet.c {mo:.4f}, PyTorch {mt:.4f}, difference {100 * (mo - mt):+.2f} points "
          f"({len(tests['ours'])} and {len(tests['torch'])} seeds)")
