"""The cfg table of docs/darknet.md: every cfg of Darknet's cfg/ folders, parsed by MDFI.

    python benchmarks/cfg_table.py --alexeyab DARKNET_AB/cfg --pjreddie DARKNET_PJ/cfg

(DARKNET_AB: a checkout of AlexeyAB/darknet at 59596d78, DARKNET_PJ: pjreddie/darknet at
f6afaabc.)  For each cfg: whether the float path runs it and with which lineage's semantics,
and whether every layer has a fixed-point implementation (no weights needed: the check is
static).  Prints Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import os
import re

from mdfi.darknet.cfgfile import read_cfg
from mdfi.errors import MDFIError
from mdfi.darknet.network import Network
from mdfi.quant.quantize import fixed_point_refusal

UNCOVERED = ("relu6", "hard_mish")      # activations no Darknet fixture covers (swish: grouped-random/)


def _short(msg: str) -> str:
    msg = re.sub(r"\(supported: [^)]*\)", "", msg).strip()
    msg = msg.replace("is a Darknet layer MDFI does not support", "not implemented")
    msg = msg.replace("pjreddie's Darknet resamples (src/blas.c:68-92) and AlexeyAB's adds by flat index "
                      "(src/blas.c:123-140): pass --darknet pjreddie|alexeyab to say which Darknet the model is from",
                      "the lineages differ there (pjreddie resamples, AlexeyAB adds by flat index): needs `--darknet`")
    return re.sub(r"\[\(.*?\)\]", "", msg)


def rows(folder: str, lineage: str):
    for path in sorted(glob.glob(os.path.join(folder, "*.cfg"))):
        name = os.path.basename(path)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                net = Network(read_cfg(path), path)
        except MDFIError as exc:
            yield name, "refused: " + _short(str(exc).replace(path, "").lstrip(":0123456789 ")), "-"
            continue
        warns = [line for line in err.getvalue().splitlines() if "unused key" in line]
        fl = f"runs, = {'AlexeyAB' if net.darknet == 'alexeyab' else 'pjreddie'} Darknet"
        if lineage == "AlexeyAB" and net.darknet == "pjreddie":
            fl += " (no AlexeyAB-only key: detected as pjreddie; `--darknet alexeyab` for AlexeyAB's resize/BN/NMS)"
        unc = sorted({getattr(l, "activation", None) for l in net.layers} & set(UNCOVERED))
        if unc:
            fl += f" ({', '.join(unc)}: from AlexeyAB's formula, no Darknet fixture covers it)"
        if warns:
            fl += " (warnings: " + "; ".join(w.split(": ", 2)[-1] for w in warns[:3]) + ")"
        why = fixed_point_refusal(net)
        yield name, fl, ("runs" if not why else "refused: " + _short(why))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alexeyab", required=True, metavar="DIR")
    ap.add_argument("--pjreddie", required=True, metavar="DIR")
    a = ap.parse_args()
    for lineage, folder, commit in (("AlexeyAB", a.alexeyab, "59596d78"), ("pjreddie", a.pjreddie, "f6afaabc")):
        print(f"\n**{lineage}'s `cfg/`** ({commit})\n")
        print("| cfg | float path | fixed point |")
        print("|---|---|---|")
        for name, fl, fx in rows(folder, lineage):
            print(f"| {name} | {fl} | {fx} |")


if __name__ == "__main__":
    main()
