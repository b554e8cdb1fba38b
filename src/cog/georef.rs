//! GeoTIFF georeferencing: model tags to an affine [`GeoTransform`], GeoKeys to an EPSG code.

use crate::GeoTransform;
use serde::Serialize;

/// GeoKey ids the reader interprets.
mod key {
    pub const MODEL_TYPE: u16 = 1024;
    pub const RASTER_TYPE: u16 = 1025;
    pub const CITATION: u16 = 1026;
    pub const GEOGRAPHIC_TYPE: u16 = 2048;
    pub const GEOG_CITATION: u16 = 2049;
    pub const PROJECTED_CS_TYPE: u16 = 3072;
    pub const PROJ_CITATION: u16 = 3073;
}

/// TIFF tag holding GeoKey double values.
const GEO_DOUBLE_PARAMS: u16 = 34736;
/// TIFF tag holding GeoKey ASCII values.
const GEO_ASCII_PARAMS: u16 = 34737;
/// GeoKey value meaning "user-defined" (no EPSG code).
const USER_DEFINED: u16 = 32767;

/// How pixel coordinates relate to the model (`GTRasterTypeGeoKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RasterType {
    /// A pixel is an area; tie points refer to its top-left corner (the default).
    PixelIsArea,
    /// A pixel is a point; tie points refer to its centre.
    PixelIsPoint,
}

/// The kind of model space (`GTModelTypeGeoKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ModelType {
    /// A projected CRS (UTM, Web Mercator, ...).
    Projected,
    /// A geographic CRS (longitude/latitude).
    Geographic,
    /// Earth-centred cartesian.
    Geocentric,
    /// Absent or unknown.
    Unknown,
}

/// Everything the file says about where its pixels are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Georef {
    /// Pixel-to-map transform of the full-resolution image (PixelIsPoint already shifted to
    /// corner convention, like GDAL), or `None` when the file has only GCPs or nothing.
    pub transform: Option<GeoTransform>,
    /// EPSG code of the CRS, when the GeoKeys name one.
    pub epsg: Option<u32>,
    /// Projected or geographic model.
    pub model: ModelType,
    /// Area or point pixels.
    pub raster_type: RasterType,
    /// A citation string from the GeoKeys (often the CRS name).
    pub citation: Option<String>,
    /// Number of ground control points when the file has tie points but no affine transform.
    pub gcp_count: usize,
}

/// Raw georeferencing tag values.
#[derive(Debug, Default, Clone)]
pub(crate) struct RawGeoTags {
    pub pixel_scale: Option<Vec<f64>>,
    pub tiepoints: Option<Vec<f64>>,
    pub transformation: Option<Vec<f64>>,
    pub geokeys: Option<Vec<u16>>,
    pub double_params: Option<Vec<f64>>,
    pub ascii_params: Option<String>,
}

impl RawGeoTags {
    fn is_empty(&self) -> bool {
        self.pixel_scale.is_none()
            && self.tiepoints.is_none()
            && self.transformation.is_none()
            && self.geokeys.is_none()
    }
}

/// One GeoKey's value.
#[derive(Debug, Clone, PartialEq)]
enum KeyValue {
    Short(u16),
    Doubles(Vec<f64>),
    Ascii(String),
}

/// Parses the GeoKey directory; malformed entries are skipped rather than trusted.
fn parse_geokeys(raw: &RawGeoTags) -> Vec<(u16, KeyValue)> {
    let Some(dir) = raw.geokeys.as_deref() else {
        return Vec::new();
    };
    if dir.len() < 4 {
        return Vec::new();
    }
    let count = dir[3] as usize;
    let mut keys = Vec::with_capacity(count.min(dir.len() / 4));
    for entry in dir[4..].chunks_exact(4).take(count) {
        let (id, location, n, value) = (entry[0], entry[1], entry[2] as usize, entry[3] as usize);
        let v = match location {
            0 => KeyValue::Short(entry[3]),
            GEO_DOUBLE_PARAMS => match raw.double_params.as_deref() {
                Some(d) if value + n <= d.len() => KeyValue::Doubles(d[value..value + n].to_vec()),
                _ => continue,
            },
            GEO_ASCII_PARAMS => match raw.ascii_params.as_deref() {
                Some(s) if value + n <= s.len() => KeyValue::Ascii(
                    s[value..value + n]
                        .trim_end_matches(['|', '\0'])
                        .to_string(),
                ),
                _ => continue,
            },
            _ => continue,
        };
        keys.push((id, v));
    }
    keys
}

fn short(keys: &[(u16, KeyValue)], id: u16) -> Option<u16> {
    keys.iter().find_map(|(k, v)| match v {
        KeyValue::Short(s) if *k == id => Some(*s),
        _ => None,
    })
}

