"""Shared fixtures: the demo series (written by PixelQuery's own COG writer, nothing from
outside) ingested once per session, and helpers to read the source pixels with rasterio."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

import pixelquery
import pixelquery.demo

# The demo scenes' upper-left corner (EPSG:32652) and pixel size.
ORIGIN = (320000.0, 4160000.0)
RES = 10.0
BANDS = ("B02", "B03", "B04", "B08")


@pytest.fixture(scope="session")
def scenes_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("demo") / "scenes"
    files = pixelquery.demo.write_scenes(d)
    assert len(files) == len(pixelquery.demo.DATES) * 5
    return d


@pytest.fixture(scope="session")
def warehouse_path(scenes_dir, tmp_path_factory) -> Path:
    wh = tmp_path_factory.mktemp("wh") / "wh"
    report = pixelquery.ingest(wh, [scenes_dir], product="sentinel2_l2a", progress=False)
    assert report["scenes_ingested"] == len(pixelquery.demo.DATES), report
    return wh


@pytest.fixture()
def wh(warehouse_path) -> pixelquery.Warehouse:
    return pixelquery.open(warehouse_path)


def source_window(scenes_dir: Path, date: str, band: str, col: int, row: int, width: int, height: int) -> np.ndarray:
    """Pixels of one demo band file, read with rasterio (GDAL)."""
    import rasterio
    from rasterio.windows import Window

    res = "20m" if band == "SCL" else "10m"
    path = scenes_dir / f"DEMO_{date.replace('-', '')}_{band}_{res}.tif"
    with rasterio.open(path) as src:
        return src.read(1, window=Window(col, row, width, height))


def utm_box(col: int, row: int, width: int, height: int):
    """The EPSG:32652 box of a pixel window of the demo scenes."""
    x0, y0 = ORIGIN
    return (x0 + col * RES, y0 - (row + height) * RES, x0 + (col + width) * RES, y0 - row * RES)


def cli_binary() -> Optional[str]:
    """The `pixelquery` command built by cargo (CI builds it before the Python step)."""
    env = os.environ.get("PIXELQUERY_BIN")
    if env:
        return env
    root = Path(__file__).resolve().parents[2]
    for profile in ("debug", "release"):
        p = root / "target" / profile / "pixelquery"
        if p.exists():
            return str(p)
    return shutil.which("pixelquery")


@pytest.fixture(scope="session")
def cli():
    binary = cli_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("the pixelquery binary is missing (cargo build first, or set PIXELQUERY_BIN)")
        pytest.skip("the pixelquery binary is not built (cargo build, or set PIXELQUERY_BIN)")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=300)

    return run
