# The two commands of the README. Both create or reuse the environment first (scripts/ensure_env.sh).
.PHONY: demo test env interop-env lock

env:
	@bash scripts/ensure_env.sh

# ms-swift and lmms-eval for tests/interop (their own cached environment: their pins conflict with ours).
interop-env: env
	@bash scripts/ensure_interop_env.sh

demo: env
	.venv/bin/breastgpt demo

# The suite runs in TEST_WORKERS processes (pytest-xdist; one per core, at most 4), a test file per worker at a
# time so that a module's fixtures are built once. `make test TEST_WORKERS=0` runs it in this one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))

test: env interop-env
	@bash scripts/ensure_browser.sh
	.venv/bin/python -m pytest -q -m "not slow and not gpu" -n $(TEST_WORKERS) --dist loadfile

# Maintainers: re-pin constraints.txt from a fresh resolution of pyproject.toml.
lock:
	@bash scripts/relock.sh
