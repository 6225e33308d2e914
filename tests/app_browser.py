"""Drive the web app in headless Chromium: type a prompt, click Generate, wait for the gallery, read it back and
take a screenshot. Used by tests/test_app.py, and by hand for the README's screenshot (docs/app.md):

    hf-textimg serve &   # then
    python tests/app_browser.py http://127.0.0.1:7860/ "two blue squares" docs/images/app.png

Playwright drives the browser rather than `chromium --headless --dump-dom/--screenshot`: those load a page and
stop, and the images appear only after a click and a queued generation (server-sent events) finish. Playwright
runs Debian's `chromium` (executable_path); it downloads no browser of its own.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")
GALLERY_IMAGES = "#gallery .grid-container img"


def chromium_path() -> str | None:
    """$HF_TEXTIMG_CHROMIUM, else the first of `chromium`, `chromium-browser` on PATH, else None."""
    if os.environ.get("HF_TEXTIMG_CHROMIUM"):
        return os.environ["HF_TEXTIMG_CHROMIUM"]
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def generate_in_browser(url: str, prompt: str, screenshot: Path, browser: str | None = None, num_images: int | None = None,
                        model: str | None = None, timeout_s: float = 120.0) -> dict:
    """Fill the page at `url` (prompt; number of images and model when given), click Generate, wait until the gallery
    shows its images and they are decoded, screenshot the page to `screenshot`. Returns the number of gallery images,
    their decoded widths, their captions and the summary text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=browser or chromium_path(), args=["--no-sandbox"])
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            _fill(page, prompt, num_images, model)
            page.locator("#generate").click()
            expected = num_images or 1
            # Every gallery image loaded and decoded (naturalWidth > 0), and the summary written.
            page.wait_for_function(
                f"""() => {{ const imgs = [...document.querySelectorAll('{GALLERY_IMAGES}')];
                    return imgs.length >= {expected} && imgs.every(i => i.complete && i.naturalWidth > 0)
                        && document.querySelector('#summary').innerText.includes('images in'); }}""",
                timeout=timeout_s * 1000,
            )
            images = page.locator(GALLERY_IMAGES)
            result = {
                "images": images.count(),
                "decoded_widths": images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"),
                "captions": page.locator("#gallery .caption-label").all_inner_texts(),
                "summary": page.locator("#summary").inner_text(),
            }
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            return result
        finally:
            chromium.close()


def _fill(page, prompt: str, num_images: int | None, model: str | None) -> None:
    page.locator("#prompt textarea").fill(prompt)
    if num_images is not None:
        box = page.get_by_label("number input for Number of images")
        box.fill(str(num_images))
        box.press("Enter")
    if model is not None:
        box = page.get_by_label("Model", exact=True)
        box.fill(model)
        box.press("Enter")


if __name__ == "__main__":
    url, prompt, out = sys.argv[1:4]
    print(generate_in_browser(url, prompt, Path(out), num_images=int(sys.argv[4]) if len(sys.argv) > 4 else None))
