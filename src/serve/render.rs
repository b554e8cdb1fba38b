//! Pictures of the warehouse: map tiles and previews. A layer (time, bands or band math,
//! cloud mask, composite, stretch, colour map) is queried over the part of the tile that holds
//! data, on the warehouse grid, at about the tile's resolution; the cube is then warped onto
//! the tile's pixels (nearest neighbour unless asked otherwise) and coloured.

use super::live::Current;
use super::params::Params;
use super::tms::TileMatrixSet;
use super::Error;
use crate::crs::{Crs, Transformer};
use crate::geo::{Bounds, GeoTransform};
use crate::query::export::colormap::{colorize_rgb, Colormap};
use crate::query::{Period, Query, Reducer};
use crate::store::Warehouse;
use crate::time::{parse_datetime, parse_time_range};
use crate::warp::{warp, Resampling, SourceRaster, TargetGrid, WarpOptions};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use ndarray::{Array3, Axis};

/// Parameters of a layer (tiles, previews, TileJSON).
pub const LAYER_PARAMS: &[&str] = &[
    "time",
    "composite",
    "bands",
    "expr",
    "index",
    "mask",
    "product",
    "rescale",
    "colormap",
    "resampling",
];

/// When a layer looks.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeSel {
    /// The latest acquisition day (no `time`).
    Latest,
    /// One day (`time=2023-06-11`) or instant (RFC 3339).
    Day(DateTime<Utc>, DateTime<Utc>),
    /// A range (`time=START..END`), composited.
    Range(DateTime<Utc>, DateTime<Utc>),
}

/// What a layer shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// True colour: the `red`, `green` and `blue` aliases.
    TrueColour,
    /// One band (colour-mapped) or three (red, green, blue).
    Bands(Vec<String>),
    /// Band math.
    Expr(String),
    /// An index preset (`ndvi`, ...).
    Index(String),
}

/// A layer to draw, from its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// When.
    pub time: TimeSel,
    /// How several dates become one picture (default: first valid for a day, median for a
    /// range).
    pub composite: Option<Reducer>,
    /// What.
    pub content: Content,
    /// Mask clouds with the product's rule.
    pub mask_clouds: bool,
    /// Products (default: every product with the bands).
    pub products: Vec<String>,
    /// Stretch per band (one for all, or one per band).
    pub rescale: Vec<(f64, f64)>,
    /// Colour map of one-band layers.
    pub colormap: Option<Colormap>,
    /// Kernel from stored tiles to the picture (default: nearest when finer, average when
    /// coarser).
    pub resampling: Option<Resampling>,
}

