"""STAC API search from Python: ``pixelquery.ingest(stac_api=...)`` against a real STAC API
(``rustac serve``, from PyPI) serving items whose assets are the demo scenes; ``update=True``
ingests only what is new; bad search arguments raise clear exceptions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import pixelquery
import pixelquery.demo
from conftest import utm_box


def _rustac() -> str:
    exe = Path(sys.executable).parent / "rustac"
    if not exe.exists():
        if os.environ.get("CI"):
            pytest.fail("rustac is missing (python/requirements-test.txt installs it)")
        pytest.skip("rustac is not installed (pip install rustac)")
    return str(exe)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _item(date: str, scenes_dir: Path) -> dict:
    """A Planetary-Computer-shaped item of one demo date (assets: the demo's band files)."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(32652, 4326, always_xy=True)
    x0, y0 = 320000.0, 4160000.0
    side = 512 * 10.0
    (w, s), (e, n) = to_lonlat.transform(x0, y0 - side), to_lonlat.transform(x0 + side, y0)
    compact = date.replace("-", "")
    asset = lambda band, res: {  # noqa: E731
        "href": str(scenes_dir / f"DEMO_{compact}_{band}_{res}.tif"),
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"],
    }
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": f"DEMO_{compact}", "collection": "sentinel-2-l2a",
        "bbox": [w, s, e, n],
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": f"{date}T02:16:59Z", "proj:epsg": 32652, "s2:mgrs_tile": "52SCG",
                       "s2:processing_baseline": "03.01"},
        "links": [],
        "assets": {"B04": asset("B04", "10m"), "B08": asset("B08", "10m"), "SCL": asset("SCL", "20m"),
                   "B02": asset("B02", "10m")},
    }


class Api:
    """``rustac serve`` with the demo items, stopped by its PID."""

    def __init__(self, tmp: Path, items: list, port: int = 0):
        self.port = port or _free_port()
        (tmp / "api").mkdir(exist_ok=True)
        coll = tmp / "api" / "collection.json"
        coll.write_text(json.dumps({
            "type": "Collection", "stac_version": "1.0.0", "id": "sentinel-2-l2a", "description": "demo",
            "license": "proprietary", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        }))
        fc = tmp / "api" / "items.json"
        fc.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [_rustac(), "serve", "--addr", f"127.0.0.1:{self.port}", str(coll), str(fc)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("rustac serve did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def test_a_stac_api_search_ingests_like_the_files_and_updates(scenes_dir, tmp_path):
    dates = list(pixelquery.demo.DATES)
    api = Api(tmp_path, [_item(d, scenes_dir) for d in dates[:5]])
    try:
        wh_path = tmp_path / "wh"
        report = pixelquery.ingest(
            wh_path, stac_api=api.url, collections="sentinel-2-l2a", datetime=("2024-01-01", None),
            bands=["red", "nir"], page_size=2, progress=False,
        )
        assert report["scenes_ingested"] == 5 and report["failed"] == [], report
        stac = report["stac"][0]
        assert stac["pages"] >= 3 and stac["products"] == {"sentinel2_l2a": 5}
        wh = pixelquery.open(wh_path)
        info = wh.info()
        assert list(info["searches"].values())[0]["api"] == api.url
        # Only red, NIR and SCL were taken (not B02).
        assert {b["band"] for b in info["products"]["sentinel2_l2a"]} == {"B04", "B08", "SCL"}
        # The same pixels as the files ingested directly.
        files = [p for p in scenes_dir.glob("DEMO_*") if any(p.name.startswith(f"DEMO_{d.replace('-', '')}") for d in dates[:5])]
        files = [str(p) for p in files if "_B04_" in p.name or "_B08_" in p.name or "_SCL_" in p.name]
        ref = pixelquery.ingest(tmp_path / "ref", files, product="sentinel2_l2a", progress=False)
        assert ref["scenes_ingested"] == 5
        box = dict(bbox=utm_box(40, 40, 64, 48), crs=32652, bands=["red", "nir"], dtype="native")
        a = wh.query(**box)
        b = pixelquery.open(tmp_path / "ref").query(**box)
        np.testing.assert_array_equal(a.values, b.values)
        assert list(a["time"].values) == list(b["time"].values)
    finally:
        api.stop()
    # Two more dates appear; update=True ingests them only.
    api = Api(tmp_path, [_item(d, scenes_dir) for d in dates[:7]], port=api.port)
    try:
        again = pixelquery.ingest(wh_path, update=True, progress=False)
        assert again["scenes_ingested"] == 2, again
        assert len(again["skipped"]) == 5
    finally:
        api.stop()


def test_bad_search_arguments_are_clear(tmp_path):
    with pytest.raises(pixelquery.InvalidInputError, match="position 17"):
        pixelquery.ingest(tmp_path / "wh", stac_api="http://127.0.0.1:9", collections=["x"],
                          filter="eo:cloud_cover <", progress=False)
    with pytest.raises(pixelquery.InvalidInputError, match="latitude 95"):
        pixelquery.ingest(tmp_path / "wh", stac_api="http://127.0.0.1:9", collections=["x"],
                          bbox=(0, 95, 1, 96), progress=False)
    with pytest.raises(pixelquery.InvalidInputError, match="exactly one"):
        pixelquery.ingest(tmp_path / "wh", ["a.tif"], stac_api="http://127.0.0.1:9", progress=False)
    with pytest.raises(pixelquery.InvalidInputError, match="need stac_api"):
        pixelquery.ingest(tmp_path / "wh", ["a.tif"], bbox=(0, 0, 1, 1), progress=False)
    with pytest.raises(pixelquery.PixelQueryError, match="cannot reach"):
        pixelquery.ingest(tmp_path / "wh", stac_api=f"http://127.0.0.1:{_free_port()}", collections=["x"],
                          progress=False)
