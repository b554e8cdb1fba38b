"""The demo's synthetic Sentinel-2-like series, written with PixelQuery's own COG writer: 8
dates of 512 x 512 px at 10 m (B02, B03, B04, B08 one file per band, plus a 20 m SCL
classification), EPSG:32652, a cloud over the middle of the scene on 2024-07-23. Handy for
trying the API and for tests; nothing is downloaded."""

from __future__ import annotations

import os
from typing import List, Tuple, Union

from . import _pixelquery

__all__ = ["write_scenes", "sample_point", "DATES", "CLOUDY_DATE"]

#: Acquisition dates of the series.
DATES: Tuple[str, ...] = tuple(_pixelquery.DEMO_DATES)
#: The date with a cloud over the middle of the scene.
CLOUDY_DATE: str = _pixelquery.DEMO_CLOUDY_DATE


def write_scenes(directory: Union[str, "os.PathLike[str]"]) -> List[str]:
    """Writes the series into ``directory`` (created if needed); returns the files written.
    Ingest them with ``pixelquery.ingest(wh, [directory], product="sentinel2_l2a")``."""
    return _pixelquery.write_demo_scenes(os.fspath(directory))


def sample_point() -> Tuple[float, float]:
    """A (lon, lat) inside the scenes, on a field that greens up over the summer."""
    return _pixelquery.demo_sample_point()
