//! `query`, `query_range`, `format_query` and `parse_query`.

use super::params::{parse_duration_ms, time_param, Params};
use super::response::{encode_value, json_str, success, ApiError};
use super::{QueryApi, MAX_POINTS_PER_SERIES};
use crate::engine::{EngineError, QueryResult};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn query_param(p: &Params) -> Result<String, ApiError> {
    match p.get("query") {
        Some(q) if !q.is_empty() => Ok(q.to_string()),
        _ => Err(ApiError::bad_data("invalid parameter \"query\": query must not be empty")),
    }
}

/// Optional `timeout` parameter, in milliseconds.
fn timeout_param(p: &Params) -> Result<Option<i64>, ApiError> {
    match p.get("timeout") {
        None | Some("") => Ok(None),
        Some(s) => parse_duration_ms(s)
            .map(Some)
            .ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"timeout\": cannot parse \"{s}\" to a valid duration"))),
    }
}

fn respond(api: &QueryApi, endpoint: &str, r: Result<QueryResult, ApiError>) -> Response {
    match r {
        Ok(res) => {
            api.count(endpoint, "success");
            success(&encode_value(&res.value), &res.warnings, &res.infos)
        }
        Err(e) => {
            api.count(endpoint, e.error_type);
            e.into_response()
        }
    }
}

async fn run_blocking<F>(f: F) -> Result<QueryResult, ApiError>
where
    F: FnOnce() -> Result<QueryResult, EngineError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("query evaluation panicked: {e}"))),
    }
}

/// `GET|POST /api/v1/query`.
pub async fn instant(State(api): State<Arc<QueryApi>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let r = instant_inner(&api, &method, &uri, &headers, &body).await;
    respond(&api, "query", r)
}

async fn instant_inner(api: &Arc<QueryApi>, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<QueryResult, ApiError> {
    let p = Params::from_request(method, uri, headers, body);
    let tenant = api.tenant(headers)?;
    let q = query_param(&p)?;
    let t = time_param(&p, "time", now_ms())?;
    let _ = timeout_param(&p)?;
    let api2 = api.clone();
    run_blocking(move || api2.engine.instant_query(api2.storage.as_ref(), &tenant, &q, t)).await
}

/// `GET|POST /api/v1/query_range`.
pub async fn range(State(api): State<Arc<QueryApi>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let r = range_inner(&api, &method, &uri, &headers, &body).await;
    respond(&api, "query_range", r)
}

async fn range_inner(api: &Arc<QueryApi>, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<QueryResult, ApiError> {
    let p = Params::from_request(method, uri, headers, body);
    let tenant = api.tenant(headers)?;
    let q = query_param(&p)?;
    let need = |k: &str| -> Result<&str, ApiError> {
        p.get(k).filter(|s| !s.is_empty()).ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"{k}\": missing")))
    };
    need("start")?;
    need("end")?;
    let start = time_param(&p, "start", 0)?;
    let end = time_param(&p, "end", 0)?;
    if end < start {
        return Err(ApiError::bad_data("invalid parameter \"end\": end timestamp must not be before start time"));
    }
    let step_s = need("step")?;
    let step = parse_duration_ms(step_s)
        .ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"step\": cannot parse \"{step_s}\" to a valid duration")))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let _ = timeout_param(&p)?;
    let api2 = api.clone();
    run_blocking(move || api2.engine.range_query(api2.storage.as_ref(), &tenant, &q, start, end, step)).await
}

/// `GET|POST /api/v1/format_query`: the query pretty-printed.
pub async fn format_query(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let r = query_param(&p).and_then(|q| promql_parser::parser::parse(&q).map_err(ApiError::bad_data));
    match r {
        Ok(expr) => success(&json_str(&expr.prettify()), &[], &[]),
        Err(e) => e.into_response(),
    }
}

/// `GET|POST /api/v1/parse_query`: whether the query parses (the AST JSON is not provided yet:
/// answers with the canonical query text).
pub async fn parse_query(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let r = query_param(&p).and_then(|q| promql_parser::parser::parse(&q).map_err(ApiError::bad_data));
    match r {
        Ok(expr) => success(&format!("{{\"type\":\"query\",\"query\":{}}}", json_str(&expr.to_string())), &[], &[]),
        Err(e) => e.into_response(),
    }
}
