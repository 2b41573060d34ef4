#!/usr/bin/env bash
# Re-resolve pyproject.toml's dependencies into a scratch environment and write the exact pins to constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet -r <("$tmp/venv/bin/python" scripts/list_deps.py --extras test,deepspeed) setuptools wheel
{
  echo "# Exact versions installed by 'make' (scripts/ensure_env.sh) and CI. Regenerate with: make lock"
  "$tmp/venv/bin/python" -m pip freeze --all | grep -v -i -E "^(breastgpt|pip)=="
} > constraints.txt
rm -rf "$tmp"
echo "constraints.txt updated"
