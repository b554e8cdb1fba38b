"""Lazy, Dask-backed queries: the output grid is split into blocks aligned to the warehouse's
tile grid, and each block is one engine query (a box in the grid CRS at the query's
resolution), run wherever Dask runs the task. Nothing but coordinates is computed up front:

- the output grid comes from ``output_grid`` (the engine's rules, no pixels read);
- the time axis, band names and sample type come from the same query run at one coarse
  pixel (a "probe": it sees the same tiles, fragments and observations, and paints almost
  nothing);
- every block maps its time steps onto that axis by scene id (a block that sees fewer scenes
  leaves the other steps invalid), and polygon queries mask each block with the polygon.
All blocks read one snapshot: the version the warehouse object is pinned to when the graph is
built (the one its eager queries read).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import xarray as xr

from . import _xarray
from .errors import InvalidInputError, NoDataError

_TIME_CHUNKABLE_HINT = "time chunks need plain time steps (no composite= or group_by=)"


def _split(total: int, size: Optional[int], offset: int = 0) -> Tuple[int, ...]:
    """Chunk lengths over ``total`` items whose first item has global index ``offset``; chunk
    edges fall on multiples of ``size`` (grid tile edges when ``size`` is the tile size)."""
    if size is None or total == 0:
        return (total,)
    out: List[int] = []
    pos = 0
    step = size - (offset % size)
    while pos < total:
        step = min(step, total - pos)
        out.append(step)
        pos += step
        step = size
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _open(path: str) -> Any:
    from . import open as open_warehouse

    return open_warehouse(path)


_open_lock = threading.Lock()


def _warehouse(path: str) -> Any:
    with _open_lock:
        return _open(path)


def _read_block(
    path: str,
    spec: Dict[str, Any],
    dtype: Optional[str],
    layout: Dict[str, Any],
    block_info: Optional[Dict[Any, Any]] = None,
) -> np.ndarray:
    """One block: an engine query of its box, reindexed onto the global time axis."""
    (t0, t1), (b0, b1), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    shape = (t1 - t0, b1 - b0, r1 - r0, c1 - c0)
    out_dtype = np.dtype(layout["dtype"])
    fill = layout["fill"]
    x0, res, _, y0, _, _ = layout["transform"]
    bounds = (x0 + c0 * res, y0 - r1 * res, x0 + c1 * res, y0 - r0 * res)
    inset = res * 1e-6  # keep float error from adding a pixel when the edges are snapped
    block = dict(spec)
    block.update(
        point=None,
        geometry=None,
        bbox=(bounds[0] + inset, bounds[1] + inset, bounds[2] - inset, bounds[3] - inset),
        crs=layout["epsg"],
        resolution=res,
    )
    scenes: Sequence[Sequence[str]] = layout["scenes"][t0:t1]
    if (t0, t1) != (0, len(layout["scenes"])):
        block["time"] = (layout["time_text"][t0], layout["time_text"][t1 - 1])
    if (b0, b1) != (0, len(layout["bands"])):
        block["bands"] = list(layout["bands"][b0:b1])
    warehouse = _warehouse(path)
    try:
        raw = warehouse._native.query(block, dtype)
    except NoDataError:
        return np.full(shape, fill, dtype=out_dtype)
    data = raw["data"]
    if data.shape[1:] != shape[1:]:
        raise RuntimeError(
            f"pixelquery: block {bounds} came back as {data.shape[1:]}, expected {shape[1:]}"
        )
    step_of = {scene: i for i, ss in enumerate(scenes) for scene in ss}
    index = [step_of.get(ss[0]) if ss else None for ss in raw["scenes"]]
    if index != list(range(len(scenes))):
        full = np.full(shape, fill, dtype=out_dtype)
        for i, target in enumerate(index):
            if target is None:
                raise RuntimeError(f"pixelquery: block {bounds} returned scenes {raw['scenes'][i]} not in the query's time axis")
            full[target] = data[i]
        data = full
    if layout["polygon"]:
        mask = warehouse._native.region_mask(spec, [bounds[0], res, 0.0, bounds[3], 0.0, -res], c1 - c0, r1 - r0)
        if mask is not None:
            data = np.where(mask, data, np.asarray(fill, dtype=out_dtype))
    return data


def query(warehouse: Any, spec: Dict[str, Any], dtype: Optional[str], chunks: Dict[str, Optional[int]]) -> xr.DataArray:
    """The lazy cube of ``spec``; see :meth:`pixelquery.Warehouse.query`."""
    import dask.array as da

    native = warehouse._native
    spec = dict(spec)
    if spec["as_of"] is None:
        spec["as_of"] = native.version  # the pinned version: the eager queries' too
    transform, width, height = native.output_grid(spec)
    res = transform[1]
    # The probe: the same query at one pixel as large as the whole output (its time axis,
    # bands and sample type are the output's). Nearest: it reads one source pixel per
    # fragment, where the default for a coarser output (average) would read them all.
    probe = dict(spec, resolution=max(width, height) * res, resampling="nearest")
    raw = native.query(probe, dtype)
    grid = warehouse.grid
    epsg = raw["epsg"]
    times_ns = raw["times_ns"]
    bands = list(raw["bands"])
    out_dtype = raw["data"].dtype
    fill = np.nan if raw["nodata"] is None else out_dtype.type(raw["nodata"]).item()
    plain_steps = spec["composite"] is None and spec["group_by"] is None
    if spec["composite"] is not None and spec["period"] not in (None, "all", "month", "monthly", "year", "yearly"):
        raise InvalidInputError(
            f"period={spec['period']!r} cannot be chunked: N-day bins start at each chunk's first observation; use month, year or no chunks"
        )
    if chunks.get("time") is not None and not plain_steps:
        raise InvalidInputError(f"invalid chunks: {_TIME_CHUNKABLE_HINT}")
    if chunks.get("band") is not None and (spec["expr"] or spec["index"]):
        raise InvalidInputError("invalid chunks: band chunks need plain bands (no expr= or index=)")
    tile_px = max(1, int(round(grid["tile_size"] / res)))
    col0 = int(round((transform[0] - grid["origin_x"]) / res))
    row0 = int(round((grid["origin_y"] - transform[3]) / res))
    if spec.get("point") is not None:
        xy = ((1,), (1,))
    else:
        xy = (
            _split(height, chunks.get("y", tile_px) or None, row0),
            _split(width, chunks.get("x", tile_px) or None, col0),
        )
    nt, nb = len(times_ns), len(bands)
    all_chunks = (_split(nt, chunks.get("time")), _split(nb, chunks.get("band")), xy[0], xy[1])
    time_text = [str(np.datetime_as_string(t, unit="us")) for t in np.asarray(times_ns, dtype=np.int64).view("datetime64[ns]")]
    layout = {
        "transform": list(transform),
        "epsg": epsg,
        "dtype": out_dtype.str,
        "fill": fill,
        "scenes": [list(s) for s in raw["scenes"]],
        "bands": bands,
        "time_text": time_text,
        "polygon": spec.get("geometry") is not None,
    }
    from dask.base import tokenize

    read = functools.partial(_read_block, warehouse.path, spec, dtype, layout)
    array = da.map_blocks(
        read,
        chunks=all_chunks,
        dtype=out_dtype,
        meta=np.empty((0, 0, 0, 0), dtype=out_dtype),
        name="pixelquery-" + tokenize(warehouse.path, spec, dtype, layout, all_chunks),
    )
    coords = _xarray.coordinates(
        times_ns, raw["scenes"], bands, epsg, transform, height, width, raw["band_sources"], raw.get("products")
    )
    return _xarray.data_array(array, coords, _xarray.attrs(epsg, raw["nodata"], out_dtype))
