#!/usr/bin/env bash
# `lpod transcode` on every file of shared/media with the outcome its README states, and a
# short `lpod bench` run; outputs are checked with ffprobe.
# usage: cli_media.sh LPOD MEDIA_DIR WORK_DIR
set -u
LPOD=$1 MEDIA=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# xc NAME PROFILES EXPECT_RC [EXPECT_TEXT]: runs lpod transcode, checks exit code and text.
xc() {
  local name=$1 prof=$2 want=$3 text=${4:-}
  local out="$WORK/$name"
  "$LPOD" transcode -in "$MEDIA/$name" -profiles "$prof" -out "$out" -preset ultrafast \
    >"$WORK/$name.log" 2>&1
  local rc=$?
  if [ "$rc" != "$want" ]; then bad "$name: exit $rc, want $want"; cat "$WORK/$name.log"; return 1; fi
  if [ -n "$text" ] && ! grep -qF -- "$text" "$WORK/$name.log"; then
    bad "$name: no '$text' in output"; cat "$WORK/$name.log"; return 1
  fi
  ok "$name exit $rc ${text}"
}
frames() { ffprobe -v error -select_streams v -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$1" | head -1; }
size() { ffprobe -v error -select_streams v -show_entries stream=width,height -of csv=p=0:s=x "$1" | head -1; }
apkts() { ffprobe -v error -select_streams a -show_entries packet=dts -of csv=p=0 "$1" | grep -c .; }
# Strictly increasing DTS within every stream.
dts_ok() {
  ffprobe -v error -show_entries packet=stream_index,dts -of csv=p=0 "$1" |
    awk -F, 'NF >= 2 && $2 != "" && $2 != "N/A" { if (($1 in last) && $2 + 0 <= last[$1]) bad = 1; last[$1] = $2 + 0 } END { exit bad }'
}
expect() { # what got want
  if [ "$2" = "$3" ]; then ok "$1 = $3"; else bad "$1: got '$2', want '$3'"; fi
}
PASS='[{"name":"pass","width":426,"height":240,"bitrate":600000}]'

xc kryp-1.ts P240p30fps16x9,P144p30fps16x9 0 && {
  expect "kryp-1 240p frames" "$(frames "$WORK/kryp-1.ts/0_P240p30fps16x9.ts")" 35
  expect "kryp-1 240p size" "$(size "$WORK/kryp-1.ts/0_P240p30fps16x9.ts")" 426x240
}
xc kryp-2.ts P240p30fps16x9 1 "error: No keyframes in input"
xc zero-frame.ts P240p30fps16x9,P360p30fps16x9 0 && {
  f="$WORK/zero-frame.ts/0_P240p30fps16x9.ts"
  expect "zero-frame video frames" "$(frames "$f")" ""
  expect "zero-frame audio packets" "$(apkts "$f")" 72
}
xc duplicate-audio-dts.ts P240p30fps16x9 0 && {
  f="$WORK/duplicate-audio-dts.ts/0_P240p30fps16x9.ts"
  if dts_ok "$f"; then ok "duplicate-audio-dts DTS strictly increasing"; else bad "duplicate-audio-dts DTS"; fi
  expect "duplicate-audio-dts audio packets" "$(apkts "$f")" 85
}
# a ladder file may ask for AAC or for no audio instead of the copy
acodec() { ffprobe -v error -select_streams a -show_entries stream=codec_name,channels -of csv=p=0 "$1" | head -1; }
xc duplicate-audio-dts.ts '[{"name":"aac","width":426,"height":240,"bitrate":600000,"audio":"aac"},{"name":"mute","width":426,"height":240,"bitrate":600000,"audio":"drop"}]' 0 && {
  f="$WORK/duplicate-audio-dts.ts/0_aac.ts"
  expect "aac ladder audio" "$(acodec "$f")" "aac,2"
  if dts_ok "$f"; then ok "aac ladder DTS strictly increasing"; else bad "aac ladder DTS"; fi
  expect "drop ladder audio packets" "$(apkts "$WORK/duplicate-audio-dts.ts/0_mute.ts")" 0
}
xc missing-sei-and-pes.ts "$PASS" 0 &&
  expect "missing-sei-and-pes passthrough frames" "$(frames "$WORK/missing-sei-and-pes.ts/0_pass.ts")" 12
xc skip_1.ts "$PASS" 0 && expect "skip_1 passthrough frames" "$(frames "$WORK/skip_1.ts/0_pass.ts")" 171
xc portrait.ts P360p30fps16x9,P144p30fps16x9 0 && {
  expect "portrait 360p size" "$(size "$WORK/portrait.ts/0_P360p30fps16x9.ts")" 360x640
  expect "portrait 144p size" "$(size "$WORK/portrait.ts/0_P144p30fps16x9.ts")" 144x256
}
xc vertical-sample.ts '[{"name":"tall","width":250,"height":62500,"bitrate":600000}]' 1 \
  "error: TranscoderInvalidResolution"
xc transmux.ts "$PASS" 0 && {
  f="$WORK/transmux.ts/0_pass.ts"
  expect "transmux passthrough frames" "$(frames "$f")" 53
  if dts_ok "$f"; then ok "transmux DTS strictly increasing"; else bad "transmux DTS"; fi
}
xc audio.mp3 P240p30fps16x9 1 "error: TranscoderInvalidVideo"

# AV1 (lpod's extension): SVT-AV1 renditions that ffprobe reads as AV1 at the asked size with
# every frame, in MP4 and in Matroska (the MPEG-TS format cannot carry AV1 in FFmpeg 5.1), and an
# AV1 input back to H.264.
codec() { ffprobe -v error -select_streams v -show_entries stream=codec_name -of csv=p=0 "$1" | head -1; }
AV1='[{"name":"a360","width":640,"height":360,"bitrate":600000,"fps":30,"encoder":"AV1","format":"mp4"},{"name":"a240","width":426,"height":240,"bitrate":300000,"fps":30,"encoder":"AV1"}]'
xc kryp-1.ts "$AV1" 0 && {
  for r in a360.mp4:640x360 a240.mkv:426x240; do
    f="$WORK/kryp-1.ts/0_${r%%:*}"
    expect "$r codec" "$(codec "$f")" av1
    expect "$r size" "$(size "$f")" "${r##*:}"
    expect "$r frames" "$(frames "$f")" 35
  done
  if "$LPOD" transcode -in "$WORK/kryp-1.ts/0_a360.mp4" -profiles P240p30fps16x9 \
    -out "$WORK/av1-in" -preset ultrafast >"$WORK/av1-in.log" 2>&1; then
    f="$WORK/av1-in/0_P240p30fps16x9.ts"
    expect "AV1 input to H.264 codec" "$(codec "$f")" h264
    expect "AV1 input to H.264 size" "$(size "$f")" 426x240
    expect "AV1 input to H.264 frames" "$(frames "$f")" 35
  else
    bad "AV1 input: exit $?"
    cat "$WORK/av1-in.log"
  fi
}

# bench: two sessions over a folder of two small generated segments.
mkdir -p "$WORK/segs"
for i in 0 1; do
  ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=320x180:rate=30 -t 1 \
    -output_ts_offset "$i" -c:v libx264 -preset ultrafast "$WORK/segs/s$i.ts"
done
if "$LPOD" bench -in "$WORK/segs" -profiles P144p30fps16x9 -preset ultrafast -sessions 2 \
  -repeat 2 -csv "$WORK/bench.csv" -json "$WORK/bench.json" 2>"$WORK/bench.log"; then
  expect "bench transcoded" "$(grep -o '"transcoded":[0-9]*' "$WORK/bench.json" | cut -d: -f2)" 8
  expect "bench csv lines" "$(($(wc -l <"$WORK/bench.csv") - 1))" 8
  expect "bench depth in the JSON" "$(grep -o '"depth":[0-9]*' "$WORK/bench.json" | cut -d: -f2)" 2
  # two segments in flight per stream (the default), results in each stream's order
  expect "bench results in order" "$(awk -F, 'NR > 1 { if ($3 <= last[$2] && seen[$2]) bad++; last[$2] = $3; seen[$2] = 1 } END { print bad + 0 }' "$WORK/bench.csv")" 0
else
  bad "bench exit"; cat "$WORK/bench.log"
fi
if "$LPOD" bench -in "$WORK/segs" -profiles P144p30fps16x9 -preset ultrafast -depth 1 \
  -repeat 2 -json "$WORK/bench1.json" 2>"$WORK/bench1.log"; then
  expect "bench -depth 1 transcoded" "$(grep -o '"transcoded":[0-9]*' "$WORK/bench1.json" | cut -d: -f2)" 4
  expect "bench -depth 1 in the JSON" "$(grep -o '"depth":[0-9]*' "$WORK/bench1.json" | cut -d: -f2)" 1
  expect "bench -depth 1 asked" "$(grep -o '"depth_asked":[0-9]*' "$WORK/bench1.json" | cut -d: -f2)" 1
else
  bad "bench -depth 1 exit"; cat "$WORK/bench1.log"
fi
"$LPOD" bench -in "$WORK/segs" -depth 3 2>/dev/null
expect "bench -depth 3 is a usage error" "$?" 2

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
