#!/usr/bin/env bash
# Installs everything Mailwerk needs: Node 24 (if the machine's is older), pnpm,
# and the workspace dependencies.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$MAILWERK_ROOT"
if [ "${CI:-}" = "true" ]; then
  pnpm install --frozen-lockfile --reporter=append-only
else
  pnpm install --reporter=append-only
fi