impl Layer {
    /// Reads the layer parameters (see [`LAYER_PARAMS`]).
    pub fn parse(p: &Params) -> Result<Layer, Error> {
        let time = match p.text("time")? {
            None => TimeSel::Latest,
            Some(t) if t.contains("..") => {
                let (a, b) = parse_time_range(t).map_err(|e| Error::bad("time", &e))?;
                TimeSel::Range(a, b)
            }
            Some(t) => {
                let start = parse_datetime(t).ok_or_else(|| {
                    Error::bad(
                        "time",
                        &format!(
                            "{t:?} is not a date (YYYY-MM-DD), an RFC 3339 time or START..END"
                        ),
                    )
                })?;
                let end = if t.len() <= 10 {
                    start + Duration::days(1) - Duration::microseconds(1)
                } else {
                    start
                };
                TimeSel::Day(start, end)
            }
        };
        let composite = p.parsed::<Reducer>("composite")?;
        let given: Vec<&str> = ["bands", "expr", "index"]
            .into_iter()
            .filter(|k| p.get(k).is_some())
            .collect();
        if given.len() > 1 {
            return Err(Error::bad(
                given[1],
                &format!(
                    "give one of bands, expr and index, not {}",
                    given.join(" and ")
                ),
            ));
        }
        let content = if let Some(b) = p.list("bands")? {
            if !(b.len() == 1 || b.len() == 3) {
                return Err(Error::bad(
                    "bands",
                    "one band (colour-mapped) or three (red, green, blue)",
                ));
            }
            Content::Bands(b)
        } else if let Some(e) = p.text("expr")? {
            crate::query::Expr::parse(e).map_err(|e| Error::bad("expr", &e.to_string()))?;
            Content::Expr(e.to_string())
        } else if let Some(i) = p.text("index")? {
            if crate::query::preset(i).is_none() {
                return Err(Error::bad(
                    "index",
                    &format!("unknown index {i:?}: use ndvi, evi, ndwi or nbr"),
                ));
            }
            Content::Index(i.to_ascii_lowercase())
        } else {
            Content::TrueColour
        };
        let mask_clouds = p.choice("mask", &["clouds", "none"])?.as_deref() == Some("clouds");
        let products = p.list("product")?.unwrap_or_default();
        let bands_out = match &content {
            Content::TrueColour => 3,
            Content::Bands(b) => b.len(),
            _ => 1,
        };
        let rescale = match p.numbers("rescale")? {
            None => Vec::new(),
            Some(v) => {
                if v.len() % 2 != 0 || !(v.len() == 2 || v.len() == 2 * bands_out) {
                    return Err(Error::bad(
                        "rescale",
                        &format!("MIN,MAX for all bands, or one MIN,MAX per band ({bands_out})"),
                    ));
                }
                let pairs: Vec<(f64, f64)> = v.chunks(2).map(|c| (c[0], c[1])).collect();
                if pairs.iter().any(|(a, b)| a == b) {
                    return Err(Error::bad("rescale", "MIN and MAX must differ"));
                }
                pairs
            }
        };
        let colormap = match p.text("colormap")? {
            None => None,
            Some(_) if bands_out == 3 => {
                return Err(Error::bad(
                    "colormap",
                    "three bands are drawn as red, green and blue; a colour map needs one band",
                ))
            }
            Some(c) => Some(Colormap::parse(c).map_err(|e| Error::bad("colormap", &e))?),
        };
        let resampling = p.parsed::<Resampling>("resampling")?;
        Ok(Layer {
            time,
            composite,
            content,
            mask_clouds,
            products,
            rescale,
            colormap,
            resampling,
        })
    }

