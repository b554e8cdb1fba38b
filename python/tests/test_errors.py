"""Bad arguments and missing things raise clear exceptions: the command line's one-line
message, in a class that tells the kind of failure."""

from __future__ import annotations

import numpy as np
import pytest

import pixelquery
from conftest import utm_box

BOX = utm_box(0, 0, 10, 10)


def test_a_missing_warehouse(tmp_path):
    with pytest.raises(pixelquery.NotFoundError, match="not a PixelQuery warehouse") as e:
        pixelquery.open(tmp_path / "nowhere")
    assert isinstance(e.value, LookupError) and isinstance(e.value, pixelquery.PixelQueryError)
    assert str(tmp_path / "nowhere") in str(e.value)


def test_an_unknown_band_has_the_cli_message(wh, warehouse_path, cli):
    with pytest.raises(pixelquery.InvalidInputError) as e:
        wh.query(bbox=BOX, crs=32652, bands=["B99"])
    assert isinstance(e.value, ValueError)
    done = cli("query", warehouse_path, "--bbox", ",".join(map(str, BOX)), "--crs", "EPSG:32652", "--bands", "B99")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {e.value}"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "needs point=, bbox= or geometry="),
        ({"point": (1, 2), "bbox": BOX}, "only one of"),
        ({"bbox": (3, 3, 1, 1)}, "minx < maxx"),
        ({"bbox": (0, 0, 1)}, r"expected \(minx, miny, maxx, maxy\)"),
        ({"point": ("a", 2)}, "expected a number"),
        ({"point": (float("nan"), 2)}, "finite"),
        ({"bbox": BOX, "crs": "UTM52"}, "EPSG:N"),
        ({"bbox": BOX, "crs": 99999}, "unknown EPSG code 99999"),
        ({"bbox": BOX, "time": ("2024-13-01", None)}, "invalid date"),
        ({"bbox": BOX, "time": ("2024-06-01", "2024-01-01")}, "start is after the end"),
        ({"bbox": BOX, "time": 5}, "invalid time"),
        ({"bbox": BOX, "expr": "nir -", "index": "ndvi"}, "not both"),
        ({"bbox": BOX, "expr": "(nir - "}, "expression|expected"),
        ({"bbox": BOX, "index": "xyz"}, "unknown index"),
        ({"bbox": BOX, "period": "month"}, "period= needs composite="),
        ({"bbox": BOX, "composite": "mode"}, "unknown composite"),
        ({"bbox": BOX, "composite": "mean", "period": "fortnight"}, "unknown period"),
        ({"bbox": BOX, "group_by": "day"}, "solar_day"),
        ({"bbox": BOX, "product": ["sentinel2_l2a", "b"]}, "\"b\" is not in the warehouse"),
        ({"bbox": BOX, "resampling": "lanczos"}, "invalid resampling"),
        ({"bbox": BOX, "skip_missing": "yes"}, "True or False"),
        ({"bbox": BOX, "product": "landsat8_c2l2"}, "not in the warehouse"),
        ({"bbox": BOX, "bands": 4}, "list of names"),
        ({"bbox": BOX, "resolution": -10}, "invalid resolution"),
        ({"bbox": BOX, "as_of": -1}, "as_of"),
        ({"bbox": BOX, "mask_clouds": "yes"}, "True or False"),
        ({"bbox": BOX, "dtype": "complex64"}, "never complex64"),
        ({"bbox": BOX, "dtype": "bogus"}, "invalid dtype"),
        ({"bbox": BOX, "dtype": "native", "index": "ndvi"}, "floating-point values"),
        ({"bbox": BOX, "dtype": "uint8", "bands": ["B04"]}, "hold u16 samples"),
        ({"bbox": BOX, "chunks": {"z": 3}}, "unknown dimension"),
        ({"bbox": BOX, "chunks": {"x": 0}}, "positive integer"),
        ({"geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}, "LineString geometries"),
        ({"geometry": 42}, "GeoJSON dict or a shapely"),
    ],
)
def test_bad_arguments_are_invalid_input(wh, kwargs, message):
    kwargs = dict(kwargs)
    kwargs.setdefault("crs", 32652)
    with pytest.raises((pixelquery.InvalidInputError, pixelquery.NotFoundError), match=message) as e:
        wh.query(**kwargs)
    assert str(e.value).count("\n") == 0


def test_nothing_in_range_is_no_data(wh):
    with pytest.raises(pixelquery.NoDataError, match="no data") as e:
        wh.query(bbox=(500000, 4000000, 500100, 4000100), crs=32652)
    assert isinstance(e.value, pixelquery.NotFoundError)
    with pytest.raises(pixelquery.NotFoundError, match="version 999 does not exist"):
        wh.query(bbox=BOX, crs=32652, as_of=999)


def test_a_cube_too_large_points_to_chunks(wh):
    with pytest.raises(pixelquery.TooLargeError, match="chunks=") as e:
        wh.query(bbox=utm_box(0, 0, 512, 512), crs=32652, resolution=0.4)
    assert isinstance(e.value, MemoryError)


def test_bad_catalog_and_ingest_arguments(wh, tmp_path):
    with pytest.raises(pixelquery.InvalidInputError, match="kind"):
        wh.catalog(kind="tiles")
    with pytest.raises(pixelquery.NotFoundError, match="nope"):
        pixelquery.ingest(tmp_path / "wh", [str(tmp_path / "nope")], progress=False)
    with pytest.raises(pixelquery.InvalidInputError, match="resampling"):
        pixelquery.ingest(tmp_path / "wh", [str(tmp_path)], resampling="sinc", progress=False)
    with pytest.raises(pixelquery.InvalidInputError, match="unknown product profile|product"):
        pixelquery.ingest(tmp_path / "wh", [str(tmp_path)], product="sentinel9", progress=False)
    with pytest.raises(pixelquery.InvalidInputError, match="inputs"):
        pixelquery.ingest(tmp_path / "wh", [], progress=False)
    with pytest.raises(TypeError):
        wh.query(BOX)  # keyword arguments only
    assert np.isnan(wh.query(bbox=BOX, crs=32652, bands="B04").attrs["nodata"])
