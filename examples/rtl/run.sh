#!/usr/bin/env bash
# examples/rtl/run.sh -- check the RTL examples against MDFI golden vectors.
#
#   1. export golden vectors (mdfi golden, hex) for the chosen layers
#   2. simulate tb_requant.v + mdfi_requant.v (Icarus Verilog) on every chosen conv layer
#   3. check the DUT outputs bit-exactly (mdfi verify when available, and cmp)
#   4. simulate the faulty mdfi_requant_trunc.v the same way and check that it is caught
#   5. run whole convolution layers through the engine mdfi_conv.v (conv_tb.py), check them
#   6. run the faulty engine (narrow accumulators) and check that mdfi verify names the fault
# Exit status 0 only if the correct modules match on every layer and the faulty ones are
# reported as mismatches.
#
# Environment (all optional):
#   MDFI_GOLDEN_IMAGE  image to run (default: a generated PNG, skimage's coffee photo)
#   MDFI_RTL_MODEL     zoo model (default yolov3-tiny: its default 8-bit model, with zero points)
#   MDFI_RTL_NO_ZERO_POINTS=1  export with --no-zero-points (the same recipe without zero points)
#   MDFI_RTL_LAYERS    requantizer layers (default 13,15: yolov3-tiny's leaky and linear 1x1 convs)
#   MDFI_RTL_CONV      conv engine layers (default 0,2,18: 3x3 on pixels, 3x3, 1x1; "none" skips)
#   MDFI_RTL_FULL=1    simulate every output row of the conv layers (default: first and last row)
#   MDFI_RTL_GOLDEN    use this existing golden dir (hex) instead of exporting one
#   MDFI_RTL_WORK      work dir (default: a new temp dir; kept, its path is printed)
#   MDFI_RTL_SYNTH=1   also synthesize mdfi_requant.v with yosys and print its cell count
#   PYTHON             python with mdfi installed (default python3)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python3}
# Use the installed mdfi; fall back to this checkout only when its extensions are built
# in place (python setup.py build_ext --inplace).  Python runs from the work dir below, so
# the checkout's unbuilt mdfi/ never shadows the installed package.
MODEL=${MDFI_RTL_MODEL:-yolov3-tiny}
LAYERS=${MDFI_RTL_LAYERS:-13,15}
WORK=${MDFI_RTL_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mdfi_rtl.XXXXXX")}
abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
WORK=$(abspath "$WORK")
[ -n "${MDFI_RTL_GOLDEN:-}" ] && MDFI_RTL_GOLDEN=$(abspath "$MDFI_RTL_GOLDEN")
[ -n "${MDFI_GOLDEN_IMAGE:-}" ] && MDFI_GOLDEN_IMAGE=$(abspath "$MDFI_GOLDEN_IMAGE")
mkdir -p "$WORK"
cd "$WORK" || exit 1
if ! "$PY" -c "import mdfi._ext._conv" 2>/dev/null; then
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi

die() { echo "FAIL: $*"; exit 1; }
for tool in iverilog vvp cmp; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y iverilog)"
done
"$PY" -c "import mdfi._ext._conv" 2>/dev/null || die "cannot import mdfi (with its compiled extensions) with $PY: pip install ."
echo "work dir: $WORK"

# ---- 1. golden vectors -------------------------------------------------------------------
if [ -n "${MDFI_RTL_GOLDEN:-}" ]; then
    GOLDEN=$MDFI_RTL_GOLDEN
    echo "[1] golden vectors: using $GOLDEN"
else
    GOLDEN=$WORK/golden
    IMAGE=${MDFI_GOLDEN_IMAGE:-}
    if [ -z "$IMAGE" ]; then
        IMAGE=$WORK/test_image.png
        "$PY" - "$IMAGE" <<'PYEOF' || die "cannot write a test image"
import sys
import numpy as np
from PIL import Image
try:
    import skimage.data
    img = skimage.data.coffee()                # a real photo (400x600), no download
