//! The push path: tenant → body → decode → validate → append → answer.

use crate::error::{DistributorError, Result};
use crate::metrics::{CodeLabel, Metrics};
use crate::remote_write;
use crate::validation::validate_series;
use crate::Distributor;
use aion_model::storage::{AppendOutcome, RejectReason, SeriesSamples, WriteBatch};
use aion_model::TenantId;
use aion_proto::prometheus::WriteRequest;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

mod limits;
mod v2;

pub(crate) use v2::Written;

/// Header carrying the tenant id.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// Axum handler for both remote-write paths. Remote write 2.0 answers carry
/// the `X-Prometheus-Remote-Write-*-Written` headers, errors included.
pub(crate) async fn handle(
    State(d): State<Arc<Distributor>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let version = negotiate(&headers);
    let v2 = matches!(version, Ok(Version::V2));
    let mut written = Written::default();
    let mut resp = match d.push_http(&headers, body, version, &mut written).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(error = %e, "remote-write request failed");
            } else {
                tracing::debug!(error = %e, "remote-write request rejected");
            }
            e.into_response()
        }
    };
    if v2 {
        written.insert_headers(resp.headers_mut());
    }
    d.metrics.requests.get_or_create(&CodeLabel { code: resp.status().as_u16().to_string() }).inc();
    resp
}

/// The remote-write protocol version a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// `prometheus.WriteRequest` (also: no content type, or no `proto=` parameter).
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// Protobuf message name selecting remote write 2.0.
pub(crate) const V2_PROTO: &str = "io.prometheus.write.v2.Request";

/// Picks the protocol from `Content-Type`'s `proto=` parameter; an unknown
/// message name is 415. A missing header or parameter means 1.0.
pub(crate) fn negotiate(headers: &HeaderMap) -> Result<Version> {
    let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Ok(Version::V1);
    };
    let proto = ct.split(';').skip(1).find_map(|p| p.trim().strip_prefix("proto="));
    match proto.map(|p| p.trim_matches('"')) {
        None | Some("prometheus.WriteRequest") => Ok(Version::V1),
        Some(V2_PROTO) => Ok(Version::V2),
        Some(p) => Err(DistributorError::UnsupportedMediaType(format!(
            "content type {ct:?} asks for protobuf message {p:?}; supported are prometheus.WriteRequest (remote write 1.0) and {V2_PROTO} (remote write 2.0)"
        ))),
    }
}

/// Rejects compressions other than snappy; an absent header is accepted.
fn check_encoding(headers: &HeaderMap) -> Result<()> {
    if let Some(enc) = headers.get(axum::http::header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"snappy") {
            return Err(DistributorError::UnsupportedMediaType(format!(
                "content encoding {:?}; remote write bodies must be snappy-compressed",
                String::from_utf8_lossy(enc.as_bytes())
            )));
        }
    }
    Ok(())
}

impl Distributor {
    /// The tenant of a request: `anonymous` when multi-tenancy is off, else
    /// the validated `X-Scope-OrgID` header.
    pub fn tenant_from_headers(&self, headers: &HeaderMap) -> Result<TenantId> {
        if !self.cfg.multitenancy_enabled {
            return Ok(TenantId::anonymous());
        }
        let v = headers.get(TENANT_HEADER).ok_or(DistributorError::MissingTenant)?;
        let s = v.to_str().map_err(|_| {
            DistributorError::InvalidTenant(format!("invalid tenant id in {TENANT_HEADER}: not visible ASCII"))
        })?;
        TenantId::new(s).map_err(|e| DistributorError::InvalidTenant(e.to_string()))
    }

    async fn push_http(
        &self,
        headers: &HeaderMap,
        body: std::result::Result<Bytes, BytesRejection>,
        version: Result<Version>,
        written: &mut Written,
    ) -> Result<()> {
        let tenant = self.tenant_from_headers(headers)?;
        let version = version?;
        check_encoding(headers)?;
        let body = body.map_err(|r| self.body_error(headers, r))?;
        Metrics::add_tenant(&self.metrics.received_bytes, tenant.as_str(), body.len() as u64);
        match version {
            Version::V1 => {
                let req = remote_write::decode(&body, self.cfg.max_decompressed_body_size)?;
                self.push_counted(tenant, req, written).await
            }
            Version::V2 => self.push_v2(tenant, &body, written).await,
        }
    }

