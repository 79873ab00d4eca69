"""Build script: the C kernels in csrc/ are compiled through thin Cython wrappers.

Flags are portable: -O3 without -ffast-math, no -march.  (CPU-specific code paths are
selected at run time inside the C sources.)  Environment switches:

* ``MDFI_SANITIZE=1`` builds with AddressSanitizer + UndefinedBehaviorSanitizer
  (see docs/hardening.md for how to run the tests under it).
"""

import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

CFLAGS = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Wextra",
          "-Wno-unused-function", "-Wno-unused-parameter"]
LDFLAGS = []
if os.environ.get("MDFI_SANITIZE") == "1":
    CFLAGS = [f for f in CFLAGS if f != "-O3"] + [
        "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
        "-fno-sanitize-recover=undefined"]
    LDFLAGS += ["-fsanitize=address,undefined"]
if sys.platform == "win32":  # MSVC understands neither set
    CFLAGS, LDFLAGS = ["/O2"], []


# Threads of the convolution kernel (csrc/mdfi_conv_pool.c): POSIX threads.
THREAD_FLAGS = [] if sys.platform == "win32" else ["-pthread"]


def ext(name, pyx, csources, cflags=(), ldflags=()):
    return Extension(
        f"mdfi._ext.{name}",
        [f"mdfi/_ext/{pyx}"] + [f"csrc/{c}" for c in csources],
        include_dirs=["csrc", numpy.get_include()],
        extra_compile_args=CFLAGS + list(cflags),
        extra_link_args=LDFLAGS + list(ldflags),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


extensions = [
    ext("_image", "_image.pyx", ["mdfi_image.c"]),
    ext("_post", "_post.pyx", ["mdfi_post.c"]),
    ext("_kernels", "_kernels.pyx", ["mdfi_kernels.c", "mdfi_kernels_pool.c", "mdfi_kernels_shortcut.c",
                                         "mdfi_kernels_grouped.c", "mdfi_kernels_scale.c"]),
    ext("_conv", "_conv.pyx", ["mdfi_conv.c", "mdfi_conv_pack.c", "mdfi_conv_scalar.c", "mdfi_conv_paths.c",
                               "mdfi_conv_pool.c", "mdfi_conv_avx2.c", "mdfi_conv_avx512.c", "mdfi_conv_q8.c",
                               "mdfi_conv_q8_ref.c", "mdfi_conv_vnni.c", "mdfi_conv_amx.c", "mdfi_conv_neon.c",
                               "mdfi_conv_wino.c", "mdfi_conv_post.c", "mdfi_cpu.c"],
        THREAD_FLAGS, THREAD_FLAGS),
]

setup(
    # mdfi and every subpackage (docs: README's Layout), plus the cfgs installed as mdfi.cfg.
    packages=find_packages(include=["mdfi", "mdfi.*"]) + ["mdfi.cfg"],
    # The shipped Darknet cfgs live in the top-level cfg/ folder and install as mdfi.cfg.
    package_dir={"mdfi.cfg": "cfg"},
    package_data={"mdfi": ["py.typed"], "mdfi.cfg": ["*.cfg", "*.names"], "mdfi.data": ["*.json", "*.jpg", "*.npz"]},
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
)
