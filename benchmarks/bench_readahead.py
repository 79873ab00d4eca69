"""Images per second of ``model.detect([paths])`` and ``mdfi detect FOLDER`` with the
read-ahead (mdfi/readahead.py: decode image i+1 while image i runs) forced off and on,
alternating runs, medians (issue 12).

    PYTHONPATH=. python benchmarks/bench_readahead.py --folder /tmp/pipe/imgs --threads 1,2 --runs 5

``--make-folder``: fill FOLDER with COUNT JPEG variants of /tmp/r7timing.jpg (if present) and
scikit-image's photos (crops and mirror images, quality 90) first.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import statistics
import sys
import time

import numpy as np
from PIL import Image


def make_folder(folder: str, count: int) -> None:
    import skimage.data as d
    os.makedirs(folder, exist_ok=True)
    bases = [Image.open("/tmp/r7timing.jpg").convert("RGB")] if os.path.exists("/tmp/r7timing.jpg") else []
    bases += [Image.fromarray(np.ascontiguousarray(getattr(d, n)()[..., :3]))
              for n in ("astronaut", "chelsea", "coffee", "rocket")]
    for i in range(count):
        im = bases[i % len(bases)]
        if (i // len(bases)) % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        k = (i // (2 * len(bases))) % 3
        w, h = im.size
        im = im.crop((k * w // 20, k * h // 20, w - k * w // 20, h - k * h // 20))
        im.save(os.path.join(folder, f"img{i:03d}.jpg"), quality=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", default="/tmp/pipe/imgs")
    ap.add_argument("--make-folder", type=int, metavar="COUNT")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cli", action="store_true", help="also time `mdfi detect FOLDER` (--out none and annotated)")
    a = ap.parse_args()
    if a.make_folder:
        make_folder(a.folder, a.make_folder)
    import mdfi
    import mdfi.model
    import mdfi.readahead as ra
    from mdfi.cli import main as cli_main
    paths = sorted(os.path.join(a.folder, f) for f in os.listdir(a.folder) if f.endswith(".jpg"))
    print(f"{len(paths)} images in {a.folder}; cpu_count {os.cpu_count()}; {a.runs} alternating runs")
    real_pays = ra.read_ahead_pays
    for threads in (int(t) for t in a.threads.split(",")):
        model = mdfi.load("yolov3-tiny", threads=threads)
        model.detect(paths[:2])
        want = None
        rate = {False: [], True: []}
        cli = {(o, m): [] for o in (False, True) for m in ("none", "jpg")}
        for run in range(a.runs):
            for on in ((False, True) if run % 2 == 0 else (True, False)):
                ra.read_ahead_pays = mdfi.model.read_ahead_pays = lambda t, on=on: on
                t0 = time.perf_counter()
                got = model.detect(paths)
                rate[on].append(len(paths) / (time.perf_counter() - t0))
                if want is None:
                    want = got
                assert got == want, "detections differ between read-ahead off and on"
                if a.cli:
                    for mode in ("none", "jpg"):
                        out = "none" if mode == "none" else f"/tmp/pipe/out_{threads}"
                        sink = io.StringIO()
                        t0 = time.perf_counter()
                        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                            rc = cli_main(["detect", a.folder, "--out", out, "--threads", str(threads)])
                        assert rc == 0, sink.getvalue()[-500:]
                        # the CLI's own final progress line: images/s after the model is loaded
                        done = re.findall(r"(\d+)/\d+ images, ([\d.]+) images/s", sink.getvalue())
                        assert done and int(done[-1][0]) == len(paths), sink.getvalue()[-500:]
                        cli[(on, mode)].append(float(done[-1][1]))
        ra.read_ahead_pays = mdfi.model.read_ahead_pays = real_pays
        off, on = statistics.median(rate[False]), statistics.median(rate[True])
        print(f"threads {threads}: detect(list) off {off:.2f} img/s, on {on:.2f} img/s, on/off {on / off:.3f}x "
              f"(runs off {[round(r, 1) for r in rate[False]]}, on {[round(r, 1) for r in rate[True]]})")
        if a.cli:
            for mode in ("none", "jpg"):
                off, on = statistics.median(cli[(False, mode)]), statistics.median(cli[(True, mode)])
                print(f"threads {threads}: mdfi detect --out {mode if mode == 'none' else 'FOLDER'} (after the "
                      f"model load) off {off:.2f} img/s, on {on:.2f} img/s, on/off {on / off:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
