"""Serve the web app (``app.py``) with Streamlit: in the foreground for ``emotion-cnn app``, or
in a child process for as long as a ``with`` block runs, and drive it in a browser (the browser
test, the README's screenshot)."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

APP = Path(__file__).with_name("app.py")
# headless Chromium on a machine without a screen or outside network: no sandbox as root, and no
# background connections (on a closed network they are refused, many at a time)
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run")


def streamlit_command(*, port: int, address: str = "127.0.0.1", model: str | Path | None = None,
                      headless: bool = False) -> list[str]:
    """The command line that serves the app on ``address:port``; ``model`` None lets the app
    choose (``$EMOTION_CNN_MODEL``, else the project's model)."""
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
               "--server.address", address, "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "minimal"]
    if headless:
        command += ["--server.headless", "true"]
    if model:
        command += ["--", "--model", str(model)]
    return command


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (another program may take it before it is used)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@contextmanager
def serving_app(*, model: str | Path, timeout: float = 60.0) -> Iterator[str]:
    """Serve the app with ``model`` on a free local port while the block runs; yields its URL.

    Raises ``RuntimeError`` with Streamlit's own output if it exits, or does not answer its
    health check, within ``timeout`` seconds. The server is stopped when the block ends.
    """
    port = free_port()
    with tempfile.TemporaryFile() as log:
        # a file, not a pipe: nobody reads the output while the app runs, and a full pipe would block it
        server = subprocess.Popen(streamlit_command(port=port, model=model, headless=True),
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        output = log.read().decode(errors="replace").strip()
                        state = (f"exited with code {server.returncode}" if server.poll() is not None
                                 else f"did not answer within {timeout:g} s")
                        raise RuntimeError(f"streamlit serving {APP.name} {state}: {output}") from None
                    time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/"
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def show_prediction(page, url: str, clip: str | Path) -> None:
    """Open the app at ``url`` in a Playwright ``page``, upload ``clip`` and wait until the
    prediction, the spectrogram and the bar chart are drawn (60 s at most for each)."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("North-American English").wait_for(timeout=60_000)  # the sidebar: the app is up
    page.locator("input[type=file]").first.set_input_files(str(clip))
    page.get_by_text("Predicted emotion:").wait_for(timeout=60_000)
    page.locator("[data-testid='stImage'] img").nth(1).wait_for(timeout=60_000)  # the spectrogram
    page.wait_for_timeout(1000)  # the bar chart draws after the page settles
