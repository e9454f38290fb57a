//! Prometheus API JSON: the `{"status": ...}` envelope, value encoding
//! byte-compatible with Prometheus (timestamps as seconds with millisecond
//! fraction, values as strings with `+Inf`/`-Inf`/`NaN`), and API errors.

use crate::engine::{EngineError, Value};
use aion_model::Labels;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

/// An API error: Prometheus `errorType`, message and HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Prometheus error type (`bad_data`, `execution`, `timeout`, `internal`, ...).
    pub error_type: &'static str,
    /// Human-readable message.
    pub message: String,
    /// HTTP status code.
    pub status: StatusCode,
}

impl ApiError {
    /// A 400 `bad_data` error.
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self { error_type: "bad_data", message: message.into(), status: StatusCode::BAD_REQUEST }
    }

    /// A 500 `internal` error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self { error_type: "internal", message: message.into(), status: StatusCode::INTERNAL_SERVER_ERROR }
    }

    /// A 401 for a missing tenant header.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self { error_type: "bad_data", message: message.into(), status: StatusCode::UNAUTHORIZED }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match e.error_type() {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" | "canceled" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { error_type: e.error_type(), message: e.to_string(), status }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = format!(
            "{{\"status\":\"error\",\"errorType\":{},\"error\":{}}}",
            json_str(self.error_type),
            json_str(&self.message)
        );
        json_response(self.status, body)
    }
}

/// A 200 JSON response with `body` as is.
pub fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"status":"success","data":<data>}` plus non-empty `warnings`/`infos`.
pub fn success(data: &str, warnings: &[String], infos: &[String]) -> Response {
    let mut s = String::with_capacity(data.len() + 64);
    s.push_str("{\"status\":\"success\",\"data\":");
    s.push_str(data);
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if !list.is_empty() {
            let _ = write!(s, ",\"{key}\":[");
            for (i, w) in list.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&json_str(w));
            }
            s.push(']');
        }
    }
    s.push('}');
    json_response(StatusCode::OK, s)
}

/// A JSON string literal for `s`.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// Formats a float as Prometheus does (Go's `FormatFloat(v, 'f', -1, 64)`, `+Inf`, `-Inf`, `NaN`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        let mut s = String::new();
        super::float::write_finite(&mut s, v);
        s
    }
}

/// Writes a millisecond timestamp as seconds with up to three decimals, as Prometheus does.
pub fn write_timestamp(out: &mut String, t: i64) {
    if t < 0 {
        out.push('-');
    }
    let abs = t.unsigned_abs();
    write_u64(out, abs / 1000);
    let frac = abs % 1000;
    if frac != 0 {
        out.push('.');
        for d in [frac / 100, frac / 10 % 10, frac % 10] {
            out.push(char::from(b'0' + d as u8));
        }
    }
}

/// Writes `n` in decimal (without the formatting machinery: range query
/// answers write thousands of timestamps).
fn write_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Writes `[<seconds>,"<value>"]` for a float sample (the value as
/// [`format_value`] gives it, without an intermediate string).
fn write_float_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    if v.is_finite() {
        super::float::write_finite(out, v);
    } else {
        out.push_str(&format_value(v));
    }
    out.push_str("\"]");
}

fn write_point(out: &mut String, t: i64, v: &str) {
    out.push('[');
    write_timestamp(out, t);
    out.push(',');
    out.push_str(&json_str(v));
    out.push(']');
}

/// A label set as a JSON object.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(&l.name));
        out.push(':');
        out.push_str(&json_str(&l.value));
    }
    out.push('}');
}

/// `{"resultType": ..., "result": ...}` for a query value.
pub fn encode_value(v: &Value) -> String {
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{{\"resultType\":\"{}\",\"result\":", v.type_name());
    match v {
        Value::Scalar { t, v } => write_point(&mut out, *t, &format_value(*v)),
        Value::String { t, v } => write_point(&mut out, *t, v),
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                write_float_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_float_point(&mut out, p.t, p.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

/// A JSON array of strings.
pub fn encode_strings(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(s));
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::VectorSample;

    #[test]
    fn encodes_like_prometheus() {
        let v = Value::Vector(vec![VectorSample { labels: Labels::from_pairs([("a", "b")]), t: 1_435_781_451_781, v: 1.0 }]);
        assert_eq!(
            encode_value(&v),
            r#"{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1435781451.781,"1"]}]}"#
        );
        let s = Value::Scalar { t: 1500, v: f64::NEG_INFINITY };
        assert_eq!(encode_value(&s), r#"{"resultType":"scalar","result":[1.500,"-Inf"]}"#);
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        let mut t = String::new();
        write_timestamp(&mut t, 5);
        assert_eq!(t, "0.005");
        for (ms, want) in [(0, "0"), (-1500, "-1.500"), (1_000, "1"), (1_796_241_480_010, "1796241480.010"), (i64::MIN, "-9223372036854775.808")] {
            let mut t = String::new();
            write_timestamp(&mut t, ms);
            assert_eq!(t, want, "{ms}");
        }
        let m = Value::Matrix(vec![aion_model::storage::Series {
            labels: Labels::empty(),
            samples: vec![aion_model::Sample::new(-1500, 0.1), aion_model::Sample::new(60_000, f64::NAN), aion_model::Sample::new(61_001, -0.0)],
        }]);
        assert_eq!(encode_value(&m), r#"{"resultType":"matrix","result":[{"metric":{},"values":[[-1.500,"0.1"],[60,"NaN"],[61.001,"-0"]]}]}"#);
    }
}
