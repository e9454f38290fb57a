//! Request parameters of the Prometheus HTTP API: GET query strings and POST
//! form bodies merged, and Prometheus's time and duration formats.

use super::response::ApiError;
use axum::http::{HeaderMap, Method, Uri};
use chrono::DateTime;

/// Earliest timestamp the API uses for "no start" (Prometheus's `minTime`), in ms.
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Latest timestamp the API uses for "no end" (Prometheus's `maxTime`), in ms.
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;

/// All parameters of one request, in order, repeated keys kept.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parameters from the URL query string plus, for a form-encoded POST, the body.
    pub fn from_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
        let mut v: Vec<(String, String)> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if method == Method::POST && is_form {
            v.extend(form_urlencoded::parse(body).into_owned());
        }
        Self(v)
    }

    /// Builds from explicit pairs (tests).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    /// Value of `key`; when given twice, the POST body's wins over the URL's.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (e.g. `match[]`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

/// Parses a Prometheus API timestamp (unix seconds with fraction, or RFC 3339) to milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        let ms = (f * 1000.0).round();
        if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
            return None;
        }
        return Some(ms as i64);
    }
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis())
}

/// Parses a time parameter, defaulting when absent.
pub fn time_param(p: &Params, key: &str, default_ms: i64) -> Result<i64, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(default_ms),
        Some(s) => parse_time(s).ok_or_else(|| {
            ApiError::bad_data(format!("invalid parameter \"{key}\": cannot parse \"{s}\" to a valid timestamp"))
        }),
    }
}

/// Parses a duration: float seconds (`15`, `0.5`) or a Prometheus duration (`1m30s`); milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f * 1000.0 > i64::MAX as f64 || f * 1000.0 < i64::MIN as f64 {
            return None;
        }
        return Some((f * 1000.0).round() as i64);
    }
    parse_prom_duration(s)
}

/// Parses Prometheus duration syntax: one or more `<int><unit>` with units y w d h m s ms.
pub fn parse_prom_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    let (mut i, mut total) = (0usize, 0i64);
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = match &s[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_and_durations() {
        assert_eq!(parse_time("1.5"), Some(1500));
        assert_eq!(parse_time("2015-07-01T20:10:51.781Z"), Some(1_435_781_451_781));
        assert_eq!(parse_time("abc"), None);
        assert_eq!(parse_duration_ms("15"), Some(15_000));
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("5x"), None);
    }

    #[test]
    fn form_values_and_repeated_keys() {
        let p = Params::from_pairs(&[("match[]", "a"), ("match[]", "b"), ("q", "1")]);
        assert_eq!(p.all("match[]"), vec!["a", "b"]);
        assert_eq!(p.get("q"), Some("1"));
    }
}
