#!/usr/bin/env python3
"""bench/apps_summary.py OUT [REF_MODE] - a markdown table of a bench/apps.sh run.

Reads OUT/apps_runs.csv and the runs' JSON summaries (OUT/json/) and prints,
per app, config and mode: runs, median throughput, median of the per-repeat
throughput ratio to REF_MODE (default: localize; the same repeat number
ran back to back, so the ratio is less at the mercy of the load than the
medians), node 0's median training CPU seconds and its ratio to REF_MODE,
the median quality metric and its range, node 0's median share of local
key accesses, of accesses served by replicas, and relocations into node 0,
and the range of the 1-minute load average over the runs.
"""
import csv
import json
import os
import statistics
import sys


def med(xs):
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def tag(row):
    mode = row["mode"].replace("/", "_").replace(":", "_")
    return f'{row["app"]}-{row["config"]}-{mode}-{row["repeat"]}'


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out, ref = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "localize"
    rows = list(csv.DictReader(open(os.path.join(out, "apps_runs.csv"))))
    for r in rows:
        p = os.path.join(out, "json", tag(r) + ".json")
        r["j"] = json.load(open(p)) if os.path.exists(p) else {}
    groups = {}
    for r in rows:
        groups.setdefault((r["app"], r["config"], r["mode"]), []).append(r)
    by_rep = {(r["app"], r["config"], r["mode"], r["repeat"]): r for r in rows}

    def f(r, k):
        v = r.get(k)
        if v in (None, "", "nan"):
            v = r["j"].get(k)
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    print(f"| app | config | mode | runs | throughput (median) | ratio to {ref} | node-0 train CPU s | "
          f"CPU ratio to {ref} | metric (median, range) | local % | replica % | relocations | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (app, config, mode), rs in groups.items():
        ratios, cratios = [], []
        for r in rs:
            b = by_rep.get((app, config, ref, r["repeat"]))
            if b:
                ratios.append(f(r, "throughput") / f(b, "throughput"))
                cratios.append(f(r, "cpu") / f(b, "cpu"))
        metric = [f(r, "metric") for r in rs]
        local = [f(r, "local_percent") if "local_percent" in r["j"] else
                 100 * f(r, "local_share") if "local_share" in r["j"] else
                 100 * f(r, "local_share_node0") for r in rs]
        relo = [f(r, "relocations") if "relocations" in r["j"] else f(r, "relocations_node0") for r in rs]
        loads = [f(r, "load1") for r in rs]
        print(f'| {app} | {config} | {mode} | {len(rs)} | {med([f(r, "throughput") for r in rs]):,.0f} | '
              f'{med(ratios):.2f} | {med([f(r, "cpu") for r in rs]):.2f} | {med(cratios):.2f} | '
              f'{rs[0]["metric_name"]} {med(metric):.4f} ({min(metric):.4f}-{max(metric):.4f}) | '
              f'{med(local):.0f} | {100 * med([f(r, "repl_share") for r in rs]):.1f} | {med(relo):,.0f} | '
              f'{min(loads):.1f}-{max(loads):.1f} |')


if __name__ == "__main__":
    main()
