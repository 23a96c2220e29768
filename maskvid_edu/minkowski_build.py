"""Build and install MinkowskiEngine 0.5.4 (CPU) for the optional ``minkowski`` sparse backend.

Run it as ``python -m maskvid_edu.minkowski_build`` (``make minkowski`` does) with the Python of the
environment that should receive the engine. Nothing else in the library needs MinkowskiEngine: the
default ``masked`` backend of :mod:`maskvid_edu.sparse` computes the same numbers with plain PyTorch.
The engine is here so that the course can *show* that a real sparse convolution and a dense
convolution on re-masked maps agree (``tests/test_minkowski.py``), and measure where sparse pays.

Why a build script at all
-------------------------
PyPI has MinkowskiEngine 0.5.4 only as a source archive, and the archive needs a few fixes before it
builds and imports on a current stack:

1. Its ``setup.py`` deletes ``build/`` and runs ``pip uninstall MinkowskiEngine -y`` in whatever
   environment is active, so the build runs in a **throw-away virtual environment**. That
   environment sees the project's own torch (a ``.pth`` file points at the project's
   site-packages), so the extension is compiled against exactly the torch the project runs.
   ``ninja``, ``wheel`` and a ``setuptools`` that still works with ``numpy.distutils`` are
   installed into it with pip.
2. ``pip download`` of the source runs the package's metadata step, which (without
   ``--blas``) asks ``numpy.distutils`` for a BLAS; that needs ``setuptools < 70`` and Debian's
   ``libopenblas-dev``. The wheel itself is built with
   ``python setup.py bdist_wheel --cpu_only --blas=openblas`` (``MAX_JOBS=2``), which does not touch
   ``numpy.distutils``.
3. Five files import ``Sequence`` from ``collections`` (removed in Python 3.10); they are patched
   to ``collections.abc`` before building.
4. The wheel carries ~28 MB of debug information; ``strip --strip-debug`` on the extension leaves
   ~1.2 MB.

The finished wheel is cached outside the repository, in
``~/.cache/maskvid_edu/wheels/minkowskiengine-0.5.4-torch-<version>-<python tag>/`` (override with
``--cache-dir`` or ``MASKVID_WHEEL_CACHE``), keyed by the torch version it was built against; a
second run finds it and only installs it (``pip install --no-deps``). Building takes 7–10 minutes on
two idle cores (about 20 minutes at the lowest priority on a busy machine).

System requirement: Debian/Ubuntu ``libopenblas-dev`` (``apt-get install -y libopenblas-dev``). The
script checks for it and prints that command when it is missing.

CUDA users
----------
This script builds the CPU-only engine, which is all the course needs: the ``masked`` backend
already runs on GPU. For a GPU engine, install a CUDA toolkit whose ``nvcc`` matches
``torch.version.cuda``, then run this script with ``--cuda``: it follows the same recipe (same
throw-away environment, same patches) but compiles with ``--force_cuda`` instead of
``--cpu_only`` and caches the wheel under a ``…-cuda`` folder. By hand that is, in the unpacked
and patched source, ``CUDA_HOME=/usr/local/cuda MAX_JOBS=4 python setup.py bdist_wheel
--blas=openblas --force_cuda`` and ``pip install --no-deps dist/*.whl``. The GPU build is not
exercised by this course's tests; MinkowskiEngine 0.5.4 predates CUDA 12, and newer toolkits may
need further source patches.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ME_VERSION = "0.5.4"

#: Files of the 0.5.4 source that import ``Sequence`` from ``collections`` (gone in Python 3.10).
PATCHED_FILES = (
    "MinkowskiEngine/MinkowskiKernelGenerator.py",
    "MinkowskiEngine/MinkowskiCoordinateManager.py",
    "MinkowskiEngine/MinkowskiTensorField.py",
    "MinkowskiEngine/MinkowskiCommon.py",
    "MinkowskiEngine/utils/quantization.py",
)

#: Build-environment packages: ``setuptools < 70`` keeps ``numpy.distutils`` working for the
#: metadata step that ``pip download`` runs.
BUILD_REQUIREMENTS = ("setuptools>=65,<70", "wheel", "ninja")

APT_COMMAND = "apt-get install -y libopenblas-dev"


def log(msg: str) -> None:
    print(f"[minkowski_build] {msg}", flush=True)


def torch_version() -> str:
    """The version of the torch this Python sees, e.g. ``'2.14.1'`` (without local ``+cu…`` tags)."""
    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError as err:
        raise RuntimeError("torch is not installed in this environment; install the project first") from err


def default_cache_dir(cuda: bool = False) -> Path:
    """Where the built wheel is kept: one folder per (engine, torch, python, cpu/cuda) combination."""
    root = Path(os.environ.get("MASKVID_WHEEL_CACHE", Path.home() / ".cache" / "maskvid_edu" / "wheels"))
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    flavour = "cuda" if cuda else "cpu"
    return root / f"minkowskiengine-{ME_VERSION}-torch-{torch_version()}-{tag}-{flavour}"


def find_cached_wheel(cache_dir: Path) -> Path | None:
    wheels = sorted(Path(cache_dir).glob("MinkowskiEngine-*.whl")) if Path(cache_dir).is_dir() else []
    return wheels[-1] if wheels else None


def openblas_available() -> bool:
    """True when the OpenBLAS header and shared library the build links against are present."""
    include_roots = [Path("/usr/include"), Path("/usr/local/include")]
    include_roots += [p for p in Path("/usr/include").glob("*-linux-gnu*")] if Path("/usr/include").is_dir() else []
    header = any((root / "cblas.h").exists() or (root / "openblas" / "cblas.h").exists() for root in include_roots)
    lib_roots = [Path("/usr/lib"), Path("/usr/local/lib"), *Path("/usr/lib").glob("*-linux-gnu*")]
    library = any(any(root.glob("libopenblas.so*")) for root in lib_roots if root.is_dir())
    return header and library


def engine_installed(python: str = sys.executable) -> bool:
    """Whether ``import MinkowskiEngine`` succeeds in the target environment."""
    probe = subprocess.run([python, "-c", "import MinkowskiEngine"], capture_output=True, text=True)
    return probe.returncode == 0


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None, quiet_log: Path | None = None) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    if quiet_log is None:
        subprocess.run(cmd, cwd=cwd, env=env, check=True)
        return
    with open(quiet_log, "a") as fh:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = Path(quiet_log).read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n" + "\n".join(tail))


def patch_sources(src_dir: Path) -> list[Path]:
    """Replace ``from collections import Sequence`` with the ``collections.abc`` import in place."""
    patched = []
    for rel in PATCHED_FILES:
        path = Path(src_dir) / rel
        if not path.exists():
            raise FileNotFoundError(f"expected {rel} in the MinkowskiEngine {ME_VERSION} source at {src_dir}")
        text = path.read_text()
        new = text.replace("from collections import Sequence, namedtuple",
                           "from collections import namedtuple\nfrom collections.abc import Sequence")
        new = new.replace("from collections import Sequence\n", "from collections.abc import Sequence\n")
        if new != text:
            path.write_text(new)
            patched.append(path)
    return patched


def _make_build_env(work: Path, quiet_log: Path) -> tuple[Path, dict]:
    """A throw-away venv that sees the project's torch and has the build tools installed."""
    import torch  # the project's torch: its site-packages becomes visible to the build env

    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], quiet_log=quiet_log)
    py = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    project_site = Path(torch.__file__).resolve().parent.parent
    # Appended after the venv's own site-packages: the build tools installed below win over the
    # project's, torch/numpy come from the project.
    (site / "zz_maskvid_project_site.pth").write_text(str(project_site) + "\n")
    _run([str(py), "-m", "pip", "install", "--quiet", *BUILD_REQUIREMENTS], quiet_log=quiet_log)
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # setup.py calls `pip` from PATH
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONPATH", None)
    return py, env


