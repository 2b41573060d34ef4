#!/usr/bin/env bash
# Headless Chromium renders the benchmark report in its screenshot test. Install Debian's package when it is
# missing and we may (root + apt-get); otherwise say so — that one test then skips with the reason.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[env] installing chromium (Debian package) for the report screenshot test"
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/breastgpt-chromium.log 2>&1; then
    exit 0
  fi
  echo "[env] chromium install failed (see /tmp/breastgpt-chromium.log); the screenshot test will skip"
else
  echo "[env] chromium not found and cannot be installed here; the screenshot test will skip"
fi
exit 0
