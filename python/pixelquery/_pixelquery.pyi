"""Type stubs of the Rust extension module (``pixelquery._pixelquery``).

The public API is the Python package (``pixelquery``); these are its building blocks.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

__version__: str
DEMO_DATES: List[str]
DEMO_CLOUDY_DATE: str

ProgressCallback = Callable[[int, int, int, str], Any]

class Warehouse:
    @staticmethod
    def open(path: str, cache_mb: int = 256) -> Warehouse: ...
    def cache_stats(self) -> Dict[str, Any]:
        """``{files, entries, bytes, max_bytes, hits, misses, evictions, snapshots}``."""
    @property
    def path(self) -> str: ...
    @property
    def grid(self) -> Tuple[int, float, float, float]: ...
    @property
    def version(self) -> int: ...
    def refresh(self) -> int: ...
    def held_versions(self) -> List[int]: ...
    def latest_version(self) -> int: ...
    def info_json(self, as_of: Optional[int] = None) -> str: ...
    def catalog_columns(self, kind: str, as_of: Optional[int] = None) -> Tuple[int, Dict[str, Any]]: ...
    def query(self, spec: Dict[str, Any], dtype: Optional[str] = None) -> Dict[str, Any]:
        """``{data, data_address, times_ns, scenes, products, bands, band_sources, epsg, transform, nodata}``;
        ``spec["product"]`` is ``None`` or a list of product ids."""
    def time_engine(self, spec: Dict[str, Any], dtype: Optional[str] = None, runs: int = 1) -> List[float]:
        """Seconds of each of ``runs`` runs of the query in Rust alone (no Python objects)."""
    def output_grid(self, spec: Dict[str, Any]) -> Tuple[List[float], int, int]: ...
    def region_mask(
        self, spec: Dict[str, Any], transform: Sequence[float], width: int, height: int
    ) -> Optional[npt.NDArray[np.bool_]]: ...

class CubeBuffer:
    """The base object of a query's numpy array: holds the Rust cube's buffer and hands it
    back to the engine's buffer pool when numpy frees the array."""

def crs_wkt(epsg: int) -> str: ...
def ingest(
    warehouse: str, inputs: List[str], options: Dict[str, Any], progress: Optional[ProgressCallback] = None
) -> str: ...
def discover(inputs: List[str], glob: Optional[str] = None) -> List[Dict[str, Any]]: ...
def ingest_scenes(
    warehouse: str,
    scenes: List[Dict[str, Any]],
    options: Dict[str, Any],
    progress: Optional[ProgressCallback] = None,
) -> str: ...
def ingest_search(
    warehouse: str, search: str, options: Dict[str, Any], progress: Optional[ProgressCallback] = None
) -> str: ...
def ingest_update(
    warehouse: str, options: Dict[str, Any], progress: Optional[ProgressCallback] = None
) -> str: ...
def write_demo_scenes(dir: str) -> List[str]: ...
def demo_sample_point() -> Tuple[float, float]: ...
