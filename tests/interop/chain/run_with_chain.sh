#!/bin/sh
# Runs a test binary against a fresh local Livepeer chain (chain.js). Skips (exit 77) with a
# clear message when Node or this folder's node_modules are missing.
dir=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: node is not installed"
  exit 77
fi
for m in ganache ethers @livepeer/sdk; do
  if [ ! -d "$dir/node_modules/$m" ]; then
    echo "SKIP: $dir/node_modules/$m is missing; run 'npm install' in $dir"
    exit 77
  fi
done
work=$(mktemp -d "${TMPDIR:-/tmp}/lpod-chain-XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
node "$dir/chain.js" --out "$work/chain.json" -- "$@"
