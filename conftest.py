"""Repository-wide pytest set-up: float64, and the environment the book build gives its
kernels (``build_book.KERNEL_ENV``: single-threaded BLAS, see the Makefile, and JAX's
persistent compilation cache in ``_build/jax-cache``), shared with the book build and every
notebook kernel the tests start (they inherit this environment). ``scripts/`` is on the
import path, so that tests use ``build_book``'s own reading of ``myst.yml``."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
from build_book import KERNEL_ENV  # noqa: E402

for _name, _value in KERNEL_ENV.items():
    os.environ.setdefault(_name, _value)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
