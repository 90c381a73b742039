#!/usr/bin/env bash
# The source of the benchmarks and device checks: a moving test pattern with temporal noise (so
# that encoders work as on camera content), a keyframe at every segment boundary and AAC audio,
# cut into DIR/index.m3u8 and DIR/seg000.ts, ... Made once: an existing playlist is kept.
#
# usage: scripts/ref-source.sh DIR SECONDS SIZE FPS SEG_S
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 DIR SECONDS SIZE FPS SEG_S" >&2; exit 2; }
DIR=$1 DUR=$2 SIZE=$3 FPS=$4 SEG_S=$5
[ -f "$DIR/index.m3u8" ] && exit 0
mkdir -p "$DIR"
echo "generating ${DUR}s of ${SIZE}@${FPS} source in ${SEG_S}s segments..." >&2
ffmpeg -nostdin -v error -y \
  -f lavfi -i "testsrc2=size=${SIZE}:rate=${FPS},noise=alls=6:allf=t+u" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$DUR" \
  -c:v libx264 -preset veryfast -b:v 6M -g $((FPS * SEG_S)) -keyint_min $((FPS * SEG_S)) \
  -sc_threshold 0 -c:a aac -b:a 128k \
  -f hls -hls_time "$SEG_S" -hls_list_size 0 -hls_segment_filename "$DIR/seg%03d.ts" \
  "$DIR/index.m3u8"
