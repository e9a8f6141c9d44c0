"""Remake docs/app_screenshot.png: the web app, served with the committed model, on an angry clip
of actor 21 (a held-out test actor of fold 1, which the committed model is trained on).

    RAVDESS_DIR=../shared/ravdess .venv/bin/python docs/make_screenshot.py

Needs Debian's chromium (``apt-get install chromium``), as the browser test does.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CLIP = "Actor_21/03-01-05-02-01-01-21"
OUT = ROOT / "docs" / "app_screenshot.png"


def main() -> int:
    data_dir = Path(os.environ.get("RAVDESS_DIR", ROOT / "dataset"))
    clip = next((p for p in (data_dir / f"{CLIP}.flac", data_dir / f"{CLIP}.wav") if p.exists()), None)
    if clip is None:
        sys.exit(f"{data_dir / CLIP}.flac or .wav: not found (set RAVDESS_DIR)")
    chromium = shutil.which("chromium") or sys.exit("chromium not found: apt-get install chromium")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "EMOTION_CNN_MODEL": str(ROOT / "emotion_cnn_model.keras")}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "src" / "emotion_cnn" / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    sys.exit("streamlit did not start")
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                page.get_by_text("North-American English").wait_for(timeout=60_000)
                page.locator("input[type=file]").first.set_input_files(str(clip))
                page.get_by_text("Predicted emotion:").wait_for(timeout=60_000)
                page.locator("[data-testid='stImage'] img").nth(1).wait_for(timeout=60_000)
                page.wait_for_timeout(1000)  # the bar chart draws after the page settles
                tmp = OUT.with_suffix(".tmp.png")
                page.screenshot(path=str(tmp), full_page=True)
                tmp.replace(OUT)
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"wrote {OUT.relative_to(ROOT)} ({clip.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
