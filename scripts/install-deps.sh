#!/usr/bin/env bash
# Installs what lpod needs on Debian 12, and nothing that is already there.
#   scripts/install-deps.sh          build and run dependencies
#   scripts/install-deps.sh --test   also what the tests need (cmocka, ffprobe, curl, h2load,
#                                    Node.js and the npm packages of the test peers)
# Runs as root, or as a user with sudo. Quick on a second run: it only looks.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

pkgs=(build-essential cmake pkg-config git
  libuv1-dev libavformat-dev libavcodec-dev libavfilter-dev libswscale-dev libavutil-dev
  libswresample-dev libssl-dev libnghttp2-dev libhttp-parser-dev libprotobuf-c-dev
  protobuf-c-compiler libsecp256k1-dev libcurl4-openssl-dev libcjson-dev libsqlite3-dev
  ffmpeg ca-certificates)
test_pkgs=(libcmocka-dev curl nghttp2-client procps python3)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
check() {
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
}
check "${pkgs[@]}"
[ $want_test = 1 ] && check "${test_pkgs[@]}"
# Node.js for the test peers: any node >= 18 with npm will do (Debian's, or one already there).
if [ $want_test = 1 ] && ! { command -v node >/dev/null && command -v npm >/dev/null; }; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ $want_test = 1 ]; then
  # Every test folder with a package.json gets its packages, once (and again when it changes).
  while IFS= read -r pj; do
    dir=$(dirname "$pj")
    stamp="$dir/node_modules/.lpod-installed"
    if [ ! -f "$stamp" ] || [ "$pj" -nt "$stamp" ] ||
      { [ -f "$dir/package-lock.json" ] && [ "$dir/package-lock.json" -nt "$stamp" ]; }; then
      echo "install-deps: npm packages for $dir"
      if [ -f "$dir/package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
      else
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
      fi
      touch "$stamp"
    fi
  done < <(find tests -name package.json -not -path '*/node_modules/*' | sort)
fi
