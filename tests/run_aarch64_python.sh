#!/usr/bin/env bash
# The Python package on aarch64, emulated on an x86-64 Debian machine: Debian's arm64 CPython
# under qemu-user, the Cython extensions built by setup.py with Debian's aarch64 cross GCC, and
# pytest run by that Python (tests/run_aarch64_qemu.sh only runs the C kernels under qemu).
#
#   tests/run_aarch64_python.sh setup              sysroot + venv + test dependencies (~5 min)
#   tests/run_aarch64_python.sh build              build_ext --inplace: mdfi/_ext/*-aarch64-linux-gnu.so
#   tests/run_aarch64_python.sh pytest ARGS...     e.g. -x -q -n 2 tests/test_kernel_q8.py
#   tests/run_aarch64_python.sh python ARGS...     the emulated Python itself
#
# QEMU_CPU picks the emulated CPU: max (default; has the dot-product extension -> path
# neondot) or cortex-a72 (plain NEON -> path neon).  Under qemu the suite runs 10-30x slower
# than natively: run modules, not the whole suite (docs/performance.md, "Code paths").
#
# Needs (host, amd64): apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
# make; network access to Debian's archive and to PyPI.  Everything else goes under $ARM64
# (default /tmp/mdfi-arm64); nothing is installed into the host system: the arm64 .debs are
# fetched by an apt-get with its own state folder (no dpkg --add-architecture), unpacked with
# dpkg -x.  The in-place build puts *.cpython-311-aarch64-linux-gnu.so beside the host's
# x86-64 ones (different names; both ignored by git).
#
# How it works:
# * no binfmt_misc is needed: $ARM64/venv/bin/python3.11 is a shell script that runs
#   `qemu-aarch64 -L $ARM64/root -0 <itself> .../python3.11`; argv[0] stays the script, so
#   sys.executable is the script and the suite's child Pythons are emulated too;
# * a host binary started by the emulated Python (make, aarch64-linux-gnu-gcc, iverilog) is
#   executed natively by the kernel;
# * Debian's arm64 sysconfig names CC=aarch64-linux-gnu-gcc already; only Python.h must be
#   found in the sysroot (its INCLUDEPY is /usr/include/python3.11): CFLAGS adds it first and
#   the sysroot's multiarch pyconfig.h after the cross compiler's own headers;
# * cocotb has no aarch64 wheel (the test extra leaves it out there); tests/test_aarch64.py
#   runs its "native" branch here, with MDFI_AARCH64_RUN standing for the native CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ARM64=${ARM64:-/tmp/mdfi-arm64}
ROOT=$ARM64/root
VENV=$ARM64/venv
PY=$VENV/bin/python
export QEMU_CPU=${QEMU_CPU:-max}

apt_arm64() {
    local cmd=$1; shift
    "$cmd" -o Dir="$ARM64/apt" -o Dir::Etc="$ARM64/apt/etc" -o Dir::State="$ARM64/apt/state" \
        -o Dir::Cache="$ARM64/apt/cache" -o Dir::State::status="$ARM64/apt/state/status" \
        -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Debug::NoLocking=1 "$@"
}

setup() {
    for tool in qemu-aarch64 aarch64-linux-gnu-gcc make dpkg apt-get; do
        command -v $tool >/dev/null || { echo "$tool is missing (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user make)" >&2; exit 1; }
    done
    # 1. Debian bookworm's arm64 CPython 3.11 and everything it depends on, unpacked in $ROOT.
    mkdir -p "$ARM64"/apt/state/lists/partial "$ARM64"/apt/cache/archives/partial \
        "$ARM64"/apt/etc/sources.list.d "$ARM64"/apt/etc/preferences.d "$ARM64"/apt/etc/apt.conf.d
    touch "$ARM64/apt/state/status"          # nothing installed: download-only pulls in every dependency
    local suite=${DEBIAN_SUITE:-bookworm}
    cat > "$ARM64/apt/etc/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite $suite-updates
Components: main
Architectures: arm64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Architectures: arm64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_arm64 apt-get -qq update
    apt_arm64 apt-get -qq install -y --download-only --no-install-recommends \
        python3.11 python3.11-venv libpython3.11-dev libstdc++6 libgomp1
    mkdir -p "$ROOT"
    for deb in "$ARM64"/apt/cache/archives/*.deb; do dpkg -x "$deb" "$ROOT"; done
    # 2. A venv whose python is a qemu wrapper (see the header).
    rm -rf "$VENV"
    qemu-aarch64 -L "$ROOT" "$ROOT/usr/bin/python3.11" -m venv --without-pip "$VENV"
    rm "$VENV/bin/python3.11"
    cat > "$VENV/bin/python3.11" <<EOF
#!/bin/sh
# aarch64 CPython under qemu-user (tests/run_aarch64_python.sh); QEMU_CPU picks the CPU.
exec qemu-aarch64 -L "$ROOT" -0 "\$0" "$ROOT/usr/bin/python3.11" "\$@"
EOF
    chmod +x "$VENV/bin/python3.11"
    "$PY" -m ensurepip >/dev/null
    # 3. The build requirements and the test extra, aarch64 wheels only (nothing to compile).
    "$PY" -m pip install -q --only-binary=:all: "setuptools>=64" wheel "Cython>=3.0" "numpy>=1.23" "pillow>=9.1" \
        "pytest>=7" "hypothesis>=6.80" "scikit-image>=0.21" "av>=11" "dask[distributed]>=2023.1" "onnx>=1.14" \
        "onnxruntime>=1.16" "matplotlib>=3.6" pytest-xdist
    "$PY" -c "import platform, sys; print(sys.executable, platform.machine(), sys.version.split()[0])"
}

build() {
    CFLAGS="-I$ROOT/usr/include/python3.11 -idirafter $ROOT/usr/include" "$PY" setup.py build_ext --inplace -j2 -q
    PYTHONPATH=. "$PY" -c "from mdfi._ext import _conv; print('QEMU_CPU=$QEMU_CPU:', _conv.cpu_features(), '-> path', _conv.best_simd_path())"
}

# tests/test_aarch64.py: the emulated Python is "a native aarch64 host"; its C programs are
# built by the cross compiler and run under qemu with the same CPU (QEMU_CPU is inherited).
export MDFI_AARCH64_CC=${MDFI_AARCH64_CC:-aarch64-linux-gnu-gcc}
export MDFI_AARCH64_RUN=${MDFI_AARCH64_RUN:-qemu-aarch64 -L /usr/aarch64-linux-gnu}
export MDFI_AARCH64_SYSROOT=${MDFI_AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}

case "${1:-}" in
    setup) setup ;;
    build) build ;;
    pytest) shift; PYTHONPATH=. exec "$PY" -m pytest -p no:cacheprovider "$@" ;;
    python) shift; PYTHONPATH=. exec "$PY" "$@" ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
esac
