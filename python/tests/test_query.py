"""Queries return the engine's results as odc-stac-shaped DataArrays: values equal the source
pixels (read with GDAL through rasterio) and the command line's output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import pixelquery
import pixelquery.demo
from conftest import BANDS, ORIGIN, RES, source_window, utm_box

DATES = pixelquery.demo.DATES


def test_box_equals_the_source_pixels(wh, scenes_dir):
    col, row, width, height = 0, 100, 130, 70  # crosses the ragged nodata edge on the left
    cube = wh.query(bbox=utm_box(col, row, width, height), crs="EPSG:32652", bands=list(BANDS))
    assert isinstance(cube, xr.DataArray)
    assert cube.dims == ("time", "band", "y", "x")
    assert cube.shape == (len(DATES), 4, height, width)
    assert cube.dtype == np.float32
    assert list(cube.band.values) == list(BANDS)
    assert cube.time.dtype == np.dtype("datetime64[ns]")
    assert [str(t)[:10] for t in cube.time.values.astype("datetime64[D]")] == list(DATES)
    # Pixel centres in the grid CRS.
    np.testing.assert_allclose(cube.x.values, ORIGIN[0] + (np.arange(width) + 0.5) * RES)
    np.testing.assert_allclose(cube.y.values, ORIGIN[1] - (row + np.arange(height) + 0.5) * RES)
    for t, date in enumerate(DATES):
        for b, band in enumerate(BANDS):
            src = source_window(scenes_dir, date, band, col, row, width, height).astype(np.float32)
            src[src == 0] = np.nan  # nodata 0
            np.testing.assert_array_equal(cube.values[t, b], src, err_msg=f"{date} {band}")


def test_native_dtype_keeps_the_samples_and_nodata(wh, scenes_dir):
    box = utm_box(0, 0, 64, 48)
    native = wh.query(bbox=box, crs=32652, bands=["B04", "B08"], dtype="native")
    assert native.dtype == np.uint16
    assert native.attrs["nodata"] == 0
    for t, date in enumerate(DATES):
        np.testing.assert_array_equal(native.values[t, 0], source_window(scenes_dir, date, "B04", 0, 0, 64, 48))
    as_float = wh.query(bbox=box, crs=32652, bands=["B04", "B08"])
    np.testing.assert_array_equal(np.where(native.values == 0, np.nan, native.values.astype(np.float32)), as_float.values)
    assert np.isnan(as_float.attrs["nodata"])
    explicit = wh.query(bbox=box, crs=32652, bands=["B04"], dtype=np.uint16)
    np.testing.assert_array_equal(explicit.values[:, 0], native.values[:, 0])


def test_point_series_masks_the_cloud_and_matches_ndvi(wh, scenes_dir):
    lon, lat = pixelquery.demo.sample_point()
    ndvi = wh.query(point=(lon, lat), index="ndvi", mask_clouds=True)
    assert ndvi.shape == (len(DATES), 1, 1, 1)
    assert list(ndvi.band.values) == ["ndvi"]
    cloudy = DATES.index(pixelquery.demo.CLOUDY_DATE)
    assert np.isnan(ndvi.values[cloudy, 0, 0, 0])
    for t, date in enumerate(DATES):
        if t == cloudy:
            continue
        red = source_window(scenes_dir, date, "B04", 300, 220, 1, 1)[0, 0] * 1e-4
        nir = source_window(scenes_dir, date, "B08", 300, 220, 1, 1)[0, 0] * 1e-4
        assert ndvi.values[t, 0, 0, 0] == pytest.approx((nir - red) / (nir + red), rel=1e-5)
    # The point lies in pixel (300, 220): its centre is the x/y coordinate.
    assert ndvi.x.item() == pytest.approx(ORIGIN[0] + 300.5 * RES)
    assert ndvi.y.item() == pytest.approx(ORIGIN[1] - 220.5 * RES)


def test_polygon_masks_outside_pixels(wh):
    box = utm_box(100, 100, 40, 40)
    triangle = {
        "type": "Feature",
        "properties": {},
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[0], box[1]]]],
        },
    }
    clipped = wh.query(geometry=triangle, crs="EPSG:32652", bands=["B08"])
    full = wh.query(bbox=box, crs="EPSG:32652", bands=["B08"])
    assert clipped.shape == full.shape
    inside = ~np.isnan(clipped.values)
    assert 0.4 < inside.mean() < 0.6
    np.testing.assert_array_equal(clipped.values[inside], full.values[inside])
    shapely = pytest.importorskip("shapely.geometry")
    again = wh.query(geometry=shapely.shape(triangle["geometry"]), crs="EPSG:32652", bands=["B08"])
    np.testing.assert_array_equal(again.values, clipped.values)


def test_bands_named_as_asked_and_one_time_axis_per_place(wh):
    box = utm_box(290, 210, 20, 20)  # inside the cloud of the cloudy date
    cube = wh.query(bbox=box, crs=32652, bands=["red", "B08"], mask_clouds=True)
    assert list(cube.band.values) == ["red", "B08"]
    assert list(cube.band_source.values) == ["B04", "B08"]
    # Every covering scene is a time step, the one masked out entirely included (all NaN).
    assert [str(t)[:10] for t in cube.time.values.astype("datetime64[D]")] == list(DATES)
    cloudy = DATES.index(pixelquery.demo.CLOUDY_DATE)
    assert np.isnan(cube.values[cloudy]).all()
    assert not np.isnan(cube.values[cloudy - 1]).all()
    dropped = wh.query(bbox=box, crs=32652, bands=["red", "B08"], mask_clouds=True, drop_empty=True)
    assert [str(t)[:10] for t in dropped.time.values.astype("datetime64[D]")] == [
        d for d in DATES if d != pixelquery.demo.CLOUDY_DATE
    ]
    np.testing.assert_array_equal(dropped.values, np.delete(cube.values, cloudy, axis=0))
    with pytest.raises(pixelquery.InvalidInputError, match="drop_empty"):
        wh.query(bbox=box, crs=32652, bands=["red"], drop_empty=True, chunks="auto")
    # A time range without observations: zero time steps, not an error.
    empty = wh.query(bbox=box, crs=32652, bands=["red"], time=("2019-01-01", "2019-12-31"))
    assert empty.shape == (0, 1, 20, 20)
    assert list(empty.band.values) == ["red"]


def test_memory_budget_bounds_cubes_held_whole(wh):
    box = utm_box(0, 0, 384, 384)
    with pytest.raises(pixelquery.TooLargeError, match=r"MiB|MB|GiB") as e:
        wh.query(bbox=box, crs=32652, bands=["red"], memory_budget=1)
    assert "chunks=" in str(e.value) and str(e.value).count("chunks=") == 1
    assert wh.query(bbox=box, crs=32652, bands=["red"], memory_budget=64).shape == (len(DATES), 1, 384, 384)
    with pytest.raises(pixelquery.InvalidInputError, match="memory_budget"):
        wh.query(bbox=box, crs=32652, memory_budget=0)


def test_time_range_aliases_and_composites(wh):
    box = utm_box(200, 200, 20, 20)
    summer = wh.query(bbox=box, crs=32652, bands=["red", "nir"], time=("2024-05-01", "2024-08-31"))
    assert [str(t)[:10] for t in summer.time.values.astype("datetime64[D]")] == [d for d in DATES if "2024-05" <= d <= "2024-08-31"]
    full = wh.query(bbox=box, crs=32652, bands=["B04", "B08"])
    np.testing.assert_array_equal(summer.values, full.sel(time=slice("2024-05-01", "2024-08-31")).values)
    same = wh.query(bbox=box, crs=32652, bands=["B04", "B08"], time="2024-05-01..2024-08-31")
    np.testing.assert_array_equal(same.values, summer.values)
    one_day = wh.query(bbox=box, crs=32652, bands=["B04"], time=DATES[2])
    assert one_day.sizes["time"] == 1
    median = wh.query(bbox=box, crs=32652, bands=["B04"], composite="median")
    assert median.sizes["time"] == 1
    np.testing.assert_allclose(median.values[0, 0], np.nanmedian(full.values[:, 0], axis=0))
    monthly = wh.query(bbox=box, crs=32652, bands=["B04"], composite="max", period="month")
    assert monthly.sizes["time"] == len({d[:7] for d in DATES})


def test_snapshots_and_repeated_queries(wh):
    box = utm_box(10, 10, 8, 8)
    latest = wh.query(bbox=box, crs=32652, bands=["B02"], as_of=wh.version)
    again = wh.query(bbox=box, crs=32652, bands=["B02"])
    np.testing.assert_array_equal(latest.values, again.values)
    assert not np.shares_memory(latest.values, again.values)  # every cube owns its buffer


def test_the_command_line_gives_the_same_values(wh, warehouse_path, cli, tmp_path):
    lon, lat = pixelquery.demo.sample_point()
    out = tmp_path / "point.json"
    done = cli("query", warehouse_path, "--point", f"{lon},{lat}", "--bands", "B03,B08", "--physical", "--out", out)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    cube = wh.query(point=(lon, lat), bands=["B03", "B08"], physical=True)
    values = {(r["time"][:10], r["band"]): r.get("value") for r in rows}
    for t, date in enumerate(DATES):
        for b, band in enumerate(["B03", "B08"]):
            want = values[(date, band)]
            got = cube.values[t, b, 0, 0]
            if want is None:
                assert np.isnan(got)
            else:
                assert got == pytest.approx(want, rel=1e-6)
