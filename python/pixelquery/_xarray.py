"""Cubes as ``xarray.DataArray`` shaped like odc-stac's: dims ``(time, band, y, x)``, pixel-centre
coordinates, and a scalar ``spatial_ref`` coordinate with ``crs_wkt``, ``spatial_ref`` and
``GeoTransform`` attributes, which is what rioxarray and odc-geo read the georeferencing from.

The DataArray is built once, from coordinates that are ready: each variable is made with the
dtype it keeps and each dimension coordinate with its pandas index, so xarray infers, converts
and copies nothing (a query returns in the time the engine takes, not in xarray's)."""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import xarray as xr
from xarray.indexes import PandasIndex

from . import _pixelquery

DIMS = ("time", "band", "y", "x")


def geotransform_text(transform: Sequence[float]) -> str:
    """GDAL's six numbers, space-separated (as rioxarray and odc-geo write ``GeoTransform``)."""
    return " ".join(repr(float(v)) for v in transform)


@functools.lru_cache(maxsize=64)
def _crs(epsg: int) -> Tuple[str, bool]:
    """The EPSG table's WKT of ``epsg`` and whether the CRS is geographic."""
    wkt = _pixelquery.crs_wkt(int(epsg))
    return wkt, wkt.startswith("GEOGCS")


def spatial_ref(epsg: int, transform: Sequence[float]) -> xr.Variable:
    """The scalar grid-mapping coordinate (its attributes are this cube's own dict)."""
    wkt, _ = _crs(epsg)
    attrs = {"crs_wkt": wkt, "spatial_ref": wkt, "GeoTransform": geotransform_text(transform)}
    return xr.Variable((), np.array(0, dtype=np.int32), attrs, fastpath=True)


def _labels(values: Sequence[str]) -> np.ndarray:
    """Strings as an object array (the dtype odc-stac's labels have), element by element."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _indexed(
    name: str, index: pd.Index, attrs: Optional[Dict[str, Any]] = None
) -> Tuple[xr.IndexVariable, PandasIndex]:
    """A dimension coordinate and its index, sharing one pandas index (named, so not copied)."""
    return xr.IndexVariable((name,), index, attrs), PandasIndex(index, name)


def coordinates(
    times_ns: np.ndarray,
    scenes: Sequence[Sequence[str]],
    bands: Sequence[str],
    epsg: int,
    transform: Sequence[float],
    height: int,
    width: int,
    band_sources: Optional[Sequence[str]] = None,
    products: Optional[Sequence[str]] = None,
) -> xr.Coordinates:
    """Coordinates of a cube on a north-up grid (``product`` along time when known)."""
    x0, dx, _, y0, _, dy = (float(v) for v in transform)
    _, geographic = _crs(epsg)
    unit = "degree" if geographic else "metre"
    crs = f"EPSG:{epsg}"
    time = pd.DatetimeIndex(np.asarray(times_ns, dtype=np.int64).view("datetime64[ns]"), name="time")
    band = pd.Index(_labels(bands), dtype=object, name="band", copy=False)
    y = pd.Index(y0 + (np.arange(height) + 0.5) * dy, name="y", copy=False)
    x = pd.Index(x0 + (np.arange(width) + 0.5) * dx, name="x", copy=False)
    variables: Dict[str, Any] = {}
    indexes: Dict[str, PandasIndex] = {}
    for name, index, attrs in (
        ("time", time, None),
        ("band", band, None),
        ("y", y, {"units": unit, "resolution": -abs(dy), "crs": crs}),
        ("x", x, {"units": unit, "resolution": abs(dx), "crs": crs}),
    ):
        variables[name], indexes[name] = _indexed(name, index, attrs)
    sources = _labels(band_sources if band_sources is not None else bands)
    variables["band_source"] = xr.Variable(("band",), sources, fastpath=True)
    variables["scene_id"] = xr.Variable(("time",), _labels([",".join(s) for s in scenes]), fastpath=True)
    if products is not None:
        variables["product"] = xr.Variable(("time",), _labels(products), fastpath=True)
    variables["spatial_ref"] = spatial_ref(epsg, transform)
    return xr.Coordinates(variables, indexes=indexes)


def attrs(epsg: int, nodata: Optional[float], dtype: np.dtype) -> Dict[str, Any]:
    """The DataArray's attributes: its CRS, and ``nodata`` for native cubes (``nan`` otherwise)."""
    out: Dict[str, Any] = {"crs": f"EPSG:{epsg}", "grid_mapping": "spatial_ref"}
    if nodata is None:
        out["nodata"] = np.nan
    else:
        out["nodata"] = dtype.type(nodata).item()
    return out


def data_array(data: Any, coords: xr.Coordinates, attributes: Dict[str, Any], name: Optional[str] = None) -> xr.DataArray:
    """The one ``DataArray`` of a cube: ``data`` (numpy or Dask) as is, ready coordinates."""
    return xr.DataArray(data, coords=coords, dims=DIMS, attrs=attributes, name=name)


def from_raw(raw: Dict[str, Any], name: Optional[str] = None) -> xr.DataArray:
    """Wraps the extension's query result; ``raw["data"]`` becomes the DataArray's data as is."""
    data = raw["data"]
    _, _, height, width = data.shape
    c = coordinates(
        raw["times_ns"],
        raw["scenes"],
        raw["bands"],
        raw["epsg"],
        raw["transform"],
        height,
        width,
        raw["band_sources"],
        raw.get("products"),
    )
    return data_array(data, c, attrs(raw["epsg"], raw["nodata"], data.dtype), name)
