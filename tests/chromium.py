"""Headless Chromium for tests: find it (or fail saying how to install it), render a page,
and measure what was drawn inside each plot's box of the screenshot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from taskseed.curation.errors import TaskseedError

from taskseed.views.report.browser import chromium_path

MISSING = ("headless Chromium is missing: install Debian's `chromium` package "
           "(apt-get install chromium; CI installs it)")


def require_chromium() -> str:
    """The Chromium binary; the test fails (never skips) without one."""
    try:
        return chromium_path()
    except TaskseedError as err:
        problem = str(err)
    pytest.fail(f"{MISSING} ({problem})", pytrace=False)


@dataclass(frozen=True)
class Drawn:
    """What a plot's box of a screenshot holds."""

    width: int
    height: int
    ink: float  # share of pixels that differ from the box's background colour
    colours: int  # distinct colours (4 bits per channel) covering at least 0.1% of the box


def _pixels(screenshot: Path) -> np.ndarray:
    with Image.open(screenshot) as image:
        return np.asarray(image.convert("RGB"))


def drawn(screenshot: Path | np.ndarray, box: dict[str, Any]) -> Drawn:
    """Crop `box` (page coordinates, CSS pixels = screenshot pixels) from a screenshot (a
    PNG or its pixels) and measure it."""
    image = _pixels(screenshot) if isinstance(screenshot, Path) else screenshot
    x, y = round(box["x"]), round(box["y"])
    crop = image[y: y + round(box["h"]), x: x + round(box["w"])].astype(np.int32)
    height, width = crop.shape[:2]
    if not crop.size:
        return Drawn(width, height, 0.0, 0)
    pixels = crop.reshape(-1, 3)
    keys = (pixels[:, 0] >> 4) << 8 | (pixels[:, 1] >> 4) << 4 | pixels[:, 2] >> 4
    counts = np.bincount(keys, minlength=4096)
    top = int(counts.argmax())
    background = np.array([top >> 8, (top >> 4) & 15, top & 15]) << 4
    ink = float((np.abs(pixels - background).max(axis=1) > 32).mean())
    colours = int((counts >= max(1, len(pixels) // 1000)).sum())
    return Drawn(width, height, ink, colours)


def pixels(screenshot: Path) -> np.ndarray:
    """A screenshot's RGB pixels (rows, columns, 3)."""
    return _pixels(screenshot)
