"""Dask: a LocalCluster of 2 worker processes ingests the demo series (each worker commits its
own batches), and chunked queries computed on it equal the eager ones."""

from __future__ import annotations

import numpy as np
import pytest

import pixelquery
import pixelquery.demo
from conftest import utm_box

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask.array")

import pixelquery.dask as pqdask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def dask_warehouse(client, scenes_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "wh"
    report = pqdask.ingest([scenes_dir], path, client, product="sentinel2_l2a", batch_size=2)
    n = len(pixelquery.demo.DATES)
    assert report["scenes_found"] == n and report["scenes_ingested"] == n, report
    assert report["failed"] == []
    assert report["batches"] == n // 2
    # Every batch committed its own version (the first one also created the warehouse).
    assert report["versions"] == list(range(1, n // 2 + 1))
    assert report["tiles"] >= 4
    assert len(report["workers"]) == 2  # both worker processes wrote and committed
    return path


def test_distributed_ingest_equals_a_local_one(dask_warehouse, warehouse_path, client):
    box = utm_box(0, 0, 512, 512)
    dist = pixelquery.open(dask_warehouse).query(bbox=box, crs=32652, dtype="native")
    local = pixelquery.open(warehouse_path).query(bbox=box, crs=32652, dtype="native")
    np.testing.assert_array_equal(dist.values, local.values)
    assert list(dist.scene_id.values) == list(local.scene_id.values)


def test_rerun_skips_everything(dask_warehouse, scenes_dir, client):
    report = pqdask.ingest(scenes_dir, pixelquery.open(dask_warehouse), client, product="sentinel2_l2a")
    assert report["scenes_ingested"] == 0 and len(report["skipped"]) == len(pixelquery.demo.DATES)
    assert report["failed"] == []


@pytest.mark.parametrize(
    "kwargs, chunks",
    [
        ({"bands": ["B04", "B08"]}, {"x": 100, "y": 100}),
        ({"bands": ["B04", "B08"], "dtype": "native"}, "auto"),
        ({"index": "ndvi", "mask_clouds": True}, {"x": 200, "y": 150}),
        ({"bands": ["B02"], "composite": "median", "period": "month"}, {"x": 256, "y": 256}),
        ({"bands": ["B03", "B04"]}, {"x": 128, "y": 128, "time": 3, "band": 1}),
        ({"bands": ["B08"], "group_by": "solar_day"}, {"x": 300}),
    ],
)
def test_chunked_equals_eager(dask_warehouse, client, kwargs, chunks):
    wh = pixelquery.open(dask_warehouse)
    box = utm_box(-20, 30, 480, 420)  # part of it lies outside the scenes
    eager = wh.query(bbox=box, crs=32652, **kwargs)
    lazy = wh.query(bbox=box, crs=32652, chunks=chunks, **kwargs)
    assert lazy.chunks is not None and lazy.shape == eager.shape and lazy.dtype == eager.dtype
    if chunks == "auto":
        # One grid tile (3840 m = 384 px) per chunk, edges on tile edges.
        col0 = int(round(lazy.x.values[0] - 5)) // 10
        first = 384 - col0 % 384
        assert lazy.chunks[3][0] == min(first, lazy.shape[3])
        assert all(c == 384 for c in lazy.chunks[3][1:-1])
    for name in ("time", "band", "x", "y", "scene_id"):
        np.testing.assert_array_equal(lazy[name].values, eager[name].values)
    assert lazy.spatial_ref.attrs == eager.spatial_ref.attrs
    computed = lazy.compute()
    np.testing.assert_array_equal(computed.values, eager.values)


def test_chunked_polygon_equals_eager(dask_warehouse, client):
    wh = pixelquery.open(dask_warehouse)
    lon, lat = pixelquery.demo.sample_point()
    ring = [(lon - 0.02, lat - 0.015), (lon + 0.025, lat - 0.01), (lon + 0.01, lat + 0.02), (lon - 0.02, lat - 0.015)]
    field = {"type": "Polygon", "coordinates": [ring]}
    eager = wh.query(geometry=field, bands=["B08"])
    lazy = wh.query(geometry=field, bands=["B08"], chunks={"x": 64, "y": 64})
    np.testing.assert_array_equal(lazy.compute().values, eager.values)
    assert np.isnan(eager.values).any() and (~np.isnan(eager.values)).any()


def test_chunked_point_and_bad_chunks(dask_warehouse, client):
    wh = pixelquery.open(dask_warehouse)
    lon, lat = pixelquery.demo.sample_point()
    lazy = wh.query(point=(lon, lat), index="ndvi", chunks={"x": 1})
    np.testing.assert_array_equal(lazy.compute().values, wh.query(point=(lon, lat), index="ndvi").values)
    with pytest.raises(pixelquery.InvalidInputError, match="time chunks"):
        wh.query(bbox=utm_box(0, 0, 10, 10), crs=32652, composite="mean", chunks={"time": 1})
    with pytest.raises(pixelquery.InvalidInputError, match="N-day"):
        wh.query(bbox=utm_box(0, 0, 10, 10), crs=32652, composite="mean", period="16d", chunks="auto")


def test_a_large_box_stays_lazy(dask_warehouse):
    wh = pixelquery.open(dask_warehouse)
    # 10 cm pixels over the scene: 84 GB as one cube, but only coordinates are built.
    lazy = wh.query(bbox=utm_box(0, 0, 512, 512), crs=32652, bands=["B04"], resolution=0.1, chunks={"x": 2048, "y": 2048})
    assert lazy.nbytes > 50e9
    assert lazy.data.npartitions > 600
    small = lazy.isel(x=slice(0, 40), y=slice(0, 40), time=slice(0, 2)).compute(scheduler="threads")
    assert small.shape == (2, 1, 40, 40)


def test_a_scene_off_the_centre_is_a_chunked_time_step(tmp_path):
    """The lazy cube's time axis comes from a one-pixel probe of the whole box; a scene that
    covers only a corner of the box (not its centre) is a time step, as in the eager cube."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    def write(path, width, value):
        profile = dict(driver="GTiff", width=width, height=400, count=4, dtype="uint16", crs="EPSG:32652",
                       transform=from_origin(300000.0, 4000000.0, 10, 10), nodata=0, tiled=True,
                       blockxsize=256, blockysize=256)
        with rasterio.open(path, "w", **profile) as d:
            d.write(np.full((4, 400, width), value, np.uint16))
            d.descriptions = ("B02", "B03", "B04", "B08")

    whole, corner = tmp_path / "S2_20230601_10m.tif", tmp_path / "S2_20230602_10m.tif"
    write(whole, 400, 1000)
    write(corner, 100, 2000)
    pixelquery.ingest(tmp_path / "wh", [str(whole), str(corner)], product="sentinel2_l2a", progress=False)
    wh = pixelquery.open(tmp_path / "wh")
    box = (300000.0, 3996000.0, 304000.0, 4000000.0)
    eager = wh.query(bbox=box, crs="EPSG:32652", bands=["red"], dtype="native")
    lazy = wh.query(bbox=box, crs="EPSG:32652", bands=["red"], dtype="native", chunks={"x": 200, "y": 200})
    assert len(eager.time) == 2
    np.testing.assert_array_equal(lazy.time.values, eager.time.values)
    np.testing.assert_array_equal(lazy.compute(scheduler="threads").values, eager.values)
