"""Stan as a peer of the JAX models: the book's model in Stan (gp.stan), through pystan 3.

pystan 3 hands every request to httpstan, a small HTTP server that pystan starts
inside this process for each call. httpstan compiles the model (stanc, then the
system's C++ compiler) into an extension module that it keeps in its cache, and it
runs each NUTS chain in a worker process it forks from this one. The worker inherits
this process's CPU affinity, so under ``run.py`` Stan runs on the same single core as
the JAX models, and one chain per call makes its chains run one after another as
theirs do.

Two ways to the log density's gradient are timed:

* ``pystan``: ``stan.model.Model.grad_log_prob``, the public interface. Every call
  starts httpstan's server, sends the data and θ as JSON and reads the answer back.
* ``direct``: the function that httpstan's handler calls, ``log_prob_grad`` of the
  compiled extension module, called from Python. Each call still builds the model
  from the data (Stan's model constructor) before it differentiates.

Both are also timed at N = 1, where the linear algebra costs nothing: what remains is
the cost of the call itself, which ``run.py`` subtracts to give overhead-corrected
figures.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STAN_FILE = Path(__file__).resolve().parent / "gp.stan"
NAMES = ("lengthscale", "amplitude", "noise")


def compiler() -> tuple[str | None, str]:
    """The C++ compiler httpstan will call ($CXX, else g++): (its path or None, a message)."""
    cxx = os.environ.get("CXX", "").split() or ["g++"]
    path = shutil.which(cxx[0])
    if path is None:
        if os.environ.get("CXX"):
            return None, f"no C++ compiler found: CXX={cxx[0]!r} is not an executable on PATH"
        return None, "no C++ compiler found: g++ is not on PATH (install it, or set CXX to another)"
    try:
        first = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
        return path, first.splitlines()[0] if first else path
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the C++ compiler {path} does not run: {exc}"


def unavailable() -> str | None:
    """Why Stan cannot be benchmarked here, or None when it can."""
    path, message = compiler()
    if path is None:
        return message + "; pystan needs one to build a Stan model"
    try:
        import stan  # noqa: F401
    except ImportError as exc:
        return f"pystan is not installed ({exc}); `make bench` installs it with the bench extra"
    return None


def versions() -> dict:
    import importlib.metadata

    import httpstan

    stanc = Path(httpstan.__file__).parent / "stanc"
    try:
        stanc_version = subprocess.run(
            [str(stanc), "--version"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        stanc_version = None
    return {
        "pystan": importlib.metadata.version("pystan"),
        "httpstan": importlib.metadata.version("httpstan"),
        "stanc": stanc_version,
        "cxx": compiler()[1],
    }


def data(x: np.ndarray, y: np.ndarray) -> dict:
    return {"N": int(x.shape[0]), "x": x.tolist(), "y": y.tolist()}


@contextlib.contextmanager
def quiet():
    """pystan writes its progress (building, sampling) to stdout and stderr; keep it off."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def compiler_output_captured():
    """The C++ compiler writes its warnings straight to file descriptors 1 and 2, past
    ``quiet``: point both at a scratch file, and show its end only if the build fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            sink.seek(0)
            print(sink.read().decode(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def model_name() -> str:
    import httpstan.models

    return httpstan.models.calculate_model_name(STAN_FILE.read_text())


def compile_model(x: np.ndarray, y: np.ndarray, fresh: bool) -> float | None:
    """Build the model; with ``fresh``, delete httpstan's cached copy first and return the
    seconds the build took (stanc and the C++ compiler). Otherwise reuse the cache, if it
    holds the model, and return None: no compile time was measured."""
    import httpstan.cache
    import stan

    name = model_name()
    cached = any(httpstan.cache.model_directory(name).glob("*.so"))
    if fresh or not cached:
        httpstan.cache.delete_model_directory(name)
    start = time.perf_counter()
    # setuptools leaves its object files under ./build: build in a scratch directory.
    with (
        compiler_output_captured(),
        quiet(),
        tempfile.TemporaryDirectory() as scratch,
        contextlib.chdir(scratch),
    ):
        stan.build(STAN_FILE.read_text(), data=data(x, y))
    elapsed = time.perf_counter() - start
    return elapsed if (fresh or not cached) else None


def services_module():
    import httpstan.models

    return httpstan.models.import_services_extension_module(model_name())


def gradient_calls(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> dict:
    """The two routes to the gradient of the log density at unconstrained ``z`` (= log θ),
    each a function of no argument: {"direct": ..., "pystan": ...}."""
    import stan

    d = data(x, y)
    params = [float(v) for v in z]
    module = services_module()
    with quiet():
        posterior = stan.build(STAN_FILE.read_text(), data=d)

    def direct():
        return module.log_prob_grad(d, params, True)

    def via_pystan():
        return posterior.grad_log_prob(params)

    return {"direct": direct, "pystan": via_pystan}


def log_density(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[float, np.ndarray]:
    """Stan's log density (Jacobian included) and its gradient at unconstrained z."""
    module = services_module()
    d, params = data(x, y), [float(v) for v in z]
    return float(module.log_prob(d, params, True)), np.asarray(
        module.log_prob_grad(d, params, True)
    )


