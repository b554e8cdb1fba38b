"""Queries run without the GIL: other Python threads keep running meanwhile."""

from __future__ import annotations

import threading

from conftest import utm_box


def test_other_threads_run_during_a_query(wh):
    done = threading.Event()
    result = {}

    def work():
        # A 1024 x 1024 px cube at 5 m, 8 dates x 4 bands (134 MB): long enough to watch.
        result["cube"] = wh.query(bbox=utm_box(0, 0, 512, 512), crs=32652, resolution=5.0)
        done.set()

    thread = threading.Thread(target=work)
    ticks = 0
    thread.start()
    while not done.is_set():
        ticks += 1  # only possible while the query thread does not hold the GIL
    thread.join()
    assert result["cube"].shape == (8, 4, 1024, 1024)
    assert ticks > 1000
