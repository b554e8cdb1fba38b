"""PixelQuery vs odc-stac, into xarray, on the 12 corpus scenes (``corpus/ts``).

    python python/benchmarks/bench_odc_stac.py [--corpus ../shared/corpus/ts] [--repeat 15]

Ingests the 12 COGs into a fresh warehouse (timed, printed), writes STAC Items for the same
COGs (``proj:*``, ``raster:bands``, ``eo:bands``), then times, in alternation so machine load
hits both alike:

- a tile: one 3840 m grid tile (384 x 384 px) inside the scenes, 12 dates x 4 bands, as an
  ``xarray.DataArray`` (PixelQuery ``Warehouse.query(bbox=...)``) vs
  ``odc.stac.load(items, geobox=<the same pixels>)``;
- a point series: the tile's centre pixel, 12 dates x 4 bands (``query(point=...)``) vs
  ``odc.stac.load`` of that one pixel.

Both sides return the bands' uint16 samples (PixelQuery ``dtype="native"``; its float32
cube is timed too), on the same 10 m grid; the script checks that the cubes are identical
before timing. odc-stac reads with a thread pool of the machine's core count. Prints medians
and the ratio (goal: >= 100x for both), and beside each PixelQuery time the engine's own
time for the same query in the same process (``time_engine``: the query run in Rust, no
Python object built), so the Python layer's share is the difference. The tile is also
loaded lazily with ``chunks=`` (one grid tile per chunk) and computed, on both sides.

Exports: the tile and a 2 x 2-tile box (768 x 768 px, the tile and its neighbours east and
south) written to GeoTIFF by a ``pixelquery query --bbox ... --out X.tif`` process (the CLI on
``PATH``, or ``PIXELQUERY_BIN``), against ``odc.stac.load`` of the same pixels alone (no file
written), and against the load plus ``rio.to_raster`` of the 48 bands (time x band) with the
CLI's layout: DEFLATE, horizontal predictor, 256 px tiles (what an odc-stac user runs to get
the same file).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _default_corpus() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "ts"


def stac_items(files):
    """One STAC Item per COG: datetime from the GDAL metadata, projection and band info."""
    import pystac
    import rasterio
    from rasterio.warp import transform_bounds

    items = []
    for f in files:
        with rasterio.open(f) as src:
            tags = src.tags()
            when = tags.get("ACQUISITION_DATETIME") or re.search(r"(\d{8})", f.name).group(1)
            dt = np.datetime64(when.replace("Z", ""), "us").astype(object)
            lon0, lat0, lon1, lat1 = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
            names = [d or f"b{i + 1}" for i, d in enumerate(src.descriptions)]
            item = pystac.Item(
                id=f.stem,
                geometry={"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]},
                bbox=[lon0, lat0, lon1, lat1],
                datetime=dt,
                properties={},
            )
            item.stac_extensions += [
                "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            ]
            t = src.transform
            item.add_asset(
                "data",
                pystac.Asset(
                    href=str(f),
                    media_type=pystac.MediaType.COG,
                    roles=["data"],
                    extra_fields={
                        "proj:epsg": src.crs.to_epsg(),
                        "proj:shape": [src.height, src.width],
                        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
                        "raster:bands": [{"data_type": src.dtypes[i], "nodata": src.nodata} for i in range(src.count)],
                        "eo:bands": [{"name": n} for n in names],
                    },
                ),
            )
            items.append(item)
    return items, names


def median_ms(samples):
    return statistics.median(samples) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=_default_corpus(), help="folder of the 12 corpus COGs")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per case (medians are printed)")
    args = parser.parse_args()
    files = sorted(args.corpus.glob("*.tif"))
    if len(files) != 12:
        print(f"error: {args.corpus}: expected the 12 corpus COGs, found {len(files)}", file=sys.stderr)
        return 2

    import odc.stac
    from odc.geo.geobox import GeoBox

    import pixelquery

    workdir = Path(tempfile.mkdtemp(prefix="pq-bench-"))
    t0 = time.perf_counter()
    report = pixelquery.ingest(workdir / "wh", [str(args.corpus)], product="sentinel2_l2a", progress=False)
    ingest_s = time.perf_counter() - t0
    wh = pixelquery.open(workdir / "wh")
    items, bands = stac_items(files)
    grid = wh.grid
    res = 10.0

    # The grid tile holding the scenes' centre (fully inside them).
    import rasterio

    with rasterio.open(files[0]) as src:
        b = src.bounds
    cx, cy = (b.left + b.right) / 2, (b.bottom + b.top) / 2
    size = grid["tile_size"]
    col = int(np.floor((cx - grid["origin_x"]) / size))
    row = int(np.floor((grid["origin_y"] - cy) / size))
    tile = (grid["origin_x"] + col * size, grid["origin_y"] - (row + 1) * size, grid["origin_x"] + (col + 1) * size, grid["origin_y"] - row * size)
    assert b.left <= tile[0] and tile[2] <= b.right and b.bottom <= tile[1] and tile[3] <= b.top, "tile not inside the scenes"
    px = (tile[0] + size / 2 + res / 2, tile[1] + size / 2 + res / 2)  # a pixel centre
    crs = f"EPSG:{grid['epsg']}"
    tile_box = GeoBox.from_bbox(tile, crs, resolution=res)
    pixel_box = GeoBox.from_bbox((px[0] - res / 2, px[1] - res / 2, px[0] + res / 2, px[1] + res / 2), crs, resolution=res)
    threads = os.cpu_count() or 1

    import dask

    cases = {
        "tile": (
            lambda: wh.query(bbox=tile, crs=crs, bands=bands, dtype="native"),
            lambda: odc.stac.load(items, bands=bands, geobox=tile_box, pool=threads),
        ),
        "tile_f32": (
            lambda: wh.query(bbox=tile, crs=crs, bands=bands),
            None,
        ),
        "point": (
            lambda: wh.query(point=px, crs=crs, bands=bands, dtype="native"),
            lambda: odc.stac.load(items, bands=bands, geobox=pixel_box, pool=threads),
        ),
        "tile_dask": (
            lambda: wh.query(bbox=tile, crs=crs, bands=bands, dtype="native", chunks="auto").compute(),
            lambda: odc.stac.load(items, bands=bands, geobox=tile_box, chunks={"x": 384, "y": 384}).compute(),
        ),
    }
    # Exports by the CLI, as a process (what a user runs), against odc-stac loading the pixels.
    exe = os.environ.get("PIXELQUERY_BIN") or shutil.which("pixelquery")
    box = (tile[0], tile[1] - size, tile[2] + size, tile[3])
    box_box = GeoBox.from_bbox(box, crs, resolution=res)
    out_tif = workdir / "out.tif"

    def export(bounds):
        def run():
            out_tif.unlink(missing_ok=True)
            subprocess.run(
                [exe, "query", str(workdir / "wh"), "--bbox", ",".join(map(str, bounds)), "--crs", str(grid["epsg"]),
                 "--bands", ",".join(bands), "--out", str(out_tif)],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        return run

    odc_tif = workdir / "odc.tif"

    def odc_export(geobox):
        import rioxarray  # noqa: F401 (the .rio accessor)
        import xarray as xr

        def run():
            cube = odc.stac.load(items, bands=bands, geobox=geobox, pool=threads).to_array("band")
            cube = cube.transpose("time", "band", "y", "x")
            t, b, h, w = cube.shape
            flat = xr.DataArray(cube.data.reshape(t * b, h, w), dims=("band", "y", "x"), coords={"y": cube.y, "x": cube.x})
            odc_tif.unlink(missing_ok=True)
            flat.rio.write_crs(crs).rio.to_raster(odc_tif, compress="DEFLATE", predictor=2, tiled=True, blockxsize=256, blockysize=256)
        return run

    if exe:
        cases["tile_tif"] = (export(tile), lambda: odc.stac.load(items, bands=bands, geobox=tile_box, pool=threads))
        cases["box_tif"] = (export(box), lambda: odc.stac.load(items, bands=bands, geobox=box_box, pool=threads))
        cases["tile_tif_written"] = (export(tile), odc_export(tile_box))
        cases["box_tif_written"] = (export(box), odc_export(box_box))
    else:
        print("note: no pixelquery CLI on PATH (or PIXELQUERY_BIN): exports not timed", file=sys.stderr)

    # The engine alone: the same queries run in Rust (no DataArray, no numpy array).
    from pixelquery._args import query_spec

    engine = {
        "tile": (query_spec(bbox=tile, crs=crs, bands=bands), "native"),
        "tile_f32": (query_spec(bbox=tile, crs=crs, bands=bands), None),
        "point": (query_spec(point=px, crs=crs, bands=bands), "native"),
    }

    # Same cubes first.
    for name in ("tile", "point"):
        pq, ref = cases[name][0](), cases[name][1]()
        ref_cube = ref.to_array("band").transpose("time", "band", "y", "x")
        assert pq.shape == ref_cube.shape, (name, pq.shape, ref_cube.shape)
        np.testing.assert_array_equal(pq.values, ref_cube.values)
        np.testing.assert_array_equal(pq.x.values, ref_cube.x.values)
        np.testing.assert_array_equal(pq.y.values, ref_cube.y.values)
        np.testing.assert_array_equal(pq.time.values, ref_cube.time.values.astype("datetime64[ns]"))

    times = {key: [] for name in cases for key in (name, name + "_odc")}
    engine_times = {key: [] for key in engine}
    with dask.config.set(scheduler="threads"):
        for _ in range(args.repeat):
            for name, (pq, ref) in cases.items():
                t = time.perf_counter()
                pq()
                times[name].append(time.perf_counter() - t)
                if name in engine:
                    spec, dtype = engine[name]
                    engine_times[name].extend(wh._native.time_engine(spec, dtype, 1))
                if ref is not None:
                    t = time.perf_counter()
                    ref()
                    times[name + "_odc"].append(time.perf_counter() - t)

    print(f"pixelquery {pixelquery.__version__}, odc-stac {odc.stac.__version__}; {threads} threads; medians of {args.repeat} runs")
    print(f"ingest of the 12 COGs: {ingest_s:.2f} s ({report['fragments']} fragments); cubes checked identical to odc-stac's")
    print()
    print("| 12 dates x 4 bands into xarray | PixelQuery | its engine alone | odc-stac `load` | speed-up |")
    print("|---|---|---|---|---|")
    rows = [
        ("one tile, 384 x 384 px, uint16", "tile", "tile_odc"),
        ("one tile, float32 (NaN = invalid)", "tile_f32", "tile_odc"),
        ("one pixel's series, uint16", "point", "point_odc"),
        ("one tile, uint16, Dask (`chunks=`, computed)", "tile_dask", "tile_dask_odc"),
    ]
    if exe:
        rows += [
            ("one tile to `.tif` (CLI process; odc-stac: load only)", "tile_tif", "tile_tif_odc"),
            ("2 x 2-tile box, 768 x 768 px, to `.tif` (same)", "box_tif", "box_tif_odc"),
            ("one tile to `.tif` (odc-stac: load + `rio.to_raster`, DEFLATE)", "tile_tif_written", "tile_tif_written_odc"),
            ("2 x 2-tile box to `.tif` (same)", "box_tif_written", "box_tif_written_odc"),
        ]
    for label, mine, theirs in rows:
        a, b = median_ms(times[mine]), median_ms(times[theirs])
        alone = f"{median_ms(engine_times[mine]):.2f} ms" if mine in engine_times else "-"
        print(f"| {label} | {a:.2f} ms | {alone} | {b:.1f} ms | {b / a:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
