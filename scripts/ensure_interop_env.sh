#!/usr/bin/env bash
# Create (or reuse) the interoperability environment: ms-swift and lmms-eval, run by tests/interop as the outside
# tools themselves (`swift sft`, `swift infer`, lmms-eval's OpenAI-compatible client).
#
# It is a virtual environment of its own, cached beside the project's (scripts/ensure_env.sh), keyed on
# scripts/interop-requirements.txt and on the project environment it sits on: it sees that environment's packages
# (torch and the rest, unchanged) through a .pth file placed after its own site-packages, so its pinned
# transformers/peft/huggingface_hub shadow the project's there and nowhere else. A build is used only once it
# completed (.complete). The path is written to .venv/.interop-env, where the tests look for it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
CACHE_ROOT=${BREASTGPT_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/breastgpt/envs}
ENV_FORMAT=1
shared_env=$(cat .venv/.shared-env 2>/dev/null) \
    || { echo "[interop-env] run scripts/ensure_env.sh (make env) first" >&2; exit 1; }
key=$({ echo "format $ENV_FORMAT"; echo "$shared_env"; cat scripts/interop-requirements.txt; } | sha256sum | cut -c1-16)
env_dir="$CACHE_ROOT/interop-py311-$key"

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.interop-lock"
flock 9
if [ ! -f "$env_dir/.complete" ]; then
  echo "[interop-env] building $env_dir (ms-swift, lmms-eval; first run or requirements changed; a few minutes)"
  rm -rf "$env_dir"
  "$PYTHON" -m venv "$env_dir"
  shared_site=$("$shared_env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  own_site=$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import site; site.addsitedir('$shared_site')" > "$own_site/zz_breastgpt_shared_env.pth"
  "$env_dir/bin/python" -m pip install --quiet --upgrade "pip>=23" 2>&1 | grep -v "is ignored" || true
  "$env_dir/bin/python" -m pip install --quiet -r scripts/interop-requirements.txt 2>&1 \
      | grep -v "is ignored\|outside environment" || true
  "$env_dir/bin/python" -c "import swift, lmms_eval, torch, transformers" \
      || { echo "[interop-env] install failed: see pip output above" >&2; exit 1; }
  touch "$env_dir/.complete"
  { ls -1dt "$CACHE_ROOT"/interop-py311-* 2>/dev/null | grep -v -x "$env_dir" || true; } | tail -n +2 \
      | xargs -r rm -rf || true
else
  echo "[interop-env] reusing $env_dir"
fi
flock -u 9
echo "$env_dir" > .venv/.interop-env
