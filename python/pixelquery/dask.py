"""PixelQuery on Dask.

- Lazy queries: ``Warehouse.query(..., chunks={"x": 384, "y": 384})`` returns a Dask-backed
  ``xarray.DataArray`` whose blocks are read by the engine where Dask runs them.
- Distributed ingest: :func:`ingest` spreads scenes over a ``dask.distributed`` cluster; each
  worker writes fragments and commits its own batches with the store's concurrent-writer
  protocol (create-if-absent log entries, retried on conflict), and the reports are merged.

The warehouse path must be reachable by every worker under the same name (a shared file
system, or an ``s3://`` URL once the store supports it).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from . import Warehouse, _pixelquery
from ._args import ingest_options, inputs_list
from .errors import InvalidInputError, NotFoundError

__all__ = ["ingest"]


def _ingest_batch(path: str, scenes: List[Dict[str, Any]], options: Dict[str, Any]) -> Dict[str, Any]:
    """Runs on a worker: ingests one batch of scenes and commits it."""
    report = json.loads(_pixelquery.ingest_scenes(path, scenes, options, None))
    try:
        from distributed import get_worker

        report["worker"] = get_worker().address
    except (ImportError, ValueError):
        report["worker"] = None
    return report


def _fragment_paths(path: str) -> set:
    from . import open as open_warehouse

    try:
        table = open_warehouse(path).catalog()
    except NotFoundError:
        return set()
    return set(zip(table.column("path").to_pylist(), table.column("tile").to_pylist()))


def _merge(reports: Sequence[Dict[str, Any]], found: int, seconds: float, tiles: int) -> Dict[str, Any]:
    merged: Dict[str, Any] = {
        "scenes_found": found,
        "scenes_ingested": sum(r["scenes_ingested"] for r in reports),
        "skipped": [s for r in reports for s in r["skipped"]],
        "failed": [s for r in reports for s in r["failed"]],
        "tile_observations": sum(r["tile_observations"] for r in reports),
        "tiles": tiles,
        "fragments": sum(r["fragments"] for r in reports),
        "bytes_in": sum(r["bytes_in"] for r in reports),
        "bytes_out": sum(r["bytes_out"] for r in reports),
        "seconds": seconds,
        "versions": sorted({v for r in reports for v in r["versions"]}),
        "batches": len(reports),
        "workers": sorted({r["worker"] for r in reports if r.get("worker")}),
    }
    return merged


def ingest(
    inputs: Any,
    warehouse: Union[str, "os.PathLike[str]", Warehouse],
    client: Any,
    *,
    batch_size: Optional[int] = None,
    **ingest_options_: Any,
) -> Dict[str, Any]:
    """Ingests ``inputs`` into ``warehouse`` on the workers of ``client`` (a
    ``dask.distributed.Client``) and returns the merged report.

    Scenes are found once here (``discover``), then split into batches of ``batch_size``
    scenes (default: about two batches per worker); each batch is one task that ingests and
    commits on its worker. A new warehouse is created by the first batch (it takes its grid
    from the first scene, as the command line does) before the others start. Options are
    those of :func:`pixelquery.ingest` (``product``, ``bands``, ``glob``, ``resampling``,
    ``commit_every``, ``jobs``, ``memory_budget``...).

    The report is :func:`pixelquery.ingest`'s, summed over batches: ``versions`` lists every
    commit, ``tiles`` the distinct tiles that received fragments, ``seconds`` the wall time,
    ``batches`` the number of tasks and ``workers`` the workers that ran them.
    """
    started = time.perf_counter()
    path = warehouse.path if isinstance(warehouse, Warehouse) else warehouse
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"invalid warehouse {warehouse!r}: expected a path or a pixelquery.Warehouse")
    path = os.path.abspath(os.fspath(path)) if "://" not in os.fspath(path) else os.fspath(path)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidInputError(f"invalid batch_size={batch_size!r}: expected a positive integer")
    options = ingest_options(**ingest_options_)
    scenes = _pixelquery.discover(inputs_list(inputs), options["glob"])
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    size = batch_size or max(1, -(-len(scenes) // (2 * workers)))
    before = _fragment_paths(path)
    reports: List[Dict[str, Any]] = []
    rest = scenes
    if not before and not os.path.exists(os.path.join(path, "pixelquery.json")):
        first, rest = scenes[:size], scenes[size:]
        reports.append(client.submit(_ingest_batch, path, first, options, pure=False).result())
    batches = [rest[i : i + size] for i in range(0, len(rest), size)]
    futures = [client.submit(_ingest_batch, path, batch, options, pure=False) for batch in batches]
    reports.extend(client.gather(futures))
    after = _fragment_paths(path)
    tiles = len({tile for _, tile in after - before})
    return _merge(reports, len(scenes), time.perf_counter() - started, tiles)
