#!/usr/bin/env bash
# Regenerates shoal-env's Gymnasium parity fixtures in a private venv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../target/fixture-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q "gymnasium==1.4.*"
"$venv/bin/python" "$here/gen_env_fixtures.py"
