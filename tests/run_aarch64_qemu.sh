#!/usr/bin/env bash
# The NEON paths on an x86 machine: cross-compile csrc/ for aarch64 and run, under qemu-aarch64,
# as a CPU with the dot-product extension (-cpu max -> neondot) and without (-cpu cortex-a72 -> neon):
#   1. csrc/tests/conv_check.c: every path against the portable scalar path;
#   2. the standalone runner on a golden export of yolov3-tiny (the NumPy reference), byte for byte.
# Needs: Debian packages gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user; the Python package built in place.
#   tests/run_aarch64_qemu.sh [IMAGE]          (default image: the scikit-image astronaut)
# tests/test_aarch64.py runs the same checks under pytest (and mini-yolov3 at 8 and 16 bits).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
make -s -C csrc BUILD="$build" -j4 CC=aarch64-linux-gnu-gcc AR=aarch64-linux-gnu-ar \
    STRIP=aarch64-linux-gnu-strip runner "$build/conv_check"
for cpu in max cortex-a72; do
    echo "== qemu-aarch64 -cpu $cpu"
    qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$cpu" "$build/conv_check" --cases 200
done
image=${1:-}
if [ -z "$image" ]; then
    image="$build/astronaut.png"
    python -c "import sys, skimage.data; from PIL import Image; Image.fromarray(skimage.data.astronaut()).save(sys.argv[1])" "$image"
fi
python -m mdfi golden --engine ref --format hex -o "$build/gold" "$image" >/dev/null
for cpu in max cortex-a72; do
    make -s -C csrc BUILD="$build" CC=aarch64-linux-gnu-gcc AR=aarch64-linux-gnu-ar STRIP=aarch64-linux-gnu-strip \
        test GOLDEN="$build/gold" THREADS=2 RUN="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu $cpu"
done
