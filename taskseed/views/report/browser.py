"""Headless Chromium for the run report: the rendered page's layout (each plot's box) and a
screenshot of the whole page."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from taskseed.curation.errors import TaskseedError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ENV = "TASKSEED_CHROMIUM"
PAGE_WIDTH = 1280
MAX_PAGE_HEIGHT = 30_000
CHROMIUM_TIMEOUT_S = 180

LAYOUT_SCRIPT = """<script>
window.addEventListener("load", () => {
  const plots = {};
  for (const fig of document.querySelectorAll("figure.plot")) {
    const img = fig.querySelector("img");
    const r = (img || fig).getBoundingClientRect();
    plots[fig.id] = {x: r.left + window.scrollX, y: r.top + window.scrollY,
                     w: r.width, h: r.height,
                     decoded: !!img && img.complete && img.naturalWidth > 0};
  }
  const page = document.documentElement;
  document.body.setAttribute("data-layout", JSON.stringify(
    {width: page.scrollWidth, height: page.scrollHeight, plots: plots}));
});
</script>"""


def chromium_path() -> str:
    """The Chromium binary ($TASKSEED_CHROMIUM, else the first on PATH)."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        found = shutil.which(given)
        if found is None:
            raise TaskseedError(f"{CHROMIUM_ENV}={given}: no such program")
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise TaskseedError("headless Chromium not found: install Debian's `chromium` package "
                        f"(apt-get install chromium) or set {CHROMIUM_ENV}")


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu",
               "--hide-scrollbars", "--force-device-scale-factor=1", "--no-first-run",
               "--disable-extensions", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=CHROMIUM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise TaskseedError(f"Chromium did not finish in {CHROMIUM_TIMEOUT_S} s") from None
    except OSError as err:
        raise TaskseedError(f"Chromium could not start: {err}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TaskseedError(f"Chromium failed (exit {done.returncode}): {last}")
    return done


def page_layout(page: Path, width: int = PAGE_WIDTH) -> dict[str, Any]:
    """The rendered page's size and each plot's box (CSS pixels, page coordinates), from a
    copy of the page with a measuring script, loaded in headless Chromium."""
    text = Path(page).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="taskseed-chromium-") as tmp:
        probe = Path(tmp) / "layout.html"
        probe.write_text(text.replace("</body>", LAYOUT_SCRIPT + "</body>", 1), encoding="utf-8")
        done = _chromium([f"--window-size={width},900", "--virtual-time-budget=10000",
                          "--dump-dom", probe.as_uri()], Path(tmp) / "profile")
    found = re.search(r'data-layout="([^"]*)"', done.stdout)
    if found is None:
        raise TaskseedError(f"Chromium rendered {page} without running its layout probe")
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, png: Path, width: int = PAGE_WIDTH,
               height: int | None = None) -> dict[str, Any]:
    """Render the page into `png` at `width` CSS pixels, whole or its top `height` pixels;
    the page layout."""
    layout = page_layout(page, width)
    height = min(int(layout["height"]), height or MAX_PAGE_HEIGHT, MAX_PAGE_HEIGHT)
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="taskseed-chromium-") as tmp:
        _chromium([f"--window-size={width},{height}", "--virtual-time-budget=10000",
                   f"--screenshot={png}", Path(page).resolve().as_uri()], Path(tmp) / "profile")
    if not png.exists():
        raise TaskseedError(f"Chromium wrote no screenshot to {png}")
    return layout
