#!/usr/bin/env bash
# Create (or reuse) hs2p's own environment for benchmarks/tiling.py and print its python.
#
# hs2p (the comparison tiler) pulls in wandb, opencv, pandas and others that the project does not need, so it lives
# in its own virtual environment, cached outside the checkout and keyed on benchmarks/hs2p/requirements.txt (exact
# pins of hs2p 6.1.0 with its tifffile and openslide extras). It is marked usable only once the install completed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
CACHE_ROOT=${BREASTGPT_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/breastgpt/envs}
requirements=benchmarks/hs2p/requirements.txt
key=$({ echo "python $("$PYTHON" -c 'import sys; print(sys.version_info[:2])')"; cat "$requirements"; } \
      | sha256sum | cut -c1-16)
env_dir="$CACHE_ROOT/hs2p-$key"

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.hs2p.lock"
flock 9
if [ ! -f "$env_dir/.complete" ]; then
  echo "[hs2p-env] building $env_dir (a few minutes)" >&2
  rm -rf "$env_dir"
  "$PYTHON" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet --no-deps -r "$requirements" 2>&1 | grep -v "is ignored" >&2 || true
  "$env_dir/bin/python" -c "import hs2p, tifffile, openslide, cv2" \
      || { echo "[hs2p-env] install failed: see pip output above" >&2; exit 1; }
  touch "$env_dir/.complete"
fi
echo "$env_dir/bin/python"
