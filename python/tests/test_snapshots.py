"""One ``Warehouse`` object answers from one version until ``refresh()``: queries made while
another writer commits share a time axis, ``refresh()`` moves on and lets the old snapshot go."""

from __future__ import annotations

import threading

import numpy as np

import pixelquery
import pixelquery.demo

DATES = pixelquery.demo.DATES


def _scene_files(scenes_dir, date):
    """The five band files of one demo date (one scene)."""
    files = sorted(scenes_dir.glob(f"DEMO_{date.replace('-', '')}_*.tif"))
    assert len(files) == 5, files
    return [str(f) for f in files]


def test_queries_share_one_version_while_an_ingest_commits(scenes_dir, tmp_path):
    path = tmp_path / "wh"
    pixelquery.ingest(path, _scene_files(scenes_dir, DATES[0]) + _scene_files(scenes_dir, DATES[1]), product="sentinel2_l2a", progress=False)
    wh = pixelquery.open(path)
    pinned = wh.version
    point = pixelquery.demo.sample_point()
    failures = []

    def writer():
        try:
            for date in DATES[2:]:  # one commit per scene
                pixelquery.ingest(path, _scene_files(scenes_dir, date), product="sentinel2_l2a", progress=False)
        except Exception as e:  # pragma: no cover - reported below
            failures.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    queries = 0
    while thread.is_alive() or queries == 0:
        red = wh.query(point=point, bands=["red"])
        nir = wh.query(point=point, bands=["nir"])
        # Two separate queries, one time axis: the pinned version's two dates.
        assert red.sizes["time"] == 2, red.time.values
        np.testing.assert_array_equal(red.time.values, nir.time.values)
        assert list(red.scene_id.values) == list(nir.scene_id.values)
        queries += 1
    thread.join()
    assert not failures, failures
    assert wh.version == pinned
    assert wh.info()["scenes"] == 2
    assert wh.catalog(kind="scenes").num_rows == 2
    latest = pixelquery.open(path).version
    assert latest >= pinned + len(DATES) - 2, "every scene was a commit of its own"

    # refresh(): the latest version, all dates, and only its snapshot is held.
    old = wh.query(point=point, bands=["red"], as_of=pinned)
    assert wh._native.held_versions() == [pinned]
    assert wh.refresh() == latest
    assert wh.version == latest
    assert wh._native.held_versions() == [latest]
    cube = wh.query(point=point, bands=["red", "nir"])
    assert cube.sizes["time"] == len(DATES)
    assert wh.info()["scenes"] == len(DATES)
    # An older version is still there when asked for by number (kept beside the current one).
    again = wh.query(point=point, bands=["red"], as_of=pinned)
    np.testing.assert_array_equal(again.values, old.values)
    assert wh._native.held_versions() == [latest, pinned]
    assert wh.refresh() == latest  # nothing new: nothing changes
    assert wh._native.held_versions() == [latest, pinned]


def test_the_objects_own_ingest_refreshes_it(scenes_dir, tmp_path):
    path = tmp_path / "wh"
    pixelquery.ingest(path, _scene_files(scenes_dir, DATES[0]), product="sentinel2_l2a", progress=False)
    wh = pixelquery.open(path)
    other = pixelquery.open(path)
    before = wh.version
    report = wh.ingest(_scene_files(scenes_dir, DATES[1]), product="sentinel2_l2a", progress=False)
    assert report["scenes_ingested"] == 1
    assert wh.version > before
    point = pixelquery.demo.sample_point()
    assert wh.query(point=point, bands=["red"]).sizes["time"] == 2
    # Another object over the same warehouse stays where it was until it refreshes.
    assert other.version == before
    assert other.query(point=point, bands=["red"]).sizes["time"] == 1
    other.refresh()
    assert other.query(point=point, bands=["red"]).sizes["time"] == 2
