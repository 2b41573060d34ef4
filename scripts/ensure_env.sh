#!/usr/bin/env bash
# Create (or reuse) the project's Python environment and point ./.venv at it.
#
# The environment is cached outside the checkout, keyed on the dependency files (pyproject.toml's dependency
# lists and constraints.txt), so a fresh clone — CI included — reuses it when nothing changed. A build is only
# marked usable once it completed (the .complete marker), so an interrupted build is redone, never used.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
CACHE_ROOT=${BREASTGPT_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/breastgpt/envs}
# The key covers the dependency lists (not the rest of pyproject.toml), the pins and this script.
key=$({ "$PYTHON" scripts/list_deps.py --extras test,deepspeed; cat constraints.txt scripts/ensure_env.sh; } | sha256sum | cut -c1-16)
env_dir="$CACHE_ROOT/py311-$key"

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
flock 9

if [ ! -f "$env_dir/.complete" ]; then
  echo "[env] building $env_dir (dependency files changed or first run; a few minutes)"
  rm -rf "$env_dir"
  "$PYTHON" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet --upgrade "pip>=23" 2>&1 | grep -v "is ignored" || true
  # Dependencies only (exact pins), so the cached environment is not tied to one checkout.
  "$env_dir/bin/python" -m pip install --quiet -c constraints.txt \
      -r <("$env_dir/bin/python" scripts/list_deps.py --extras test,deepspeed) \
      setuptools wheel 2>&1 | grep -v "is ignored" || true
  "$env_dir/bin/python" -c "import torch, torchvision, transformers, pydicom, openslide" \
      || { echo "[env] install failed: see pip output above" >&2; exit 1; }
  touch "$env_dir/.complete"
  # Each environment is several GB: keep this one and the previous one, drop older builds and broken leftovers.
  { ls -1dt "$CACHE_ROOT"/py311-* 2>/dev/null | grep -v -x "$env_dir" || true; } | tail -n +2 | xargs -r rm -rf || true
else
  echo "[env] reusing $env_dir"
fi

# Point ./.venv at the environment and install this checkout into it (editable, no dependency resolution).
if [ -e .venv ] && [ ! -L .venv ]; then rm -rf .venv; fi
ln -sfn "$env_dir" .venv
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import breastgpt" || { echo "[env] breastgpt failed to import" >&2; exit 1; }
