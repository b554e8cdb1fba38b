"""The README's Python example runs as written (in a scratch directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("geopandas")
    pytest.importorskip("rioxarray")
    pytest.importorskip("odc.geo.xr")
    text = README.read_text()
    section = text[text.index("## Python\n") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    cube, ndvi, raw, lazy = scope["cube"], scope["ndvi"], scope["raw"], scope["lazy"]
    assert cube.dims == ("time", "band", "y", "x") and cube.sizes["band"] == 2
    assert ndvi.shape[1:] == (1, 1, 1)
    assert str(raw.dtype) == "uint16" and raw.attrs["nodata"] == 0
    assert lazy.chunks is not None
    assert len(scope["gdf"]) == scope["wh"].info()["fragments"]
