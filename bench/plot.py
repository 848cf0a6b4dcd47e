"""Draw the comparison charts in docs/bench/ from the benches' results in bench/results/.

One PNG per comparison, each drawn from one results file:

- restart.png      crash -> restart, median and p90 per tool   (bench_restart.py)
- scale.png        start and stop of N servers per tool          (bench_scale.py)
- footprint_rss.png  RSS of the supervisor against the number of servers (bench_footprint.py)
- idle_cpu.png     idle CPU of the supervisor per tool           (bench_footprint.py)

A missing results file skips its chart with a message. matplotlib (the
`bench` extra: pip install -e '.[bench]') is imported here only, with the
Agg backend, so no display is needed.

Run: python bench/plot.py [--results bench/results] [--out docs/bench]
(or add --plot to bench_restart.py, bench_scale.py, bench_footprint.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
OUT_DIR = BENCH_DIR.parent / "docs" / "bench"
DPI = 100
MIB = 1024 * 1024

# one colour per tool, the same in every chart
COLOURS = {
    "procsync": "#1f5fa8",
    "procsync-off": "#7fa8d8",
    "supervisord": "#d9822b",
    "circus": "#3a9a4a",
    "pm2": "#b83b5e",
}
NAMES = {"procsync": "procsync", "procsync-off": "procsync, checks off",
         "supervisord": "supervisord", "circus": "circus", "pm2": "PM2"}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or a SystemExit naming the extra to install."""
    try:
        import matplotlib
    except ImportError as err:
        raise SystemExit("bench/plot.py needs matplotlib, from the `bench` extra: "
                         "pip install -e '.[bench]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def label(row: dict[str, Any]) -> str:
    """'supervisord 4.3': the tool's name and major.minor version (procsync's name alone)."""
    tool = row["tool"]
    name = NAMES.get(tool, tool)
    version = row.get("version")
    if tool.startswith("procsync") or not version:
        return name
    return f"{name} {'.'.join(str(version).split('.')[:2])}"


def colour(tool: str) -> str:
    return COLOURS.get(tool, "#777777")


def ratio(value: float, base: float | None) -> str:
    if not base:
        return "× n/a"
    r = value / base
    return f"×{r:.0f}" if r >= 100 else f"×{r:.1f}" if r >= 10 else f"×{r:.2f}"


def footer(fig: Any, doc: dict[str, Any]) -> None:
    """The command, date and machine under the chart, so a picture says where it came from."""
    m = doc.get("machine", {})
    fig.text(0.01, 0.01, f"{doc.get('command', '?')}  ·  {str(doc.get('date', '?'))[:10]}  ·  "
             f"{m.get('cores', '?')} cores, Python {m.get('python', '?')}",
             fontsize=7, color="#666666", ha="left", va="bottom")


def save(fig: Any, plt: Any, out: Path) -> Path:
    fig.savefig(out, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return out


def shades(ax: Any, dark: str, light: str, loc: str = "lower right") -> None:
    """A legend for the dark and light bar of each tool, in grey (the colours are the tools)."""
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#555555", label=dark),
                       Patch(color="#555555", alpha=0.4, label=light)],
              loc=loc, fontsize=8, frameon=False)


def base_of(rows: list[dict[str, Any]], key: str) -> float | None:
    for row in rows:
        if row["tool"] == "procsync":
            return float(row[key])
    return None


