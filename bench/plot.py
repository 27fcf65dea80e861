#!/usr/bin/env python3
"""Plot a compare.sh output directory: throughput over time and latency CDFs.

usage: bench/plot.py OUT_DIR

Reads every OUT_DIR/<scenario>.<broker>.<rep>.json written by starling-bench
and writes, per scenario, into OUT_DIR/plots/:

  <scenario>-throughput.png   delivered msg/s per 100 ms interval, one colour
                              per broker (conn: CONNACKs/s during the storm)
  <scenario>-latency-cdf.png  latency CDF per broker on a log µs axis, with a
                              second panel that stretches the tail

The first repetition of each broker is drawn solid, later ones faintly, so
run-to-run noise is visible without hiding the comparison. Runs from a tool
version without `timeline` / `latency_cdf` are skipped. Plotting is an extra:
the script exits 0 when matplotlib is missing or a plot fails, so it never
breaks compare.sh or CI.
"""
import glob
import json
import math
import os
import sys

INSTALL = "python3 -m pip install matplotlib"
# Fixed colours so a broker looks the same in every plot of a directory.
COLOURS = {"starling": "C0", "mosquitto": "C1", "starling-off": "C2"}


def load(out):
    """{scenario: {broker: [(rep, result), ...]}}, repetitions in order."""
    runs = {}
    for f in sorted(glob.glob(os.path.join(out, "*.json"))):
        parts = os.path.basename(f)[:-5].rsplit(".", 2)
        if len(parts) != 3:
            print(f"plot.py: skipping {f}: not <scenario>.<broker>.<rep>.json", file=sys.stderr)
            continue
        name, kind, rep = parts
        try:
            with open(f) as fh:
                r = json.load(fh)
        except (ValueError, OSError) as e:
            print(f"plot.py: skipping {f}: {e}", file=sys.stderr)
            continue
        if not isinstance(r, dict):
            continue
        key = int(rep) if rep.isdigit() else rep
        runs.setdefault(name, {}).setdefault(kind, []).append((key, r))
    for brokers in runs.values():
        for rr in brokers.values():
            rr.sort(key=lambda x: (isinstance(x[0], str), x[0]))
    return runs


def colour(kind, brokers):
    if kind in COLOURS:
        return COLOURS[kind]
    others = [b for b in sorted(brokers) if b not in COLOURS]
    return f"C{3 + others.index(kind)}"


def timeline(r):
    """(series, interval seconds) of a run, or None without data."""
    conn = r.get("conn") or {}
    series = r.get("timeline") or conn.get("connect_timeline")
    if not series:
        return None
    return series, (r.get("timeline_interval_ms") or 100) / 1000


def cdf(r):
    """[(percentile, µs)] of a run, or None without data."""
    conn = r.get("conn") or {}
    points = r.get("latency_cdf") or conn.get("connect_latency_cdf")
    points = [(p, us) for p, us in points or [] if us > 0]
    return points or None


def latency(r):
    return (r.get("conn") or {}).get("connect_latency") or r.get("latency") or {}


def is_conn(brokers):
    return any(r.get("conn") for rr in brokers.values() for _, r in rr)


def subtitle(brokers):
    r = next(r for rr in brokers.values() for _, r in rr)
    if r.get("conn"):
        return f"MQTT {r.get('mqtt')}, {r['conn'].get('attempted')} connections"
    rate = r.get("offered_rate")
    load = f"{rate:,.0f} msg/s offered" if rate else (
        f"closed loop, window {r['e2e_window']}" if r.get("e2e_window") else "open loop")
    return (f"MQTT {r.get('mqtt')}, QoS {r.get('qos')}, {r.get('payload')} B, "
            f"{r.get('publishers')} pub / {r.get('subscribers')} sub, {load}")


def log_ticks(ax, ticker):
    """Plain µs numbers on a log axis; 2× and 5× labels when it spans few decades."""
    lo, hi = ax.get_xlim()
    few = lo > 0 and math.log10(hi / lo) <= 2.5

    def minor(v, _):
        if not few or v <= 0:
            return ""
        return f"{v:,.0f}" if round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""

    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(ticker.FuncFormatter(minor))


def legend_label(kind, rr, extra=""):
    label = kind + extra
    if len(rr) > 1:
        label += f" (run {rr[0][0]} solid, {len(rr) - 1} more faint)"
    if any(not r.get("valid", True) for _, r in rr):
        label += " [INVALID: tool saturated]"
    return label


