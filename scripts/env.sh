# shellcheck shell=bash
# Sourced by the other scripts: puts a Node.js >= 24 and pnpm on PATH.
# Where the machine's Node is older, Node 24 is installed from the npm
# registry package `node@24` into .tools/ (no other download is needed).
MAILWERK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$MAILWERK_ROOT/.tools"
PNPM_VERSION="10.34.8"

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ -x "$TOOLS/node_modules/.bin/node" ]; then
  export PATH="$TOOLS/node_modules/.bin:$PATH"
elif ! command -v node >/dev/null || [ "$(node_major node)" -lt 24 ]; then
  command -v npm >/dev/null || { echo "mailwerk: npm is needed to install Node 24 (apt-get install npm)" >&2; exit 1; }
  echo "mailwerk: installing Node 24 from the npm registry into .tools/ ..." >&2
  npm install --silent --no-save --prefix "$TOOLS" "node@24" "pnpm@$PNPM_VERSION" >&2
  export PATH="$TOOLS/node_modules/.bin:$PATH"
fi
if ! command -v pnpm >/dev/null || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  if [ ! -x "$TOOLS/node_modules/.bin/pnpm" ]; then
    echo "mailwerk: installing pnpm $PNPM_VERSION into .tools/ ..." >&2
    npm install --silent --no-save --prefix "$TOOLS" "pnpm@$PNPM_VERSION" >&2
  fi
  export PATH="$TOOLS/node_modules/.bin:$PATH"
fi
