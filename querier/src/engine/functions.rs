//! Pure PromQL function kernels: the arithmetic behind `rate`, the
//! `*_over_time` family, math and date functions, classic-bucket
//! `histogram_quantile` / `histogram_fraction`, `label_replace` /
//! `label_join`, the `sort*` orderings, and the numerics shared with
//! aggregation operators (Kahan sums, quantiles, mean and variance).
//!
//! Invariants: kernels never touch storage, never parse PromQL and never
//! allocate per sample beyond what the result needs. The evaluator selects
//! the samples of a window (Prometheus 3: left-open `(t - range, t]`, stale
//! markers removed), evaluates arguments per step and turns the flags the
//! kernels return into annotations. Semantics follow Prometheus 3.x as pinned
//! by the conformance scripts in `../shared/promql-conformance/testdata/`.

pub mod aggregate;
pub mod date;
pub mod error;
pub mod histogram;
pub mod labels;
pub mod math;
pub mod range;
pub mod sort;

pub use error::FunctionError;
