//! The dashboard-style queries the query benchmark times: what a Grafana
//! service dashboard runs — rates, `sum by`, latency quantiles from classic
//! histograms, `topk`, regex selectors — as range queries over the whole
//! 24 h at a 1 m step and as instant queries at the end.

/// One benchmark query.
#[derive(Debug, Clone, Copy)]
pub struct BenchQuery {
    /// Short name for the report.
    pub name: &'static str,
    /// PromQL.
    pub expr: &'static str,
    /// Range query over the whole data (true) or instant at the end (false).
    pub range: bool,
}

/// Every query, in report order.
pub const QUERIES: &[BenchQuery] = &[
    BenchQuery { name: "rate_one_series", expr: r#"rate(bench_http_requests_total{instance="10.1.0.7:9100",handler="/api/v1/query",code="200"}[5m])"#, range: true },
    BenchQuery { name: "sum_by_job_rate", expr: r#"sum by (job) (rate(bench_http_requests_total[5m]))"#, range: true },
    BenchQuery { name: "error_ratio", expr: r#"sum by (job) (rate(bench_http_requests_total{code=~"5.."}[5m])) / sum by (job) (rate(bench_http_requests_total[5m]))"#, range: true },
    BenchQuery { name: "p99_latency", expr: r#"histogram_quantile(0.99, sum by (le, handler) (rate(bench_http_request_duration_seconds_bucket[5m])))"#, range: true },
    BenchQuery { name: "topk_cpu", expr: r#"topk(5, sum by (instance) (rate(bench_cpu_seconds_total{mode!="idle"}[5m])))"#, range: true },
    BenchQuery { name: "regex_selector", expr: r#"sum by (region) (rate(bench_http_requests_total{job=~"svc-[1-3]",handler=~".*query.*"}[5m]))"#, range: true },
    BenchQuery { name: "memory_avg_over_time", expr: r#"avg by (region) (avg_over_time(bench_memory_bytes[10m]))"#, range: true },
    BenchQuery { name: "instant_sum_rate", expr: r#"sum by (job, code) (rate(bench_http_requests_total[5m]))"#, range: false },
    BenchQuery { name: "instant_p50_latency", expr: r#"histogram_quantile(0.5, sum by (le) (rate(bench_http_request_duration_seconds_bucket[5m])))"#, range: false },
    BenchQuery { name: "instant_count_series", expr: r#"count by (__name__) ({__name__=~"bench_.+"})"#, range: false },
];
