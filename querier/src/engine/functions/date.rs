//! Calendar functions over Unix timestamps in seconds, in UTC: `minute`,
//! `hour`, `day_of_week`, `day_of_month`, `day_of_year`, `days_in_month`,
//! `month`, `year`. Called with no argument, PromQL applies them to the
//! evaluation time (the caller passes `eval_t_ms / 1000`).

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

/// Applies the date function `name` to `unix_seconds`. The fraction of a
/// second is truncated towards zero, as Prometheus does. NaN, ±Inf and
/// timestamps outside the representable calendar give NaN. `None` when
/// `name` is not a date function.
pub fn apply_date(name: &str, unix_seconds: f64) -> Option<f64> {
    let f: fn(&DateTime<Utc>) -> f64 = match name {
        "minute" => |t| f64::from(t.minute()),
        "hour" => |t| f64::from(t.hour()),
        "day_of_week" => |t| f64::from(t.weekday().num_days_from_sunday()),
        "day_of_month" => |t| f64::from(t.day()),
        "day_of_year" => |t| f64::from(t.ordinal()),
        "days_in_month" => |t| f64::from(days_in_month(t.year(), t.month())),
        "month" => |t| f64::from(t.month()),
        "year" => |t| f64::from(t.year()),
        _ => return None,
    };
    Some(to_datetime(unix_seconds).map_or(f64::NAN, |t| f(&t)))
}

/// True when `name` is one of the date functions [`apply_date`] knows.
pub fn is_date_function(name: &str) -> bool {
    apply_date(name, 0.0).is_some()
}

fn to_datetime(unix_seconds: f64) -> Option<DateTime<Utc>> {
    if !unix_seconds.is_finite() || unix_seconds.abs() >= 9.2e18 {
        return None;
    }
    DateTime::from_timestamp(unix_seconds.trunc() as i64, 0)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    match (NaiveDate::from_ymd_opt(year, month, 1), NaiveDate::from_ymd_opt(next_year, next_month, 1)) {
        (Some(start), Some(end)) => u32::try_from((end - start).num_days()).unwrap_or(31),
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, t: f64) -> f64 {
        apply_date(name, t).unwrap_or(-1.0)
    }

    #[test]
    fn epoch_and_2006_match_functions_test() {
        let t = 1136239445.0; // 2006-01-02 22:04:05 UTC, a Monday.
        let cases = [
            ("year", 1970.0, 2006.0),
            ("month", 1.0, 1.0),
            ("day_of_month", 1.0, 2.0),
            ("day_of_year", 1.0, 2.0),
            ("day_of_week", 4.0, 1.0),
            ("hour", 0.0, 22.0),
            ("minute", 0.0, 4.0),
            ("days_in_month", 31.0, 31.0),
        ];
        for (name, at_zero, at_t) in cases {
            assert_eq!(d(name, 0.0), at_zero, "{name}(0)");
            assert_eq!(d(name, t), at_t, "{name}({t})");
        }
    }

    #[test]
    fn leap_years_and_boundaries() {
        assert_eq!(d("year", 1230767999.0), 2008.0);
        assert_eq!(d("year", 1230768000.0), 2009.0);
        assert_eq!(d("month", 1456790399.0) + d("day_of_month", 1456790399.0) / 100.0, 2.29);
        assert_eq!(d("month", 1456790400.0) + d("day_of_month", 1456790400.0) / 100.0, 3.01);
        assert_eq!(d("day_of_year", 1483191420.0), 366.0);
        assert_eq!(d("day_of_year", 1672493820.0), 365.0);
        assert_eq!(d("days_in_month", 1454284800.0), 29.0);
        assert_eq!(d("days_in_month", 1485907200.0), 28.0);
        assert_eq!(d("days_in_month", 1_700_000_000.0), 30.0); // November 2023
        // Fractions truncate towards zero.
        assert_eq!(d("minute", 59.9), 0.0);
        assert_eq!(d("year", -0.5), 1970.0);
        assert_eq!(d("year", -1.5), 1969.0);
    }

    #[test]
    fn non_finite_and_unknown() {
        assert!(d("year", f64::NAN).is_nan());
        assert!(d("hour", f64::INFINITY).is_nan());
        assert!(d("month", 1e300).is_nan());
        assert_eq!(apply_date("time", 0.0), None);
        assert!(is_date_function("day_of_week"));
        assert!(!is_date_function("abs"));
    }
}
