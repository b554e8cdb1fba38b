//! Cloud-Optimized GeoTIFF reader (work in progress).
