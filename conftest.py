"""Repository-wide pytest set-up: float64 and single-threaded BLAS (see the Makefile)."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
