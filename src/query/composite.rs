//! Temporal reductions: median, mean, min, max, count, first and last valid value, over the
//! whole time range or per period (month, year, N days).

use crate::Sample;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;

/// How observations of one pixel are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reducer {
    /// Median of valid values (mean of the middle two for an even count).
    Median,
    /// Mean of valid values.
    Mean,
    /// Smallest valid value.
    Min,
    /// Largest valid value.
    Max,
    /// Number of valid values.
    Count,
    /// Earliest valid value.
    First,
    /// Latest valid value.
    Last,
}

impl FromStr for Reducer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "median" => Reducer::Median,
            "mean" => Reducer::Mean,
            "min" => Reducer::Min,
            "max" => Reducer::Max,
            "count" => Reducer::Count,
            "first" => Reducer::First,
            "last" => Reducer::Last,
            other => {
                return Err(format!(
                    "unknown composite {other:?}: use median, mean, min, max, count, first or last"
                ))
            }
        })
    }
}

impl fmt::Display for Reducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format!("{self:?}").to_lowercase())
    }
}

/// How time steps are grouped before reducing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One group for the whole range.
    All,
    /// Calendar months (UTC).
    Month,
    /// Calendar years (UTC).
    Year,
    /// Consecutive bins of N days starting at the first observation's day.
    Days(u32),
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "all" => Ok(Period::All),
            "month" | "monthly" => Ok(Period::Month),
            "year" | "yearly" => Ok(Period::Year),
            _ => {
                let n = t
                    .strip_suffix('d')
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|&n| n > 0);
                n.map(Period::Days).ok_or_else(|| {
                    format!("unknown period {s:?}: use month, year or a number of days like 16d")
                })
            }
        }
    }
}

/// One group of time steps.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGroup {
    /// Start of the period (or the first time for [`Period::All`]).
    pub start: DateTime<Utc>,
    /// Indices of the time steps in the group, in time order.
    pub members: Vec<usize>,
}

fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t)
}

fn year_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(t)
}

fn day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|n| Utc.from_utc_datetime(&n))
        .unwrap_or(t)
}

/// Groups time steps (assumed sorted ascending) by period.
pub fn group_times(times: &[DateTime<Utc>], period: Period) -> Vec<TimeGroup> {
    let mut groups: Vec<TimeGroup> = Vec::new();
    let Some(&first) = times.first() else {
        return groups;
    };
    for (i, &t) in times.iter().enumerate() {
        let start = match period {
            Period::All => first,
            Period::Month => month_start(t),
            Period::Year => year_start(t),
            Period::Days(n) => {
                let origin = day_start(first);
                let days = (t - origin).num_days().max(0) / n as i64;
                origin + Duration::days(days * n as i64)
            }
        };
        match groups.last_mut() {
            Some(g) if g.start == start => g.members.push(i),
            _ => groups.push(TimeGroup {
                start,
                members: vec![i],
            }),
        }
    }
    groups
}

/// Reduces a `(time, band, y, x)` array (NaN = invalid) over each group, giving
/// `(group, band, y, x)`. Pixels without a valid value are NaN (0 for `Count`).
pub fn reduce(data: ArrayView4<'_, f32>, groups: &[TimeGroup], reducer: Reducer) -> Array4<f32> {
    let (_, bands, h, w) = data.dim();
    let slab_len = bands * h * w;
    let mut out = super::recycle::take(groups.len() * slab_len).unwrap_or_default();
    out.resize(groups.len() * slab_len, f32::NAN);
    if slab_len > 0 {
        out.par_chunks_mut(slab_len)
            .zip(groups.par_iter())
            .for_each(|(slab, group)| {
                let mut values: Vec<f32> = Vec::with_capacity(group.members.len());
                for (i, cell) in slab.iter_mut().enumerate() {
                    let (b, y, x) = (i / (h * w), i / w % h, i % w);
                    values.clear();
                    values.extend(
                        group
                            .members
                            .iter()
                            .map(|&t| data[[t, b, y, x]])
                            .filter(|v| !v.is_nan()),
                    );
                    *cell = reduce_values(&mut values, reducer);
                }
            });
    }
    Array4::from_shape_vec((groups.len(), bands, h, w), out)
        .unwrap_or_else(|_| Array4::from_elem((0, bands, h, w), f32::NAN))
}

/// Reduces a `(time, band, y, x)` array of native samples (`fill` or NaN = invalid) over each
/// group with a reducer that keeps sample values: first, last, min or max (others give `fill`;
/// use [`reduce`] on `f32` values for them). Pixels without a valid value are `fill`.
pub fn reduce_native<T: Sample>(
    data: ArrayView4<'_, T>,
    groups: &[TimeGroup],
    reducer: Reducer,
    fill: T,
) -> Array4<T> {
    let (_, bands, h, w) = data.dim();
    let slab_len = bands * h * w;
    #[allow(clippy::eq_op)]
    let valid = |v: T| v == v && v != fill;
    let better = |candidate: T, current: T| match reducer {
        Reducer::Min => candidate.to_f64() < current.to_f64(),
        Reducer::Max => candidate.to_f64() > current.to_f64(),
        Reducer::Last => true,
        _ => false,
    };
    let keeps_values = matches!(
        reducer,
        Reducer::First | Reducer::Last | Reducer::Min | Reducer::Max
    );
    let mut out = super::recycle::take(groups.len() * slab_len).unwrap_or_default();
    out.resize(groups.len() * slab_len, fill);
    if slab_len > 0 && keeps_values {
        out.par_chunks_mut(slab_len)
            .zip(groups.par_iter())
            .for_each(|(slab, group)| {
                for &t in &group.members {
                    let src = data.index_axis(ndarray::Axis(0), t);
                    for (cell, &v) in slab.iter_mut().zip(src.iter()) {
                        if valid(v) && (!valid(*cell) || better(v, *cell)) {
                            *cell = v;
                        }
                    }
                }
            });
    }
    Array4::from_shape_vec((groups.len(), bands, h, w), out)
        .unwrap_or_else(|_| Array4::from_elem((0, bands, h, w), fill))
}