except ImportError:                            # synthetic but structured fallback
    y, x = np.mgrid[0:400, 0:600]
    img = np.stack([(x * 255 // 599), (y * 255 // 399), ((x ^ y) & 255)], -1)
Image.fromarray(np.ascontiguousarray(img[..., :3]).astype(np.uint8)).save(sys.argv[1])
PYEOF
    fi
    ZP=()       # the model MDFI ships (zero points on the zoo's 8-bit default), unless asked not to
    [ "${MDFI_RTL_NO_ZERO_POINTS:-0}" = 1 ] && ZP=(--no-zero-points)
    echo "[1] golden vectors: mdfi golden $IMAGE --model $MODEL --layers $LAYERS,18 --format hex ${ZP[*]:-}"
    "$PY" -m mdfi golden "$IMAGE" --model "$MODEL" -o "$GOLDEN" --layers "$LAYERS,18" ${ZP[@]+"${ZP[@]}"} \
        --format hex || die "mdfi golden failed"
    if [ "${MDFI_RTL_CONV:-0,2,18}" != none ]; then
        echo "    mdfi golden $IMAGE --model $MODEL --layers 0,2 --stages in,out -o golden_conv ${ZP[*]:-}"
        "$PY" -m mdfi golden "$IMAGE" --model "$MODEL" -o "$WORK/golden_conv" --layers 0,2 ${ZP[@]+"${ZP[@]}"} \
            --stages in,out --format hex >/dev/null 2>&1 || die "mdfi golden (conv layers) failed"
    fi
fi
[ -f "$GOLDEN/manifest.json" ] || die "$GOLDEN/manifest.json missing"

# one line per chosen conv layer: index C H W acc_bits out_bits activation rounding zero_out
# (zero_out: the output zero point, model.txt zero_out=, 0 when absent; the input's pad_value is
# already folded into the exported acc, docs/golden-format.md "Zero points")
PLAN=$("$PY" - "$GOLDEN/manifest.json" "$LAYERS" <<'PYEOF'
import json, sys
man = json.load(open(sys.argv[1]))
want = set()
for part in sys.argv[2].split(","):
    a, _, b = part.partition("-")
    want.update(range(int(a), int(b or a) + 1))
bits = {(f["layer"], f["stage"]): f["bits"] for f in man["files"] if f["format"] == "hex"}
for lay in man["layers"]:
    i, meta = lay["index"], lay["meta"]
    if i not in want:
        continue
    if lay["kind"] != "convolutional" or (i, "acc") not in bits:
        print(f"# layer {i} ({lay['kind']}) is not a conv layer with acc vectors: skipped",
              file=sys.stderr)
        continue
    if meta.get("activation") not in ("linear", "leaky", "relu"):
        sys.exit(f"layer {i}: act={meta.get('activation')} is not implemented by the RTL example "
                 f"(linear, leaky, relu)")
    zero_out = int((lay.get("params") or {}).get("zero_out", 0))
    c, h, w = lay["out_shape"]
    print(i, c, h, w, bits[(i, "acc")], bits[(i, "out")], meta["activation"], meta["rounding"], zero_out)
PYEOF
) || die "cannot use $GOLDEN/manifest.json (see above)"
[ -n "$PLAN" ] || die "no convolutional layer among --layers $LAYERS"

# mdfi verify, once the package has it; cmp is exact anyway (the .hex format is canonical)
HAVE_VERIFY=0
"$PY" -c "import mdfi.hw.verify" 2>/dev/null && HAVE_VERIFY=1

# count / locate differing values of two canonical .hex files
hexdiff() {  # golden dut bits H W
    "$PY" - "$@" <<'PYEOF'
import sys
g, d, bits, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def load(p):
    v = [int(t, 16) for t in open(p).read().split()]
    return [x - (1 << bits) if x >> (bits - 1) else x for x in v]
a, b = load(g), load(d)
if len(a) != len(b):
    print(f"    {len(b)} values, expected {len(a)}"); sys.exit()
bad = [k for k in range(len(a)) if a[k] != b[k]]
if bad:
    k = bad[0]
    diffs = [b[j] - a[j] for j in bad]
    print(f"    {len(bad)} of {len(a)} values differ, dut-golden in [{min(diffs)}, {max(diffs)}];"
          f" first at (c,y,x)=({k // (h * w)},{k // w % h},{k % w}): golden {a[k]}, dut {b[k]}")
PYEOF
}

# simulate one DUT module on one layer: sets SIM_OK
simulate() {  # module outdir index C H W acc_bits out_bits act rounding zero_out
    local mod=$1 out=$2 i=$3 c=$4 h=$5 w=$6 ab=$7 ob=$8 act=$9 rnd=${10} zo=${11}
    local nnn; nnn=$(printf "l%03d" "$i")
    mkdir -p "$out" "$WORK/build"
    SIM_OK=0
    iverilog -g2005 -Wall -DDUT="$mod" -s tb_requant \
        -Ptb_requant.ACC_BITS="$ab" -Ptb_requant.OUT_BITS="$ob" \
        -Ptb_requant.C="$c" -Ptb_requant.HW=$((h * w)) \
        -o "$WORK/build/$mod.$nnn.vvp" \
        "$HERE/tb_requant.v" "$HERE/mdfi_requant.v" "$HERE/mdfi_requant_trunc.v" \
        || { echo "    iverilog failed"; return; }
    vvp -n "$WORK/build/$mod.$nnn.vvp" +acc="$GOLDEN/$nnn.acc.hex" \
        +shift="$GOLDEN/$nnn.shift.hex" +out="$out/$nnn.out.hex" +act="$act" +rounding="$rnd" +zero_out="$zo" \
        | sed 's/^/    /'
    [ "${PIPESTATUS[0]}" = 0 ] && [ -f "$out/$nnn.out.hex" ] && SIM_OK=1
}

# compare: sets SAME=1 when bit-exact
compare() {  # outdir index H W out_bits
    local out=$1 i=$2 h=$3 w=$4 ob=$5
    local nnn; nnn=$(printf "l%03d" "$i")
    SAME=0
    if cmp -s "$GOLDEN/$nnn.out.hex" "$out/$nnn.out.hex"; then SAME=1; else
        hexdiff "$GOLDEN/$nnn.out.hex" "$out/$nnn.out.hex" "$ob" "$h" "$w"; fi
}

verify_dir() {  # outdir -> VERIFY_RC (0 = match), or skip
    VERIFY_RC=skip
    [ "$HAVE_VERIFY" = 1 ] || return
    echo "    \$ mdfi verify $GOLDEN $1"
    "$PY" -m mdfi verify "$GOLDEN" "$1" 2>&1 | sed 's/^/    /'
    VERIFY_RC=${PIPESTATUS[0]}
}

STATUS=0
# ---- 2 + 3. correct module ----------------------------------------------------------------
echo "[2] mdfi_requant (correct) vs golden"
while read -r i c h w ab ob act rnd zo; do
    echo "  layer $i: ${c}x${h}x${w}, acc $ab bits -> out $ob bits, $act, $rnd, zero_out $zo"
    simulate mdfi_requant "$WORK/dut" "$i" "$c" "$h" "$w" "$ab" "$ob" "$act" "$rnd" "$zo"
    if [ "$SIM_OK" != 1 ]; then echo "FAIL layer $i: simulation failed"; STATUS=1; continue; fi
    compare "$WORK/dut" "$i" "$h" "$w" "$ob"
    if [ "$SAME" = 1 ]; then
        echo "PASS layer $i: mdfi_requant bit-exact, $((c * h * w)) values ($(printf "l%03d" "$i").out.hex identical)"
    else
        echo "FAIL layer $i: mdfi_requant differs from golden"; STATUS=1
    fi
done <<< "$PLAN"
verify_dir "$WORK/dut"
case $VERIFY_RC in
    skip) echo "  (mdfi verify not available yet: cmp is the exact check)";;
    0) echo "PASS mdfi verify: correct module matches (exit status 0)";;
    *) echo "FAIL mdfi verify: exit status $VERIFY_RC for the correct module"; STATUS=1;;
