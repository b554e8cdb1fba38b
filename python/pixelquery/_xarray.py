"""Cubes as ``xarray.DataArray`` shaped like odc-stac's: dims ``(time, band, y, x)``, pixel-centre
coordinates, and a scalar ``spatial_ref`` coordinate with ``crs_wkt``, ``spatial_ref`` and
``GeoTransform`` attributes, which is what rioxarray and odc-geo read the georeferencing from."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import xarray as xr

from . import _pixelquery

DIMS = ("time", "band", "y", "x")


def geotransform_text(transform: Sequence[float]) -> str:
    """GDAL's six numbers, space-separated (as rioxarray and odc-geo write ``GeoTransform``)."""
    return " ".join(repr(float(v)) for v in transform)


def spatial_ref(epsg: int, transform: Sequence[float]) -> xr.DataArray:
    """The scalar grid-mapping coordinate."""
    wkt = _pixelquery.crs_wkt(int(epsg))
    return xr.DataArray(
        np.int32(0),
        attrs={
            "crs_wkt": wkt,
            "spatial_ref": wkt,
            "GeoTransform": geotransform_text(transform),
        },
    )


def coords(
    times_ns: np.ndarray,
    scenes: Sequence[Sequence[str]],
    bands: Sequence[str],
    epsg: int,
    transform: Sequence[float],
    height: int,
    width: int,
    band_sources: Optional[Sequence[str]] = None,
    products: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """Coordinates of a cube on a north-up grid (``product`` along time when known)."""
    x0, dx, _, y0, _, dy = (float(v) for v in transform)
    unit = "degree" if _is_geographic(epsg) else "metre"
    res = abs(dx)
    out = {
        "time": ("time", np.asarray(times_ns, dtype=np.int64).view("datetime64[ns]")),
        "band": ("band", np.asarray(list(bands), dtype=object)),
        "band_source": ("band", np.asarray(list(band_sources if band_sources is not None else bands), dtype=object)),
        "y": ("y", y0 + (np.arange(height) + 0.5) * dy, {"units": unit, "resolution": -abs(dy), "crs": f"EPSG:{epsg}"}),
        "x": ("x", x0 + (np.arange(width) + 0.5) * dx, {"units": unit, "resolution": res, "crs": f"EPSG:{epsg}"}),
        "scene_id": ("time", np.asarray([",".join(s) for s in scenes], dtype=object)),
    }
    if products is not None:
        out["product"] = ("time", np.asarray(list(products), dtype=object))
    out["spatial_ref"] = spatial_ref(epsg, transform)
    return out


def _is_geographic(epsg: int) -> bool:
    return _pixelquery.crs_wkt(int(epsg)).startswith("GEOGCS")


def attrs(epsg: int, nodata: Optional[float], dtype: np.dtype) -> Dict[str, Any]:
    """The DataArray's attributes: its CRS, and ``nodata`` for native cubes (``nan`` otherwise)."""
    out: Dict[str, Any] = {"crs": f"EPSG:{epsg}", "grid_mapping": "spatial_ref"}
    if nodata is None:
        out["nodata"] = np.nan
    else:
        out["nodata"] = dtype.type(nodata).item()
    return out


def from_raw(raw: Dict[str, Any], name: Optional[str] = None) -> xr.DataArray:
    """Wraps the extension's query result; ``raw["data"]`` becomes the DataArray's data as is."""
    data = raw["data"]
    _, _, height, width = data.shape
    c = coords(
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
    return xr.DataArray(data, dims=DIMS, coords=c, attrs=attrs(raw["epsg"], raw["nodata"], data.dtype), name=name)
