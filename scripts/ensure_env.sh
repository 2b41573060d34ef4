#!/usr/bin/env bash
# Create (or reuse) the project's Python environment as ./.venv, private to this checkout.
#
# Two layers:
# - the dependencies (several GB: PyTorch, transformers, ...) live in one environment cached outside the checkout,
#   keyed on the dependency files (pyproject.toml's dependency lists and constraints.txt), shared by every clone on
#   the machine — CI's fresh clone included — and rebuilt only when those files change. Nothing of any checkout is
#   installed into it. A build is marked usable only once it completed (the .complete marker), so an interrupted
#   build is redone, never used;
# - ./.venv is a small virtual environment of this checkout's own (a few MB), which sees the cached dependencies
#   through a .pth file and has *this* checkout installed editable. Two clones on one machine therefore each import
#   their own src/ (tests/test_environment.py checks it with a second clone).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

PYTHON=${PYTHON:-python3.11}
CACHE_ROOT=${BREASTGPT_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/breastgpt/envs}
# Bump when the way the shared environment is built changes (its contents, not the per-checkout layer below).
ENV_FORMAT=2
key=$({ echo "format $ENV_FORMAT"; "$PYTHON" scripts/list_deps.py --extras test,deepspeed; cat constraints.txt; } \
      | sha256sum | cut -c1-16)
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
# The shared environment is only read from here on; another checkout may build a new one meanwhile.
shared_site=$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
flock -u 9

# ./.venv: this checkout's own environment on top of the shared one (an older layout made .venv a symlink to it).
if [ -L .venv ] || { [ -e .venv ] && [ "$(cat .venv/.shared-env 2>/dev/null)" != "$env_dir" ]; }; then
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv --without-pip .venv
  own_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # addsitedir (not a bare path line) so the shared environment's own .pth files are processed too.
  echo "import site; site.addsitedir('$shared_site')" > "$own_site/_breastgpt_shared_env.pth"
  # The dependencies' commands (accelerate, deepspeed, torchrun, pytest, ...) run with this checkout's Python.
  for script in "$env_dir"/bin/*; do
    name=$(basename "$script")
    [ -e ".venv/bin/$name" ] && continue
    if head -n 1 "$script" 2>/dev/null | grep -q -x "#!$env_dir/bin/python[0-9.]*"; then
      { echo "#!$root/.venv/bin/python"; tail -n +2 "$script"; } > ".venv/bin/$name"
      chmod +x ".venv/bin/$name"
    fi
  done
  echo "$env_dir" > .venv/.shared-env
fi
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 \
    | grep -v "is ignored\|outside environment" || true
here=$(.venv/bin/python -c "import breastgpt, pathlib; print(pathlib.Path(breastgpt.__file__).resolve())") \
    || { echo "[env] breastgpt failed to import" >&2; exit 1; }
case "$here" in
  "$root"/src/*) ;;
  *) echo "[env] .venv imports breastgpt from $here, not from this checkout's src/" >&2; exit 1 ;;
esac
