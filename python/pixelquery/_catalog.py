"""The live catalog of a snapshot as a ``pyarrow.Table`` with GeoParquet 1.1 columns: a WKB
``geometry`` (lon/lat footprints, CRS84) tagged ``geoarrow.wkb``, a ``bbox`` covering struct
and the ``geo`` schema metadata, so ``geopandas.GeoDataFrame.from_arrow(table)`` and
``pyarrow.parquet.write_table`` + any GeoParquet reader work on it as they are."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import pyarrow as pa

_TS = pa.timestamp("us", tz="UTC")
_BBOX = pa.struct([(n, pa.float64()) for n in ("xmin", "ymin", "xmax", "ymax")])
_CRS84 = "OGC:CRS84"

_FRAGMENTS = [
    ("tile", pa.string()),
    ("band", pa.string()),
    ("product", pa.string()),
    ("time_min", _TS),
    ("time_max", _TS),
    ("observations", pa.int64()),
    ("geometry", pa.binary()),
    ("bbox", _BBOX),
    ("resolution", pa.float64()),
    ("path", pa.string()),
    ("bytes", pa.int64()),
    ("checksum", pa.string()),
    ("dtype", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("valid_count", pa.int64()),
    ("valid_min", pa.float64()),
    ("valid_max", pa.float64()),
    ("valid_mean", pa.float64()),
]

_SCENES = [
    ("scene_id", pa.string()),
    ("source", pa.string()),
    ("acquired", _TS),
    ("product", pa.string()),
    ("geometry", pa.binary()),
    ("bbox", _BBOX),
    ("cloud_cover", pa.float64()),
    ("ingested", _TS),
    ("fingerprint", pa.string()),
]


def _geometry_field() -> pa.Field:
    return pa.field(
        "geometry",
        pa.binary(),
        nullable=False,
        metadata={
            "ARROW:extension:name": "geoarrow.wkb",
            "ARROW:extension:metadata": json.dumps({"crs": _CRS84}),
        },
    )


def _geo_metadata(boxes: List[Optional[List[float]]]) -> Dict[str, Any]:
    known = [b for b in boxes if b is not None]
    column: Dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon"],
        "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
    }
    if known:
        column["bbox"] = [
            min(b[0] for b in known),
            min(b[1] for b in known),
            max(b[2] for b in known),
            max(b[3] for b in known),
        ]
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}


def table(columns: Dict[str, Any], kind: str, version: int) -> pa.Table:
    """Builds the table from the extension's columns (``catalog_columns``)."""
    layout = _FRAGMENTS if kind == "fragments" else _SCENES
    boxes = columns["bbox"]
    arrays = []
    fields = []
    for name, typ in layout:
        values = columns[name]
        if name == "bbox":
            values = [None if b is None else dict(zip(("xmin", "ymin", "xmax", "ymax"), b)) for b in values]
        arrays.append(pa.array(values, type=typ))
        fields.append(_geometry_field() if name == "geometry" else pa.field(name, typ))
    metadata = {
        "geo": json.dumps(_geo_metadata(boxes)),
        "pixelquery.version": str(version),
        "pixelquery.kind": kind,
    }
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))
