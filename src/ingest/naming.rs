//! What file names tell: acquisition dates (`YYYY-MM-DD`, `YYYYMMDD`, Sentinel-2 and Landsat
//! product names, a user regex) and band tokens of one-file-per-band layouts (`B04`,
//! `SR_B4`, `QA_PIXEL`), plus validation of names that become warehouse paths (the
//! store's rule).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use regex::Regex;
use std::sync::LazyLock;

/// Checks a name that becomes a warehouse path component (the store's rule), as a message.
pub fn check_name(what: &'static str, name: &str) -> Result<(), String> {
    crate::store::validate_name(what, name).map_err(|e| e.to_string())
}

static S2_DATETIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^0-9])(\d{8})T(\d{6})(?:[^0-9]|$)").expect("static regex"));
static LANDSAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"L[COTEM]0\d_L\d[A-Z]{2}_\d{6}_(\d{8})_\d{8}_\d{2}_[A-Z0-9]{2}")
        .expect("static regex")
});
static DASHED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9])(\d{4})[-_](\d{2})[-_](\d{2})(?:[^0-9]|$)").expect("static regex")
});
static COMPACT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^0-9])(\d{8})(?:[^0-9]|$)").expect("static regex"));

fn date_from_digits(d: &str) -> Option<NaiveDate> {
    let year: i32 = d.get(0..4)?.parse().ok()?;
    let month: u32 = d.get(4..6)?.parse().ok()?;
    let day: u32 = d.get(6..8)?.parse().ok()?;
    (1970..=2200)
        .contains(&year)
        .then(|| NaiveDate::from_ymd_opt(year, month, day))
        .flatten()
}

fn midnight(d: NaiveDate) -> Option<DateTime<Utc>> {
    d.and_hms_opt(0, 0, 0).map(|n| Utc.from_utc_datetime(&n))
}

/// The time a user's `--date-pattern` finds in `name`: `Ok(None)` when it does not match,
/// an error (as a message) when what it matched is not a date.
pub fn time_from_pattern(name: &str, pattern: &Regex) -> Result<Option<DateTime<Utc>>, String> {
    let Some(caps) = pattern.captures(name) else {
        return Ok(None);
    };
    let Some(text) = caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str()) else {
        return Ok(None);
    };
    crate::time::parse_datetime(text)
        .or_else(|| date_from_digits(&text.replace(['-', '_', ':', '/'], "")).and_then(midnight))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "--date-pattern {:?} matched {text:?} in {name:?}, which is not a date",
                pattern.as_str()
            )
        })
}

/// The acquisition time a file name spells, trying in order: the user's pattern (its first
/// capture group, or the whole match, parsed as a date/time), a Sentinel-2
/// `YYYYMMDDTHHMMSS`, a Landsat product id (acquisition date), `YYYY-MM-DD`, `YYYYMMDD`.
pub fn time_from_name(name: &str, pattern: Option<&Regex>) -> Option<DateTime<Utc>> {
    if let Some(re) = pattern {
        let caps = re.captures(name)?;
        let text = caps.get(1).or_else(|| caps.get(0))?.as_str();
        return crate::time::parse_datetime(text).or_else(|| {
            date_from_digits(&text.replace(['-', '_', ':', '/'], "")).and_then(midnight)
        });
    }
    if let Some(c) = S2_DATETIME.captures(name) {
        if let Some(t) = crate::time::parse_datetime(&format!("{}T{}", &c[1], &c[2])) {
            return Some(t);
        }
    }
    if let Some(c) = LANDSAT.captures(name) {
        if let Some(t) = date_from_digits(&c[1]).and_then(midnight) {
            return Some(t);
        }
    }
    for c in DASHED.captures_iter(name) {
        if let Some(t) =
            date_from_digits(&format!("{}{}{}", &c[1], &c[2], &c[3])).and_then(midnight)
        {
            return Some(t);
        }
    }
    COMPACT
        .captures_iter(name)
        .find_map(|c| date_from_digits(&c[1]).and_then(midnight))
}