def draw_restart(plt: Any, doc: dict[str, Any], out: Path) -> Path:
    rows = doc["results"]
    base = base_of(rows, "median_ms")
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ys = range(len(rows))
    h = 0.38
    for y, row in zip(ys, rows, strict=True):
        c = colour(row["tool"])
        ax.barh(y - h / 2, row["median_ms"], h, color=c)
        ax.barh(y + h / 2, row["p90_ms"], h, color=c, alpha=0.4)
        ax.text(max(row["median_ms"], row["p90_ms"]) * 1.15, y,
                f"{row['median_ms']:.1f} ms, p90 {row['p90_ms']:.1f} "
                f"({ratio(row['median_ms'], base)})", va="center", fontsize=8)
    ax.set_yticks(list(ys), [label(r) for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(1, max(r["p90_ms"] for r in rows) * 25)
    ax.set_xlabel("kill -9 → replacement running, ms (log scale); label: median (× procsync)")
    kills = doc.get("settings", {}).get("kills", "?")
    ax.set_title(f"Crash → restart, {kills} kills per tool (lower is better)")
    shades(ax, "median", "p90")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    footer(fig, doc)
    return save(fig, plt, out)


def draw_scale(plt: Any, doc: dict[str, Any], out: Path) -> Path:
    rows = doc["results"]
    servers = doc.get("settings", {}).get("servers", "N")
    fig, (start, stop) = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    ys = list(range(len(rows)))
    h = 0.38
    panels = [
        (start, "start_running_s", "start_returned_s", "s", "all running", "command returned",
         f"Start {servers} servers: command → all running, s", False),
        (stop, "stop_gone_ms", "stop_returned_ms", "ms", "all gone", "command returned",
         f"Stop {servers} servers: command → all gone, ms (log)", True),
    ]
    for ax, key, returned, unit, first, second, title, log in panels:
        base = base_of(rows, key)
        top = max(max(r[key], r[returned]) for r in rows)
        for y, row in zip(ys, rows, strict=True):
            c = colour(row["tool"])
            ax.barh(y - h / 2, row[key], h, color=c)
            ax.barh(y + h / 2, row[returned], h, color=c, alpha=0.4)
            value = f"{row[key]:.2f} s" if unit == "s" else f"{row[key]:.0f} ms"
            end = max(row[key], row[returned])
            ax.text(end * 1.15 if log else end + top * 0.02, y - h / 2,
                    f"{value} ({ratio(row[key], base)})", va="center", fontsize=8)
        if log:
            ax.set_xscale("log")
            ax.set_xlim(min(r[key] for r in rows) / 2, top * 15)
        else:
            ax.set_xlim(0, top * 1.6)
        ax.set_title(title)
        shades(ax, first, second, loc="upper right")
    start.set_yticks(ys, [label(r) for r in rows])
    start.invert_yaxis()
    fig.suptitle("Bulk start and stop (lower is better; label: all running / all gone, "
                 "× procsync)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    footer(fig, doc)
    return save(fig, plt, out)


def by_tool(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    tools: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        tools.setdefault(row["tool"], []).append(row)
    for series in tools.values():
        series.sort(key=lambda r: r["children"])
    return tools


def draw_rss(plt: Any, doc: dict[str, Any], out: Path) -> Path:
    tools = by_tool(doc["results"])
    fig, ax = plt.subplots(figsize=(8, 4.2))
    procsync = {r["children"]: r["rss_bytes"] for r in tools.get("procsync", [])}
    ends: list[tuple[float, float, str, str]] = []  # (x, y, text, tool) of each line's last point
    for tool, series in tools.items():
        xs = [r["children"] for r in series]
        ys = [r["rss_bytes"] / MIB for r in series]
        ax.plot(xs, ys, marker="o", color=colour(tool))
        last = series[-1]
        note = f"{label(last)}: {ys[-1]:.1f} MiB"
        if tool != "procsync":
            note += f" ({ratio(last['rss_bytes'], procsync.get(last['children']))})"
        ends.append((xs[-1], ys[-1], note, tool))
    counts = sorted({r["children"] for r in doc["results"]})
    gap = max(y for _, y, _, _ in ends) * 0.045  # keep the end labels from overlapping
    placed = -gap
    for x, y, note, tool in sorted(ends, key=lambda e: e[1]):
        placed = max(y, placed + gap)
        ax.text(x + counts[-1] * 0.02, placed, note, va="center", fontsize=8, color=colour(tool))
    ax.set_xticks(counts)
    ax.set_xlim(0, counts[-1] * 1.45)
    ax.set_ylim(0, None)
    ax.set_xlabel("servers (children) supervised")
    ax.set_ylabel("RSS of the supervisor, MiB")
    ax.set_title("Memory of the supervising process, children excluded (lower is better)")
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    footer(fig, doc)
    return save(fig, plt, out)


def draw_idle_cpu(plt: Any, doc: dict[str, Any], out: Path) -> Path:
    tools = by_tool(doc["results"])
    counts = sorted({r["children"] for r in doc["results"]})
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / max(len(tools), 1)
    procsync = {r["children"]: r["idle_cpu_percent"] for r in tools.get("procsync", [])}
    top = max(r["idle_cpu_percent"] for r in doc["results"]) or 0.1
    for i, (tool, series) in enumerate(tools.items()):
        at = {r["children"]: r for r in series}
        xs = [k + (i - (len(tools) - 1) / 2) * width for k in range(len(counts))]
        values = [at[n]["idle_cpu_percent"] if n in at else 0.0 for n in counts]
        ax.bar(xs, values, width, color=colour(tool), label=label(series[0]))
        for x, n, v in zip(xs, counts, values, strict=True):
            if n not in at:
                continue
            text = f"{v:.2f}" if tool == "procsync" else ratio(v, procsync.get(n))
            ax.text(x, v + top * 0.02, text, ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(counts)), [str(n) for n in counts])
    ax.set_ylim(0, top * 1.35)
    ax.set_xlabel("servers (children) supervised")
    window = float(doc.get("settings", {}).get("window_s", 0.0))
    ax.set_ylabel("idle CPU, % of one core")
    ax.set_title(f"Idle CPU of the supervisor over {window:g} s (lower is better; "
                 "label: procsync's %, others × procsync)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    footer(fig, doc)
    return save(fig, plt, out)


# chart file -> (results file, how to draw it, the bench that makes the results)
CHARTS: dict[str, tuple[str, Callable[[Any, dict[str, Any], Path], Path], str]] = {
    "restart.png": ("restart.json", draw_restart, "bench/bench_restart.py"),
    "scale.png": ("scale.json", draw_scale, "bench/bench_scale.py"),
    "footprint_rss.png": ("footprint.json", draw_rss, "bench/bench_footprint.py"),
    "idle_cpu.png": ("footprint.json", draw_idle_cpu, "bench/bench_footprint.py"),
}


def load(path: Path) -> dict[str, Any] | None:
    """The results document at `path`, or None (with a message) if it is unreadable."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"{path}: unreadable results ({err})", file=sys.stderr)
        return None
    if not isinstance(doc, dict) or not doc.get("results"):
        print(f"{path}: no results in it", file=sys.stderr)
        return None
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR,
                        help="folder of the benches' JSON results (default bench/results)")
    parser.add_argument("--out", type=Path, default=OUT_DIR,
                        help="folder the PNGs go to (default docs/bench)")
    args = parser.parse_args(argv)
    plt = pyplot()
    args.out.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for chart, (source, draw, bench) in CHARTS.items():
        if not (args.results / source).exists():
            print(f"skipping {chart}: no {args.results / source} (run python {bench})",
                  file=sys.stderr)
            continue
        doc = load(args.results / source)
        if doc is None:
            print(f"skipping {chart}", file=sys.stderr)
            continue
        try:
            draw(plt, doc, args.out / chart)
            drawn += 1
        except (KeyError, TypeError, ValueError) as err:
            plt.close("all")
            print(f"skipping {chart}: {args.results / source} lacks a field: {err!r}",
                  file=sys.stderr)
    return 0 if drawn else 1


if __name__ == "__main__":
    sys.exit(main())
