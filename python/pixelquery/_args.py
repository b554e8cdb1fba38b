"""Keyword arguments of queries and ingests, checked and normalised into the plain values the
Rust extension takes (``_pixelquery``). Every mistake is an :class:`InvalidInputError` naming
the argument and what would be accepted."""

from __future__ import annotations

import datetime as _dt
import json
import numbers
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import InvalidInputError

__all__ = ["query_spec", "normalise_dtype", "normalise_chunks", "ingest_options", "search_spec"]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"invalid {what} {value!r}: expected a number")
    v = float(value)
    if not np.isfinite(v):
        raise InvalidInputError(f"invalid {what} {value!r}: expected a finite number")
    return v


def _numbers(value: Any, n: int, what: str, shape: str) -> Tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) and not isinstance(value, np.ndarray):
        raise InvalidInputError(f"invalid {what}={value!r}: expected {shape}")
    items = list(value)
    if len(items) != n:
        raise InvalidInputError(f"invalid {what}={value!r}: expected {shape}, got {len(items)} values")
    return tuple(_number(v, what) for v in items)


def _epsg(crs: Any) -> int:
    """``"EPSG:32652"``, ``32652``, or a CRS object with ``to_epsg()`` (pyproj, rasterio, odc-geo)."""
    if isinstance(crs, bool):
        raise InvalidInputError(f"invalid crs={crs!r}: use \"EPSG:N\" or an EPSG number")
    if isinstance(crs, numbers.Integral):
        code = int(crs)
    elif isinstance(crs, str):
        text = crs.strip()
        digits = text[5:] if text.upper().startswith("EPSG:") else text
        if not digits.isdigit():
            raise InvalidInputError(f"invalid crs={crs!r}: use \"EPSG:N\", e.g. \"EPSG:32652\"")
        code = int(digits)
    elif hasattr(crs, "to_epsg"):
        code = crs.to_epsg()
        if code is None:
            raise InvalidInputError(f"invalid crs={crs!r}: it has no EPSG code")
        code = int(code)
    else:
        raise InvalidInputError(f"invalid crs={crs!r}: use \"EPSG:N\" or an EPSG number")
    if code <= 0:
        raise InvalidInputError(f"invalid crs={crs!r}: EPSG codes are positive")
    return code


def _instant(value: Any, what: str) -> Optional[str]:
    """One end of a time range as text the engine parses (naive times are UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return str(np.datetime_as_string(value.astype("datetime64[us]"), unit="us"))
    if isinstance(value, _dt.datetime):  # pandas.Timestamp too
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    raise InvalidInputError(f"invalid {what} {value!r}: use a date string, datetime, date or numpy.datetime64")


def _time(time: Any) -> Optional[Tuple[Optional[str], Optional[str]]]:
    """``("2023-04-01", "2023-09-30")``, ``"2023-04-01..2023-09-30"``, one date (that day), or
    a (start, end) pair of datetimes; ``None`` on either side leaves it open."""
    if time is None:
        return None
    if isinstance(time, str):
        if ".." in time:
            start, end = time.split("..", 1)
            return (start.strip() or None, end.strip() or None)
        return (time.strip(), time.strip())
    if isinstance(time, (_dt.date, np.datetime64)):
        one = _instant(time, "time")
        return (one, one)
    if isinstance(time, Sequence) and len(time) == 2:
        return (_instant(time[0], "time start"), _instant(time[1], "time end"))
    raise InvalidInputError(
        f"invalid time={time!r}: use (start, end), \"START..END\" or one date, e.g. (\"2023-04-01\", \"2023-09-30\")"
    )


def _strings(value: Any, what: str) -> Optional[list]:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) or isinstance(value, np.ndarray):
        items = list(value)
        if all(isinstance(v, str) for v in items):
            return items
    raise InvalidInputError(f"invalid {what}={value!r}: expected a name or a list of names")


def _optional_str(value: Any, what: str) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInputError(f"invalid {what}={value!r}: expected a string")


def _geometry(geometry: Any) -> Tuple[Optional[Tuple[float, float]], Optional[str]]:
    """A GeoJSON mapping or any object with ``__geo_interface__`` (shapely): polygons as GeoJSON
    text, or a point."""
    if hasattr(geometry, "__geo_interface__"):
        geometry = geometry.__geo_interface__
    if isinstance(geometry, str):
        try:
            geometry = json.loads(geometry)
        except ValueError as e:
            raise InvalidInputError(f"invalid geometry: not GeoJSON text: {e}") from None
    if not isinstance(geometry, Mapping):
        raise InvalidInputError(
            f"invalid geometry={geometry!r}: expected a GeoJSON dict or a shapely geometry"
        )
    if geometry.get("type") == "Point":
        return _numbers(geometry.get("coordinates", ())[:2], 2, "geometry", "a Point with (x, y)"), None
    try:
        return None, json.dumps(geometry)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"invalid geometry: cannot be written as GeoJSON: {e}") from None


def normalise_dtype(dtype: Any) -> Optional[str]:
    """``None``/``"float32"`` (NaN where invalid), ``"native"``, or the bands' own numpy type."""
    if dtype is None or (isinstance(dtype, str) and dtype == "native"):
        return dtype
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise InvalidInputError(
            f"invalid dtype={dtype!r}: use None or \"float32\" (NaN where invalid), \"native\", or a numpy integer/float type"
        ) from None
    if name not in {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}:
        raise InvalidInputError(f"invalid dtype={dtype!r}: bands are never {name}")
    return name


