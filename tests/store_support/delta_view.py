"""What the `deltalake` package sees in PixelQuery catalogs.

argv[1]: a JSON list of [warehouse_dir, version] pairs. Prints a JSON list, one entry per
pair: {"fragments": [...], "scenes": [...]} (rows sorted by path / scene id, in the shape of
`pixelquery info --json --rows`), or {"error": "..."} when deltalake cannot load the version.
"""
import json
import os
import sys

import deltalake

FRAGMENT = ["tile", "band", "product", "time_min", "time_max", "observations", "resolution",
            "path", "bytes", "checksum", "dtype", "width", "height", "valid_count"]
SCENE = ["scene_id", "source", "acquired", "product", "cloud_cover", "fingerprint", "ingested",
         "scaling"]


def value(v):
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return v


def view(root, version):
    try:
        table = deltalake.DeltaTable(root + "/catalog", version=version).to_pyarrow_table()
    except Exception as e:  # noqa: BLE001 - the message is the result
        return {"error": f"{type(e).__name__}: {e}"}
    rows = table.to_pylist()
    fragments = [{k: value(r[k]) for k in FRAGMENT} for r in rows if r["kind"] == "fragment"]
    # Columns added later (scaling) are absent from versions written before them.
    scenes = [{k: value(r.get(k)) for k in SCENE} for r in rows if r["kind"] == "scene"]
    for r in rows:
        if r["kind"] not in ("fragment", "scene"):
            return {"error": f"unexpected kind {r['kind']!r}"}
    return {
        "fragments": sorted(fragments, key=lambda r: r["path"]),
        "scenes": sorted(scenes, key=lambda r: r["scene_id"]),
    }


print(json.dumps([view(root, version) for root, version in json.loads(sys.argv[1])]))
sys.stdout.flush()
# deltalake's native threads can abort the interpreter's shutdown ("terminate called without an
# active exception"); the answer is printed, so leave without running it.
os._exit(0)
