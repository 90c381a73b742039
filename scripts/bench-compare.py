#!/usr/bin/env python3
"""Compares `lpod bench -json` results with a committed baseline; exits 1 on a regression.

usage: bench-compare.py [--strict] [--scale F] [--update OUT] BASELINE NAME=RESULT.json ...

BASELINE is a JSON file (bench/baseline*.json):
  {"thresholds": {"realtime_ratio": {"better": "lower", "tolerance_pct": 15}, ...},
   "runs": {"cpu": {"realtime_ratio": 0.61, ...}, "nvidia:0": {...}}}
Each NAME=RESULT.json pair is one `lpod bench -json` output checked against runs[NAME]: every
metric named in thresholds that the baseline run has must be in the result and must not be worse
than the baseline by more than its tolerance (tolerance_pct of the baseline value, or
tolerance_abs). A baseline run that records "sessions" or "depth" (segments in flight per
session, as the sessions ran them) is compared only with a result of the same setup (4 streams
sharing a machine are not 1 stream slower, nor one segment at a time as fast as two): any other
value is a usage error. A NAME without a baseline run is reported and passes, unless --strict.
--scale multiplies every tolerance (noisy runners). --update writes a baseline with the given
results as its runs (thresholds kept) to OUT, for refreshing the committed file.
Exit status: 0 no regression, 1 regression, 2 bad usage or unreadable input.
"""
import json
import sys

# what a run's figures depend on besides the code: compared for equality, never as metrics
SETUP_KEYS = ("sessions", "depth")


def fail_usage(msg):
    print("bench-compare: " + msg, file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail_usage("cannot read %s: %s" % (path, e))


def check_metric(name, rule, base, got, scale):
    """Returns (ok, text) for one metric."""
    better = rule.get("better", "lower")
    if better not in ("lower", "higher"):
        fail_usage("metric %s: 'better' must be 'lower' or 'higher'" % name)
    if "tolerance_abs" in rule:
        tol = float(rule["tolerance_abs"]) * scale
    else:
        tol = abs(float(base)) * float(rule.get("tolerance_pct", 10)) / 100.0 * scale
    if better == "lower":
        limit = base + tol
        ok = got <= limit
    else:
        limit = base - tol
        ok = got >= limit
    change = ""
    if base:
        change = " (%+.1f%%)" % ((got - base) / abs(base) * 100.0)
    text = "%-18s baseline %-12.6g now %-12.6g%s, %s is better, limit %.6g" % (
        name, base, got, change, better, limit)
    return ok, text


def main(argv):
    strict = False
    scale = 1.0
    update = None
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--strict":
            strict = True
        elif a == "--scale":
            i += 1
            if i >= len(argv):
                fail_usage("--scale needs a number")
            try:
                scale = float(argv[i])
            except ValueError:
                fail_usage("--scale needs a number")
        elif a == "--update":
            i += 1
            if i >= len(argv):
                fail_usage("--update needs a file")
            update = argv[i]
        elif a.startswith("--"):
            fail_usage("unknown option " + a)
        else:
            args.append(a)
        i += 1
    if len(args) < 2:
        fail_usage("usage: bench-compare.py [--strict] [--scale F] [--update OUT] "
                   "BASELINE NAME=RESULT.json ...")
    baseline = load(args[0])
    if not isinstance(baseline, dict) or not isinstance(baseline.get("thresholds"), dict):
        fail_usage("%s: no 'thresholds' object" % args[0])
    thresholds = baseline["thresholds"]
    runs = baseline.get("runs", {})
    regressions = 0
    results = {}
    for pair in args[1:]:
        if "=" not in pair:
            fail_usage("expected NAME=RESULT.json, got " + pair)
        name, path = pair.split("=", 1)
        result = load(path)
        if not isinstance(result, dict):
            fail_usage("%s: not a JSON object" % path)
        results[name] = result
        base = runs.get(name)
        if base is None:
            print("%s: no baseline run%s" % (name, ", failing (--strict)" if strict else ""))
            if strict:
                regressions += 1
            continue
        for key in SETUP_KEYS:
            if key in base and result.get(key) != base[key]:
                fail_usage("%s: the baseline run in %s has %s %s, %s has %s; compare with a "
                           "baseline of the same setup" % (name, args[0], key, base[key], path,
                                                          result.get(key)))
        print("%s:" % name)
        for metric, rule in sorted(thresholds.items()):
            if metric not in base:
                continue
            got = result.get(metric)
            if not isinstance(got, (int, float)) or isinstance(got, bool):
                print("  REGRESSION %s: missing from %s" % (metric, path))
                regressions += 1
                continue
            ok, text = check_metric(metric, rule, float(base[metric]), float(got), scale)
            print("  %s %s" % ("ok        " if ok else "REGRESSION", text))
            if not ok:
                regressions += 1
    if update:
        out = {"thresholds": thresholds, "runs": dict(runs)}
        for k in ("comment", "machine", "command"):
            if k in baseline:
                out[k] = baseline[k]
        for name, result in results.items():
            out["runs"][name] = {m: result[m] for m in thresholds
                                 if isinstance(result.get(m), (int, float))}
            for key in SETUP_KEYS:
                if isinstance(result.get(key), int):
                    out["runs"][name][key] = result[key]
        with open(update, "w") as f:
            json.dump(out, f, indent=2, sort_keys=True)
            f.write("\n")
        print("wrote %s" % update)
    if regressions:
        print("%d regression(s)" % regressions)
        return 1
    print("no regression")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
