# The two commands of the README. Both create or reuse the environment first (scripts/ensure_env.sh).
.PHONY: demo test env interop-env lock

env:
	@bash scripts/ensure_env.sh

# ms-swift and lmms-eval for tests/interop (their own cached environment: their pins conflict with ours).
interop-env: env
	@bash scripts/ensure_interop_env.sh

demo: env
	.venv/bin/breastgpt demo

test: env interop-env
	@bash scripts/ensure_browser.sh
	.venv/bin/python -m pytest -q -m "not slow and not gpu"

# Maintainers: re-pin constraints.txt from a fresh resolution of pyproject.toml.
lock:
	@bash scripts/relock.sh