    /// The parameter a query error about bands is attributed to.
    fn band_parameter(&self) -> &'static str {
        match self.content {
            Content::TrueColour | Content::Bands(_) => "bands",
            Content::Expr(_) => "expr",
            Content::Index(_) => "index",
        }
    }

    /// The time range and composite to query.
    fn when(&self, current: &Current) -> Option<(DateTime<Utc>, DateTime<Utc>, Reducer)> {
        let day = |d: NaiveDate| {
            let start = d.and_hms_opt(0, 0, 0)?.and_utc();
            Some((start, start + Duration::days(1) - Duration::microseconds(1)))
        };
        let (start, end, default) = match self.time {
            TimeSel::Latest => {
                let (a, b) = day(current.latest_day()?)?;
                (a, b, Reducer::First)
            }
            TimeSel::Day(a, b) => (a, b, Reducer::First),
            TimeSel::Range(a, b) => (a, b, Reducer::Median),
        };
        Some((start, end, self.composite.unwrap_or(default)))
    }

    /// The query of this layer over `bounds` (grid CRS) at `resolution` (`None`: native).
    fn query<'w>(
        &self,
        warehouse: &'w Warehouse,
        current: &'w Current,
        bounds: Bounds,
        resolution: Option<f64>,
        budget: u64,
    ) -> Result<Option<Query<'w>>, Error> {
        current.check_products(&self.products)?;
        let Some((start, end, reducer)) = self.when(current) else {
            return Ok(None);
        };
        let mut q = warehouse
            .query()
            .on_snapshot(&current.snapshot)
            .crs(warehouse.config().grid.epsg)
            .bbox(bounds)
            .time(start, end)
            .mask_clouds(self.mask_clouds)
            .composite(reducer, Period::All)
            .memory_budget(budget);
        if !self.products.is_empty() {
            q = q.products(&self.products);
        }
        q = match &self.content {
            Content::TrueColour => q.bands(&["red", "green", "blue"]),
            Content::Bands(b) => q.bands(b),
            Content::Expr(e) => q.expr(e),
            Content::Index(i) => q.index(i).map_err(|e| Error::query(e, Some("index")))?,
        };
        if let Some(r) = resolution {
            q = q.resolution(r);
        }
        if let Some(k) = self.resampling {
            q = q.resampling(k);
        }
        Ok(Some(q))
    }

    /// The stretch of band `b` of `n`: asked for, else the default for what is shown.
    fn stretch(&self, current: &Current, stored: &[String], b: usize) -> (f64, f64) {
        match self.rescale.len() {
            0 => {}
            1 => return self.rescale[0],
            _ => return self.rescale[b.min(self.rescale.len() - 1)],
        }
        match self.content {
            Content::Expr(_) | Content::Index(_) => (-1.0, 1.0),
            _ => {
                // One stretch for all bands (so true colour keeps its balance): the widest of
                // the catalog's per-band stretches.
                let ranges: Vec<(f64, f64)> = current
                    .stretch
                    .iter()
                    .filter(|((p, band), _)| {
                        stored.iter().any(|s| s == band)
                            && (self.products.is_empty() || self.products.contains(p))
                    })
                    .map(|(_, r)| *r)
                    .collect();
                if ranges.is_empty() {
                    return (0.0, 1.0);
                }
                let lo = ranges.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
                let hi = ranges.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
                (lo, hi)
            }
        }
    }

    /// Colours `values` (bands, h, w) into RGBA.
    fn colour(&self, current: &Current, stored: &[String], values: &Array3<f32>) -> Vec<u8> {
        let (nb, h, w) = values.dim();
        let mut rgba = vec![0u8; h * w * 4];
        let band = |b: usize| {
            values
                .index_axis(Axis(0), b)
                .as_slice()
                .map(<[f32]>::to_vec)
                .unwrap_or_else(|| values.index_axis(Axis(0), b).iter().copied().collect())
        };
        if nb == 3 {
            let (r, g, b) = (band(0), band(1), band(2));
            colorize_rgb(
                [&r, &g, &b],
                [
                    self.stretch(current, stored, 0),
                    self.stretch(current, stored, 1),
                    self.stretch(current, stored, 2),
                ],
                &mut rgba,
            );
        } else if nb >= 1 {
            let default = match self.content {
                Content::Expr(_) | Content::Index(_) => "rdylgn",
                _ => "gray",
            };
            let named;
            let cmap = match &self.colormap {
                Some(c) => c,
                None => {
                    named = Colormap::named(default).expect("a built-in colour map");
                    &named
                }
            };
            cmap.colorize(&band(0), self.stretch(current, stored, 0), &mut rgba);
        }
        rgba
    }
}

/// Limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most data tiles one request may read.
    pub max_tiles: usize,
    /// Bytes one request may hold.
    pub budget: u64,
}

