"""Two products in one query (issue #18): the demo Sentinel-2-like series plus a coarser,
Landsat-like product (30 m COGs written with rasterio, its own scale/offset), ingested into
one warehouse. One call gives one time axis with a ``product`` coordinate next to
``scene_id``; the Landsat steps hold its pixels (nearest neighbour onto the 10 m grid) times
its scale plus offset, the Sentinel-2 steps the same values as a query of that product alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pixelquery
from conftest import ORIGIN

S2 = "sentinel2_l2a"
L8 = "landsat8_c2l2"
# On the 30 m lattice of the warehouse grid (origin 0), over the demo scenes.
L8_ORIGIN = (319_980.0, 4_160_010.0)
L8_SIZE = 100
L8_TIMES = ("2024-04-22T01:50:00Z", "2024-09-10T01:50:00Z")
# Landsat Collection 2 surface reflectance: DN * 2.75e-5 - 0.2.
L8_SCALE, L8_OFFSET = 2.75e-5, -0.2


def l8_dn(t: int, band: int) -> np.ndarray:
    y, x = np.mgrid[0:L8_SIZE, 0:L8_SIZE]
    refl = 0.02 + 0.3 * (((x * 7 + y * 13 + t * 5 + band * 3) % 23) / 22.0)
    dn = np.round((refl + 0.2) / 2.75e-5).astype(np.uint16)
    dn[:, :2] = 0  # nodata along the western edge
    return dn


@pytest.fixture(scope="module")
def two_products(scenes_dir, tmp_path_factory) -> Path:
    import rasterio
    from rasterio.transform import Affine

    folder = tmp_path_factory.mktemp("l8")
    for t, time in enumerate(L8_TIMES):
        stamp = time[:10].replace("-", "")
        for b, band in enumerate(("SR_B4", "SR_B5")):
            path = folder / f"LSIM_{stamp}_{band}.tif"
            profile = dict(
                driver="COG",
                width=L8_SIZE,
                height=L8_SIZE,
                count=1,
                dtype="uint16",
                crs="EPSG:32652",
                transform=Affine(30.0, 0.0, L8_ORIGIN[0], 0.0, -30.0, L8_ORIGIN[1]),
                nodata=0,
                blocksize=64,
            )
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(l8_dn(t, b), 1)
                dst.set_band_description(1, band)
                dst.update_tags(ACQUISITION_DATETIME=time)
    wh = tmp_path_factory.mktemp("multi") / "wh"
    for product, source in ((S2, scenes_dir), (L8, folder)):
        report = pixelquery.ingest(wh, [source], product=product, progress=False)
        assert report["scenes_ingested"] > 0, report
    return wh


def test_two_products_share_one_time_axis(two_products):
    wh = pixelquery.open(two_products)
    # A box inside both the demo scenes and the Landsat-like ones, on the 30 m lattice.
    box = (ORIGIN[0] + 300.0, ORIGIN[1] - 1500.0, ORIGIN[0] + 1200.0, ORIGIN[1] - 600.0)
    cube = wh.query(bbox=box, crs=32652, bands=["red", "nir"], product=[S2, L8])
    products = list(cube["product"].values)
    assert set(products) == {S2, L8}
    assert products.count(L8) == len(L8_TIMES)
    assert cube["product"].dims == ("time",) and cube["scene_id"].dims == ("time",)
    times = cube["time"].values
    assert (np.diff(times.astype(np.int64)) > 0).all(), "one axis, in acquisition order"
    assert list(cube["band"].values) == ["red", "nir"]

    # Landsat steps: each 10 m pixel takes the 30 m pixel its centre falls in, physical.
    x = cube["x"].values
    y = cube["y"].values
    cols = np.floor((x - L8_ORIGIN[0]) / 30.0).astype(int)
    rows = np.floor((L8_ORIGIN[1] - y) / 30.0).astype(int)
    steps = [i for i, p in enumerate(products) if p == L8]
    for t, step in enumerate(steps):
        for b in range(2):
            dn = l8_dn(t, b)[np.ix_(rows, cols)].astype(np.float32)
            want = dn * np.float32(L8_SCALE) + np.float32(L8_OFFSET)
            np.testing.assert_allclose(cube.values[step, b], want, rtol=0, atol=1e-6)

    # Sentinel-2 steps: the values of that product alone, physical too.
    alone = wh.query(bbox=box, crs=32652, bands=["red", "nir"], product=S2, physical=True)
    s2 = cube.isel(time=(cube["product"] == S2).values)
    np.testing.assert_array_equal(s2.values, alone.values)
    assert list(s2["scene_id"].values) == list(alone["scene_id"].values)

    # The same axis without naming the products (every product with the bands), and NDVI.
    ndvi = wh.query(bbox=box, crs=32652, index="ndvi")
    assert list(ndvi["product"].values) == products
    assert np.nanmin(ndvi.values) >= -1 and np.nanmax(ndvi.values) <= 1


def test_keywords_of_a_multi_product_query(two_products):
    wh = pixelquery.open(two_products)
    box = (ORIGIN[0] + 300.0, ORIGIN[1] - 1500.0, ORIGIN[0] + 1200.0, ORIGIN[1] - 600.0)
    # A band the Landsat-like product lacks: named, or skipped.
    with pytest.raises(pixelquery.InvalidInputError, match=L8):
        wh.query(bbox=box, crs=32652, bands=["red", "blue"], product=[S2, L8])
    skipped = wh.query(bbox=box, crs=32652, bands=["red", "blue"], product=[S2, L8], skip_missing=True)
    assert set(skipped["product"].values) == {S2}
    # Kernels while painting onto 10 m: bilinear differs from nearest inside the 30 m pixels.
    near = wh.query(bbox=box, crs=32652, bands=["red"], product=L8, resolution=10.0, resampling="nearest")
    bilinear = wh.query(bbox=box, crs=32652, bands=["red"], product=L8, resolution=10.0, resampling="bilinear")
    assert near.sizes["x"] == 90
    assert near.shape == bilinear.shape
    assert not np.allclose(near.values, bilinear.values, equal_nan=True)
    with pytest.raises(pixelquery.InvalidInputError, match="resampling"):
        wh.query(bbox=box, crs=32652, bands=["red"], resampling="lanczos")
    # Solar days across products: at most one step per day.
    daily = wh.query(
        bbox=box, crs=32652, bands=["red"], product=[S2, L8], group_by="solar_day", across_products=True
    )
    days = daily["time"].values.astype("datetime64[D]")
    assert len(set(days)) == len(days)
    with pytest.raises(pixelquery.InvalidInputError, match="solar"):
        wh.query(bbox=box, crs=32652, bands=["red"], product=[S2, L8], across_products=True)
    # A chunked (Dask) query gives the eager cube.
    lazy = wh.query(bbox=box, crs=32652, bands=["red", "nir"], product=[S2, L8], chunks="auto")
    eager = wh.query(bbox=box, crs=32652, bands=["red", "nir"], product=[S2, L8])
    assert list(lazy["product"].values) == list(eager["product"].values)
    np.testing.assert_array_equal(lazy.values, eager.values)
