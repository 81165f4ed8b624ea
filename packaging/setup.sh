#!/usr/bin/env bash
# Install everything Hounsfield needs on a fresh Debian machine (run as root), idempotently:
# system libraries for Qt/VTK/Xvfb, then a .venv with the project and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxcb-cursor0 libxcb-icccm4
  libxcb-keysyms1 libxkbcommon-x11-0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0
  libxcb-image0 libxcb-shape0 libdbus-1-3 libfontconfig1
  orthanc orthanc-dicomweb dcmtk tesseract-ocr)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.hounsfield-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  # torch is pinned on the same line as the project so pip takes the local CPU build (DESIGN.md).
  .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[test]"
  touch "$stamp"
fi
