"""Make ``mdfi/data/sample.jpg``, the photo ``mdfi sample`` writes (README's first command).

    pip install scikit-image && python examples/make_sample.py mdfi/data/sample.jpg

A collage of three photos bundled with scikit-image, all free of copyright restrictions:

* ``astronaut`` -- Eileen Collins, NASA Great Images database: public domain;
* ``chelsea``   -- Chelsea the cat, by Stefan van der Walt: CC0;
* ``coffee``    -- coffee cup, by Rachel Michetti (Pikolo Espresso Bar): CC0.

yolov3-tiny finds a person, a cat and two cups on it (none of the three photos alone gives
that many classes at 416x416).  720x384 pixels, JPEG quality 80: about 54 kB.
"""

import sys

import skimage.data as data
from PIL import Image


def main(out: str) -> None:
    astronaut = Image.fromarray(data.astronaut())
    cat = Image.fromarray(data.chelsea())
    cup = Image.fromarray(data.coffee())
    width = 960
    canvas = Image.new("RGB", (width, 512), (128, 128, 128))
    canvas.paste(astronaut, (0, 0))
    right = width - 512
    cat_h = int(300 * right / 451)
    canvas.paste(cat.resize((right, cat_h)), (512, 0))
    canvas.paste(cup.resize((right, int(400 * right / 600))), (512, cat_h))
    canvas = canvas.resize((720, 384), Image.Resampling.LANCZOS)
    canvas.save(out, quality=80, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sample.jpg")
