"""Round-2 studies of docs/quantization.md on the method-selection (``val``) photos.

    python benchmarks/bench_noise_layers.py layers     # one layer's activations at 8 / at 16 bits
    python benchmarks/bench_noise_layers.py groups     # groups of layers at 16 bits (the variants)
    python benchmarks/bench_noise_layers.py cle 4      # power-of-two equalization at w4a8 (or 6)
    python benchmarks/bench_noise_layers.py first 4    # the first layer's weights at 8 bits
    python benchmarks/bench_noise_layers.py speed      # CPU time of the groups vs w8a8 (1 thread)

The measure is the head-logit error at the float network's object cells (objectness > 0.1,
as :class:`mdfi.quant.formats.HeadObjective`) of the ``val`` photos: mean / sd of the
objectness and best-class logit errors and their RMS.  Photo sets as bench_accuracy.py
(``--sets``; built there).  Nothing here looks at the ``test`` photos.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

#: The variants of docs/quantization.md, round 2.
GROUPS = {"15,22 (head outputs)": (15, 22), "14,21 (head inputs)": (14, 21), "10,14,21": (10, 14, 21),
          "0,10,14,21": (0, 10, 14, 21)}


def logit_error(qm, obj) -> str:
    from mdfi.engine import FixedEngine
    eng = FixedEngine(qm, "c", threads=1)
    do, dc = [], []
    for u8, per in zip(obj.u8, obj.cells):
        outs = eng.run(u8, keep="all")
        for (a, r, c, k, zo, zc), l, s in zip(per, obj.heads, obj.srcs):
            if a.size == 0:
                continue
            zq = np.asarray(outs[s], np.float64).reshape(l.n, l.entries, *outs[s].shape[1:])
            zq = zq * 2.0 ** -qm.layers[s].out_fmt.frac
            do.append(zq[a, 4, r, c] - zo)
            dc.append(zq[a, 5 + k, r, c] - zc)
    do, dc = np.concatenate(do), np.concatenate(dc)
    rms = np.sqrt((np.mean(do ** 2) + np.mean(dc ** 2)) / 2)
    return (f"objectness {do.mean():+.3f} (sd {do.std():.3f})  class {dc.mean():+.3f} (sd {dc.std():.3f})  "
            f"RMS {rms:.3f}")


def p2_equalization(network, xs, margin: int):
    """Power-of-two factors: an input column of a convolution whose maximum is more than
    twice the median column maximum is divided by 2**k and its producing channel multiplied
    by 2**k, k <= log2(ratio), while the channel's calibration maximum still fits the
    tensor's (minus ``margin`` octaves)."""
    from mdfi.quant.equalize import apply_scales, channel_maxima, channel_origins
    origin, frozen = channel_origins(network)
    mx = channel_maxima(network, xs)
    colmax = {}
    for l in network.layers:
        src = origin.get(l.inputs[0]) if l.kind == "convolutional" else None
        if src is None:
            continue
        w, _ = l.folded_float_params()
        cm = np.abs(np.asarray(w).reshape(l.filters, len(src), -1)).max(axis=(0, 2))
        med = np.median(cm)
        for j, (k, c) in enumerate(src):
            colmax.setdefault(k, {})[c] = max(colmax.get(k, {}).get(c, 0.0), cm[j] / med)
    scales, n = {}, 0
    for i, d in colmax.items():
        if i in frozen or i not in mx:
            continue
        r = mx[i]
        s = np.ones(len(r))
        for c, v in d.items():
            if v > 2.0 and r[c] > 0:
                k = min(int(np.floor(np.log2(r.max() / r[c]))) - margin, int(np.floor(np.log2(v))))
                if k > 0:
                    s[c], n = 2.0 ** k, n + 1
        scales[i] = s
    return apply_scales(network, scales), n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", choices=("layers", "groups", "cle", "first", "speed"))
    ap.add_argument("wbits", nargs="?", type=int, default=4, help="weight width of cle / first")
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"))
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache"))
    args = ap.parse_args(argv)

    from mdfi.quant import calibrate, recipes
    from mdfi.model import _float_network
    from mdfi.quant.formats import HeadObjective, widen_formats
    from mdfi.quant.quantize import quantize_network
    import accuracy_images
    import bench_accuracy as ba

    if not os.path.isdir(os.path.join(args.sets, "val")):
        accuracy_images.main([args.sets])
    network, names, *_ = _float_network("yolov3-tiny", None, None, None, True)
    calib = recipes.shipped_calibration("yolov3-tiny")
    data = ba.float_split(network, names, args.sets, "val", args.cache)
    obj = HeadObjective(network, [d[1].tensor for d in data])
    print(f"val photos: {len(data)} images, {obj.n_cells} object cells")
    opts = recipes.resolve("yolov3-tiny", wbits=8, abits=8)
    base = recipes.shipped_decisions("yolov3-tiny", network, opts)
    convs = [l.index for l in network.layers if l.kind == "convolutional"]

    def w8(la, shifts=True):
        fr = widen_formats(network, calib, base["act_fracs"], la, 8)
        return quantize_network(network, wbits=8, abits=8, per_channel=True, calib=calib, names=names,
                                layer_abits=la, act_fracs=fr, bias_shifts=base["bias_shifts"] if shifts else None)

    def show(name, qm):
        print(f"{name:<34} {logit_error(qm, obj)}", flush=True)

    if args.study == "speed":           # interleaved runs, median of 7, ratio to the w8a8 recipe
        import time
        from mdfi.engine import FixedEngine
        engs = {"w8a8 recipe": FixedEngine(w8({}), "c", threads=1)}
        for name, g in list(GROUPS.items()) + [("all (w8a16)", tuple(convs))]:
            engs[name] = FixedEngine(w8({i: 16 for i in g}), "c", threads=1)
        x = obj.u8[0]
        t = {n: [] for n in engs}
        for _ in range(7):
            for n, e in engs.items():
                t0 = time.perf_counter()
                e.run(x)
                t[n].append(time.perf_counter() - t0)
        ref = np.median(t["w8a8 recipe"])
        for n in engs:
            print(f"{n:<24} {1000 * np.median(t[n]):7.1f} ms  {np.median(t[n]) / ref:.2f}x")
        return 0
    if args.study == "layers":
        show("w8a8 recipe", w8({}))
        show("w8a8 recipe without head shifts", w8({}, False))
        show("w8, every activation 16-bit", w8({i: 16 for i in convs}, False))
        for j in convs:
            show(f"only layer {j} at 8 bits", w8({i: 16 for i in convs if i != j}, False))
        for j in convs:
            show(f"only layer {j} at 16 bits", w8({j: 16}))
    elif args.study == "groups":
        for name, g in GROUPS.items():      # the recipe's entry for these widths, else derived
            kw = recipes.shipped_decisions("yolov3-tiny", network, opts, layer_abits={i: 16 for i in g}, calib=calib)
            show(f"16-bit at {name}", quantize_network(network, wbits=8, abits=8, per_channel=True, calib=calib,
                                                       names=names, **kw))
    elif args.study == "cle":
        xs = ba.calib_inputs(network, args.sets)
        calib_dir = os.path.join(args.sets, "calib")
        for margin in (None, 0, 1):
            net = network
            name = f"w{args.wbits}a8"
            if margin is not None:
                net, n = p2_equalization(network, xs, margin)
                name += f", p2 equalization, margin {margin} ({n} channels)"
            stats = calibrate.collect_from_dir(net, calib_dir, progress=False, augment=True)
            show(name, quantize_network(net, wbits=args.wbits, abits=8, per_channel=True, calib=stats,
                                        names=names))
    else:
        for lw in ({}, {0: 8}, {0: 8, 15: 8, 22: 8}):
            show(f"w{args.wbits}a8, 8-bit weights at {sorted(lw) or 'none'}",
                 quantize_network(network, wbits=args.wbits, abits=8, per_channel=True, calib=calib,
                                  names=names, layer_wbits=lw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
