"""rioxarray and odc-geo read the cube's georeferencing from its `spatial_ref` coordinate."""

from __future__ import annotations

import numpy as np
import pytest

import pixelquery
import pixelquery.demo
from pixelquery import _pixelquery
from conftest import ORIGIN, RES, utm_box


@pytest.fixture()
def cube(wh):
    return wh.query(bbox=utm_box(50, 60, 40, 30), crs="EPSG:32652", bands=["B04", "B08"])


def test_spatial_ref_coordinate(cube):
    ref = cube.coords["spatial_ref"]
    assert ref.ndim == 0
    assert ref.attrs["crs_wkt"] == ref.attrs["spatial_ref"]
    assert ref.attrs["crs_wkt"].startswith('PROJCS["WGS 84 / UTM zone 52N"')
    gt = [float(v) for v in ref.attrs["GeoTransform"].split()]
    assert gt == [ORIGIN[0] + 50 * RES, RES, 0.0, ORIGIN[1] - 60 * RES, 0.0, -RES]


def test_rioxarray_reads_crs_and_transform_and_writes_a_geotiff(cube, tmp_path):
    pytest.importorskip("rioxarray")
    import rasterio

    assert cube.rio.crs.to_epsg() == 32652
    t = cube.rio.transform()
    assert (t.c, t.a, t.b, t.f, t.d, t.e) == (ORIGIN[0] + 50 * RES, RES, 0.0, ORIGIN[1] - 60 * RES, 0.0, -RES)
    assert cube.rio.shape == (30, 40)
    path = tmp_path / "first.tif"
    cube.isel(time=0).rio.to_raster(path)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32652
        assert src.transform == t
        assert src.count == 2
        np.testing.assert_array_equal(src.read(), cube.isel(time=0).values)


def test_odc_geo_reads_the_geobox(cube):
    pytest.importorskip("odc.geo.xr")
    gbox = cube.odc.geobox
    assert gbox.crs.epsg == 32652
    assert gbox.shape == (30, 40)
    a = gbox.affine
    assert (a.c, a.a, a.f, a.e) == (ORIGIN[0] + 50 * RES, RES, ORIGIN[1] - 60 * RES, -RES)


def test_a_point_cube_keeps_its_pixel_size(wh):
    pytest.importorskip("rioxarray")
    lon, lat = pixelquery.demo.sample_point()
    point = wh.query(point=(lon, lat), bands=["B04"])
    t = point.rio.transform()
    assert (t.a, t.e) == (RES, -RES)
    assert point.odc.geobox.resolution.x == RES


@pytest.mark.parametrize("epsg", [4326, 3857, 32652, 32733, 2154, 5070])
def test_wkt_names_the_epsg_code(epsg):
    pyproj = pytest.importorskip("pyproj")
    rasterio_crs = pytest.importorskip("rasterio.crs")
    wkt = _pixelquery.crs_wkt(epsg)
    crs = pyproj.CRS.from_wkt(wkt)
    assert crs.to_epsg() == epsg
    assert crs.equals(pyproj.CRS.from_epsg(epsg), ignore_axis_order=True)
    assert rasterio_crs.CRS.from_wkt(wkt).to_epsg() == epsg  # what rioxarray's .rio.crs is


def test_unknown_epsg_is_a_clear_error():
    with pytest.raises(pixelquery.InvalidInputError, match="unknown EPSG code 99999"):
        _pixelquery.crs_wkt(99999)
