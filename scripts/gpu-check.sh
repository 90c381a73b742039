#!/usr/bin/env bash
# Device acceptance check: every input goes through `lpod transcode` twice, on the CPU backend
# and on the device, and each rendition of the device run must decode (ffprobe -count_frames)
# to the same codec, size and frame count as the CPU run's; a segment the CPU refuses must be
# refused on the device too. Inputs: a generated reference source (SIZE at 30 fps, SEGS 2 s
# segments through one session, as a stream's) and every .ts file in MEDIA, one session each.
# Prints one line per rendition and exits 1 on any difference.
#
# usage: scripts/gpu-check.sh [LPOD_BINARY] [OUTDIR]
# env:   BACKEND (nvidia), DEVICE (0), MEDIA (../shared/media when present, else none),
#        PROFILES (P720p30fps16x9,P360p30fps16x9,P240p30fps16x9), SIZE (1280x720), SEGS (6)
set -euo pipefail
cd "$(dirname "$0")/.."

LPOD=${1:-build-release/lpod}
OUT=${2:-check-out}
BACKEND=${BACKEND:-nvidia}
DEVICE=${DEVICE:-0}
MEDIA=${MEDIA-../shared/media}
PROFILES=${PROFILES:-P720p30fps16x9,P360p30fps16x9,P240p30fps16x9}
SIZE=${SIZE:-1280x720}
SEGS=${SEGS:-6}
[ -x "$LPOD" ] || { echo "gpu-check: no lpod binary at $LPOD" >&2; exit 2; }
for t in ffmpeg ffprobe python3; do
  command -v "$t" >/dev/null || { echo "gpu-check: $t not found" >&2; exit 2; }
done
rm -rf "$OUT/sw" "$OUT/$BACKEND"
scripts/ref-source.sh "$OUT/src" $((SEGS * 2)) "$SIZE" 30 2

# the reference segments go through one session; each MEDIA file through its own
inputs=()
ladder=()
for s in "$OUT"/src/seg*.ts; do ladder+=(-in "$s"); done
if [ -n "$MEDIA" ] && [ -d "$MEDIA" ]; then
  for f in "$MEDIA"/*.ts; do inputs+=("$f"); done
fi

run() { # backend name inputs...
  local be=$1 name=$2
  shift 2
  mkdir -p "$OUT/$be/$name"
  if "$LPOD" transcode "$@" -profiles "$PROFILES" -out "$OUT/$be/$name" -backend "$be" \
    -device "$DEVICE" >"$OUT/$be/$name.txt" 2>"$OUT/$be/$name.log"; then
    echo ok >"$OUT/$be/$name.rc"
  else
    # the segment's error, else why the tool stopped
    { grep -h "error:" "$OUT/$be/$name.txt" || grep -h "^transcode: " "$OUT/$be/$name.log" ||
      tail -n 1 "$OUT/$be/$name.log"; } | head -n 1 >"$OUT/$be/$name.rc"
  fi
}

for be in sw "$BACKEND"; do
  echo "gpu-check: $be..." >&2
  run "$be" ladder "${ladder[@]}"
  for f in "${inputs[@]}"; do
    n=$(basename "$f" .ts)
    run "$be" "$n" -in "$f"
  done
done

python3 - "$OUT" "$BACKEND" <<'EOF'
import json, os, subprocess, sys
out, dev = sys.argv[1], sys.argv[2]

def probe(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                        "-show_entries", "stream=codec_name,width,height,nb_read_frames",
                        "-of", "json", path], capture_output=True, text=True)
    if r.returncode != 0:
        return "unreadable"
    streams = json.loads(r.stdout).get("streams", [])
    if not streams:
        return "no video"
    s = streams[0]
    return "%s %sx%s %s frames" % (s.get("codec_name"), s.get("width"), s.get("height"),
                                   s.get("nb_read_frames"))

def status(be, name):
    with open(os.path.join(out, be, name + ".rc")) as f:
        return f.read().strip() or "failed"

bad = 0
names = sorted(n[:-3] for n in os.listdir(os.path.join(out, "sw")) if n.endswith(".rc"))
for name in names:
    st = [status("sw", name), status(dev, name)]
    # the CPU's outcome decides: a refused segment must be refused on the device as well
    if (st[0] == "ok") != (st[1] == "ok"):
        print("DIFF %-22s sw: %s; %s: %s" % (name, st[0], dev, st[1]))
        bad += 1
        continue
    if st[0] != "ok":
        print("same %-22s refused by both (%s)" % (name, st[0]))
        continue
    files = sorted(set(os.listdir(os.path.join(out, "sw", name))) |
                   set(os.listdir(os.path.join(out, dev, name))))
    for f in files:
        r = [probe(os.path.join(out, be, name, f)) if os.path.exists(os.path.join(out, be, name, f))
             else "missing" for be in ("sw", dev)]
        ok = r[0] == r[1] and r[0] not in ("unreadable", "missing")
        bad += not ok
        print("%s %-22s %-24s %s" % ("same" if ok else "DIFF", name, f,
                                     r[0] if ok else "sw: %s; %s: %s" % (r[0], dev, r[1])))
print("gpu-check: %d difference(s)" % bad)
sys.exit(1 if bad else 0)
EOF
