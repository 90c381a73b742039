#!/usr/bin/env bash
# Transcode-engine benchmark: the same ladder on the same segments with the ffmpeg CLI (one
# process per segment, and one long-running process over the concatenated input) and with
# `lpod bench` (one stream, then two concurrent streams), printing lpod's throughput ratios.
# ROUNDS > 1 repeats the four runs back to back, so that each ratio compares runs taken minutes
# apart under the same conditions; the report gives every round's ratios and their median.
#
# usage: scripts/bench-ffmpeg.sh [LPOD_BINARY] [WORKDIR]
# env:   SEGS (10), PRESET (medium), SIZE (1920x1080), FPS (30), SEG_S (2), ROUNDS (1),
#        DEPTH (lpod bench -depth: segments a stream keeps in flight, 2 by default),
#        KEEP=1 keeps WORKDIR
set -euo pipefail

LPOD=${1:-build/lpod}
WORK=${2:-$(mktemp -d /tmp/lpod-bench.XXXXXX)}
SEGS=${SEGS:-10}
PRESET=${PRESET:-medium}
SIZE=${SIZE:-1920x1080}
FPS=${FPS:-30}
SEG_S=${SEG_S:-2}
ROUNDS=${ROUNDS:-1}
DEPTH=${DEPTH:-2}
DUR=$((SEGS * SEG_S))
mkdir -p "$WORK"
[ -x "$LPOD" ] || { echo "no lpod binary at $LPOD" >&2; exit 2; }
command -v ffmpeg >/dev/null || { echo "ffmpeg not found" >&2; exit 2; }

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
# CPU seconds (user + sys) of the children a subshell ran, from bash's `times`.
child_cpu() {
  tail -1 | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%.3f", s }'
}

"$(dirname "$0")/ref-source.sh" "$WORK/src" "$DUR" "$SIZE" "$FPS" "$SEG_S"
cat "$WORK"/src/seg*.ts > "$WORK/all.ts"

# The reference ladder: P720p30fps16x9, P360p30fps16x9, P240p30fps16x9 with lpms's rate
# control (min = avg = max, one-second buffer), forced IDRs, audio copied, x264 $PRESET.
LADDER=(-filter_complex "[0:v]split=3[a][b][c];[a]scale=1280:720,fps=30[o1];[b]scale=640:360,fps=30[o2];[c]scale=426:240,fps=30[o3]")
out() { # label map bitrate
  echo -map "[$2]" -map "0:a?" -c:v libx264 -preset "$PRESET" -forced-idr 1 \
    -b:v "$3" -minrate "$3" -maxrate "$3" -bufsize "$3" -c:a copy -f mpegts "$WORK/ff_$1.ts"
}
ffladder() { # input
  # shellcheck disable=SC2046
  ffmpeg -nostdin -v error -y -i "$1" "${LADDER[@]}" $(out 720 o1 4000k) $(out 360 o2 1200k) \
    $(out 240 o3 600k)
}

r() { printf "%.3f" "$(echo "$1" | bc -l)"; }
jget() { grep -o "\"$2\":[0-9.e+-]*" "$1" | head -1 | cut -d: -f2; }
PROFILES=P720p30fps16x9,P360p30fps16x9,P240p30fps16x9

