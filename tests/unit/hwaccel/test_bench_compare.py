#!/usr/bin/env python3
"""Tests scripts/bench-compare.py with sample `lpod bench -json` results."""
import json
import os
import subprocess
import sys
import tempfile

SCRIPT = sys.argv[1]
failures = 0

BASELINE = {
    "thresholds": {
        "realtime_ratio": {"better": "lower", "tolerance_pct": 15},
        "throughput": {"better": "higher", "tolerance_pct": 15},
        "failed": {"better": "lower", "tolerance_abs": 0},
        "realtime_share": {"better": "higher", "tolerance_abs": 0.05},
    },
    "runs": {
        "cpu": {"realtime_ratio": 0.60, "throughput": 3.2, "failed": 0, "realtime_share": 1.0},
        "nvidia:0": {"realtime_ratio": 0.10, "throughput": 20.0, "failed": 0},
    },
}

# A real `lpod bench -json` line, as src/media/bench.c prints it.
SAMPLE = {"sessions": 2, "depth": 2, "depth_asked": 2, "live": False, "segments": 4,
          "repeat": 1, "profiles": 3, "transcoded": 8, "failed": 0, "realtime_segments": 8,
          "realtime_share": 1.0,
          "source_s": 16.0, "transcode_s": 9.6, "realtime_ratio": 0.60, "wall_s": 5.0,
          "throughput": 3.2, "cpu_s": 9.9, "frames": 480, "pixels": 123456789,
          "rss_start_kb": 1000, "rss_first_pass_kb": 2000, "rss_end_kb": 2100,
          "rss_peak_kb": 2200, "rss_per_session_kb": 550}

tmp = tempfile.mkdtemp(prefix="lpod-bench-")


def write(name, obj):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        if isinstance(obj, str):
            f.write(obj)
        else:
            json.dump(obj, f)
    return path


def run(*args):
    p = subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def expect(what, args, code, *texts):
    global failures
    rc, out = run(*args)
    ok = rc == code and all(t in out for t in texts)
    print("%s %s" % ("ok  " if ok else "FAIL", what))
    if not ok:
        failures += 1
        print("  exit %d (want %d), output:\n%s" % (rc, code, out))


base = write("baseline.json", BASELINE)


def sample(**kw):
    s = dict(SAMPLE)
    s.update(kw)
    return s


same = write("same.json", sample())
expect("identical results pass", [base, "cpu=" + same], 0, "no regression")
expect("within tolerance passes", [base, "cpu=" + write("near.json", sample(
    realtime_ratio=0.68, throughput=2.8))], 0, "no regression")
expect("better results pass", [base, "cpu=" + write("better.json", sample(
    realtime_ratio=0.30, throughput=6.0))], 0, "no regression")
expect("slower real-time ratio fails", [base, "cpu=" + write("slow.json", sample(
    realtime_ratio=0.70))], 1, "REGRESSION realtime_ratio", "1 regression(s)")
expect("lower throughput fails", [base, "cpu=" + write("lowtp.json", sample(
    throughput=2.5))], 1, "REGRESSION throughput")
expect("any failed segment fails", [base, "cpu=" + write("failed.json", sample(failed=1))], 1,
       "REGRESSION failed")
expect("real-time share below the absolute tolerance fails", [base, "cpu=" + write(
    "share.json", sample(realtime_share=0.9))], 1, "REGRESSION realtime_share")
missing = sample()
del missing["throughput"]
expect("a metric missing from the result fails", [base, "cpu=" + write("missing.json", missing)],
       1, "REGRESSION throughput: missing")
expect("several runs are checked each", [base, "cpu=" + same, "nvidia:0=" + write(
    "gpu.json", sample(realtime_ratio=0.2, throughput=20.0))], 1,
    "nvidia:0:", "REGRESSION realtime_ratio")
expect("--scale widens the tolerances", ["--scale", "3", base, "cpu=" + write(
    "slow2.json", sample(realtime_ratio=0.70))], 0, "no regression")
sbase = write("sessions.json", dict(BASELINE, runs={"cpu": dict(BASELINE["runs"]["cpu"],
                                                                 sessions=2)}))
expect("a baseline of as many sessions compares", [sbase, "cpu=" + same], 0, "no regression")
expect("a baseline of another session count is a usage error", [sbase, "cpu=" + write(
    "four.json", sample(sessions=4))], 2, "has sessions 2", "has 4")
dbase = write("depth.json", dict(BASELINE, runs={"cpu": dict(BASELINE["runs"]["cpu"], depth=2)}))
expect("a baseline of the same depth compares", [dbase, "cpu=" + same], 0, "no regression")
expect("a baseline of another depth is a usage error", [dbase, "cpu=" + write(
    "depth1.json", sample(depth=1, depth_asked=1))], 2, "has depth 2", "has 1")
expect("a run without baseline passes", [base, "qsv:0=" + same], 0, "qsv:0: no baseline run")
expect("--strict fails a run without baseline", ["--strict", base, "qsv:0=" + same], 1,
       "failing (--strict)")
expect("malformed JSON is a usage error", [base, "cpu=" + write("bad.json", "{not json")], 2,
       "cannot read")
expect("a baseline without thresholds is a usage error", [write("nothr.json", {"runs": {}}),
                                                           "cpu=" + same], 2, "no 'thresholds'")
expect("a bad argument is a usage error", [base, same], 2, "expected NAME=RESULT.json")
expect("no arguments is a usage error", [], 2, "usage")
new_base = os.path.join(tmp, "new.json")
expect("--update writes a baseline", ["--update", new_base, base, "qsv:0=" + same], 0,
       "wrote " + new_base)
with open(new_base) as f:
    nb = json.load(f)
qsv = nb.get("runs", {}).get("qsv:0", {})
if (qsv.get("throughput") != 3.2 or qsv.get("sessions") != 2 or qsv.get("depth") != 2 or
        "cpu" not in nb["runs"]):
    failures += 1
    print("FAIL --update content: %s" % nb)
expect("the updated baseline accepts its own results", ["--strict", new_base, "qsv:0=" + same],
       0, "no regression")
# The committed baselines are valid and accept themselves.
root = os.path.dirname(os.path.dirname(os.path.abspath(SCRIPT)))
bench_dir = os.path.join(root, "bench")
for name in sorted(os.listdir(bench_dir)) if os.path.isdir(bench_dir) else []:
    if not (name.startswith("baseline") and name.endswith(".json")):
        continue
    with open(os.path.join(bench_dir, name)) as f:
        committed = json.load(f)
    for run_name, metrics in committed.get("runs", {}).items():
        expect("%s: run %s accepts its own numbers" % (name, run_name),
               [os.path.join(bench_dir, name), run_name + "=" + write("self.json", metrics)], 0,
               "no regression")

sys.exit(1 if failures else 0)