static BAND_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[_.\-])((?:SR|ST)_B\d{1,2}|QA_PIXEL|QA_RADSAT|QA_AEROSOL|B\d{1,2}A?|SCL|AOT|WVP|TCI|udm2)(?:_\d{2}m)?$")
        .expect("static regex")
});

/// Splits a file stem into (scene key, band token) when it ends in a band token:
/// `T52SDG_20230611T021659_B04_10m` -> (`T52SDG_20230611T021659`, `B04`),
/// `LC08_L2SP_116034_20230614_20230620_02_T1_SR_B4` -> (`LC08_..._T1`, `SR_B4`),
/// `B04` -> (``, `B04`).
pub fn split_band_token(stem: &str) -> Option<(String, String)> {
    let m = BAND_TOKEN.captures(stem)?;
    let token = m.get(1)?;
    let key = stem[..token.start()]
        .trim_end_matches(['_', '.', '-'])
        .to_string();
    Some((key, token.as_str().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> DateTime<Utc> {
        crate::time::parse_datetime(s).unwrap()
    }

    #[test]
    fn dates_from_common_names() {
        assert_eq!(
            time_from_name("S2L_T52_20230611_10m.tif", None),
            Some(day("2023-06-11"))
        );
        assert_eq!(
            time_from_name("T52SDG_20230611T021659_B04_10m.jp2", None),
            Some(day("2023-06-11T02:16:59Z"))
        );
        assert_eq!(
            time_from_name("LC08_L2SP_116034_20230614_20230620_02_T1_SR_B4.TIF", None),
            Some(day("2023-06-14"))
        );
        assert_eq!(
            time_from_name("field_2024-05-03.tif", None),
            Some(day("2024-05-03"))
        );
        assert_eq!(
            time_from_name("scene_2024_05_03.tif", None),
            Some(day("2024-05-03"))
        );
        assert_eq!(time_from_name("scene.tif", None), None);
        assert_eq!(
            time_from_name("tile_12345678.tif", None),
            None,
            "not a date"
        );
    }

    #[test]
    fn user_pattern_wins() {
        let re = Regex::new(r"doy(\d{4}-\d{2}-\d{2})").unwrap();
        assert_eq!(
            time_from_name("x_20230101_doy2023-02-03.tif", Some(&re)),
            Some(day("2023-02-03"))
        );
        assert_eq!(time_from_name("nothing.tif", Some(&re)), None);
        assert_eq!(
            time_from_pattern("x_doy2023-02-03.tif", &re),
            Ok(Some(day("2023-02-03")))
        );
        assert_eq!(time_from_pattern("nothing.tif", &re), Ok(None));
        let loose = Regex::new(r"_(\d{8})").unwrap();
        let err = time_from_pattern("scene_99999999.tif", &loose).unwrap_err();
        assert!(
            err.contains("99999999") && err.contains("not a date"),
            "{err}"
        );
    }

    #[test]
    fn band_tokens() {
        assert_eq!(
            split_band_token("T52SDG_20230611T021659_B04_10m"),
            Some(("T52SDG_20230611T021659".into(), "B04".into()))
        );
        assert_eq!(
            split_band_token("LC08_L2SP_116034_20230614_20230620_02_T1_SR_B4"),
            Some((
                "LC08_L2SP_116034_20230614_20230620_02_T1".into(),
                "SR_B4".into()
            ))
        );
        assert_eq!(
            split_band_token("LC08_L2SP_116034_20230614_20230620_02_T1_QA_PIXEL")
                .unwrap()
                .1,
            "QA_PIXEL"
        );
        assert_eq!(split_band_token("B8A"), Some((String::new(), "B8A".into())));
        assert_eq!(split_band_token("S2L_T52_20230611_10m"), None);
    }

    #[test]
    fn names_that_become_paths() {
        assert!(check_name("band", "B04").is_ok());
        assert!(check_name("band", "nir_08.v2").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "x y", &"z".repeat(129)] {
            assert!(check_name("band", bad).is_err(), "{bad:?}");
        }
    }
}
