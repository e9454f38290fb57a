//! `GET /api/v1/metadata`: metric metadata (type, help, unit per metric
//! family) as senders reported it, with Prometheus's `metric`, `limit` and
//! `limit_per_metric` parameters. Served from the API's
//! [`MetadataReader`](aion_model::metadata::MetadataReader); without one
//! the answer is an empty object, as Prometheus answers with no targets.

use super::params::Params;
use super::response::{json_str, success, ApiError};
use super::QueryApi;
use aion_model::metadata::{MetadataByMetric, MetadataQuery};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;

/// Parses a limit as Prometheus does: absent, empty or negative means none;
/// 0 means an empty answer.
fn limit(p: &Params, key: &str) -> Result<Option<usize>, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => Ok(None),
            Ok(n) => Ok(Some(n as usize)),
            Err(_) => Err(ApiError::bad_data(format!("invalid parameter \"{key}\": cannot parse \"{s}\" as an integer"))),
        },
    }
}

/// The `data` object: `{"metric":[{"type":…,"help":…,"unit":…}],…}`.
pub fn encode(all: &MetadataByMetric) -> String {
    let mut out = String::from("{");
    for (i, (metric, entries)) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:[", json_str(metric));
        for (j, m) in entries.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"type\":{},\"help\":{},\"unit\":{}}}",
                json_str(m.kind.as_str()),
                json_str(&m.help),
                json_str(&m.unit)
            );
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// Handler of `/api/v1/metadata`.
pub async fn metadata(State(api): State<Arc<QueryApi>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let p = Params::from_request(&method, &uri, &headers, &body);
        let tenant = api.tenant(&headers)?;
        let query = MetadataQuery {
            metric: p.get("metric").filter(|m| !m.is_empty()).map(str::to_string),
            limit: limit(&p, "limit")?,
            limit_per_metric: limit(&p, "limit_per_metric")?,
        };
        let Some(reader) = api.metadata.clone() else {
            return Ok(MetadataByMetric::new());
        };
        tokio::task::spawn_blocking(move || reader.read_metadata(&tenant, &query))
            .await
            .map_err(|e| ApiError::internal(format!("metadata task failed: {e}")))?
            .map_err(|e| ApiError::from(crate::engine::EngineError::from(e)))
    }
    .await;
    match result {
        Ok(all) => {
            api.count("metadata", "success");
            success(&encode(&all), &[], &[])
        }
        Err(e) => {
            api.count("metadata", e.error_type);
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::metadata::{MetricMetadata, MetricType};

    #[test]
    fn encodes_like_prometheus() {
        let mut all = MetadataByMetric::new();
        all.insert(
            "up".into(),
            vec![MetricMetadata { metric: "up".into(), kind: MetricType::Gauge, help: "1 if \"up\"".into(), unit: String::new() }],
        );
        assert_eq!(encode(&all), r#"{"up":[{"type":"gauge","help":"1 if \"up\"","unit":""}]}"#);
        assert_eq!(encode(&MetadataByMetric::new()), "{}");
    }
}
