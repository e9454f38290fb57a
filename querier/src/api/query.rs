//! `query`, `query_range`, `format_query` and `parse_query`.

use super::params::{parse_duration_ms, time_param, Params};
use super::response::{encode_value, json_str, success, ApiError};
use super::{QueryApi, MAX_POINTS_PER_SERIES};
use crate::engine::{plan, Engine, EngineError, QueryResult, Value};
use crate::limits::queryable::MAX_SERIES_PER_QUERY;
use crate::limits::{clamp_start, query_window_ms, LimitedQueryable, QueryLimits};
use aion_model::TenantId;
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

/// Whether the request asks for `stats` (any non-empty value, as Prometheus).
fn wants_stats(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> bool {
    Params::from_request(method, uri, headers, body).get("stats").is_some_and(|s| !s.is_empty())
}

/// `data` (`{"resultType":…,"result":…}`) with Prometheus's `stats` object added.
/// Only evaluation is timed (preparation and queueing are reported as 0); the
/// engine counts samples loaded, reported as both total and peak (an upper bound).
fn with_stats(mut data: String, res: &QueryResult, took: std::time::Duration) -> String {
    let secs = took.as_secs_f64();
    let n = res.total_samples;
    data.pop();
    data.push_str(&format!(
        ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{secs},\"resultSortTime\":0,\"queryPreparationTime\":0,\"innerEvalTime\":{secs},\"execQueueTime\":0,\"execTotalTime\":{secs}}},\"samples\":{{\"totalQueryableSamples\":{n},\"peakSamples\":{n}}}}}}}"
    ));
    data
}

fn respond(api: &QueryApi, endpoint: &str, r: Result<QueryResult, ApiError>, stats: Option<std::time::Duration>) -> Response {
    match r {
        Ok(res) => {
            api.count(endpoint, "success");
            let data = encode_value(&res.value);
            let data = match stats {
                Some(took) => with_stats(data, &res, took),
                None => data,
            };
            success(&data, &res.warnings, &res.infos)
        }
        Err(e) => {
            api.count(endpoint, e.error_type);
            e.into_response()
        }
    }
}

/// Runs `f` on the blocking pool; the outer error is a panic of the evaluation.
async fn run_blocking<F>(f: F) -> Result<Result<QueryResult, EngineError>, ApiError>
where
    F: FnOnce() -> Result<QueryResult, EngineError> + Send + 'static,
{
    // Storage warnings (e.g. shards skipped under partial responses) join the engine's;
    // if the client goes away (this future is dropped) storage sees the query canceled.
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _cancel_on_drop = aion_model::storage::CancelOnDrop(flag.clone());
    let run = move || {
        let (r, storage_warnings) =
            aion_model::storage::collect_warnings(|| aion_model::storage::with_cancel_flag(flag, f));
        r.map(|mut res| {
            res.warnings.extend(storage_warnings);
            res
        })
    };
    tokio::task::spawn_blocking(run).await.map_err(|e| ApiError::internal(format!("query evaluation panicked: {e}")))
}

/// `GET|POST /api/v1/query`.
pub async fn instant(State(api): State<Arc<QueryApi>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let stats = wants_stats(&method, &uri, &headers, &body);
    let started = std::time::Instant::now();
    let r = instant_inner(&api, &method, &uri, &headers, &body).await;
    respond(&api, "query", r, stats.then(|| started.elapsed()))
}

async fn instant_inner(api: &Arc<QueryApi>, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<QueryResult, ApiError> {
    let p = Params::from_request(method, uri, headers, body);
    let tenant = api.tenant(headers)?;
    let q = query_param(&p)?;
    let t = time_param(&p, "time", now_ms())?;
    let _ = timeout_param(&p)?;
    let lq = LimitedQuery::prepare(api, tenant, &q, 0, now_ms())?;
    let (engine, storage, tenant) = (lq.engine.clone(), lq.storage.clone(), lq.tenant.clone());
    let r = run_blocking(move || engine.instant_query(storage.as_ref(), &tenant, &q, t)).await?;
    lq.finish(api, r)
}

/// `GET|POST /api/v1/query_range`.
pub async fn range(State(api): State<Arc<QueryApi>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let stats = wants_stats(&method, &uri, &headers, &body);
    let started = std::time::Instant::now();
    let r = range_inner(&api, &method, &uri, &headers, &body).await;
    respond(&api, "query_range", r, stats.then(|| started.elapsed()))
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
    let now = now_ms();
    let min_time = api.limits.get(tenant.as_str()).min_time_ms(now);
    let start = min_time.map_or(start, |min| clamp_start(start, step, min));
    if start > end {
        // Wholly before the lookback limit: nothing is visible (Mimir answers empty too).
        plan::parse(&q, plan::DurationContext { step_ms: step, range_ms: 0 }).map_err(ApiError::from)?;
        return Ok(QueryResult { value: Value::Matrix(vec![]), warnings: vec![], infos: vec![], total_samples: 0 });
    }
    let lq = LimitedQuery::prepare(api, tenant, &q, end - start, now)?;
    let (engine, storage, tenant) = (lq.engine.clone(), lq.storage.clone(), lq.tenant.clone());
    let r = run_blocking(move || engine.range_query(storage.as_ref(), &tenant, &q, start, end, step)).await?;
    lq.finish(api, r)
}

/// One query under its tenant's limits: the tenant's engine (samples limit,
/// timeout) and its storage view (lookback clamp, series count).
struct LimitedQuery {
    tenant: TenantId,
    limits: Arc<QueryLimits>,
    engine: Engine,
    storage: Arc<LimitedQueryable>,
}

impl LimitedQuery {
    /// Resolves `tenant`'s limits and checks `max_query_length` for a query
    /// spanning `range_ms` (`end - start` after clamping) plus its largest window.
    fn prepare(api: &QueryApi, tenant: TenantId, q: &str, range_ms: i64, now: i64) -> Result<Self, ApiError> {
        let limits = api.limits.get(tenant.as_str());
        let window = query_window_ms(q);
        if let Err(msg) = limits.check_length(tenant.as_str(), range_ms.saturating_add(window)) {
            api.count_limit_rejection(&tenant, "max_query_length");
            return Err(ApiError::bad_data(msg));
        }
        let storage = Arc::new(LimitedQueryable::new(
            api.storage.clone(),
            limits.min_time_ms(now),
            window,
            limits.max_series_per_query,
        ));
        Ok(Self { engine: api.engine_for(&limits), tenant, limits, storage })
    }

    /// Maps the engine's result to the API's, counting and naming limit rejections.
    fn finish(&self, api: &QueryApi, r: Result<QueryResult, EngineError>) -> Result<QueryResult, ApiError> {
        let e = match r {
            Ok(res) => return Ok(res),
            Err(e) => e,
        };
        let opts = self.engine.options();
        let (reason, limit) = match &e {
            _ if self.storage.series_limit_exceeded() => {
                (MAX_SERIES_PER_QUERY, self.limits.max_series_per_query.to_string())
            }
            EngineError::TooManySamples(_) => ("max_samples_per_query", opts.max_samples.to_string()),
            EngineError::Timeout(_) => ("query_timeout", humantime::format_duration(opts.timeout).to_string()),
            _ => return Err(ApiError::from(e)),
        };
        api.count_limit_rejection(&self.tenant, reason);
        let mut err = ApiError::from(e);
        err.message = format!("{} ({reason}: {limit}, tenant {:?})", err.message, self.tenant.as_str());
        Err(err)
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_added_inside_data() {
        let res = QueryResult { value: Value::Scalar { t: 1000, v: 2.0 }, warnings: vec![], infos: vec![], total_samples: 7 };
        let data = with_stats(encode_value(&res.value), &res, std::time::Duration::from_millis(1500));
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v["resultType"], "scalar");
        assert_eq!(v["stats"]["samples"]["totalQueryableSamples"], 7);
        assert_eq!(v["stats"]["timings"]["evalTotalTime"], 1.5);
        let uri: Uri = "/api/v1/query?query=up&stats=all".parse().unwrap();
        assert!(wants_stats(&Method::GET, &uri, &HeaderMap::new(), &[]));
        let uri: Uri = "/api/v1/query?query=up".parse().unwrap();
        assert!(!wants_stats(&Method::GET, &uri, &HeaderMap::new(), &[]));
    }
}
