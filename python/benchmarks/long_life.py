"""A Python `Warehouse` kept open while an ingest commits one scene per version (issue #24):
prints the process's resident memory after each version's query.

    python python/benchmarks/long_life.py --versions 300 --cache-mb 64 [--work DIR]

Each version is one date of the demo series under a new name and date (so every commit adds
a scene); after each commit the open warehouse queries a 1 km box's red and NIR series (all
the versions so far), as a notebook following an ingest would.
"""

import argparse
import datetime
import pathlib
import shutil
import tempfile

import pixelquery
import pixelquery.demo


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=300)
    ap.add_argument("--cache-mb", type=int, default=64)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="pq-long-life-"))
    scenes = work / "scenes"
    pixelquery.demo.write_scenes(scenes)
    wh_path = work / "wh"
    lon, lat = pixelquery.demo.sample_point()
    box = (lon - 0.005, lat - 0.004, lon + 0.005, lat + 0.004)
    start = datetime.date(2025, 1, 1)
    wh = None
    for i in range(args.versions):
        source = pixelquery.demo.DATES[i % len(pixelquery.demo.DATES)].replace("-", "")
        day = (start + datetime.timedelta(days=i)).strftime("%Y%m%d")
        one = work / f"v{i:05}"
        one.mkdir()
        for f in scenes.glob(f"DEMO_{source}_*.tif"):
            band = f.name.split("_", 2)[2]
            shutil.copy(f, one / f"V{i:05}_{day}_{band}")
        pixelquery.ingest(wh_path, [one], product="sentinel2_l2a", date_pattern=r"_(\d{8})_",
                          progress=False)
        shutil.rmtree(one)
        if wh is None:
            wh = pixelquery.open(wh_path, cache_mb=args.cache_mb)
        cube = wh.query(bbox=box, bands=["red", "nir"])
        assert cube.sizes["time"] == i + 1
        del cube
        s = wh._native.cache_stats()
        if i % 10 == 0 or i == args.versions - 1:
            print(f"version {wh.version:5}  scenes {i + 1:5}  rss {rss_mb():7.1f} MB  "
                  f"cache {s['bytes'] / 2**20:6.1f} MB in {s['entries']} entries ({s['files']} files)", flush=True)


if __name__ == "__main__":
    main()
