#!/usr/bin/env bash
# Make headless Chromium available for the documentation test (tests/docs/test_site.py),
# which opens every built page in it.
#
#   bash scripts/install_chromium.sh
#
# 1. If /usr/bin/chromium exists, do nothing.
# 2. As root with apt-get: install the Debian packages chromium and chromium-driver.
# 3. Else print how to install them.
# It never fails the caller's set-up: it always exits 0 (without Chromium the page test
# skips and says how to install it). No browser is downloaded by any other route.

set -u
say() { printf '[chromium] %s\n' "$*"; }

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    say "installing the Debian packages chromium and chromium-driver ..."
    if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1 \
            && [ -x /usr/bin/chromium ]; then
        say "Chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}') installed."
        exit 0
    fi
    say "apt-get could not install chromium."
elif ! command -v apt-get >/dev/null 2>&1; then
    exit 0  # not a Debian-like system: the page test skips with the reason
fi
say "Chromium is not installed; the documentation page test will skip. On Debian/Ubuntu:"
say "  sudo apt-get install chromium chromium-driver"
exit 0