/// A tile as PNG bytes.
#[allow(clippy::too_many_arguments)]
pub fn tile(
    warehouse: &Warehouse,
    current: &Current,
    tms: &TileMatrixSet,
    (z, x, y): (u8, u64, u64),
    scale: usize,
    layer: &Layer,
    limits: Limits,
) -> Result<Vec<u8>, Error> {
    let size = tms.tile_pixels * scale;
    let bounds = tms.tile_bounds(z, x, y)?;
    let cell = tms.cell_size(z) / scale as f64;
    let grid = warehouse.config().grid;
    let tms_crs = Crs::from_epsg(tms.epsg).map_err(|e| Error::Internal(e.to_string()))?;
    let Some((region, ground)) = data_region(warehouse, current, &tms_crs, &bounds)? else {
        return encode_png(size, size, &vec![0; size * size * 4]);
    };
    let tiles = current.tiles_in(&grid, &region);
    if tiles > limits.max_tiles {
        return Err(Error::costly(
            "z",
            format!(
                "zoom {z} is too far out: this tile covers {tiles} warehouse tiles with data, at most {} are read per request; zoom in (see minzoom in /tilejson.json)",
                limits.max_tiles
            ),
        ));
    }
    // The tile's pixel size on the ground, in grid units.
    let res = cell * ground;
    let query_res = (res > current.finest * 1.000_001).then_some(res);
    let Some(q) = layer.query(warehouse, current, region, query_res, limits.budget)? else {
        return encode_png(size, size, &vec![0; size * size * 4]);
    };
    let cube = match q.run() {
        Ok(c) => c,
        Err(crate::query::engine::Error::NoData(_)) => {
            return encode_png(size, size, &vec![0; size * size * 4])
        }
        Err(e) => return Err(Error::query(e, Some(layer.band_parameter()))),
    };
    let stored = cube.band_sources.clone();
    let (t, nb, h, w) = cube.dim();
    if t == 0 || h == 0 || w == 0 {
        return encode_png(size, size, &vec![0; size * size * 4]);
    }
    let slab = cube.data.index_axis(Axis(0), 0);
    let grid_crs = grid.crs().map_err(|e| Error::Internal(e.to_string()))?;
    let source = SourceRaster::new(slab, cube.transform, grid_crs).with_nodata(Some(f64::NAN));
    let target = TargetGrid::new(
        GeoTransform::north_up(bounds.min_x, bounds.max_y, cell, cell),
        size,
        size,
        tms_crs,
    );
    let kernel = match layer.resampling {
        Some(Resampling::Bilinear) => Resampling::Bilinear,
        Some(Resampling::Cubic) => Resampling::Cubic,
        _ => Resampling::Nearest,
    };
    let warped = warp(&source, &target, &WarpOptions::new(kernel))
        .map_err(|e| Error::Internal(format!("warping the tile: {e}")))?;
    let mut values = warped.pixels;
    for (v, ok) in values.iter_mut().zip(warped.valid.iter()) {
        if *ok == 0 {
            *v = f32::NAN;
        }
    }
    debug_assert_eq!(values.dim().0, nb);
    encode_png(size, size, &layer.colour(current, &stored, &values))
}

/// The part of a tile (bounds in `tms_crs`) that holds data, in the grid CRS, and how many
/// grid units one tile CRS unit spans there; `None` when the tile misses the data.
fn data_region(
    warehouse: &Warehouse,
    current: &Current,
    tms_crs: &Crs,
    bounds: &Bounds,
) -> Result<Option<(Bounds, f64)>, Error> {
    let grid = warehouse.config().grid;
    let Some(extent) = current.extent else {
        return Ok(None);
    };
    let grid_crs = grid.crs().map_err(|e| Error::Internal(e.to_string()))?;
    if tms_crs.epsg() == grid.epsg {
        let clipped = bounds.intersection(&extent);
        return Ok((!clipped.is_empty()).then_some((clipped, 1.0)));
    }
    let Some(data) = current.lonlat else {
        return Ok(None);
    };
    // Clip in lon/lat first: a tile far larger than the data may not even project into the
    // grid's CRS.
    let wgs84 = Crs::wgs84();
    let to_lonlat = Transformer::new(tms_crs, &wgs84);
    let Ok(tile_lonlat) = to_lonlat.transform_bounds(bounds, 9) else {
        return Ok(None);
    };
    let clipped = tile_lonlat.intersection(&data);
    if clipped.is_empty() {
        return Ok(None);
    }
    let back = Transformer::new(&wgs84, tms_crs)
        .transform_bounds(&clipped, 9)
        .map_err(|e| Error::Internal(e.to_string()))?
        .intersection(bounds);
    let in_grid = Transformer::new(tms_crs, &grid_crs)
        .transform_bounds(&back, 9)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let region = in_grid.intersection(&extent);
    if region.is_empty() || back.width() <= 0.0 {
        return Ok(None);
    }
    let ground = (in_grid.width() / back.width()).max(in_grid.height() / back.height());
    Ok(Some((region, ground)))
}