def _strip_wheel(py: Path, wheel: Path, env: dict, quiet_log: Path) -> Path:
    """Remove debug sections from the compiled extension and re-pack the wheel (RECORD rebuilt)."""
    unpack = wheel.parent / "unpacked"
    _run([str(py), "-m", "wheel", "unpack", "--dest", str(unpack), str(wheel)], env=env, quiet_log=quiet_log)
    (root,) = list(unpack.iterdir())
    for so in root.rglob("_C*.so"):
        before = so.stat().st_size
        _run(["strip", "--strip-debug", str(so)], quiet_log=quiet_log)
        log(f"stripped {so.name}: {before / 2**20:.1f} MB -> {so.stat().st_size / 2**20:.1f} MB")
    out = wheel.parent / "stripped"
    out.mkdir()
    _run([str(py), "-m", "wheel", "pack", "--dest-dir", str(out), str(root)], env=env, quiet_log=quiet_log)
    (packed,) = list(out.glob("*.whl"))
    return packed


def build_wheel(cache_dir: Path, *, jobs: int = 2, cuda: bool = False, keep: bool = False) -> Path:
    """Download, patch, build and strip MinkowskiEngine; return the wheel's path inside ``cache_dir``."""
    if shutil.which("strip") is None or shutil.which("g++") is None:
        raise RuntimeError("a C++ tool chain is needed (g++, strip): apt-get install -y build-essential")
    if cuda and shutil.which("nvcc") is None and "CUDA_HOME" not in os.environ:
        raise RuntimeError("--cuda needs nvcc on PATH or CUDA_HOME pointing at a CUDA toolkit")
    work = Path(tempfile.mkdtemp(prefix="maskvid-minkowski-"))
    quiet_log = work / "build.log"
    log(f"working in {work} (full log: {quiet_log})")
    try:
        py, env = _make_build_env(work, quiet_log)
        dl = work / "download"
        _run([str(py), "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
              f"MinkowskiEngine=={ME_VERSION}", "-d", str(dl)], env=env, quiet_log=quiet_log)
        (archive,) = list(dl.glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(work, filter="data")
            except TypeError:  # Python without extraction filters
                tar.extractall(work)
        src = work / f"MinkowskiEngine-{ME_VERSION}"
        for path in patch_sources(src):
            log(f"patched {path.relative_to(src)}")
        env["MAX_JOBS"] = str(jobs)
        cmd = [str(py), "setup.py", "bdist_wheel", "--blas=openblas"]
        cmd += ["--force_cuda"] if cuda else ["--cpu_only"]
        log(f"compiling (MAX_JOBS={jobs}); this takes several minutes")
        _run(cmd, cwd=src, env=env, quiet_log=quiet_log)
        (wheel,) = list((src / "dist").glob("*.whl"))
        wheel = _strip_wheel(py, wheel, env, quiet_log)
        cache_dir.mkdir(parents=True, exist_ok=True)
        target = cache_dir / wheel.name
        shutil.copy2(wheel, target)
        log(f"cached {target} ({target.stat().st_size / 2**20:.1f} MB)")
        return target
    finally:
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def install_wheel(wheel: Path, python: str = sys.executable) -> None:
    _run([python, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskvid_edu.minkowski_build", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when a cached wheel exists")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (MAX_JOBS), default 2")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where to keep the built wheel")
    parser.add_argument("--cuda", action="store_true", help="build the CUDA engine instead (see module docs)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary build folder")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")

    cache_dir = args.cache_dir or default_cache_dir(cuda=args.cuda)
    if not args.force and engine_installed():
        log("MinkowskiEngine is already importable in this environment; nothing to do (--force rebuilds)")
        return 0
    wheel = None if args.force else find_cached_wheel(cache_dir)
    if wheel is not None:
        log(f"using cached wheel {wheel}")
    else:
        if not openblas_available():
            log(f"OpenBLAS development files are missing. Install them with:\n    sudo {APT_COMMAND}")
            return 1
        wheel = build_wheel(cache_dir, jobs=args.jobs, cuda=args.cuda, keep=args.keep)
    install_wheel(wheel)
    if not engine_installed():
        log("installed, but `import MinkowskiEngine` still fails in this environment")
        return 1
    log(f"MinkowskiEngine {ME_VERSION} installed from {wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
