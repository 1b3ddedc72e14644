#!/usr/bin/env bash
# Makes sure a headless Chromium is installed (Debian package chromium), installing it when root: the report test
# renders the HTML page in it and checks what the browser laid out.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  echo "Installing Chromium (apt-get install chromium)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "Chromium is not installed. Install it with: sudo apt-get update && sudo apt-get install -y chromium" >&2
  exit 1
fi
