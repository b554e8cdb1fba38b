"""A warehouse kept open while ingests commit, one scene a version: every version's queries
go through one bounded fragment cache, shared by the versions (issue #24's long life)."""

from __future__ import annotations

import shutil

import numpy as np

import pixelquery
import pixelquery.demo


def test_a_warehouse_follows_versions_within_its_cache(scenes_dir, tmp_path):
    wh_path = tmp_path / "wh"
    lon, lat = pixelquery.demo.sample_point()
    box = (lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
    wh = None
    stats = []
    for n, date in enumerate(pixelquery.demo.DATES, start=1):
        one = tmp_path / f"date{n}"
        one.mkdir()
        stamp = date.replace("-", "")
        for f in scenes_dir.glob(f"DEMO_{stamp}_*.tif"):
            shutil.copy(f, one / f.name)
        pixelquery.ingest(wh_path, [one], product="sentinel2_l2a", progress=False)
        if wh is None:
            wh = pixelquery.open(wh_path, cache_mb=4)
        wh.refresh()  # a Warehouse answers from its pinned version until refreshed
        cube = wh.query(bbox=box, bands=["red", "nir"])
        assert cube.sizes["time"] == n
        # The latest version's answer equals a fresh warehouse's.
        fresh = pixelquery.open(wh_path).query(bbox=box, bands=["red", "nir"])
        np.testing.assert_array_equal(cube.values, fresh.values)
        stats.append(wh._native.cache_stats())
    last = stats[-1]
    assert all(s["bytes"] <= 4 << 20 for s in stats), stats
    assert last["snapshots"] == [wh.version], "refresh lets the old snapshots go"

    assert last["evictions"] > 0, "the 4 MiB budget was reached and held"
    assert sum(s["hits"] for s in stats) > 0, "versions share what earlier ones opened"


def test_cache_mb_is_checked_and_survives_pickling(warehouse_path):
    import pickle

    import pytest

    with pytest.raises(pixelquery.InvalidInputError, match="cache_mb"):
        pixelquery.open(warehouse_path, cache_mb=-1)
    wh = pickle.loads(pickle.dumps(pixelquery.open(warehouse_path, cache_mb=7)))
    assert wh._native.cache_stats()["max_bytes"] == 7 << 20
