//! Parsing acquisition times from the many ways files spell them.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Parses a timestamp as found in metadata: RFC 3339 (`2023-06-11T02:16:59Z`,
/// `2023-06-11T02:16:59.5+09:00`), `2023-06-11 02:16:59`, TIFF's `2023:06:11 02:16:59`, or a
/// bare date `2023-06-11` / `20230611` (midnight UTC). Times without a zone are UTC.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim().trim_end_matches('\0').trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    let naive_formats = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y:%m:%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.fZ",
        "%Y-%m-%d %H:%M:%S%.fZ",
        "%Y%m%dT%H%M%S",
    ];
    for f in naive_formats {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return Some(Utc.from_utc_datetime(&n));
        }
    }
    for f in ["%Y-%m-%d", "%Y%m%d", "%Y:%m:%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, f) {
            return d.and_hms_opt(0, 0, 0).map(|n| Utc.from_utc_datetime(&n));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn accepts_common_spellings() {
        let want = utc("2023-06-11T02:16:59Z");
        for s in [
            "2023-06-11T02:16:59Z",
            "2023-06-11T11:16:59+09:00",
            "2023-06-11 02:16:59",
            "2023:06:11 02:16:59\0",
            "2023-06-11T02:16:59.000Z",
            "20230611T021659",
        ] {
            assert_eq!(parse_datetime(s), Some(want), "{s}");
        }
        assert_eq!(
            parse_datetime("2023-06-11"),
            Some(utc("2023-06-11T00:00:00Z"))
        );
        assert_eq!(
            parse_datetime("20230611"),
            Some(utc("2023-06-11T00:00:00Z"))
        );
    }

    #[test]
    fn rejects_nonsense() {
        for s in ["", "yesterday", "2023-13-40", "2023-02-30T00:00:00Z"] {
            assert_eq!(parse_datetime(s), None, "{s}");
        }
    }
}