fn ascii(keys: &[(u16, KeyValue)], id: u16) -> Option<String> {
    keys.iter().find_map(|(k, v)| match v {
        KeyValue::Ascii(s) if *k == id && !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// Interprets the georeferencing tags; `None` when the file has none at all.
pub(crate) fn parse(raw: &RawGeoTags) -> Option<Georef> {
    if raw.is_empty() {
        return None;
    }
    let keys = parse_geokeys(raw);
    let model = match short(&keys, key::MODEL_TYPE) {
        Some(1) => ModelType::Projected,
        Some(2) => ModelType::Geographic,
        Some(3) => ModelType::Geocentric,
        _ => ModelType::Unknown,
    };
    let raster_type = match short(&keys, key::RASTER_TYPE) {
        Some(2) => RasterType::PixelIsPoint,
        _ => RasterType::PixelIsArea,
    };
    let code = |id| short(&keys, id).filter(|&c| c != 0 && c != USER_DEFINED);
    let epsg = match model {
        ModelType::Projected => code(key::PROJECTED_CS_TYPE),
        ModelType::Geographic => code(key::GEOGRAPHIC_TYPE),
        _ => code(key::PROJECTED_CS_TYPE).or_else(|| code(key::GEOGRAPHIC_TYPE)),
    }
    .map(u32::from);
    let citation = ascii(&keys, key::PROJ_CITATION)
        .or_else(|| ascii(&keys, key::CITATION))
        .or_else(|| ascii(&keys, key::GEOG_CITATION));

    let tiepoints = raw.tiepoints.as_deref().unwrap_or(&[]);
    let mut gcp_count = 0;
    let mut transform = if let Some(m) = raw.transformation.as_deref().filter(|m| m.len() >= 16) {
        Some(GeoTransform::from_gdal([
            m[3], m[0], m[1], m[7], m[4], m[5],
        ]))
    } else if let (Some(scale), true) = (raw.pixel_scale.as_deref(), tiepoints.len() >= 6) {
        if scale.len() >= 2 {
            let (i, j, x, y) = (tiepoints[0], tiepoints[1], tiepoints[3], tiepoints[4]);
            Some(GeoTransform::from_gdal([
                x - i * scale[0],
                scale[0],
                0.0,
                y + j * scale[1],
                0.0,
                -scale[1],
            ]))
        } else {
            None
        }
    } else {
        gcp_count = tiepoints.len() / 6;
        None
    };
    if raster_type == RasterType::PixelIsPoint {
        if let Some(t) = transform.as_mut() {
            // GDAL's default: move the origin from the centre of pixel (0, 0) to its corner.
            let (x, y) = t.apply(-0.5, -0.5);
            t.origin_x = x;
            t.origin_y = y;
        }
    }
    if transform.is_some_and(|t| !t.to_gdal().iter().all(|c| c.is_finite())) {
        transform = None;
    }
    Some(Georef {
        transform,
        epsg,
        model,
        raster_type,
        citation,
        gcp_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utm_keys(raster_type: u16) -> Vec<u16> {
        vec![
            1,
            1,
            0,
            4, //
            1024,
            0,
            1,
            1, //
            1025,
            0,
            1,
            raster_type, //
            1026,
            34737,
            22,
            0, //
            3072,
            0,
            1,
            32652,
        ]
    }

    #[test]
    fn scale_and_tiepoint_give_a_north_up_transform() {
        let raw = RawGeoTags {
            pixel_scale: Some(vec![10.0, 10.0, 0.0]),
            tiepoints: Some(vec![0.0, 0.0, 0.0, 399960.0, 4040040.0, 0.0]),
            geokeys: Some(utm_keys(1)),
            ascii_params: Some("WGS 84 / UTM zone 52N|".into()),
            ..Default::default()
        };
        let g = parse(&raw).unwrap();
        assert_eq!(g.epsg, Some(32652));
        assert_eq!(g.model, ModelType::Projected);
        assert_eq!(g.citation.as_deref(), Some("WGS 84 / UTM zone 52N"));
        assert_eq!(
            g.transform.unwrap().to_gdal(),
            [399960.0, 10.0, 0.0, 4040040.0, 0.0, -10.0]
        );
    }

    #[test]
    fn pixel_is_point_shifts_half_a_pixel() {
        let raw = RawGeoTags {
            pixel_scale: Some(vec![10.0, 10.0, 0.0]),
            tiepoints: Some(vec![0.0, 0.0, 0.0, 399965.0, 4040035.0, 0.0]),
            geokeys: Some(utm_keys(2)),
            ..Default::default()
        };
        let g = parse(&raw).unwrap();
        assert_eq!(g.raster_type, RasterType::PixelIsPoint);
        assert_eq!(g.transform.unwrap().origin_x, 399960.0);
        assert_eq!(g.transform.unwrap().origin_y, 4040040.0);
    }

    #[test]
    fn model_transformation_keeps_rotation() {
        let m = vec![
            10.0, 1.0, 0.0, 500.0, //
            2.0, -10.0, 0.0, 900.0, //
            0.0, 0.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 1.0,
        ];
        let raw = RawGeoTags {
            transformation: Some(m),
            ..Default::default()
        };
        let g = parse(&raw).unwrap();
        assert_eq!(
            g.transform.unwrap().to_gdal(),
            [500.0, 10.0, 1.0, 900.0, 2.0, -10.0]
        );
        assert_eq!(g.epsg, None);
    }

    #[test]
    fn malformed_keys_are_ignored() {
        let raw = RawGeoTags {
            geokeys: Some(vec![1, 1, 0, 50, 1024, 34736, 9, 9000]),
            tiepoints: Some(vec![1.0; 12]),
            ..Default::default()
        };
        let g = parse(&raw).unwrap();
        assert_eq!(g.epsg, None);
        assert_eq!(g.gcp_count, 2);
        assert!(g.transform.is_none());
        assert!(parse(&RawGeoTags::default()).is_none());
    }
}
