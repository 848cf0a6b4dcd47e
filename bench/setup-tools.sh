#!/usr/bin/env bash
# Install the tools the comparison benchmarks run against, into bench/.tools:
# supervisord and circus in a virtualenv, PM2 with npm. Not needed by the tests.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p .tools
python3 -m venv .tools/venv
.tools/venv/bin/pip install -q supervisor circus
(cd .tools && npm install --no-audit --no-fund --silent pm2)
echo "installed: $(.tools/venv/bin/supervisord --version) supervisord, circus $(.tools/venv/bin/circusd --version), pm2 $(.tools/node_modules/.bin/pm2 --version 2>/dev/null | tail -1)"