esac

# ---- 4. faulty module ----------------------------------------------------------------------
echo "[3] mdfi_requant_trunc (faulty: truncates instead of rounding half up) vs golden"
while read -r i c h w ab ob act rnd zo; do
    simulate mdfi_requant_trunc "$WORK/dut_trunc" "$i" "$c" "$h" "$w" "$ab" "$ob" "$act" "$rnd" "$zo"
    if [ "$SIM_OK" != 1 ]; then echo "FAIL layer $i: simulation failed"; STATUS=1; continue; fi
    compare "$WORK/dut_trunc" "$i" "$h" "$w" "$ob"
    if [ "$SAME" = 1 ]; then
        echo "FAIL layer $i: the faulty module was NOT caught (outputs identical)"; STATUS=1
    else
        echo "PASS layer $i: fault caught (mismatch reported)"
    fi
done <<< "$PLAN"
verify_dir "$WORK/dut_trunc"
case $VERIFY_RC in
    skip) ;;
    1) echo "PASS mdfi verify: faulty module reported (exit status 1: mismatch)";;
    *) echo "FAIL mdfi verify did not report the faulty module as a mismatch (exit status $VERIFY_RC)"
       STATUS=1;;
esac

# ---- 5 + 6. the convolution engine ------------------------------------------------------------
CONV=${MDFI_RTL_CONV:-0,2,18}
ROWS=edges
[ "${MDFI_RTL_FULL:-0}" = 1 ] && ROWS=all
if [ "$CONV" != none ]; then
    echo "[5] mdfi_conv (8x8 output-stationary MAC array + mdfi_requant) vs golden, rows: $ROWS"
    NARROW_LAYER=""
    for i in ${CONV//,/ }; do
        nnn=$(printf "l%03d" "$i")
        if [ -f "$GOLDEN/$nnn.in0.hex" ]; then dir=$GOLDEN; dut=$WORK/conv_dut
        elif [ -f "$WORK/golden_conv/$nnn.in0.hex" ]; then dir=$WORK/golden_conv; dut=$WORK/conv_dut_c
        else echo "  layer $i: not in the golden export(s): skipped"; continue; fi
        if "$PY" "$HERE/conv_tb.py" "$dir" "$i" "$dut" --rows "$ROWS" --build "$WORK/build" | sed 's/^/  /' \
                && [ "${PIPESTATUS[0]}" = 0 ]; then
            if "$PY" -m mdfi verify "$dir" "$dut" --layers "$i" > "$WORK/conv_verify_$nnn.txt" 2>&1; then
                echo "PASS layer $i: mdfi_conv bit-exact ($(grep -o 'OK .*' "$WORK/conv_verify_$nnn.txt" | head -1))"
            else
                echo "FAIL layer $i: mdfi_conv differs from golden"; sed 's/^/    /' "$WORK/conv_verify_$nnn.txt"
                STATUS=1
            fi
        else
            echo "FAIL layer $i: conv simulation failed"; STATUS=1
        fi
        [ -f "$dir/$nnn.acc.hex" ] && NARROW_LAYER=$i NARROW_DIR=$dir
    done
    if [ -n "$NARROW_LAYER" ]; then
        nnn=$(printf "l%03d" "$NARROW_LAYER")
        echo "[6] mdfi_conv_narrow (faulty: accumulator one bit narrower than layer $NARROW_LAYER's values need)"
        "$PY" "$HERE/conv_tb.py" "$NARROW_DIR" "$NARROW_LAYER" "$WORK/conv_dut_narrow" --rows 0:1:1 \
            --narrow-auto --build "$WORK/build" | sed 's/^/  /'
        "$PY" -m mdfi verify "$NARROW_DIR" "$WORK/conv_dut_narrow" > "$WORK/conv_verify_narrow.txt" 2>&1
        rc=$?
        sed 's/^/    /' "$WORK/conv_verify_narrow.txt"
        if [ "$rc" = 1 ] && grep -q "accumulator wraps around" "$WORK/conv_verify_narrow.txt"; then
            echo "PASS layer $NARROW_LAYER: narrow accumulator caught, with the accumulator-wrap hint"
        else
            echo "FAIL layer $NARROW_LAYER: the narrow accumulator was not reported as a wrap (exit $rc)"; STATUS=1
        fi
    fi
fi

# ---- optional: synthesis ------------------------------------------------------------------
if [ "${MDFI_RTL_SYNTH:-0}" = 1 ]; then
    if command -v yosys >/dev/null; then
        ab=$(echo "$PLAN" | awk 'NR == 1 {print $5}')
        ob=$(echo "$PLAN" | awk 'NR == 1 {print $6}')
        echo "[4] yosys synth (ACC_BITS=$ab OUT_BITS=$ob)"
        yosys -q -p "read_verilog $HERE/mdfi_requant.v; chparam -set ACC_BITS $ab -set OUT_BITS $ob mdfi_requant; synth -top mdfi_requant; tee -o $WORK/yosys_stat.txt stat" >/dev/null \
            && grep -A30 "Number of cells" "$WORK/yosys_stat.txt" | sed 's/^/    /' \
            || { echo "FAIL yosys synthesis"; STATUS=1; }
    else
        echo "[4] yosys not installed: synthesis skipped"
    fi
fi

if [ "$STATUS" = 0 ]; then
    echo "RESULT: PASS (requantizer bit-exact on layers $(echo "$PLAN" | awk '{print $1}' | paste -sd,), conv engine on ${CONV}, faulty modules caught)"
else
    echo "RESULT: FAIL"
fi
exit $STATUS