    fn body_error(&self, headers: &HeaderMap, r: BytesRejection) -> DistributorError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let declared = headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let limit = self.cfg.max_request_body_size as u64;
            return DistributorError::BodyTooLarge {
                what: "compressed body",
                size: declared.filter(|n| *n > limit),
                limit,
            };
        }
        DistributorError::BodyRead(r.body_text())
    }

    /// Hands the request's metric metadata to the metadata writer, if any.
    /// Metadata is advisory: a failure is logged, never fails the write.
    async fn store_metadata(&self, tenant: &TenantId, md: &[aion_proto::prometheus::MetricMetadata]) {
        use aion_model::metadata::{MetricMetadata, MetricType};
        let Some(writer) = self.metadata.clone() else { return };
        if md.is_empty() {
            return;
        }
        let items: Vec<MetricMetadata> = md
            .iter()
            .filter(|m| !m.metric_family_name.is_empty())
            .map(|m| MetricMetadata {
                metric: m.metric_family_name.clone(),
                kind: MetricType::from_remote_write(m.r#type),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect();
        let tenant = tenant.clone();
        match tokio::task::spawn_blocking(move || writer.write_metadata(&tenant, items)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "storing metric metadata failed"),
            Err(e) => tracing::warn!(error = %e, "metadata task failed"),
        }
    }

    /// Validates, limits and appends a decoded request for `tenant`, under the
    /// tenant's limits (defaults or its runtime override). Order: label rules
    /// and sample times per series; then the ingestion rate over all samples
    /// left (429 for the whole request when over); then the active-series
    /// limits. Valid, admitted series are stored even when others are not; the
    /// error then names the first rejected series (or, failing that, the first
    /// sample the store rejected).
    pub async fn push(&self, tenant: TenantId, req: WriteRequest) -> Result<()> {
        self.push_counted(tenant, req, &mut Written::default()).await
    }

    /// [`Self::push`], adding the samples actually stored to `written.samples`.
    pub(crate) async fn push_counted(&self, tenant: TenantId, req: WriteRequest, written: &mut Written) -> Result<()> {
        let t = tenant.as_str().to_string();
        let limits = self.limits.get(&t);
        let samples_in: usize = req.timeseries.iter().map(|s| s.samples.len()).sum();
        Metrics::add_tenant(&self.metrics.received_samples, &t, samples_in as u64);
        Metrics::add_tenant(&self.metrics.received_metadata, &t, req.metadata.len() as u64);
        let req = self.ha_dedupe(&t, req).await?;
        self.store_metadata(&tenant, &req.metadata).await;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let mut series = Vec::with_capacity(req.timeseries.len());
        let mut first_invalid = None;
        for ts in req.timeseries {
            match validate_series(ts.labels, &limits) {
                Ok(labels) if ts.samples.is_empty() => drop(labels),
                Ok(labels) => {
                    let (samples, err) = self.check_sample_times(&t, &labels, &ts.samples, &limits, now_ms);
                    if let Some(e) = err {
                        first_invalid.get_or_insert(e);
                    }
                    if !samples.is_empty() {
                        series.push(SeriesSamples { labels, samples });
                    }
                }
                Err(e) => {
                    if let DistributorError::InvalidSeries { reason, .. } = &e {
                        Metrics::add_discard(&self.metrics.discarded_series, &t, reason, 1);
                        Metrics::add_discard(&self.metrics.discarded_samples, &t, reason, ts.samples.len() as u64);
                    }
                    first_invalid.get_or_insert(e);
                }
            }
        }
        self.check_rate(&t, series.iter().map(|s| s.samples.len()).sum(), &limits)?;
        let (series, over_limit) = self.check_series_limits(&t, series, &limits);
        if let Some(e) = over_limit {
            first_invalid.get_or_insert(e);
        }
        let batch = WriteBatch { tenant, series };
        let in_batch: usize = batch.series.iter().map(|s| s.samples.len()).sum();
        let rejected = if batch.series.is_empty() { None } else { self.append(batch).await? };
        let n_rejected = match &rejected {
            Some(DistributorError::SamplesRejected { count, .. }) => *count,
            _ => 0,
        };
        written.samples += in_batch.saturating_sub(n_rejected);
        match (first_invalid, rejected) {
            (Some(e), _) | (None, Some(e)) => Err(e),
            (None, None) => Ok(()),
        }
    }

    /// Appends on the blocking pool; returns the error describing rejected samples, if any.
    async fn append(&self, batch: WriteBatch) -> Result<Option<DistributorError>> {
        let tenant = batch.tenant.as_str().to_string();
        let appender = Arc::clone(&self.appender);
        let outcome = tokio::task::spawn_blocking(move || appender.append(batch))
            .await
            .map_err(|e| DistributorError::Internal(format!("append task failed: {e}")))??;
        Ok(self.rejections(&tenant, outcome))
    }

    /// Counts rejected samples by reason and describes the first one.
    fn rejections(&self, tenant: &str, outcome: AppendOutcome) -> Option<DistributorError> {
        for reason in [RejectReason::OutOfOrder, RejectReason::DuplicateTimestamp] {
            let n = outcome.rejected.iter().filter(|r| r.reason == reason).count();
            Metrics::add_discard(&self.metrics.discarded_samples, tenant, reason.as_str(), n as u64);
        }
        let first = outcome.rejected.first()?;
        let mut message = match first.reason {
            RejectReason::OutOfOrder => format!(
                "out of order sample: timestamp {} is older than the newest sample stored for series '{}'",
                first.t, first.labels
            ),
            RejectReason::DuplicateTimestamp => format!(
                "duplicate sample for timestamp {} with a different value than the one stored for series '{}'",
                first.t, first.labels
            ),
        };
        let more = outcome.rejected.len() - 1;
        if more > 0 {
            message.push_str(&format!(" (and {more} more rejected samples in this request)"));
        }
        Some(DistributorError::SamplesRejected { count: outcome.rejected.len(), message })
    }
}
