"""Repository-wide pytest set-up: float64, single-threaded BLAS (see the Makefile),
JAX's persistent compilation cache in ``_build/jax-cache``, shared with the book build and
every notebook kernel the tests start (they inherit this environment), and ``scripts/`` on
the import path, so that tests use ``build_book``'s own reading of ``myst.yml``."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
from build_book import jax_cache_env  # noqa: E402

for _name, _value in jax_cache_env().items():
    os.environ.setdefault(_name, _value)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