/// Largest side of a preview, in pixels.
pub const MAX_PREVIEW: usize = 2048;

/// A picture of `bbox` (lon/lat) on the warehouse grid, at most `max_size` pixels a side.
pub fn preview(
    warehouse: &Warehouse,
    current: &Current,
    bbox: Bounds,
    max_size: usize,
    layer: &Layer,
    limits: Limits,
) -> Result<Vec<u8>, Error> {
    let grid = warehouse.config().grid;
    let grid_crs = grid.crs().map_err(|e| Error::Internal(e.to_string()))?;
    let region = Transformer::new(&Crs::wgs84(), &grid_crs)
        .transform_bounds(&bbox, 21)
        .map_err(|e| Error::bad("bbox", &e.to_string()))?;
    let tiles = current.tiles_in(&grid, &region);
    if tiles > limits.max_tiles {
        return Err(Error::costly(
            "bbox",
            format!(
                "the box covers {tiles} warehouse tiles with data, at most {} are read per request: draw a smaller box",
                limits.max_tiles
            ),
        ));
    }
    let side = region.width().max(region.height());
    let res = (side / max_size as f64).max(current.finest);
    let query_res = (res > current.finest * 1.000_001).then_some(res);
    let q = layer
        .query(warehouse, current, region, query_res, limits.budget)?
        .ok_or_else(|| Error::NoData("the warehouse has no acquisition".into()))?;
    let cube = q
        .run()
        .map_err(|e| Error::query(e, Some(layer.band_parameter())))?;
    let (t, _, h, w) = cube.dim();
    if t == 0 {
        return Err(Error::NoData(
            "no observation in the time asked for covers this box".into(),
        ));
    }
    let values = cube.data.index_axis(Axis(0), 0).to_owned();
    encode_png(w, h, &layer.colour(current, &cube.band_sources, &values))
}

/// Encodes RGBA pixels as a PNG (fast compression: tiles are made per request).
pub fn encode_png(width: usize, height: usize, rgba: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(rgba.len() / 3 + 1024);
    let fail = |e: png::EncodingError| Error::Internal(format!("PNG encoding: {e}"));
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().map_err(fail)?;
        w.write_image_data(rgba).map_err(fail)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_parameters_are_checked() {
        let bad = |q: &str| {
            let e = Params::parse(q).and_then(|p| Layer::parse(&p)).unwrap_err();
            e.parameter().unwrap_or("").to_string()
        };
        assert_eq!(bad("time=last%20week"), "time");
        assert_eq!(bad("time=2023-05-01..2023-01-01"), "time");
        assert_eq!(bad("bands=red,nir"), "bands");
        assert_eq!(bad("bands=red&index=ndvi"), "index");
        assert_eq!(bad("expr=(nir-"), "expr");
        assert_eq!(bad("index=ndsi"), "index");
        assert_eq!(bad("composite=mode"), "composite");
        assert_eq!(bad("mask=snow"), "mask");
        assert_eq!(bad("index=ndvi&rescale=0,1,2,3"), "rescale");
        assert_eq!(bad("index=ndvi&rescale=1,1"), "rescale");
        assert_eq!(bad("colormap=jet&index=ndvi"), "colormap");
        assert_eq!(
            bad("colormap=viridis"),
            "colormap",
            "true colour has 3 bands"
        );
        assert_eq!(bad("resampling=lanczos"), "resampling");
        let p =
            Params::parse("time=2023-06-11&index=NDVI&mask=clouds&rescale=0,1&colormap=viridis_r")
                .unwrap();
        let l = Layer::parse(&p).unwrap();
        assert_eq!(l.content, Content::Index("ndvi".into()));
        assert!(l.mask_clouds);
        assert_eq!(l.rescale, vec![(0.0, 1.0)]);
        match l.time {
            TimeSel::Day(a, b) => assert_eq!((b - a).num_hours(), 23),
            other => panic!("{other:?}"),
        }
    }
}