fn reduce_values(values: &mut [f32], reducer: Reducer) -> f32 {
    if reducer == Reducer::Count {
        return values.len() as f32;
    }
    if values.is_empty() {
        return f32::NAN;
    }
    match reducer {
        Reducer::Mean => {
            (values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64) as f32
        }
        Reducer::Min => values.iter().copied().fold(f32::INFINITY, f32::min),
        Reducer::Max => values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        Reducer::First => values[0],
        Reducer::Last => values[values.len() - 1],
        Reducer::Median => {
            values.sort_unstable_by(f32::total_cmp);
            let n = values.len();
            if n % 2 == 1 {
                values[n / 2]
            } else {
                (values[n / 2 - 1] + values[n / 2]) / 2.0
            }
        }
        Reducer::Count => values.len() as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::time::parse_datetime(s).unwrap()
    }

    #[test]
    fn groups_by_month_year_and_days() {
        let times = [
            t("2023-01-07"),
            t("2023-01-30"),
            t("2023-02-11"),
            t("2024-03-18"),
        ];
        let m = group_times(&times, Period::Month);
        assert_eq!(
            m.iter().map(|g| g.members.clone()).collect::<Vec<_>>(),
            [vec![0, 1], vec![2], vec![3]]
        );
        assert_eq!(m[1].start, t("2023-02-01"));
        let y = group_times(&times, Period::Year);
        assert_eq!(y.len(), 2);
        let d = group_times(&times, Period::Days(30));
        assert_eq!(d[0].members, [0, 1]);
        assert_eq!(d[1].start, t("2023-02-06"));
        assert_eq!(group_times(&times, Period::All)[0].members.len(), 4);
        assert!(group_times(&[], Period::Month).is_empty());
    }

    #[test]
    fn reducers_skip_invalid_values() {
        let series = [3.0, f32::NAN, 1.0, 4.0, 2.0];
        let data = Array4::from_shape_vec((5, 1, 1, 1), series.to_vec()).unwrap();
        let all = group_times(
            &[
                t("2023-01-01"),
                t("2023-01-02"),
                t("2023-01-03"),
                t("2023-01-04"),
                t("2023-01-05"),
            ],
            Period::All,
        );
        let get = |r| reduce(data.view(), &all, r)[[0, 0, 0, 0]];
        assert_eq!(get(Reducer::Median), 2.5);
        assert_eq!(get(Reducer::Mean), 2.5);
        assert_eq!(get(Reducer::Min), 1.0);
        assert_eq!(get(Reducer::Max), 4.0);
        assert_eq!(get(Reducer::Count), 4.0);
        assert_eq!(get(Reducer::First), 3.0);
        assert_eq!(get(Reducer::Last), 2.0);
        let empty = Array4::from_elem((2, 1, 1, 1), f32::NAN);
        let g = group_times(&[t("2023-01-01"), t("2023-01-02")], Period::All);
        assert!(reduce(empty.view(), &g, Reducer::Median)[[0, 0, 0, 0]].is_nan());
        assert_eq!(reduce(empty.view(), &g, Reducer::Count)[[0, 0, 0, 0]], 0.0);
    }

    #[test]
    fn native_reducers_keep_samples_and_skip_fill() {
        let data = Array4::from_shape_vec((4, 1, 1, 2), vec![0u16, 7, 5, 0, 3, 9, 0, 0]).unwrap();
        let g = vec![TimeGroup {
            start: t("2023-01-01"),
            members: vec![0, 1, 2, 3],
        }];
        let get = |r| {
            reduce_native(data.view(), &g, r, 0u16)
                .into_raw_vec_and_offset()
                .0
        };
        assert_eq!(get(Reducer::First), [5, 7]);
        assert_eq!(get(Reducer::Last), [3, 9]);
        assert_eq!(get(Reducer::Min), [3, 7]);
        assert_eq!(get(Reducer::Max), [5, 9]);
        assert_eq!(get(Reducer::Median), [0, 0]);
    }

    #[test]
    fn parses_names() {
        assert_eq!("Median".parse::<Reducer>(), Ok(Reducer::Median));
        assert!("mode".parse::<Reducer>().unwrap_err().contains("median"));
        assert_eq!("16d".parse::<Period>(), Ok(Period::Days(16)));
        assert_eq!("month".parse::<Period>(), Ok(Period::Month));
        assert!("0d".parse::<Period>().is_err());
        assert!("weekly".parse::<Period>().is_err());
    }
}
