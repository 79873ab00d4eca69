#!/usr/bin/env bash
# Build the C extensions with AddressSanitizer + UndefinedBehaviorSanitizer (MDFI_SANITIZE=1)
# in a scratch copy of the repository and run the kernel, engine, overflow and fuzz tests
# against them.  Any finding aborts the run with a report (UBSan is built with
# -fno-sanitize-recover).  Usage: bash tests/run_sanitizers.sh [extra pytest args]
# See docs/hardening.md.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/mdfi-sanitize.XXXXXX)
trap 'rm -rf "$work"' EXIT
git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 cp --parents -t "$work")
cd "$work"
MDFI_SANITIZE=1 python -m pip --version >/dev/null
MDFI_SANITIZE=1 python setup.py -q build_ext --inplace 2>&1 | grep -v -E "^(running|copying|creating)" || true
asan=$(gcc -print-file-name=libasan.so)
# Python itself is not instrumented: preload the runtime; leaks of the interpreter are not ours.
export LD_PRELOAD="$asan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$work"
python -c "import mdfi, mdfi._ext._conv as c; assert mdfi.__file__.startswith('$work'), mdfi.__file__; print('sanitized build:', c.__file__)"
for so in mdfi/_ext/*.so; do
    libs=$(ldd "$so")     # not `ldd | grep -q`: with pipefail an early grep exit fails the pipe (SIGPIPE)
    grep -q libasan <<<"$libs" && grep -q libubsan <<<"$libs" || { echo "$so is not instrumented" >&2; exit 1; }
done
echo "all extensions link libasan and libubsan"
python -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_kernel_conv.py tests/test_kernel_q8.py tests/test_conv_residual.py tests/test_cengine.py tests/test_pixels.py \
    tests/test_overflow.py tests/test_float_darknet.py "$@"
