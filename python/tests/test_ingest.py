"""Ingest from Python: the CLI's options, its report, progress without Python in rayon."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import pixelquery
import pixelquery.demo
from conftest import utm_box


def test_ingest_report_rerun_and_progress(scenes_dir, tmp_path):
    calls = []
    threads = set()

    def progress(done, total, nbytes, scene):
        calls.append((done, total, nbytes, scene))
        threads.add(threading.get_ident())

    wh_path = tmp_path / "wh"
    n = len(pixelquery.demo.DATES)
    report = pixelquery.ingest(wh_path, scenes_dir, product="sentinel2_l2a", commit_every=3, jobs=1, progress=progress)
    assert report["scenes_found"] == n and report["scenes_ingested"] == n
    assert report["failed"] == [] and report["fragments"] > 0
    assert len(report["versions"]) == -(-n // 3)  # one commit per 3 scenes
    # The callback runs on the calling thread only, and its last call reports the end.
    assert threads == {threading.get_ident()}
    assert calls[-1][:2] == (n, n) and calls[-1][2] > 0
    wh = pixelquery.open(wh_path)
    again = wh.ingest([scenes_dir], product="sentinel2_l2a", progress=False)
    assert again["scenes_ingested"] == 0 and len(again["skipped"]) == n
    assert wh.info()["scenes"] == n


def test_ingest_options_reach_the_engine(scenes_dir, tmp_path):
    files = sorted(str(p) for p in scenes_dir.glob("DEMO_2024030*_B0[48]_10m.tif"))
    report = pixelquery.ingest(
        tmp_path / "wh", files, compression="lz4", tile_size=1920, memory_budget=64, progress=False
    )
    assert report["scenes_ingested"] == 1
    wh = pixelquery.open(tmp_path / "wh")
    info = wh.info()
    assert info["compression"] == "lz4" and info["grid"]["tile_size"] == 1920
    assert info["products"].keys() == {"generic"}
    cube = wh.query(bbox=utm_box(0, 0, 32, 32), crs=32652, dtype="native")
    assert cube.shape == (1, 2, 32, 32)


def test_a_bad_scene_fails_alone(scenes_dir, tmp_path):
    bad = tmp_path / "DEMO_20240101_B04_10m.tif"
    bad.write_bytes(b"II*\x00garbage")
    good = sorted(str(p) for p in scenes_dir.glob("DEMO_20240305_*_10m.tif"))
    report = pixelquery.ingest(tmp_path / "wh", [str(bad), *good], product="sentinel2_l2a", progress=False)
    assert report["scenes_ingested"] == 1
    assert len(report["failed"]) == 1 and "DEMO_20240101" in report["failed"][0]["scene"]
    assert report["failed"][0]["reason"]
