"""Helpers of the real-browser tests: Debian's Chromium, a JupyterLab server, a static web server.

Nothing here downloads anything: the browser is the system's Chromium (``apt-get install
chromium``), driven by Playwright through ``executable_path``; every request that does not go to
``127.0.0.1``/``localhost`` is aborted and counted.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

BOOK_DIR = Path(__file__).resolve().parent.parent / "book"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = "Chromium not installed: apt-get install chromium"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def require_chromium():
    """Skip the calling test unless Debian's Chromium and Playwright are both there."""
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(SKIP_REASON)
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")


@contextlib.contextmanager
def browser_context(viewport=(1280, 900)):
    """A Chromium context whose non-local requests are aborted; yields ``(context, blocked)``.

    ``blocked`` is the list of URLs that were refused, in order.
    """
    sync_api = require_chromium()
    blocked: list[str] = []

    def guard(route):
        host = urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            context.route("**/*", guard)
            yield context, blocked
            context.close()
        finally:
            browser.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll ``predicate()`` until it returns a truthy value (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# JupyterLab
# --------------------------------------------------------------------------------------------

_LAB_CONFIG = """\
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
c.LabApp.expose_app_in_browser = True
"""

_LAB_SETTINGS = {
    # no news feed, no update check: nothing leaves the machine
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    # every cell in the DOM, so that cells can be found by position
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 serving ``root``, started with the project's own venv.

    Use as a context manager; on exit the server is asked to shut down (which stops its kernels),
    then terminated and finally killed if it does not exit within a few seconds.
    """

    def __init__(self, root: Path, state: Path, token: str = "maskvid-browser-test"):
        self.root, self.state, self.token = Path(root), Path(state), token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.state / "jupyterlab.log"

    def _prepare(self) -> dict:
        config = self.state / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "jupyter_lab_config.py").write_text(_LAB_CONFIG)
        settings = self.state / "user-settings"
        for name, value in _LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = dict(os.environ)
        env.update(JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(self.state / "runtime"),
                   JUPYTER_DATA_DIR=str(self.state / "data"), IPYTHONDIR=str(self.state / "ipython"),
                   JUPYTER_PLATFORM_DIRS="1", MPLBACKEND="agg", MASKVID_PROFILE="cpu")
        return env

    def start(self, timeout: float = 45.0) -> "JupyterLab":
        env = self._prepare()
        jupyter = Path(sys.executable).with_name("jupyter")
        command = [
            str(jupyter), "lab", "--no-browser",
            f"--IdentityProvider.token={self.token}", f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={self.root}", "--ServerApp.terminals_enabled=False",
            f"--LabApp.user_settings_dir={self.state / 'user-settings'}",
            f"--LabApp.workspaces_dir={self.state / 'workspaces'}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # containers and CI runners often run as root
        log = open(self.log_path, "wb")  # noqa: SIM115 — closed in stop()
        self._log = log
        self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            wait_until(self._ready, timeout, what=f"JupyterLab on port {self.port}")
        except TimeoutError:
            self.stop()
            raise TimeoutError(f"JupyterLab did not start within {timeout:.0f} s; log:\n{self.log()}") from None
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}; log:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.api("status"), timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def api(self, path: str) -> str:
        return f"{self.url}/api/{path}?token={self.token}"

    def lab_url(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?token={self.token}&reset"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """Shut the server down: ``POST /api/shutdown``, then SIGTERM, then SIGKILL (bounded waits)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                request = urllib.request.Request(self.api("shutdown"), method="POST", data=b"")
                urllib.request.urlopen(request, timeout=5).close()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGTERM)  # our own process group (start_new_session)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=5)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> "JupyterLab":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# which cells a widget cell needs
# --------------------------------------------------------------------------------------------


def _python(source: str) -> str:
    """Cell source without IPython magics and shell escapes, so that ``ast`` can read it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _names(source: str) -> tuple[set[str], set[str]]:
    """``(defined, used)`` top-level names of a cell."""
    tree = ast.parse(_python(source))
    defined, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
    return defined, used


def cells_needed(cells: list[dict], target: int) -> list[int]:
    """Indices of the code cells that cell ``target`` depends on (by the names it uses), and itself.

    Walks backwards: a name used by a needed cell is provided by the last earlier code cell that
    defines it, which is needed in turn. The first code cell (imports, seed, preset) is always
    included. Returns indices in notebook order.
    """
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and i <= target]
    info = {i: _names(cells[i]["source"]) for i in code}
    needed = {target, code[0]}
    pending = [target, code[0]]
    while pending:
        i = pending.pop()
        for name in info[i][1]:
            providers = [j for j in code if j < i and name in info[j][0]]
            if providers and providers[-1] not in needed:
                needed.add(providers[-1])
                pending.append(providers[-1])
    return sorted(needed)


# --------------------------------------------------------------------------------------------
# a static web server for the HTML book
# --------------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # a browser that navigates away mid-download resets its connection: not an error of the book
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def static_server(directory: Path):
    """Serve ``directory`` on ``http://127.0.0.1:<free port>`` from a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def html_ids(path: Path) -> set[str]:
    """Every ``id``/``name`` attribute of an HTML file (link fragments must point at one)."""
    text = path.read_text(errors="replace")
    return set(re.findall(r'\s(?:id|name)="([^"]+)"', text))


# --------------------------------------------------------------------------------------------
# the HTML book as `make book-stored` builds it
# --------------------------------------------------------------------------------------------


def book_sources(book: Path) -> list[Path]:
    return [p for p in book.rglob("*") if p.is_file() and "_build" not in p.relative_to(book).parts
            and ".ipynb_checkpoints" not in p.parts]


def build_book(book: Path, scratch: Path, *, repository: str = "", timeout: float = 180.0) -> Path:
    """Build ``book`` from its stored outputs into ``scratch``; returns the HTML folder.

    The config is ``book/book_config.py``'s for ``--execute off`` (and ``--repository``), the
    one ``make book-stored`` uses.
    """
    spec = importlib.util.spec_from_file_location("book_config", BOOK_DIR / "book_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scratch.mkdir(parents=True, exist_ok=True)
    config = module.main(["--execute", "off", "--repository", repository,
                          str(scratch / "stored_config.yml")])
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    if not jupyter_book.exists():
        pytest.skip("jupyter-book is not installed: make env (or run `make book-stored` first)")
    result = subprocess.run(
        [str(jupyter_book), "build", str(book), "--config", str(config),
         "--path-output", str(scratch / "stored"), "-n", "--keep-going"],
        capture_output=True, text=True, timeout=timeout,
    )
    built = scratch / "stored" / "_build" / "html"
    if not (built / "index.html").exists():
        raise RuntimeError(f"the book did not build (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return built


def stored_book(book: Path, scratch: Path, timeout: float = 180.0) -> tuple[Path, str]:
    """The HTML of the book built from its stored outputs: ``(html_dir, how)``.

    Uses ``book/_build/stored/_build/html`` (what ``make book-stored`` writes) when it is newer
    than every source file of the book; otherwise builds it into ``scratch`` with the same
    configuration (execution off) — without ``-W``: turning warnings into errors is
    ``make book-stored``'s verdict, this test checks what a reader gets.
    """
    html = book / "_build" / "stored" / "_build" / "html"
    index = html / "index.html"
    newest = max(p.stat().st_mtime for p in book_sources(book))
    if index.exists() and index.stat().st_mtime >= newest:
        return html, f"stored build {html}"
    built = build_book(book, scratch, timeout=timeout)
    how = "stale or missing stored build: built into a scratch folder"
    return built, how


def copy_notebook(source: Path, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(source, root / source.name))
