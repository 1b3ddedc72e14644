#!/usr/bin/env bash
# Makes sure Fashion-MNIST is installed (Debian package dataset-fashion-mnist), installing it when root.
set -euo pipefail
root=${INTERROGATE_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
if [ -f "$root/train-images-idx3-ubyte.gz" ] || [ -f "$root/train-images-idx3-ubyte" ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  echo "Installing Fashion-MNIST (apt-get install dataset-fashion-mnist)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  echo "Fashion-MNIST is not installed at $root. Install it with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist" >&2
  echo "or set INTERROGATE_FASHION_MNIST to a folder holding the four IDX files." >&2
  exit 1
fi
