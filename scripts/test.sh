#!/usr/bin/env bash
# Runs every check and test: lint, type check, then each package's tests.
# Installs what it needs first (Node 24 if the machine's is older, pnpm,
# dependencies, and the Debian packages the tests use: see test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
bash scripts/setup.sh
. scripts/env.sh
pnpm run lint
pnpm exec turbo run typecheck --output-logs=errors-only
pnpm exec turbo run test --concurrency=1
