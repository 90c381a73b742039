#!/usr/bin/env bash
# Device benchmark for CI on GPU runners: the reference ladder (P720p30fps16x9, P360p30fps16x9,
# P240p30fps16x9) through `lpod bench` on every device `lpod devices` lists, the same ladder and a
# decode-only pass through the ffmpeg CLI with -hwaccel cuda on NVIDIA devices, then
# scripts/bench-compare.py against the committed baseline. Exits non-zero on a regression or a
# failed run. Results land in OUTDIR: devices.json, <device>.json (lpod bench -json),
# <device>.csv (one line per segment), ffmpeg-<device>.json and compare.txt.
#
# usage: scripts/gpu-bench.sh [LPOD_BINARY] [OUTDIR]
# env:   DEVICES ("-nvidia all"; flags for `lpod devices`), BASELINE (bench/baseline.json),
#        SEGS (6), SIZE (1280x720), FPS (30), SEG_S (2), PRESET (veryfast), SESSIONS (1),
#        DEPTH (1: lpod bench -depth, segments in flight per session; the committed baselines
#        were recorded one at a time, and bench-compare.py refuses a run of another depth),
#        SCALE (1, multiplies every tolerance)
set -euo pipefail
cd "$(dirname "$0")/.."

LPOD=${1:-build/lpod}
OUT=${2:-bench-out}
DEVICES=${DEVICES--nvidia all}
BASELINE=${BASELINE:-bench/baseline.json}
SEGS=${SEGS:-6}
SIZE=${SIZE:-1280x720}
FPS=${FPS:-30}
SEG_S=${SEG_S:-2}
PRESET=${PRESET:-veryfast}
SESSIONS=${SESSIONS:-1}
DEPTH=${DEPTH:-1}
SCALE=${SCALE:-1}
PROFILES=P720p30fps16x9,P360p30fps16x9,P240p30fps16x9
DUR=$((SEGS * SEG_S))
[ -x "$LPOD" ] || { echo "gpu-bench: no lpod binary at $LPOD" >&2; exit 2; }
command -v ffmpeg >/dev/null || { echo "gpu-bench: ffmpeg not found" >&2; exit 2; }
scripts/ref-source.sh "$OUT/src" "$DUR" "$SIZE" "$FPS" "$SEG_S"
cat "$OUT"/src/seg*.ts > "$OUT/all.ts"

# shellcheck disable=SC2086
"$LPOD" devices $DEVICES -json > "$OUT/devices.json" || {
  echo "gpu-bench: lpod devices failed (see above)" >&2
  exit 1
}
mapfile -t devs < <(python3 -c '
import json, sys
for d in json.load(open(sys.argv[1]))["devices"]:
    idx = str(d.get("index", -1))
    print(d["name"], d["backend"], idx, "1" if d["encode"] else "0")
' "$OUT/devices.json")

pairs=()
failed=0
for line in "${devs[@]}"; do
  read -r name backend idx has_enc <<<"$line"
  safe=${name//[^A-Za-z0-9_-]/_}
  echo "gpu-bench: $name ($backend): lpod bench, $SESSIONS session(s)..." >&2
  if "$LPOD" bench -in "$OUT/src/index.m3u8" -profiles "$PROFILES" -preset "$PRESET" \
    -sessions "$SESSIONS" -depth "$DEPTH" -backend "$backend" -device "$idx" \
    -json "$OUT/$safe.json" -csv "$OUT/$safe.csv"; then
    pairs+=("$name=$OUT/$safe.json")
  else
    echo "gpu-bench: $name: lpod bench failed" >&2
    failed=1
  fi
  [ "$backend" = nvidia ] || continue

  # The ffmpeg CLI on the same GPU: NVDEC decode alone, then the ladder with scale_cuda and
  # NVENC, or, on GPUs without NVENC, downloaded frames into libx264 as lpod does.
  echo "gpu-bench: $name: ffmpeg -hwaccel cuda..." >&2
  t0=$(date +%s.%N)
  ffmpeg -nostdin -v error -y -hwaccel cuda -hwaccel_device "$idx" -hwaccel_output_format cuda \
    -i "$OUT/all.ts" -f null -
  t_dec=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  # the same decode on the CPU, for the ratio
  t0=$(date +%s.%N)
  ffmpeg -nostdin -v error -y -i "$OUT/all.ts" -f null -
  t_cpu=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  if [ "$has_enc" = 1 ]; then
    enc=(-c:v h264_nvenc -preset p4 -forced-idr 1)
    tail=""
  else
    enc=(-c:v libx264 -preset "$PRESET" -forced-idr 1)
    tail=":format=yuv420p,hwdownload,format=yuv420p"
  fi
  t0=$(date +%s.%N)
  ffmpeg -nostdin -v error -y -hwaccel cuda -hwaccel_device "$idx" -hwaccel_output_format cuda \
    -i "$OUT/all.ts" -filter_complex \
    "[0:v]split=3[a][b][c];[a]scale_cuda=1280:720${tail}[o1];[b]scale_cuda=640:360${tail}[o2];[c]scale_cuda=426:240${tail}[o3]" \
    -map "[o1]" "${enc[@]}" -b:v 4000k -maxrate 4000k -bufsize 4000k -f mpegts "$OUT/ff_720.ts" \
    -map "[o2]" "${enc[@]}" -b:v 1200k -maxrate 1200k -bufsize 1200k -f mpegts "$OUT/ff_360.ts" \
    -map "[o3]" "${enc[@]}" -b:v 600k -maxrate 600k -bufsize 600k -f mpegts "$OUT/ff_240.ts" ||
    { echo "gpu-bench: $name: ffmpeg ladder failed" >&2; failed=1; }
  t_lad=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  frames=$((DUR * FPS))
  python3 - "$OUT/ffmpeg-$safe.json" "$t_dec" "$t_cpu" "$t_lad" "$DUR" "$frames" <<'EOF'
import json, sys
out = sys.argv[1]
t_dec, t_cpu, t_lad, dur = (float(v) for v in sys.argv[2:6])
frames = int(sys.argv[6])
json.dump({"decode_s": t_dec, "decode_fps": frames / t_dec if t_dec else 0,
           "cpu_decode_s": t_cpu, "cpu_decode_fps": frames / t_cpu if t_cpu else 0,
           "ladder_s": t_lad, "realtime_ratio": t_lad / dur if dur else 0,
           "source_s": dur, "frames": frames}, open(out, "w"), indent=2)
EOF
done

if [ ${#pairs[@]} -eq 0 ]; then
  echo "gpu-bench: no device produced results" >&2
  exit 1
fi
set +e
python3 scripts/bench-compare.py --scale "$SCALE" "$BASELINE" "${pairs[@]}" | tee "$OUT/compare.txt"
rc=${PIPESTATUS[0]}
set -e
[ "$failed" = 0 ] || exit 1
exit "$rc"
