"""Repository-wide pytest set-up: float64, single-threaded BLAS (see the Makefile), XLA's
backend optimisation off for the tests' own programs (below), JAX's persistent compilation
cache in ``_build/jax-cache``, inherited by every notebook kernel the tests start, and
``scripts/`` on the import path, so that tests use ``build_book``'s own reading of ``myst.yml``."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts"))
from build_book import jax_cache_env  # noqa: E402

for _name, _value in jax_cache_env().items():
    os.environ.setdefault(_name, _value)

# The tests compile about a thousand small programs and run most of them once or twice, so
# XLA's backend optimisation (LLVM's passes) is most of their cost and buys them nothing; the
# book's build, started from tests/integration/conftest.py, compiles as `make book` does.
TEST_XLA_FLAG = "--xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAG}".strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
