"""Every convolution path this CPU runs, on whole networks at full size, against the NumPy
integer reference: yolov3-tiny (official weights) and yolov3 (generated weights), 8-bit, on
the timing photo, with 1, 2 and 3 threads; every layer's output must be equal (run(keep="all")),
and the heads of run(keep="needed") as well.

    python benchmarks/check_networks.py [--models yolov3-tiny,yolov3] [--threads 1,2,3]
    python benchmarks/check_networks.py --models yolov4-tiny,yolov7-tiny    # the AlexeyAB lineage
                                        # (generated weights, the default w8a8 with zero points)
    python benchmarks/check_networks.py --models yolov3-tiny --bits 16        # w16a16 (any --bits of mdfi.load)
    python benchmarks/check_networks.py --models none --mdfi mixed.mdfi       # a model `mdfi quantize` wrote,
                                        # e.g. --layer-abits 14=16,21=16 --layer-wbits 15=16,22=16

Each run also prints how many convolutions took the split path of 16-bit layers
(csrc/mdfi_conv.c: acc64 with int16 activations on a SIMD path).

(The tests run the same check on yolov3-tiny and on yolov3 at 96x96; this is the full-size
sweep, which takes minutes because the NumPy reference is slow.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def zoo_cfg(name: str) -> str:
    from mdfi import zoo
    return str(zoo.cfg_path(name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="yolov3-tiny,yolov3")
    ap.add_argument("--threads", default="1,2,3")
    ap.add_argument("--bits", default=None, help="widths of the zoo models (mdfi.load bits=, e.g. 16 or w16a16)")
    ap.add_argument("--mdfi", action="append", default=[], help="a quantized model file (repeatable)")
    args = ap.parse_args(argv)
    from bench_speed import check_image, load_models
    from mdfi._ext import _conv
    from mdfi.cengine import CRunner
    from mdfi.quant.quantize import input_to_u8
    paths = _conv.available_simd_paths()
    print(f"CPU features: {_conv.cpu_features()}; paths: {', '.join(paths)}")
    tmp = tempfile.mkdtemp(prefix="mdfi-check-")
    bad = 0
    import mdfi
    todo = [n for n in args.models.split(",") if n and n != "none"] + args.mdfi
    for name in todo:
        if name in args.mdfi:
            qm = mdfi.load(name, engine="ref").quantized
            net = qm.network
        elif args.bits is not None:
            bits = int(args.bits) if str(args.bits).isdigit() else args.bits
            _, _, net, _ = load_models(name, tmp, quantize=False)
            qm = mdfi.load(name, bits=bits, engine="ref").quantized if name == "yolov3-tiny" else \
                mdfi.load(cfg=zoo_cfg(name), weights=os.path.join(tmp, f"{name}-generated.weights"), bits=bits,
                          engine="ref").quantized
        else:
            _, _, net, qm = load_models(name, tmp)
        x = input_to_u8(check_image(net))
        t0 = time.perf_counter()
        ref = qm.forward_ref(x)
        print(f"[{name}] NumPy reference: {time.perf_counter() - t0:.1f} s, {len(ref)} layers")
        before = _conv.simd_path()
        for p in paths:
            _conv.set_simd_path(p)
            for t in (int(v) for v in args.threads.split(",")):
                runner = CRunner(qm, t)
                n0 = _conv._split_calls()
                out = runner.run(x)
                nsplit = _conv._split_calls() - n0
                diff = [i for i, (a, b) in enumerate(zip(ref, out)) if not np.array_equal(a, b)]
                # the detection path: planned buffers, pools that alone read their convolution
                # written without it (CRunner.pool_only); the heads must be equal too
                got = runner.run(x, keep="needed")
                diff += [i for i, o in enumerate(got) if o is not None and not np.array_equal(o, ref[i])]
                bad += bool(diff)
                print(f"  {p:15s} {t} thr.: {'every layer equal' if not diff else f'LAYERS DIFFER: {diff}'}"
                      f" ({nsplit} split convolutions)")
        _conv.set_simd_path(before)
    print("all equal" if not bad else f"{bad} mismatching runs")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
