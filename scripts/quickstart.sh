#!/usr/bin/env bash
# Installs everything and starts Mailwerk on the embedded default (SQLite under
# ./data, configuration in ./mailwerk.toml, unprivileged ports 2525, 2587, 2465,
# 2143, 2993, 2110, 2995, 24190 so it can run next to an existing mail server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
host="$(hostname -f 2>/dev/null || hostname)"
exec ./bin/mailwerk --config ./mailwerk.toml start --data-dir ./data --hostname "${host:-localhost}" --unprivileged-ports