_ELAPSED = re.compile(rb"([0-9.eE+-]+) seconds \((Warm-up|Sampling|Total)\)")


def worker_pids() -> list[int]:
    """Live child processes of this one (httpstan's sampling workers)."""
    me, pids = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            pids.append(int(entry.name))
    return pids


def children_cpu_seconds() -> float:
    """CPU seconds used by this process's children: those already reaped and those alive."""
    times = os.times()
    total = times.children_user + times.children_system
    tick = os.sysconf("SC_CLK_TCK")
    for pid in worker_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def sample_chain(x: np.ndarray, y: np.ndarray, seed: int, warmup: int, draws: int) -> dict:
    """One NUTS chain (Stan's defaults: diagonal metric, adapt delta 0.8, tree depth 10),
    in one pystan call. Returns the call's wall time, Stan's own timing, the draws after
    warm-up and the leapfrog steps of every iteration, warm-up included."""
    import httpstan.cache
    import stan

    # pystan caches a seeded fit on disk and would return it without sampling: drop it.
    shutil.rmtree(httpstan.cache.model_directory(model_name()) / "fits", ignore_errors=True)
    with quiet():
        posterior = stan.build(STAN_FILE.read_text(), data=data(x, y), random_seed=seed)
        cpu_before = children_cpu_seconds()
        start = time.perf_counter()
        fit = posterior.sample(num_chains=1, num_warmup=warmup, num_samples=draws, save_warmup=True)
        wall = time.perf_counter() - start
        cpu = children_cpu_seconds() - cpu_before
    elapsed = {kind.decode(): float(value) for value, kind in _ELAPSED.findall(fit.stan_outputs[0])}
    if "Total" not in elapsed:
        raise RuntimeError("Stan reported no elapsed time: the chain was not sampled")
    frame = fit.to_frame()
    assert len(frame) == warmup + draws, len(frame)
    affinity = sorted({cpu for pid in worker_pids() for cpu in _affinity(pid)})
    return {
        "call_wall_s": wall,
        "stan_elapsed_s": elapsed,
        "worker_cpu_s": cpu,
        "worker_affinity": affinity,
        "draws": {p: frame[p].to_numpy()[warmup:] for p in NAMES},
        "n_leapfrog": frame["n_leapfrog__"].to_numpy().astype(int),
        "divergent": frame["divergent__"].to_numpy()[warmup:].astype(int),
        "stepsize": float(frame["stepsize__"].to_numpy()[-1]),
    }


def _affinity(pid: int) -> set[int]:
    try:
        return os.sched_getaffinity(pid)
    except OSError:
        return set()
