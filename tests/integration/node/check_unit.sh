#!/bin/sh
# The systemd unit as shipped (configs/lpod.service), its ExecStart pointed at the built binary:
# systemd-analyze verify must have nothing to say (an unknown key or a bad value is only a
# warning to systemd, which then runs the service without it).
# usage: check_unit.sh UNIT_FILE LPOD_BINARY
command -v systemd-analyze >/dev/null 2>&1 || { echo "SKIP: systemd-analyze is not installed"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/lpod|$2|g" "$1" > "$tmp/lpod.service" || exit 1
grep -q "^ExecStart=$2 " "$tmp/lpod.service" || { echo "no ExecStart of /usr/local/bin/lpod in $1"; exit 1; }
out=$(systemd-analyze verify "$tmp/lpod.service" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
  echo "systemd-analyze verify $1 (exit $rc):"
  echo "$out"
  exit 1
fi
echo "ok: systemd-analyze verify has nothing to say about $1"
