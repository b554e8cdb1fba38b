"""The baseline of `cargo bench --bench serve`: rio-tiler (TiTiler's tile engine) making the same
NDVI tiles from the same COGs in one process, PNG included (no HTTP).

Run by the bench with the interpreter named by PQ_RIO_TILER_PYTHON (a virtual environment with
`pip install rio-tiler`; not a dependency of PixelQuery or its CI). Reads a JSON job on stdin:
    {"files": [...12 COGs, time order...], "one_date": "file", "tiles": [[z, x, y], ...],
     "passes": N, "layers": ["one_date" and/or "median"]}
and prints JSON: for each layer, per-tile seconds of the first pass (cold: the bench starts a
new process per layer, nothing cached) and of the later passes (warm).
"""

import json
import sys
import time

import numpy as np
from rio_tiler.colormap import cmap
from rio_tiler.io import Reader
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.mosaic.methods import MedianMethod

# Corpus bands: B02, B03, B04, B08; NDVI = (nir - red) / (nir + red).
EXPRESSION = "(b4-b3)/(b4+b3)"
COLORMAP = cmap.get("rdylgn")


def ndvi_tile(path, x, y, z):
    with Reader(path) as src:
        return src.tile(x, y, z, expression=EXPRESSION)


def render(img):
    img.rescale(in_range=((-1.0, 1.0),))
    return img.render(img_format="PNG", colormap=COLORMAP)


def one_date(job, z, x, y):
    return render(ndvi_tile(job["one_date"], x, y, z))


def median(job, z, x, y):
    img, _ = mosaic_reader(job["files"], ndvi_tile, x, y, z, pixel_selection=MedianMethod())
    return render(img)


def main():
    job = json.load(sys.stdin)
    out = {}
    for name, make in (("one_date", one_date), ("median", median)):
        if name not in job["layers"]:
            continue
        cold, warm = [], []
        for p in range(job["passes"]):
            for z, x, y in job["tiles"]:
                start = time.perf_counter()
                png = make(job, z, x, y)
                elapsed = time.perf_counter() - start
                assert png[:4] == b"\x89PNG"
                (cold if p == 0 else warm).append(elapsed)
        out[name] = {"cold": cold, "warm": warm}
    out["versions"] = {
        "rio_tiler": __import__("rio_tiler").__version__,
        "rasterio": __import__("rasterio").__version__,
        "gdal": __import__("rasterio").__gdal_version__,
        "numpy": np.__version__,
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
