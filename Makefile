# The two commands of the README. Both create or reuse the environment first (scripts/ensure_env.sh).
.PHONY: demo test env lock

env:
	@bash scripts/ensure_env.sh

demo: env
	.venv/bin/breastgpt demo

test: env
	@bash scripts/ensure_browser.sh
	.venv/bin/python -m pytest -q -m "not slow and not gpu"

# Maintainers: re-pin constraints.txt from a fresh resolution of pyproject.toml.
lock:
	@bash scripts/relock.sh
