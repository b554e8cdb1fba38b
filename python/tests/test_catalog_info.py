"""`info()` mirrors `pixelquery info --json`; `catalog()` is a GeoParquet-shaped pyarrow Table."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import pixelquery.demo


def test_info(wh, warehouse_path, cli):
    info = wh.info()
    assert info["scenes"] == len(pixelquery.demo.DATES)
    assert info["grid"]["epsg"] == 32652
    assert sorted(b["band"] for b in info["products"]["sentinel2_l2a"]) == ["B02", "B03", "B04", "B08", "SCL"]
    done = cli("info", warehouse_path, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == info
    assert wh.grid == {k: info["grid"][k] for k in ("epsg", "origin_x", "origin_y", "tile_size")}


def test_fragment_catalog_is_geoparquet_shaped(wh):
    table = wh.catalog()
    info = wh.info()
    assert table.num_rows == info["fragments"]
    assert set(table.column("band").to_pylist()) == {"B02", "B03", "B04", "B08", "SCL"}
    assert table.schema.field("time_min").type == pa.timestamp("us", tz="UTC")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert table.schema.field("geometry").metadata[b"ARROW:extension:name"] == b"geoarrow.wkb"
    assert sum(table.column("observations").to_pylist()) == sum(
        b["observations"] for bands in info["products"].values() for b in bands
    )


def test_geopandas_reads_the_catalog(wh):
    geopandas = pytest.importorskip("geopandas")
    gdf = geopandas.GeoDataFrame.from_arrow(wh.catalog())
    assert len(gdf) == wh.info()["fragments"]
    assert gdf.crs.to_epsg() == 4326 or gdf.crs.to_string() == "OGC:CRS84"
    lon, lat = pixelquery.demo.sample_point()
    from shapely.geometry import Point

    hits = gdf[gdf.contains(Point(lon, lat))]
    assert len(hits) >= 1 and set(hits["band"]) <= {"B02", "B03", "B04", "B08", "SCL"}
    scenes = geopandas.GeoDataFrame.from_arrow(wh.catalog(kind="scenes"))
    assert sorted(str(t)[:10] for t in scenes["acquired"]) == list(pixelquery.demo.DATES)


def test_catalog_as_of_an_older_version(wh):
    empty = wh.catalog(as_of=0)
    assert empty.num_rows == 0
    assert empty.schema.metadata[b"pixelquery.version"] == b"0"
    assert wh.catalog(as_of=wh.version).num_rows == wh.catalog().num_rows
    with pytest.raises(pixelquery.NotFoundError, match="does not exist"):
        wh.catalog(as_of=10_000)
