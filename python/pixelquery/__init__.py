"""PixelQuery: Cloud-Optimized GeoTIFFs in, an analysis-ready time-series cube out.

Ingest scenes once (``pixelquery.ingest``), then query any pixel, box or polygon over time
(``pixelquery.open(path).query(...)``) and get an ``xarray.DataArray`` ``(time, band, y, x)``
whose pixels are the Rust engine's own buffer, or a lazy Dask array with ``chunks=``.
Long calls release the GIL; errors are :mod:`pixelquery.errors` exceptions.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Union

from . import _pixelquery
from ._args import ingest_options, inputs_list, normalise_chunks, normalise_dtype, query_spec, search_spec
from .errors import (
    ConflictError,
    InvalidInputError,
    NoDataError,
    NotFoundError,
    PixelQueryError,
    TooLargeError,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow
    import xarray

__version__: str = _pixelquery.__version__

__all__ = [
    "open",
    "ingest",
    "Warehouse",
    "PixelQueryError",
    "NotFoundError",
    "NoDataError",
    "InvalidInputError",
    "ConflictError",
    "TooLargeError",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[bool, Callable[[int, int, int, str], Any], None]


def open(path_or_url: PathLike, *, cache_mb: int = 256) -> "Warehouse":  # noqa: A001 - mirrors the library's name
    """Opens the warehouse at ``path_or_url`` (a directory; ``s3://`` once the store has it).

    Opened fragments are cached for repeated queries in at most ``cache_mb`` MiB, shared by
    every version the warehouse is queried at (a warehouse kept open while ingests commit
    does not grow with the versions it sees).

    Raises :class:`NotFoundError` when there is no warehouse there.
    """
    if not isinstance(path_or_url, (str, os.PathLike)):
        raise InvalidInputError(f"invalid warehouse {path_or_url!r}: expected a path or URL")
    if isinstance(cache_mb, bool) or not isinstance(cache_mb, int) or cache_mb < 0:
        raise InvalidInputError(f"invalid cache_mb {cache_mb!r}: expected a number of MiB >= 0")
    path = os.fspath(path_or_url)
    if "://" not in path:
        path = os.path.abspath(path)  # Dask workers may run elsewhere in the tree
    return Warehouse(_pixelquery.Warehouse.open(path, cache_mb), cache_mb)


def _reopen(path: str, cache_mb: int) -> "Warehouse":
    """Unpickles a :class:`Warehouse` (Dask workers open it by path)."""
    return open(path, cache_mb=cache_mb)


def _progress_printer(stream: Any = None) -> Callable[[int, int, int, str], None]:
    """A one-line progress display on stderr (rewritten in place on a terminal)."""
    stream = stream or sys.stderr
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    state = {"shown": -1}

    def show(done: int, total: int, nbytes: int, scene: str) -> None:
        if done == state["shown"] and done != total:
            return
        state["shown"] = done
        line = f"ingest: {done}/{total} scenes, {nbytes / 1e6:.1f} MB read" + (f"  {scene}" if scene else "")
        if interactive:
            stream.write("\r" + line[:120].ljust(120) + ("\n" if done == total and total else ""))
        elif done == total or done % 10 == 0:
            stream.write(line + "\n")
        stream.flush()

    return show


def _callback(progress: Progress) -> Optional[Callable[[int, int, int, str], Any]]:
    if progress is True:
        return _progress_printer()
    if progress is False or progress is None:
        return None
    if callable(progress):
        return progress
    raise InvalidInputError(
        f"invalid progress={progress!r}: True, False, or a callable(done, total, bytes, scene)"
    )


def ingest(
    warehouse: PathLike,
    inputs: Any = None,
    *,
    progress: Progress = True,
    stac_api: Optional[str] = None,
    collections: Any = None,
    bbox: Any = None,
    intersects: Any = None,
    datetime: Any = None,
    filter: Optional[str] = None,  # noqa: A002 - the CLI's name
    max_items: Optional[int] = None,
    page_size: Optional[int] = None,
    provider: Optional[str] = None,
    update: bool = False,
    **options: Any,
) -> Dict[str, Any]:
    """Ingests ``inputs`` into the warehouse at ``warehouse`` (created when missing).

    ``inputs``: files, folders (recursive), ``http(s)://``/``s3://`` URLs, STAC Item or
    ItemCollection ``.json`` files, or ``.txt`` URL lists. Options as on the command line:
    ``product``, ``bands``, ``glob``, ``date_pattern``, ``resampling``, ``crs``, ``tile_size``,
    ``commit_every``, ``jobs``, ``memory_budget`` (MB), ``compression`` (``"none"``/``"lz4"``),
    ``cloud_band`` (with ``bands``, STAC items also bring the product's cloud band; default
    ``True``), ``allow_mismatch`` (ingest STAC items whose projection or footprint disagree
    with their files, with a warning).
    ``progress``: ``True`` prints to stderr, or a ``callable(done, total, bytes, scene)``
    called a few times a second from the calling thread.

    Instead of ``inputs``, ``stac_api=URL`` with ``collections`` (and ``bbox`` or
    ``intersects``, ``datetime``, ``filter`` in CQL2 text, ``max_items``, ``page_size``,
    ``provider``) searches a STAC API and ingests the items found, by ``product`` (default: by
    collection) and ``bands``; the search is recorded in the warehouse, and ``update=True``
    runs every recorded search again, ingesting only what is new.

    Returns the report (``pixelquery ingest --json``): scenes found, ingested, skipped and
    failed (with reasons), tiles, fragments, bytes, seconds, committed versions, and what
    each search did (``stac``). Committed scenes are skipped, so running the same call again
    finishes an interrupted run.
    """
    if not isinstance(warehouse, (str, os.PathLike)):
        raise InvalidInputError(f"invalid warehouse {warehouse!r}: expected a path")
    given = [n for n, v in (("inputs", inputs), ("stac_api", stac_api), ("update", update or None)) if v is not None]
    if len(given) != 1:
        raise InvalidInputError(
            "give inputs, stac_api=URL (with collections) or update=True: exactly one"
            + (f" (got {', '.join(given)})" if given else "")
        )
    search_args = {
        "collections": collections, "bbox": bbox, "intersects": intersects, "datetime": datetime,
        "filter": filter, "max_items": max_items, "page_size": page_size, "provider": provider,
    }
    if stac_api is None and any(v is not None for v in search_args.values()):
        used = ", ".join(k for k, v in search_args.items() if v is not None)
        raise InvalidInputError(f"{used}: search options need stac_api=URL")
    if update and ("product" in options or "bands" in options):
        raise InvalidInputError("update=True runs the recorded searches with their own product and bands")
    callback = _callback(progress)
    if stac_api is not None:
        product = options.pop("product", None)
        bands = options.pop("bands", None)
        opts = ingest_options(**options)
        spec = search_spec(
            stac_api=stac_api, product=product, bands=bands, cloud_band=opts["cloud_band"], **search_args
        )
        report = _pixelquery.ingest_search(os.fspath(warehouse), json.dumps(spec), opts, callback)
    elif update:
        report = _pixelquery.ingest_update(os.fspath(warehouse), ingest_options(**options), callback)
    else:
        opts = ingest_options(**options)
        report = _pixelquery.ingest(os.fspath(warehouse), inputs_list(inputs), opts, callback)
    return json.loads(report)


class Warehouse:
    """An open warehouse, pinned to one version: every query, ``info()`` and ``catalog()``
    without ``as_of=`` answers from the version that was the latest when it was opened, until
    :meth:`refresh` moves it to the latest one (its own :meth:`ingest` refreshes too). So
    separate queries share a time axis while other processes ingest, and repeated queries
    reuse the pinned snapshot's opened fragments.

    Picklable (by path), so Dask workers can open it too.
    """

    def __init__(self, native: "_pixelquery.Warehouse", cache_mb: int = 256) -> None:
        self._native = native
        self._cache_mb = cache_mb

    @property
    def path(self) -> str:
        """The warehouse directory."""
        return self._native.path

    @property
    def grid(self) -> Dict[str, Any]:
        """The tile grid: ``epsg``, ``origin_x``, ``origin_y``, ``tile_size`` (grid units)."""
        epsg, ox, oy, size = self._native.grid
        return {"epsg": epsg, "origin_x": ox, "origin_y": oy, "tile_size": size}

    @property
    def version(self) -> int:
        """The version this object answers from (pinned until :meth:`refresh`)."""
        return self._native.version

    def refresh(self) -> int:
        """Moves to the latest committed version and returns it. The snapshot of the old
        version is released (its catalog and opened fragments are freed once no running
        query uses them); queries with ``as_of=`` still reach any readable version."""
        return self._native.refresh()

    def __repr__(self) -> str:
        return f"pixelquery.Warehouse({self.path!r})"

    def __reduce__(self) -> Any:
        return (_reopen, (self.path, self._cache_mb))

    def info(self, as_of: Optional[int] = None) -> Dict[str, Any]:
        """What ``pixelquery info --json`` prints: grid, compression, version, snapshots,
        products and their bands, scenes, time span, tiles, fragments, bytes; of snapshot
        ``as_of`` (the pinned version by default)."""
        return json.loads(self._native.info_json(_version(as_of)))

    def catalog(self, as_of: Optional[int] = None, *, kind: str = "fragments") -> "pyarrow.Table":
        """The live catalog rows of snapshot ``as_of`` (the pinned version, :attr:`version`, by default) as a
        ``pyarrow.Table`` with GeoParquet columns (WKB ``geometry`` in lon/lat, ``bbox``):
        ``kind="fragments"`` (one row per fragment: tile, band, product, time span, counts,
        footprint, path, checksum, statistics) or ``kind="scenes"`` (one row per scene).

        ``geopandas.GeoDataFrame.from_arrow(table)`` reads it as it is.
        """
        from . import _catalog

        if kind not in ("fragments", "scenes"):
            raise InvalidInputError(f"invalid kind={kind!r}: use \"fragments\" or \"scenes\"")
        version, columns = self._native.catalog_columns(kind, _version(as_of))
        return _catalog.table(columns, kind, version)

    def query(
        self,
        *,
        point: Optional[Sequence[float]] = None,
        bbox: Optional[Sequence[float]] = None,
        geometry: Any = None,
        crs: Any = "EPSG:4326",
        time: Any = None,
        bands: Union[str, Sequence[str], None] = None,
        product: Union[str, Sequence[str], None] = None,
        expr: Optional[str] = None,
        index: Optional[str] = None,
        mask_clouds: bool = False,
        physical: bool = False,
        composite: Optional[str] = None,
        period: Optional[str] = None,
        group_by: Optional[str] = None,
        resolution: Optional[float] = None,
        as_of: Optional[int] = None,
        dtype: Any = None,
        chunks: Any = None,
        drop_empty: bool = False,
        memory_budget: Optional[int] = None,
        skip_missing: bool = False,
        resampling: Optional[str] = None,
        across_products: bool = False,
    ) -> "xarray.DataArray":
        """A time-series cube as an ``xarray.DataArray`` with dims ``(time, band, y, x)``.

        Where: ``point=(x, y)``, ``bbox=(minx, miny, maxx, maxy)`` or ``geometry=`` (a GeoJSON
        dict or shapely (multi)polygon; pixels outside are invalid), in ``crs`` (default
        ``"EPSG:4326"``, lon/lat; an EPSG number or a pyproj/rasterio CRS work too).
        When: ``time=("2023-04-01", "2023-09-30")`` (inclusive; a date as the end means the whole
        day; ``None`` on either side is open; datetimes and ``numpy.datetime64`` work too).
        What: ``bands=["red", "nir"]`` (names or aliases; default: all but quality bands),
        ``product="sentinel2_l2a"`` or a list such as ``["sentinel2_l2a", "landsat8_c2l2"]``
        (several products share one time axis, bands are resolved by alias per product and
        values are physical, each product's own scale and offset, not harmonised; without
        ``product=`` every product holding the bands takes part), ``skip_missing=True`` (leave
        out a named product that lacks a band instead of failing),
        ``expr="(nir - red) / (nir + red)"``
        or ``index="ndvi"`` (``evi``, ``ndwi``, ``nbr``), ``mask_clouds=True`` (the product's
        cloud rule), ``physical=True`` (scale/offset applied).
        How: ``composite="median"`` (``mean``, ``min``, ``max``, ``count``, ``first``, ``last``)
        per ``period`` (``"month"``, ``"year"``, ``"16d"``; default the whole range),
        ``group_by="solar_day"`` (scenes of one day mosaicked, within a product; with
        ``across_products=True`` across products too), ``resolution=`` (grid units; default
        the finest band), ``resampling=`` (``"nearest"``, ``"bilinear"``, ``"cubic"``,
        ``"average"``, ``"mode"``: how coarser or finer bands are painted onto that grid;
        default nearest when upsampling, average when downsampling), ``as_of=`` (a snapshot
        version).

        Snapshot: without ``as_of=`` the query reads the version this object is pinned to
        (:attr:`version`), whatever was committed since; :meth:`refresh` moves on.

        Time axis: every scene covering the place is a time step, dates without a valid pixel
        there included (all NaN / nodata), so two queries over one place share a time axis;
        ``drop_empty=True`` drops those. A time range without observations gives zero time
        steps, not an error.

        ``dtype=None`` gives float32 with NaN where invalid; ``dtype="native"`` keeps the bands'
        sample type (e.g. uint16, half the memory) with the invalid value in ``attrs["nodata"]``.

        The data is the engine's own buffer (no copy). ``chunks={"x": 384, "y": 384}`` (or
        ``"auto"``: one grid tile per chunk) returns a lazy Dask-backed DataArray instead, each
        chunk read by the engine where Dask runs it, so the whole cube never has to fit in one
        process. A cube held whole must fit in ``memory_budget`` (MB; default a quarter of the
        RAM), else :class:`TooLargeError` names its size.

        Coordinates: ``time`` (datetime64[ns]), ``band`` (the names as asked: ``red`` stays
        ``red``), ``band_source`` (per band: the stored band, e.g. ``B04``, or the expression),
        ``y``/``x`` (pixel centres in the grid CRS), ``scene_id`` and ``product`` (per time step), and ``spatial_ref`` (``crs_wkt``, ``GeoTransform``)
        for rioxarray (``.rio.crs``, ``.rio.transform()``, ``.rio.to_raster``) and odc-geo
        (``.odc.geobox``).
        """
        spec = query_spec(
            point=point,
            bbox=bbox,
            geometry=geometry,
            crs=crs,
            time=time,
            bands=bands,
            product=product,
            expr=expr,
            index=index,
            mask_clouds=mask_clouds,
            physical=physical,
            composite=composite,
            period=period,
            group_by=group_by,
            resolution=resolution,
            as_of=as_of,
            drop_empty=drop_empty,
            memory_budget=memory_budget,
            skip_missing=skip_missing,
            resampling=resampling,
            across_products=across_products,
        )
        dtype_name = normalise_dtype(dtype)
        chunk_sizes = normalise_chunks(chunks)
        if chunk_sizes is not None:
            if spec["drop_empty"]:
                raise InvalidInputError(
                    "drop_empty=True needs the whole cube to know which dates are empty: not with chunks= "
                    "(drop them afterwards, e.g. cube.dropna('time', how='all'))"
                )
            from . import _chunked

            return _chunked.query(self, spec, dtype_name, chunk_sizes)
        from . import _xarray

        try:
            raw = self._native.query(spec, dtype_name)
        except TooLargeError as e:
            message = str(e)
            if "chunks=" not in message:
                message += ", or pass chunks= for a lazy Dask cube"
            raise TooLargeError(message) from None
        return _xarray.from_raw(raw)

    def ingest(self, inputs: Any = None, *, progress: Progress = True, **options: Any) -> Dict[str, Any]:
        """Ingests ``inputs`` (or a STAC API search, or ``update=True``) into this warehouse, then
        refreshes it (:meth:`refresh`: queries see what was ingested); see :func:`pixelquery.ingest` for the options and the report."""
        try:
            return ingest(self.path, inputs, progress=progress, **options)
        finally:
            self.refresh()


def _version(as_of: Any) -> Optional[int]:
    """A checked snapshot version, or ``None``."""
    if as_of is not None and (isinstance(as_of, bool) or not isinstance(as_of, int) or as_of < 0):
        raise InvalidInputError(f"invalid as_of={as_of!r}: expected a snapshot version (an integer >= 0)")
    return as_of