# One round: the four runs, then one line of figures appended to $WORK/rounds.
round() {
  echo "round $1: ffmpeg, one process per segment..." >&2
  t0=$(now)
  c_seg=$( (for s in "$WORK"/src/seg*.ts; do ffladder "$s"; done; times) | child_cpu)
  t_seg=$(elapsed "$t0" "$(now)")

  echo "round $1: ffmpeg, one long-running process over ${DUR}s..." >&2
  t0=$(now)
  c_long=$( (ffladder "$WORK/all.ts"; times) | child_cpu)
  t_long=$(elapsed "$t0" "$(now)")

  echo "round $1: lpod bench, 1 stream..." >&2
  "$LPOD" bench -in "$WORK/src/index.m3u8" -profiles "$PROFILES" -preset "$PRESET" -sessions 1 \
    -depth "$DEPTH" \
    -csv "$WORK/lpod1.csv" -json "$WORK/lpod1.json" 2>"$WORK/lpod1.txt"
  echo "round $1: lpod bench, 2 concurrent streams..." >&2
  "$LPOD" bench -in "$WORK/src/index.m3u8" -profiles "$PROFILES" -preset "$PRESET" -sessions 2 \
    -depth "$DEPTH" \
    -csv "$WORK/lpod2.csv" -json "$WORK/lpod2.json" 2>"$WORK/lpod2.txt"

  l1_wall=$(jget "$WORK/lpod1.json" wall_s)
  l2_wall=$(jget "$WORK/lpod2.json" wall_s)
  l1_src=$(jget "$WORK/lpod1.json" source_s)
  l1_cpu=$(jget "$WORK/lpod1.json" cpu_s)
  l2_cpu=$(jget "$WORK/lpod2.json" cpu_s)
  l2_src=$(jget "$WORK/lpod2.json" source_s)
  echo "$t_seg $c_seg $t_long $c_long $l1_wall $l1_cpu $l1_src $l2_wall $l2_cpu $l2_src" \
    >>"$WORK/rounds"
}

: >"$WORK/rounds"
for i in $(seq 1 "$ROUNDS"); do round "$i"; done

# Quality: PSNR of the 720p rendition of the first segment against the scaled source, both sides.
"$LPOD" transcode -in "$WORK/src/seg000.ts" -profiles "$PROFILES" -preset "$PRESET" \
  -out "$WORK/q" >/dev/null
ffladder "$WORK/src/seg000.ts"
psnr() {
  ffmpeg -nostdin -v info -i "$1" -i "$WORK/src/seg000.ts" \
    -lavfi "[0:v]setpts=PTS-STARTPTS[d];[1:v]scale=1280:720,setpts=PTS-STARTPTS[r];[d][r]psnr" -f null - 2>&1 |
    grep -o 'average:[0-9.inf]*' | cut -d: -f2
}
p_lpod=$(psnr "$WORK/q/0_P720p30fps16x9.ts")
p_ff=$(psnr "$WORK/ff_720.ts")

# Per round: wall and CPU seconds, and the four ratios (lpod over ffmpeg, higher is better).
echo "source: ${SEGS} x ${SEG_S}s ${SIZE}@${FPS} H.264 + AAC; ladder 720p/360p/240p x264 ${PRESET}; lpod -depth ${DEPTH}"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "round | ffmpeg/seg wall CPU | ffmpeg long wall CPU | lpod 1 wall CPU | lpod 2 wall CPU | 1 vs per-seg wall CPU | 2 vs long wall CPU"
: >"$WORK/ratios"
n=0
while read -r t_seg c_seg t_long c_long l1_wall l1_cpu l1_src l2_wall l2_cpu l2_src; do
  n=$((n + 1))
  w1=$(r "($l1_src / $l1_wall) / ($DUR / $t_seg)")
  c1=$(r "($l1_src / $l1_cpu) / ($DUR / $c_seg)")
  w2=$(r "($l2_src / $l2_wall) / ($DUR / $t_long)")
  c2=$(r "($l2_src / $l2_cpu) / ($DUR / $c_long)")
  echo "$w1 $c1 $w2 $c2" >>"$WORK/ratios"
  echo "$n | $(r "$t_seg") $(r "$c_seg") | $(r "$t_long") $(r "$c_long") | $(r "$l1_wall") $(r "$l1_cpu") | $(r "$l2_wall") $(r "$l2_cpu") | $w1 $c1 | $w2 $c2"
done <"$WORK/rounds"
med() { cut -d' ' -f"$1" "$WORK/ratios" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cat <<REPORT
throughput, wall   1 stream vs ffmpeg per segment : $(med 1) x (median of ${ROUNDS})
throughput, wall  2 streams vs ffmpeg long-running: $(med 3) x
CPU efficiency     1 stream vs ffmpeg per segment : $(med 2) x
CPU efficiency    2 streams vs ffmpeg long-running: $(med 4) x
PSNR 720p seg0 lpod / ffmpeg: ${p_lpod} / ${p_ff} dB
REPORT
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
