#!/usr/bin/env bash
# scripts/gpu-check.sh itself: CPU against CPU gives no difference and says which segment both
# refused; a device that cannot run (no NVIDIA driver here) gives a difference per input and
# exit 1. On a machine with an NVIDIA GPU the second half checks the real device instead.
# usage: gpu_check.sh LPOD MEDIA_DIR WORK_DIR
set -u
LPOD=$1 MEDIA=$2 WORK=$3
SCRIPT="$(cd "$(dirname "$0")/../../.." && pwd)/scripts/gpu-check.sh"
rm -rf "$WORK" && mkdir -p "$WORK/media"
cp "$MEDIA/kryp-1.ts" "$MEDIA/kryp-2.ts" "$WORK/media/"
fail=0
bad() { fail=1; echo "FAIL $*"; }
check() { # BACKEND WANT_RC OUT
  BACKEND=$1 DEVICE=0 MEDIA="$WORK/media" SIZE=320x180 SEGS=2 PROFILES=P240p30fps16x9 \
    bash "$SCRIPT" "$LPOD" "$3" >"$3.txt" 2>&1
  local rc=$?
  cat "$3.txt"
  [ "$rc" = "$2" ] || bad "$1: exit $rc, want $2"
}

check sw 0 "$WORK/cpu"
grep -q "^gpu-check: 0 difference(s)" "$WORK/cpu.txt" || bad "cpu against cpu: differences"
grep -q "^same ladder .* h264 426x240 60 frames" "$WORK/cpu.txt" || bad "no ladder rendition"
grep -q "^same kryp-1 .* h264 426x240 35 frames" "$WORK/cpu.txt" || bad "no kryp-1 rendition"
grep -q "^same kryp-2 .*refused by both (segment 0: error: No keyframes in input)" \
  "$WORK/cpu.txt" || bad "kryp-2 not refused by both"

if "$LPOD" devices -nvidia all >/dev/null 2>&1; then
  check nvidia 0 "$WORK/gpu"
else
  check nvidia 1 "$WORK/gpu"
  # kryp-2 is refused either way; the other two inputs differ
  [ "$(grep -c '^DIFF ' "$WORK/gpu.txt")" = 2 ] || bad "want 2 differences"
  grep -q "^DIFF kryp-1 .*sw: ok; nvidia: transcode: -nvidia 0: " "$WORK/gpu.txt" ||
    bad "the device's failure is not named"
fi
[ "$fail" = 0 ] && echo "gpu-check script: ok"
exit "$fail"
