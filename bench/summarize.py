#!/usr/bin/env python3
"""Summarize a compare.sh output directory: medians, ratios, targets.

usage: bench/summarize.py OUT_DIR [1 for --quick] [PEER (default mosquitto)]

"per CPU-s" divides each run's delivered rate by the broker's CPU use during
the run (deliveries per broker CPU-second): it stays meaningful when other
processes steal the broker's core, which the raw rate does not.
"""
import glob, json, os, statistics, sys
out = sys.argv[1]
quick = len(sys.argv) > 2 and sys.argv[2] == "1"
peer = sys.argv[3] if len(sys.argv) > 3 else "mosquitto"
P = {"mosquitto": "Mosquitto", "rumqttd": "rumqttd", "starling-off": "Starling, telemetry off"}.get(peer, peer)
runs = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    name, kind, rep = os.path.basename(f)[:-5].rsplit(".", 2)
    try:
        r = json.load(open(f))
    except Exception:
        continue
    runs.setdefault(name, {}).setdefault(kind, []).append(r)

def rate(r):
    return r["conn"]["connects_per_s"] if r.get("conn") else r["delivered_rate"]

def eff(r):
    c = r["broker"]["cpu_pct"]
    return rate(r) / (c / 100) if c and c > 1 else None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def f0(x, unit=""):
    return "-" if x is None else f"{x:,.0f}{unit}"

def mb(kb):
    return "-" if kb is None else f"{kb/1024:.1f}"

print(f"| scenario | Starling msg/s | {P} msg/s | ratio | per CPU-s S / P | CPU-s ratio | Starling lost/dup | {P} lost/dup | p99 µs S / P | broker CPU % S / P | peak RSS MiB S / P | tool CPU % max | valid |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
summary = {}
failed = []
for name in runs:
    s, m = runs[name].get("starling", []), runs[name].get(peer, [])
    rs, rm = med([rate(r) for r in s]), med([rate(r) for r in m])
    ratio = rs / rm if rs and rm else None
    es, em = med([eff(r) for r in s]), med([eff(r) for r in m])
    eratio = es / em if es and em else None
    def ld(rr):
        if not rr or rr[0].get("conn"):
            c = rr[0]["conn"] if rr else None
            return "-" if not c else f'{max(x["conn"]["failed"] for x in rr)} failed'
        return f'{max(x["lost"] for x in rr)}/{max(x["duplicates"] for x in rr)}'
    def p99(rr):
        if rr and rr[0].get("conn"):
            return med([x["conn"]["connect_latency"]["p99_us"] for x in rr])
        return med([x["latency"]["p99_us"] for x in rr])
    cpu = lambda rr: med([x["broker"]["cpu_pct"] for x in rr])
    hwm = lambda rr: max([x["broker"]["hwm_kb"] or 0 for x in rr], default=None)
    tool = max([x["tool_cpu_pct"] for x in s + m], default=0)
    valid = all(x["valid"] for x in s + m)
    unit = " conn/s" if (s or m) and (s or m)[0].get("conn") else ""
    print(f"| {name} | {f0(rs, unit)} | {f0(rm, unit)} | {'-' if ratio is None else f'{ratio:.2f}'} | {f0(es)} / {f0(em)} | {'-' if eratio is None else f'{eratio:.2f}'} | {ld(s)} | {ld(m)} "
          f"| {f0(p99(s))} / {f0(p99(m))} | {f0(cpu(s))} / {f0(cpu(m))} | {mb(hwm(s))} / {mb(hwm(m))} | {tool:.0f} | {'yes' if valid else 'NO'} |")
    summary[name] = dict(s=s, m=m, rs=rs, rm=rm, ratio=ratio, eratio=eratio, p99s=p99(s), p99m=p99(m), hwm=hwm(s))
    for kind, rr in (("starling", s), (peer, m)):
        if any(rate(x) <= 0 for x in rr):
            failed.append(f"{name} {kind}: zero rate")
for c in glob.glob(os.path.join(out, "*.crash")):
    failed.append(os.path.basename(c) + ": broker crashed")

if not quick and peer == "mosquitto":
    print()
    print("| target | measured | met |")
    print("|---|---|---|")
    for name, x in summary.items():
        s = x["s"]
        if not s:
            continue
        if name.split("-")[0] in ("fanin", "fanout", "p2p") and not name.endswith("open"):
            lost = max(r["lost"] for r in s); dup = max(r["duplicates"] for r in s)
            q1 = "-q1-" in name
            ok = (x["ratio"] or 0) >= 3 and (x["hwm"] or 0) < 100 * 1024 and (not q1 or (lost == 0 and dup == 0))
            meas = f"ratio {x['ratio'] or 0:.2f} (per CPU-s {x['eratio'] or 0:.2f}), peak RSS {mb(x['hwm'])} MiB" + (f", lost {lost}, dup {dup}" if q1 else "")
            print(f"| {name}: ≥3× Mosquitto{', 0 lost/dup' if q1 else ''}, RSS < 100 MB | {meas} | {'met' if ok else 'NOT met'} |")
        elif name.startswith("latency"):
            ok = x["p99s"] is not None and x["p99m"] is not None and x["p99s"] <= x["p99m"]
            print(f"| {name}: p99 at 10k msg/s ≤ Mosquitto's | {f0(x['p99s'])} µs vs {f0(x['p99m'])} µs | {'met' if ok else 'NOT met'} |")
        elif name.startswith("conn"):
            bpc = med([r["conn"]["bytes_per_conn"] for r in s])
            ok1 = (x["ratio"] or 0) >= 1.5
            ok2 = bpc is not None and bpc <= 10 * 1024
            print(f"| {name}: accept rate ≥1.5× Mosquitto | ratio {x['ratio'] or 0:.2f} | {'met' if ok1 else 'NOT met'} |")
            bm = med([r["conn"]["bytes_per_conn"] for r in x["m"]])
            print(f"| {name}: ≤10 KB per idle connection | {f0(bpc)} B (Mosquitto {f0(bm)} B) | {'met' if ok2 else 'NOT met'} |")
if failed:
    print()
    for f in failed:
        print("FAILED:", f)
    sys.exit(1)
