"""Remake docs/app_screenshot.png: the web app, served with the committed model, on an angry clip
of actor 21 (a held-out test actor of fold 1, which the committed model is trained on).

    RAVDESS_DIR=../shared/ravdess .venv/bin/python docs/make_screenshot.py

Needs Debian's chromium (``apt-get install chromium``), as the browser test does.
"""

import os
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from emotion_cnn.serve import CHROMIUM_ARGS, serving_app, show_prediction

ROOT = Path(__file__).resolve().parents[1]
CLIP = "Actor_21/03-01-05-02-01-01-21"
OUT = ROOT / "docs" / "app_screenshot.png"


def main() -> int:
    data_dir = Path(os.environ.get("RAVDESS_DIR", ROOT / "dataset"))
    clip = next((p for p in (data_dir / f"{CLIP}.flac", data_dir / f"{CLIP}.wav") if p.exists()), None)
    if clip is None:
        sys.exit(f"{data_dir / CLIP}.flac or .wav: not found (set RAVDESS_DIR)")
    chromium = shutil.which("chromium") or sys.exit("chromium not found: apt-get install chromium")
    with serving_app(model=ROOT / "emotion_cnn_model.keras") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            show_prediction(page, url, clip)
            tmp = OUT.with_suffix(".tmp.png")
            page.screenshot(path=str(tmp), full_page=True)
            tmp.replace(OUT)
        finally:
            browser.close()
    print(f"wrote {OUT.relative_to(ROOT)} ({clip.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