def query_spec(
    *,
    point: Any = None,
    bbox: Any = None,
    geometry: Any = None,
    crs: Any = "EPSG:4326",
    time: Any = None,
    bands: Any = None,
    product: Any = None,
    expr: Any = None,
    index: Any = None,
    mask_clouds: Any = False,
    physical: Any = False,
    composite: Any = None,
    period: Any = None,
    group_by: Any = None,
    resolution: Any = None,
    as_of: Any = None,
    drop_empty: Any = False,
    memory_budget: Any = None,
    skip_missing: Any = False,
    resampling: Any = None,
    across_products: Any = False,
) -> Dict[str, Any]:
    """The dict ``_pixelquery.Warehouse.query`` takes."""
    given = [n for n, v in (("point", point), ("bbox", bbox), ("geometry", geometry)) if v is not None]
    if not given:
        raise InvalidInputError("a query needs point=, bbox= or geometry=")
    if len(given) > 1:
        raise InvalidInputError(f"give only one of point=, bbox= and geometry= (got {', '.join(given)})")
    spec: Dict[str, Any] = {"crs": _epsg(crs)}
    if point is not None:
        spec["point"] = _numbers(point, 2, "point", "(x, y)")
    if bbox is not None:
        spec["bbox"] = _numbers(bbox, 4, "bbox", "(minx, miny, maxx, maxy)")
    if geometry is not None:
        spec["point"], spec["geometry"] = _geometry(geometry)
    spec["time"] = _time(time)
    spec["bands"] = _strings(bands, "bands")
    products = _strings(product, "product")
    spec["product"] = list(products) if products else None
    spec["expr"] = _optional_str(expr, "expr")
    spec["index"] = _optional_str(index, "index")
    for name, flag in (
        ("mask_clouds", mask_clouds),
        ("physical", physical),
        ("drop_empty", drop_empty),
        ("skip_missing", skip_missing),
        ("across_products", across_products),
    ):
        if not isinstance(flag, (bool, np.bool_)):
            raise InvalidInputError(f"invalid {name}={flag!r}: expected True or False")
        spec[name] = bool(flag)
    spec["composite"] = _optional_str(composite, "composite")
    spec["period"] = _optional_str(period, "period")
    spec["group_by"] = _optional_str(group_by, "group_by")
    spec["resolution"] = None if resolution is None else _number(resolution, "resolution")
    if resampling is not None and resampling not in _QUERY_RESAMPLING:
        raise InvalidInputError(f"invalid resampling={resampling!r}: use {', '.join(_QUERY_RESAMPLING)}")
    spec["resampling"] = resampling
    if as_of is not None and (isinstance(as_of, bool) or not isinstance(as_of, numbers.Integral) or as_of < 0):
        raise InvalidInputError(f"invalid as_of={as_of!r}: expected a snapshot version (an integer >= 0)")
    spec["as_of"] = None if as_of is None else int(as_of)
    if memory_budget is not None and (
        isinstance(memory_budget, bool) or not isinstance(memory_budget, numbers.Integral) or memory_budget <= 0
    ):
        raise InvalidInputError(f"invalid memory_budget={memory_budget!r}: expected megabytes (an integer > 0)")
    spec["memory_budget"] = None if memory_budget is None else int(memory_budget)
    return spec


