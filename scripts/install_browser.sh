#!/usr/bin/env bash
# Debian's Chromium and its ChromeDriver for the browser tests (tests/browser/). Selenium drives
# them by path: no browser or driver is ever downloaded from elsewhere (closed networks).
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser.sh: chromium and chromium-driver are missing and this is not root;" >&2
    echo "  run as root: apt-get update && apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver
chromium --version
chromedriver --version
