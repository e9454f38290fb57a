//! The remote write 2.0 push: decode, resolve symbols into the 1.0 form, run
//! the same validation/limits/append pipeline, and count what was written for
//! the `X-Prometheus-Remote-Write-*-Written` response headers.
//!
//! Native histograms are not ingested: a request carrying them is answered
//! 400 naming the series, with `Histograms-Written: 0` (its float samples are
//! still stored and counted), so a 2.0 sender knows they were not written.
//! Exemplars and metadata are accepted and not stored (`Exemplars-Written: 0`).

use crate::error::{DistributorError, Result};
use crate::remote_write::v2 as rw2;
use crate::Distributor;
use aion_model::TenantId;
use axum::http::{HeaderMap, HeaderValue};

/// Response header: float samples written.
pub(crate) const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
/// Response header: native histogram samples written.
pub(crate) const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
/// Response header: exemplars written.
pub(crate) const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// What a request actually stored, reported in the 2.0 response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Float samples stored.
    pub samples: usize,
    /// Native histogram samples stored (always 0: not supported).
    pub histograms: usize,
    /// Exemplars stored (always 0: not stored).
    pub exemplars: usize,
}

impl Written {
    /// Sets the three `X-Prometheus-Remote-Write-*-Written` headers.
    pub(crate) fn insert_headers(&self, h: &mut HeaderMap) {
        for (name, n) in [(SAMPLES_WRITTEN, self.samples), (HISTOGRAMS_WRITTEN, self.histograms), (EXEMPLARS_WRITTEN, self.exemplars)]
        {
            h.insert(name, HeaderValue::from(n as u64));
        }
    }
}

impl Distributor {
    /// Pushes a snappy-compressed 2.0 `body` for `tenant`, counting into `written`.
    pub(crate) async fn push_v2(&self, tenant: TenantId, body: &[u8], written: &mut Written) -> Result<()> {
        let req = rw2::decode(body, self.cfg.max_decompressed_body_size)?;
        let resolved = rw2::resolve(req)?;
        self.push_counted(tenant, resolved.write, written).await?;
        if resolved.histograms > 0 {
            return Err(histograms_unsupported(resolved.histograms, &resolved.histogram_series));
        }
        Ok(())
    }
}

/// The 400 for native histograms, naming (up to 10 of) the series carrying them.
fn histograms_unsupported(n: usize, series: &[usize]) -> DistributorError {
    let mut list: Vec<String> = series.iter().take(10).map(|i| i.to_string()).collect();
    if series.len() > 10 {
        list.push(format!("and {} more", series.len() - 10));
    }
    DistributorError::InvalidSeries {
        reason: "native_histograms_unsupported",
        message: format!(
            "native histograms are not supported: {n} histogram samples in series {} were not written",
            list.join(", ")
        ),
    }
}
