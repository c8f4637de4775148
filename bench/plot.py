"""Plots the Envoy ratios of .build/bench/ratios.json (written by bench/report.mjs) into
bench/envoy-ratios.png: per --concurrency, the req/s of the mcp-edge-auth filter relative
to jwt_authn (same cache setting) and of every variant relative to no filter, with the
min-max of the per-round ratios as error bars and the project's targets as marks.

Run by `make bench` with the project venv's matplotlib (pinned in bench/bench.mk):
    .venv/bin/python bench/plot.py [ratios.json] [out.png]
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build", "bench", "ratios.json")
DST = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "bench", "envoy-ratios.png")

# Uncached targets per algorithm (ours / jwt_authn, both uncached); cached: 1.0 everywhere.
UNCACHED_TARGET = {"RS256": 0.2, "ES256": 0.4, "EdDSA": 0.5}
WORKLOAD = {"one": "one token", "zipf": "reuse (Zipf)"}


def bars(ax, groups, series, title, ylabel, targets=None):
    n = len(series)
    width = 0.8 / n
    xs = list(range(len(groups)))
    for i, (label, color, values) in enumerate(series):
        med = [v["median"] if v else 0 for v in values]
        lo = [max(0.0, (v["median"] - v["min"])) if v else 0 for v in values]
        hi = [max(0.0, (v["max"] - v["median"])) if v else 0 for v in values]
        pos = [x - 0.4 + width * (i + 0.5) for x in xs]
        ax.bar(pos, med, width, label=label, color=color, yerr=[lo, hi], capsize=2, error_kw={"elinewidth": 0.8})
        for p, m in zip(pos, med):
            ax.text(p, m, f"{m:.2f}", ha="center", va="bottom", fontsize=6, rotation=90)
        if targets:
            for p, t in zip(pos, targets[i]):
                if t is not None:
                    ax.plot([p - width / 2, p + width / 2], [t, t], color="black", linewidth=1.2)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(xs)
    ax.set_xticklabels(groups, fontsize=7, rotation=30, ha="right")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6, loc="upper left")
    ax.set_ylim(bottom=0)


def main():
    with open(SRC, encoding="utf-8") as f:
        data = json.load(f)
    concs = sorted(data["concurrency"].keys(), key=int)
    if not concs:
        sys.exit("no Envoy ratios to plot")
    fig, axes = plt.subplots(len(concs), 2, figsize=(13, 4.2 * len(concs)), squeeze=False)
    for row, c in enumerate(concs):
        rows = data["concurrency"][c]
        groups = [f"{r['alg']} {WORKLOAD[r['workload']]}" for r in rows]
        vs_jwt = [
            ("cache on: ours ÷ jwt_authn", "#1f77b4", [r["vs_jwt"]["cache"] for r in rows]),
            ("cache off: ours ÷ jwt_authn", "#ff7f0e", [r["vs_jwt"]["nocache"] for r in rows]),
        ]
        targets = [[1.0 for _ in rows], [UNCACHED_TARGET.get(r["alg"]) for r in rows]]
        if any(r["vs_jwt"].get("native_cache") for r in rows):
            vs_jwt += [
                ("cache on: native module ÷ jwt_authn", "#2ca02c", [r["vs_jwt"].get("native_cache") for r in rows]),
                ("cache off: native module ÷ jwt_authn", "#98df8a", [r["vs_jwt"].get("native_nocache") for r in rows]),
            ]
            targets += [[1.0 for _ in rows], [UNCACHED_TARGET.get(r["alg"]) for r in rows]]
        bars(axes[row][0], groups, vs_jwt, f"--concurrency {c}: req/s relative to jwt_authn (black marks: targets)", "ratio", targets)
        vs_none = [
            ("jwt_authn, cache off", "#c7c7c7", [r["vs_nofilter"]["jwt_nocache"] for r in rows]),
            ("jwt_authn, cache on", "#7f7f7f", [r["vs_nofilter"]["jwt_cache"] for r in rows]),
            ("ours, cache off", "#ffbb78", [r["vs_nofilter"]["ours_nocache"] for r in rows]),
            ("ours, cache on", "#1f77b4", [r["vs_nofilter"]["ours_cache"] for r in rows]),
        ]
        if any(r["vs_nofilter"].get("native_cache") for r in rows):
            vs_none += [
                ("native module, cache off", "#98df8a", [r["vs_nofilter"].get("native_nocache") for r in rows]),
                ("native module, cache on", "#2ca02c", [r["vs_nofilter"].get("native_cache") for r in rows]),
            ]
        bars(axes[row][1], groups, vs_none, f"--concurrency {c}: req/s relative to no filter", "ratio")
    fig.suptitle("mcp-edge-auth Envoy filter vs jwt_authn and no filter (median of per-round ratios, min–max bars)", fontsize=10)
    fig.tight_layout()
    fig.savefig(DST, dpi=110)
    print(f"wrote {os.path.relpath(DST, ROOT)}")


if __name__ == "__main__":
    main()