_CHUNK_DIMS = ("time", "band", "y", "x")
# Kernels a query paints with (default: nearest when upsampling, average when downsampling).
_QUERY_RESAMPLING = ("nearest", "near", "bilinear", "cubic", "average", "mode")


def normalise_chunks(chunks: Any) -> Optional[Dict[str, Optional[int]]]:
    """``{"x": 384, "y": 384}`` (``-1``/``None`` = one chunk), an int for x and y, or ``"auto"``
    (one grid tile per chunk). ``None`` means an eager (in-memory) cube."""
    if chunks is None:
        return None
    if isinstance(chunks, str):
        if chunks != "auto":
            raise InvalidInputError(f"invalid chunks={chunks!r}: use a dict like {{\"x\": 384, \"y\": 384}} or \"auto\"")
        return {}
    if isinstance(chunks, numbers.Integral) and not isinstance(chunks, bool):
        chunks = {"x": int(chunks), "y": int(chunks)}
    if not isinstance(chunks, Mapping):
        raise InvalidInputError(f"invalid chunks={chunks!r}: use a dict like {{\"x\": 384, \"y\": 384}}")
    out: Dict[str, Optional[int]] = {}
    for dim, size in chunks.items():
        if dim not in _CHUNK_DIMS:
            raise InvalidInputError(f"invalid chunks: unknown dimension {dim!r} (dimensions: {', '.join(_CHUNK_DIMS)})")
        if size is None or size == -1:
            out[dim] = None
        elif isinstance(size, numbers.Integral) and not isinstance(size, bool) and size > 0:
            out[dim] = int(size)
        else:
            raise InvalidInputError(f"invalid chunks[{dim!r}]={size!r}: expected a positive integer, -1 or None")
    return out


_RESAMPLING = ("nearest", "bilinear", "cubic", "average", "mode")


