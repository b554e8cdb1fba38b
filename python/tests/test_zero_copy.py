"""The DataArray's numpy array is the Rust cube's own buffer: no copy on the way to Python."""

from __future__ import annotations

import numpy as np

import pixelquery
from pixelquery import _xarray
from conftest import utm_box


def _spec(**kw):
    from pixelquery._args import query_spec

    return query_spec(bbox=utm_box(0, 0, 100, 80), crs=32652, **kw)


def test_the_array_is_the_rust_buffer(wh):
    raw = wh._native.query(_spec(bands=["B04", "B08"]), None)
    data = raw["data"]
    # numpy points at the address Rust allocated and filled, and the owner holds the Rust cube.
    assert data.__array_interface__["data"][0] == raw["data_address"]
    assert type(data.base).__name__ == "CubeBuffer"
    assert data.flags.c_contiguous and data.flags.writeable and data.flags.owndata is False
    cube = _xarray.from_raw(raw)
    assert cube.data is data  # xarray wraps it as is
    assert np.shares_memory(cube.values, data)


def test_native_cubes_too(wh):
    raw = wh._native.query(_spec(bands=["B04"]), "native")
    assert raw["data"].dtype == np.uint16
    assert raw["data"].__array_interface__["data"][0] == raw["data_address"]
    assert type(raw["data"].base).__name__ == "CubeBuffer"


def test_the_public_query_shares_memory_and_owns_it(wh):
    cube = wh.query(bbox=utm_box(0, 0, 100, 80), crs=32652, bands=["B04"])
    base = cube.data.base
    assert type(base).__name__ == "CubeBuffer"
    # Writing to the cube changes only this cube: it never aliases a mapped fragment.
    cube.values[:] = 1.0
    fresh = wh.query(bbox=utm_box(0, 0, 100, 80), crs=32652, bands=["B04"])
    assert not np.all(fresh.values == 1.0)


def test_a_freed_cube_lends_its_buffer_to_the_next_query(wh):
    # 8 dates x 4 bands x 512 x 512 float32: a cube large enough for the engine's buffer pool.
    from pixelquery._args import query_spec

    spec = query_spec(bbox=utm_box(0, 0, 512, 512), crs=32652, bands=["B02", "B03", "B04", "B08"])
    raw = wh._native.query(spec, None)
    assert raw["data"].nbytes >= 8 << 20
    address, values = raw["data_address"], raw["data"].copy()
    view = raw["data"][1:3]  # a view keeps the buffer alive: it is not lent while held
    del raw
    other = wh._native.query(spec, None)
    assert other["data_address"] != address
    np.testing.assert_array_equal(view, values[1:3])
    freed = {address, other["data_address"]}
    del view, other
    # Freed by numpy: the next cube of that size is painted into the same memory, every
    # element written again.
    raw = wh._native.query(spec, None)
    assert raw["data_address"] in freed
    np.testing.assert_array_equal(raw["data"], values)
