//! `series`, `labels`, `label/<name>/values` and `status/buildinfo`.

use super::params::{time_param, Params, MAX_TIME_MS, MIN_TIME_MS};
use super::response::{encode_strings, success, write_labels, ApiError};
use super::QueryApi;
use crate::limits::LimitedQueryable;
use crate::selector::parse_series_selector;
use aion_model::storage::{Queryable, SelectHints, StorageError};
use aion_model::{Matcher, TenantId};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;
use std::sync::Arc;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn hints(p: &Params) -> Result<SelectHints, ApiError> {
    Ok(SelectHints { start: time_param(p, "start", MIN_TIME_MS)?, end: time_param(p, "end", MAX_TIME_MS)? })
}

fn matcher_sets(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut out = Vec::new();
    for m in p.all("match[]") {
        out.extend(parse_series_selector(m).map_err(ApiError::bad_data)?);
    }
    Ok(out)
}

fn limit(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None | Some("") => Ok(0),
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| ApiError::bad_data(format!("invalid parameter \"limit\": cannot parse \"{s}\": must be a non-negative integer"))),
    }
}

fn truncate<T>(mut v: Vec<T>, limit: usize) -> (Vec<T>, Vec<String>) {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        return (v, vec!["results truncated due to limit".to_string()]);
    }
    (v, Vec::new())
}

fn storage_err(e: aion_model::storage::StorageError) -> ApiError {
    ApiError::from(crate::engine::EngineError::from(e))
}

/// Parses the shared parameters, runs `f` once per `match[]` set off the async runtime,
/// and returns the union, sorted and cut to `limit` (with a warning when cut).
async fn collect<T, F>(
    api: &Arc<QueryApi>,
    p: &Params,
    headers: &HeaderMap,
    require_match: bool,
    f: F,
) -> Result<(Vec<T>, Vec<String>), ApiError>
where
    T: Ord + Send + 'static,
    F: Fn(&dyn Queryable, &TenantId, &SelectHints, &[Matcher]) -> Result<Vec<T>, StorageError> + Send + 'static,
{
    let tenant = api.tenant(headers)?;
    let mut sets = matcher_sets(p)?;
    if sets.is_empty() {
        if require_match {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        sets.push(Vec::new());
    }
    let (h, lim) = (hints(p)?, limit(p)?);
    // The tenant's max_query_lookback hides older series here too (no series limit).
    let min_time = api.limits.get(tenant.as_str()).min_time_ms(now_ms());
    let storage = LimitedQueryable::new(api.storage.clone(), min_time, 0, 0);
    let (all, storage_warnings) = tokio::task::spawn_blocking(move || {
        let (r, warnings) = aion_model::storage::collect_warnings(|| {
            let mut all = BTreeSet::new();
            for set in &sets {
                all.extend(f(&storage, &tenant, &h, set).map_err(storage_err)?);
            }
            Ok::<_, ApiError>(all)
        });
        r.map(|all| (all, warnings))
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(format!("storage call panicked: {e}"))))?;
    let (list, mut warnings) = truncate(all.into_iter().collect(), lim);
    warnings.extend(storage_warnings);
    Ok((list, warnings))
}

fn finish(api: &QueryApi, endpoint: &str, r: Result<(String, Vec<String>), ApiError>) -> Response {
    match r {
        Ok((data, warnings)) => {
            api.count(endpoint, "success");
            success(&data, &warnings, &[])
        }
        Err(e) => {
            api.count(endpoint, e.error_type);
            e.into_response()
        }
    }
}

/// `GET|POST /api/v1/series`.
pub async fn series(State(api): State<Arc<QueryApi>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let r = collect(&api, &p, &headers, true, |s, t, h, m| s.series(t, h, m)).await.map(|(list, warnings)| {
        let mut out = String::from("[");
        for (i, l) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_labels(&mut out, l);
        }
        out.push(']');
        (out, warnings)
    });
    finish(&api, "series", r)
}

/// `GET|POST /api/v1/labels`.
pub async fn labels(State(api): State<Arc<QueryApi>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let r = collect(&api, &p, &headers, false, |s, t, h, m| s.label_names(t, h, m)).await;
    finish(&api, "labels", r.map(|(list, w)| (encode_strings(&list), w)))
}

/// `GET /api/v1/label/<name>/values`.
pub async fn label_values(
    State(api): State<Arc<QueryApi>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let p = Params::from_request(&method, &uri, &headers, &[]);
    let name = decode_label_name(&name);
    let r = collect(&api, &p, &headers, false, move |s, t, h, m| s.label_values(t, &name, h, m)).await;
    finish(&api, "label_values", r.map(|(list, w)| (encode_strings(&list), w)))
}

/// Label names in the path may use Prometheus's `U__` escaping for UTF-8 names.
fn decode_label_name(s: &str) -> String {
    let Some(rest) = s.strip_prefix("U__") else { return s.to_string() };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push('_');
            }
            '_' => {
                let hex: String = chars.by_ref().take_while(|c| *c != '_').collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => return s.to_string(),
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `GET /api/v1/status/buildinfo`.
pub async fn buildinfo() -> Response {
    let data = format!(
        "{{\"version\":\"{}\",\"revision\":\"\",\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":\"\",\"application\":\"aion\"}}",
        env!("CARGO_PKG_VERSION")
    );
    success(&data, &[], &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_utf8_label_names() {
        assert_eq!(decode_label_name("job"), "job");
        assert_eq!(decode_label_name("U__a_2e_b"), "a.b");
        assert_eq!(decode_label_name("U__a__b"), "a_b");
    }
}