def ingest_options(
    *,
    product: Any = None,
    bands: Any = None,
    glob: Any = None,
    date_pattern: Any = None,
    resampling: Any = "nearest",
    crs: Any = None,
    tile_size: Any = None,
    commit_every: Any = None,
    jobs: Any = None,
    memory_budget: Any = 256,
    compression: Any = "none",
    cloud_band: Any = True,
    allow_mismatch: Any = False,
) -> Dict[str, Any]:
    """The CLI's ingest options as the dict ``_pixelquery.ingest`` takes."""
    if product is not None and not isinstance(product, (str, os.PathLike)):
        raise InvalidInputError(f"invalid product={product!r}: a profile id or a .toml/.json profile file")
    opts: Dict[str, Any] = {
        "product": None if product is None else os.fspath(product),
        "bands": _strings(bands, "bands"),
        "glob": _optional_str(glob, "glob"),
        "date_pattern": _optional_str(date_pattern, "date_pattern"),
    }
    if resampling not in _RESAMPLING:
        raise InvalidInputError(f"invalid resampling={resampling!r}: use {', '.join(_RESAMPLING)}")
    opts["resampling"] = resampling
    opts["crs"] = None if crs is None else _epsg(crs)
    opts["tile_size"] = None if tile_size is None else _number(tile_size, "tile_size")
    for name, value in (("commit_every", commit_every), ("jobs", jobs), ("memory_budget", memory_budget)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise InvalidInputError(f"invalid {name}={value!r}: expected a positive integer")
        opts[name] = None if value is None else int(value)
    if compression not in ("none", "lz4"):
        raise InvalidInputError(f"invalid compression={compression!r}: use \"none\" or \"lz4\"")
    opts["compression"] = compression
    for name, value in (("cloud_band", cloud_band), ("allow_mismatch", allow_mismatch)):
        if not isinstance(value, bool):
            raise InvalidInputError(f"invalid {name}={value!r}: expected True or False")
        opts[name] = value
    return opts


def _positive(value: Any, what: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidInputError(f"invalid {what}={value!r}: expected a positive integer")
    return int(value)


def search_spec(
    *,
    stac_api: Any,
    collections: Any,
    bbox: Any = None,
    intersects: Any = None,
    datetime: Any = None,
    filter: Any = None,  # noqa: A002 - the CLI's name
    max_items: Any = None,
    page_size: Any = None,
    provider: Any = None,
    product: Any = None,
    bands: Any = None,
    cloud_band: Any = True,
) -> Dict[str, Any]:
    """A STAC API search as the engine's ``SearchSpec`` (JSON); checked again there."""
    if not isinstance(stac_api, str) or not stac_api.strip():
        raise InvalidInputError(f"invalid stac_api={stac_api!r}: expected the API's URL")
    cols = _strings(collections, "collections")
    if not cols:
        raise InvalidInputError("invalid collections=None: name at least one collection")
    spec: Dict[str, Any] = {"api": stac_api, "collections": cols, "cloud_band": bool(cloud_band)}
    if bbox is not None:
        spec["bbox"] = list(_numbers(bbox, 4, "bbox", "(west, south, east, north) in degrees"))
    if intersects is not None:
        geometry = intersects.__geo_interface__ if hasattr(intersects, "__geo_interface__") else intersects
        if not isinstance(geometry, Mapping):
            raise InvalidInputError(
                f"invalid intersects={intersects!r}: expected a GeoJSON dict or a shapely geometry"
            )
        spec["intersects"] = json.loads(json.dumps(geometry))
    if datetime is not None:
        if isinstance(datetime, str):
            spec["datetime"] = datetime
        else:
            start, end = _time(datetime) or (None, None)
            spec["datetime"] = f"{start or '..'}/{end or '..'}"
    if filter is not None:
        spec["filter"] = _optional_str(filter, "filter")
    for key, value, what in (("max_items", max_items, "max_items"), ("limit", page_size, "page_size")):
        v = _positive(value, what)
        if v is not None:
            spec[key] = v
    if provider is not None:
        if provider not in ("earth-search", "planetary-computer", "generic"):
            raise InvalidInputError(
                f"invalid provider={provider!r}: use \"earth-search\", \"planetary-computer\" or \"generic\""
            )
        spec["provider"] = provider
    if product is not None:
        spec["product"] = os.fspath(product)
    b = _strings(bands, "bands")
    if b is not None:
        spec["bands"] = b
    return spec


def inputs_list(inputs: Any) -> list:
    """One input or a list of them (paths, folders, URLs, STAC files, .txt lists)."""
    if isinstance(inputs, (str, os.PathLike)):
        return [os.fspath(inputs)]
    if isinstance(inputs, Sequence):
        out = []
        for i in inputs:
            if not isinstance(i, (str, os.PathLike)):
                raise InvalidInputError(f"invalid input {i!r}: expected a path or URL")
            out.append(os.fspath(i))
        if out:
            return out
    raise InvalidInputError(f"invalid inputs={inputs!r}: expected a path, a URL or a non-empty list of them")