def plot_throughput(plt, ticker, name, brokers, path):
    conn = is_conn(brokers)
    fig, ax = plt.subplots(figsize=(9, 5))
    drawn = False
    for kind in sorted(brokers):
        rr = [(rep, r) for rep, r in brokers[kind] if timeline(r)]
        for i, (_, r) in enumerate(rr):
            series, dt = timeline(r)
            # Each value covers one interval: draw it at the interval's middle.
            xs = [(k + 0.5) * dt for k in range(len(series))]
            ys = [v / dt for v in series]
            ax.plot(xs, ys, color=colour(kind, brokers),
                    alpha=1.0 if i == 0 else 0.3, linewidth=1.8 if i == 0 else 0.9,
                    label=legend_label(kind, rr) if i == 0 else None)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    what = "connections established" if conn else "delivered messages"
    ax.set_title(f"{name}: {what} per second\n{subtitle(brokers)}", fontsize=11)
    ax.set_xlabel("time since first connection attempt (s)" if conn
                  else "time since start of publishing (s)")
    ax.set_ylabel("CONNACKs / s" if conn else "delivered msg / s")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_cdf(plt, ticker, name, brokers, path):
    conn = is_conn(brokers)
    fig, (full, tail) = plt.subplots(1, 2, figsize=(12, 5))
    drawn = False
    for kind in sorted(brokers):
        rr = [(rep, r) for rep, r in brokers[kind] if cdf(r)]
        for i, (_, r) in enumerate(rr):
            pts = cdf(r)
            style = dict(color=colour(kind, brokers), alpha=1.0 if i == 0 else 0.3,
                         linewidth=1.8 if i == 0 else 0.9)
            lat = latency(r)
            extra = f": p50 {lat.get('p50_us', 0):,} µs, p99 {lat.get('p99_us', 0):,} µs"
            full.plot([us for _, us in pts], [p for p, _ in pts],
                      label=legend_label(kind, rr, extra) if i == 0 else None, **style)
            # The logit scale needs 0 < p < 1; from the median up is where brokers differ.
            t = [(p / 100, us) for p, us in pts if 50 <= p < 100]
            if t:
                tail.plot([us for _, us in t], [p for p, _ in t], marker=".",
                          markersize=3 if i == 0 else 0, **style)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    what = "CONNECT→CONNACK latency" if conn else "end-to-end latency"
    fig.suptitle(f"{name}: {what} CDF\n{subtitle(brokers)}", fontsize=11)
    for ax in (full, tail):
        ax.set_xscale("log")
        ax.set_xlabel("latency (µs, log scale)")
        log_ticks(ax, ticker)
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.12)
    full.set_ylabel("percentile (%)")
    full.set_ylim(0, 100)
    full.set_title("whole distribution", fontsize=10)
    # Upper left stays empty: no CDF reaches a high percentile at a low latency.
    full.legend(loc="upper left", fontsize=8)
    tail.set_yscale("logit")
    tail.set_ylim(0.5, 0.99999)
    tail.yaxis.set_major_locator(ticker.FixedLocator([0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]))
    tail.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{100 * v:g}"))
    tail.yaxis.set_minor_formatter(ticker.NullFormatter())
    tail.set_ylabel("percentile (%, tail stretched)")
    tail.set_title("tail (p50 and up)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 0 if len(sys.argv) == 2 else 2
    out = sys.argv[1]
    try:
        import matplotlib
        matplotlib.use("Agg")  # No display on CI machines.
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        print(f"plot.py: matplotlib is not installed, no plots; install it with: {INSTALL}",
              file=sys.stderr)
        return 0
    runs = load(out)
    if not runs:
        print(f"plot.py: no results in {out}", file=sys.stderr)
        return 0
    plots = os.path.join(out, "plots")
    os.makedirs(plots, exist_ok=True)
    written = []
    for name in sorted(runs):
        for kind, fn in (("throughput", plot_throughput), ("latency-cdf", plot_cdf)):
            path = os.path.join(plots, f"{name}-{kind}.png")
            try:
                if fn(plt, ticker, name, runs[name], path):
                    written.append(path)
            except Exception as e:  # One odd result must not cost the other plots.
                plt.close("all")
                print(f"plot.py: {name} {kind} failed: {e!r}", file=sys.stderr)
    print(f"plot.py: {len(written)} plot(s) in {plots}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
