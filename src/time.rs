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

/// Parses a time range `START..END` (dates `YYYY-MM-DD` or RFC 3339; inclusive; a bare date
/// as END means the whole day; either side may be empty for an open range).
pub fn parse_time_range(text: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let (a, b) = text.split_once("..").ok_or_else(|| {
        format!("invalid time range {text:?}: expected START..END, e.g. 2023-01-01..2023-06-30")
    })?;
    let parse = |s: &str, end: bool| -> Result<DateTime<Utc>, String> {
        if s.trim().is_empty() {
            return Ok(if end {
                DateTime::<Utc>::MAX_UTC
            } else {
                DateTime::<Utc>::MIN_UTC
            });
        }
        let t = parse_datetime(s).ok_or_else(|| {
            format!("invalid date {s:?} in time range {text:?}: use YYYY-MM-DD or RFC 3339")
        })?;
        let date_only = s.trim().len() <= 10;
        Ok(if end && date_only {
            t + chrono::Duration::days(1) - chrono::Duration::microseconds(1)
        } else {
            t
        })
    };
    let (start, end) = (parse(a, false)?, parse(b, true)?);
    if start > end {
        return Err(format!("invalid time range {text:?}: START is after END"));
    }
    Ok((start, end))
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
    fn time_ranges() {
        let (a, b) = parse_time_range("2023-01-01..2023-01-31").unwrap();
        assert_eq!(a, utc("2023-01-01T00:00:00Z"));
        assert_eq!(b, utc("2023-01-31T23:59:59.999999Z"));
        let (a, b) = parse_time_range("..2023-01-31T12:00:00Z").unwrap();
        assert_eq!(
            (a, b),
            (DateTime::<Utc>::MIN_UTC, utc("2023-01-31T12:00:00Z"))
        );
        for bad in ["2023-01-01", "2023-02-01..2023-01-01", "x..y"] {
            assert!(parse_time_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for s in ["", "yesterday", "2023-13-40", "2023-02-30T00:00:00Z"] {
            assert_eq!(parse_datetime(s), None, "{s}");
        }
    }
}
