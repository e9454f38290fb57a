//! The PromQL expressions of the differential test and the evaluation grid.
//!
//! Every evaluation instant has a `.5` s fraction and every range, offset, step
//! and `@` time is whole seconds, while no sample sits on a 500 ms boundary: no
//! selection ever depends on whether a range is closed on the left (2.x) or
//! open (3.x). Subquery steps are whole seconds too, so their points never hit
//! an outer range boundary. Functions new in 3.x and `holt_winters` are left out.

/// When one expression is evaluated.
#[derive(Debug, Clone, Copy)]
pub enum When {
    /// One instant query (time rotating over the grid) and one range query.
    Both,
    /// Instant queries only, at the given grid instants (empty: one rotating instant).
    Instant(&'static [usize]),
    /// Instant queries at the given instants plus one rotating range query.
    BothAt(&'static [usize]),
}

/// One expression and when to evaluate it; `{AT}` is replaced by a whole-second unix time.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The PromQL text (with `{AT}` placeholders).
    pub expr: &'static str,
    /// Which queries to run.
    pub when: When,
}

/// The kind and parameters of one query, in unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `/api/v1/query` at `time`.
    Instant { time: f64 },
    /// `/api/v1/query_range`.
    Range { start: f64, end: f64, step: f64 },
}

/// One concrete query to send to both servers.
#[derive(Debug, Clone)]
pub struct Query {
    /// Expanded PromQL text.
    pub expr: String,
    /// Instant or range, with times.
    pub kind: Kind,
    /// Whether result order matters (instant `sort`/`sort_desc`).
    pub ordered: bool,
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            Kind::Instant { time } => write!(f, "instant @{time:.3}: {}", self.expr),
            Kind::Range { start, end, step } => write!(f, "range [{start:.3}, {end:.3}] step {step}s: {}", self.expr),
        }
    }
}

/// Evaluation times relative to the data's grid origin.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Instant-query times (unix s, `.5` fraction). Index 1 lies in the batch target's gap.
    pub instants: Vec<f64>,
    /// Range queries `(start, end, step)` in unix s.
    pub ranges: Vec<(f64, f64, f64)>,
    /// The whole-second time substituted for `{AT}`.
    pub at: i64,
}

impl Grid {
    /// The grid for data whose origin is `start_ms` (whole second).
    pub fn new(start_ms: i64) -> Grid {
        let s = (start_ms / 1000) as f64;
        let m = 60.0;
        Grid {
            instants: vec![s + 49.0 * m + 31.5, s + 27.0 * m + 7.5, s + 38.0 * m + 44.5, s + 15.0 * m + 2.5, s + 44.0 * m + 19.5],
            ranges: vec![
                (s + 10.0 * m + 0.5, s + 40.0 * m + 0.5, 30.0),
                (s + 15.0 * m + 3.5, s + 49.0 * m + 3.5, 60.0),
                (s + 8.0 * m + 11.5, s + 38.0 * m + 11.5, 47.0),
                (s + 30.0 * m + 0.5, s + 40.0 * m + 0.5, 15.0),
            ],
            at: start_ms / 1000 + 30 * 60 + 11,
        }
    }

    /// Expands `cases` into queries, rotating instants and ranges by case index.
    pub fn expand(&self, cases: &[Case]) -> Vec<Query> {
        let mut out = Vec::new();
        for (n, c) in cases.iter().enumerate() {
            let expr = c.expr.replace("{AT}", &self.at.to_string());
            let ordered = expr.starts_with("sort(") || expr.starts_with("sort_desc(");
            let rotating = [n % self.instants.len()];
            let (instants, range): (&[usize], bool) = match c.when {
                When::Both => (&rotating, true),
                When::Instant([]) => (&rotating, false),
                When::Instant(at) => (at, false),
                When::BothAt(at) => (at, true),
            };
            for &i in instants {
                out.push(Query { expr: expr.clone(), kind: Kind::Instant { time: self.instants[i] }, ordered });
            }
            if range {
                let (start, end, step) = self.ranges[n % self.ranges.len()];
                out.push(Query { expr: expr.clone(), kind: Kind::Range { start, end, step }, ordered: false });
            }
        }
        out
    }
}

const fn both(expr: &'static str) -> Case {
    Case { expr, when: When::Both }
}

const fn inst(expr: &'static str, at: &'static [usize]) -> Case {
    Case { expr, when: When::Instant(at) }
}

const fn both_at(expr: &'static str, at: &'static [usize]) -> Case {
    Case { expr, when: When::BothAt(at) }
}

/// Selectors, matchers, offset, `@`.
const SELECTORS: &[Case] = &[
    both(r#"http_requests_total"#),
    both(r#"http_requests_total{job="api"}"#),
    both(r#"http_requests_total{job!="api"}"#),
    both(r#"http_requests_total{code=~"5.."}"#),
    both(r#"http_requests_total{method!~"g.*", code="200"}"#),
    both(r#"{__name__=~"request_duration_seconds_(sum|count)", job="web"}"#),
    both(r#"node_temperature_celsius{zone="a", instance=~"10\\.0\\.1\\..*"}"#),
    both(r#"up{job=~"api|batch"}"#),
    both(r#"memory_usage_bytes offset 5m"#),
    both(r#"node_temperature_celsius offset 7m30s"#),
    inst(r#"http_requests_total{instance="10.0.1.1:8080"}[2m]"#, &[0, 2]),
    inst(r#"node_temperature_celsius{zone="b"}[1m] offset 3m"#, &[3]),
    inst(r#"batch_jobs_processed_total[12m]"#, &[1]),
    both(r#"memory_usage_bytes @ {AT}"#),
    both(r#"rate(http_requests_total{code="200"}[5m] @ {AT})"#),
    both(r#"node_temperature_celsius @ start()"#),
    both(r#"sum(memory_usage_bytes @ end())"#),
    both_at(r#"batch_jobs_processed_total"#, &[0, 1]),
    both(r#"up"#),
    both(r#"build_info"#),
    both(r#"count by (__name__) ({__name__=~".+"})"#),
    both(r#"request_duration_seconds_bucket{le=~"0\\.[0-9]+", instance="10.0.2.1:80"}"#),
];

/// Arithmetic, comparisons, vector matching, set operators.
const BINARY: &[Case] = &[
    both(r#"memory_usage_bytes / 1024 / 1024"#),
    both(r#"node_temperature_celsius * 1.8 + 32"#),
    both(r#"-node_temperature_celsius"#),
    both(r#"node_temperature_celsius % 7"#),
    both(r#"node_temperature_celsius ^ 2"#),
    both(r#"rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])"#),
    both(r#"memory_usage_bytes - memory_usage_bytes offset 10m"#),
    both(r#"2 * 3 + 4 ^ 2 - 10 / 4"#),
    both(r#"node_temperature_celsius{zone="a"} - ignoring(zone) node_temperature_celsius{zone="b"}"#),
    both(r#"node_temperature_celsius{zone="a"} + on(job, instance) node_temperature_celsius{zone="b"}"#),
    both(r#"rate(http_requests_total[5m]) / on(job, instance, method) group_left sum by (job, instance, method) (rate(http_requests_total[5m]))"#),
    both(r#"memory_usage_bytes * on(job, instance) group_left(version) build_info"#),
    both(r#"sum by (job, instance) (up) * on(job, instance) group_right http_requests_total"#),
    both(r#"http_requests_total{code="500"} / ignoring(code) http_requests_total{code="200"}"#),
    both(r#"node_temperature_celsius > 5"#),
    both(r#"node_temperature_celsius < bool 0"#),
    both(r#"memory_usage_bytes >= 3e8"#),
    both(r#"rate(http_requests_total[5m]) > bool 1"#),
    both(r#"node_temperature_celsius{zone="a"} > ignoring(zone) node_temperature_celsius{zone="b"}"#),
    both_at(r#"up == 0"#, &[2]),
    both(r#"up != bool 1"#),
    both(r#"5 > bool 3"#),
    both(r#"node_temperature_celsius == bool node_temperature_celsius"#),
    both(r#"2 < node_temperature_celsius"#),
    both(r#"http_requests_total and on(job, instance) up == 1"#),
    both(r#"memory_usage_bytes or node_temperature_celsius"#),
    both(r#"up unless on(job) http_requests_total"#),
    both(r#"node_temperature_celsius > 0 or node_temperature_celsius < -10"#),
    both(r#"(memory_usage_bytes > 2e8) unless on(instance) (up == 0)"#),
    both(r#"batch_jobs_processed_total or vector(0)"#),
    both(r#"node_temperature_celsius and ignoring(zone) (memory_usage_bytes > 2.5e8)"#),
    both(r#"sum by (job) (up) * 100 / count by (job) (up)"#),
    both(r#"(sum by (job) (rate(http_requests_total{code="500"}[5m])) / sum by (job) (rate(http_requests_total[5m]))) * 100"#),
];

/// Aggregation operators.
const AGGREGATIONS: &[Case] = &[
    both(r#"sum(http_requests_total)"#),
    both(r#"sum by (job) (rate(http_requests_total[5m]))"#),
    both(r#"sum without (method, code) (rate(http_requests_total[5m]))"#),
    both(r#"sum(rate(http_requests_total[5m])) by (code)"#),
    both(r#"avg by (zone) (node_temperature_celsius)"#),
    both(r#"avg(rate(http_requests_total[5m])) by (method)"#),
    both(r#"avg without (instance) (memory_usage_bytes)"#),
    both(r#"min(node_temperature_celsius)"#),
    both(r#"max by (job) (memory_usage_bytes)"#),
    both(r#"max without (zone, instance) (node_temperature_celsius)"#),
    both(r#"count(up)"#),
    both(r#"count without (le) (request_duration_seconds_bucket)"#),
    both(r#"count(node_temperature_celsius < 0)"#),
    both(r#"count(count by (job) (up))"#),
    both(r#"group by (job) (http_requests_total)"#),
    both(r#"group(node_temperature_celsius) by (zone)"#),
    both(r#"stddev(node_temperature_celsius)"#),
    both(r#"stddev by (zone) (node_temperature_celsius)"#),
    both(r#"stdvar by (job) (node_temperature_celsius)"#),
    both(r#"stdvar(rate(http_requests_total{code="200"}[5m]))"#),
    both(r#"topk(3, rate(http_requests_total[5m]))"#),
    both(r#"topk by (job) (1, node_temperature_celsius)"#),
    both(r#"topk(2, sum by (instance) (rate(request_duration_seconds_count[5m])))"#),
    both(r#"bottomk(2, memory_usage_bytes)"#),
    both(r#"bottomk by (job) (1, rate(http_requests_total{code="500"}[5m]))"#),
    both(r#"quantile(0.9, rate(http_requests_total[5m]))"#),
    both(r#"quantile by (job) (0.25, node_temperature_celsius)"#),
    both(r#"quantile without (zone) (0.5, node_temperature_celsius)"#),
    both(r#"count_values("value", up)"#),
    both(r#"count_values by (job) ("temp_bucket", floor(node_temperature_celsius / 5))"#),
    both(r#"sum by (job, code) (increase(http_requests_total[10m]))"#),
    both(r#"sum(node_temperature_celsius) without (zone) > 10"#),
    inst(r#"sort_desc(sum by (instance) (rate(http_requests_total[5m])))"#, &[0, 3]),
    inst(r#"sort(node_temperature_celsius)"#, &[2, 4]),
    inst(r#"sort_desc(topk(3, memory_usage_bytes))"#, &[1]),
    inst(r#"sort(avg by (job) (memory_usage_bytes))"#, &[0]),
];

/// Counter and gauge range functions.
const RANGE_FUNCTIONS: &[Case] = &[
    both(r#"rate(http_requests_total[5m])"#),
    both(r#"rate(http_requests_total[90s])"#),
    both(r#"irate(http_requests_total[3m])"#),
    both(r#"increase(http_requests_total[10m])"#),
    both(r#"rate(http_requests_total[5m] offset 10m)"#),
    both(r#"increase(http_requests_total{code="500"}[7m] @ {AT})"#),
    both_at(r#"rate(batch_jobs_processed_total[5m])"#, &[0, 1]),
    both(r#"increase(batch_jobs_processed_total[15m])"#),
    both(r#"irate(batch_jobs_processed_total[1m])"#),
    both(r#"delta(node_temperature_celsius[10m])"#),
    both(r#"delta(memory_usage_bytes[3m])"#),
    both(r#"idelta(node_temperature_celsius[2m])"#),
    both(r#"deriv(node_temperature_celsius[10m])"#),
    both(r#"deriv(memory_usage_bytes[15m])"#),
    both(r#"predict_linear(node_temperature_celsius[10m], 600)"#),
    both(r#"predict_linear(memory_usage_bytes[20m], 3600)"#),
    both(r#"resets(http_requests_total[20m])"#),
    both(r#"resets(request_duration_seconds_count[30m])"#),
    both(r#"changes(node_temperature_celsius[5m])"#),
    both(r#"changes(up[30m])"#),
    both(r#"rate(request_duration_seconds_bucket{le="+Inf"}[5m])"#),
    both(r#"rate(request_duration_seconds_count[5m]) - ignoring(le) rate(request_duration_seconds_bucket{le="+Inf"}[5m])"#),
];

/// `*_over_time`, `absent*`, histogram quantiles.
const OVER_TIME: &[Case] = &[
    both(r#"avg_over_time(node_temperature_celsius[10m])"#),
    both(r#"sum_over_time(up[5m])"#),
    both(r#"min_over_time(memory_usage_bytes[15m])"#),
    both(r#"max_over_time(node_temperature_celsius[7m])"#),
    both(r#"count_over_time(batch_jobs_processed_total[10m])"#),
    both(r#"count_over_time(http_requests_total{code="500"}[1m])"#),
    both(r#"last_over_time(node_temperature_celsius[3m])"#),
    both(r#"last_over_time(build_info[10m])"#),
    both(r#"quantile_over_time(0.75, node_temperature_celsius[10m])"#),
    both(r#"quantile_over_time(0.5, memory_usage_bytes[20m])"#),
    both(r#"stddev_over_time(node_temperature_celsius[10m])"#),
    both(r#"stdvar_over_time(memory_usage_bytes[10m])"#),
    both(r#"present_over_time(batch_jobs_processed_total[2m])"#),
    both_at(r#"absent_over_time(batch_jobs_processed_total{job="batch"}[2m])"#, &[1]),
    both(r#"absent_over_time(nonexistent_metric{job="x"}[5m])"#),
    both(r#"max_over_time(memory_usage_bytes[5m] @ {AT})"#),
    both(r#"histogram_quantile(0.9, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))"#),
    both(r#"histogram_quantile(0.5, rate(request_duration_seconds_bucket[10m]))"#),
    both(r#"histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m])))"#),
    both(r#"histogram_quantile(0.25, sum by (le, instance) (increase(request_duration_seconds_bucket[15m])))"#),
    both(r#"histogram_quantile(0.75, sum by (le) (rate(request_duration_seconds_bucket[5m] offset 5m)))"#),
    both(r#"sum by (job) (rate(request_duration_seconds_sum[5m])) / sum by (job) (rate(request_duration_seconds_count[5m]))"#),
    both(r#"sum by (le) (request_duration_seconds_bucket{job="api"})"#),
];

/// Label manipulation, math, time, absent, scalar/vector.
const FUNCTIONS: &[Case] = &[
    both(r#"label_replace(up, "host", "$1", "instance", "(.*):.*")"#),
    both(r#"label_replace(memory_usage_bytes, "short_job", "$1", "job", "(..).*")"#),
    both(r#"label_replace(node_temperature_celsius, "zone", "z-$1", "zone", "(.+)")"#),
    both(r#"label_replace(up, "nomatch", "x", "job", "zzz")"#),
    both(r#"label_replace(sum by (instance) (rate(http_requests_total[5m])), "port", "$2", "instance", "(.*):(.*)")"#),
    both(r#"label_join(up, "job_instance", "/", "job", "instance")"#),
    both(r#"label_join(build_info, "all", ",", "version", "job", "instance")"#),
    both(r#"abs(node_temperature_celsius)"#),
    both(r#"ceil(node_temperature_celsius)"#),
    both(r#"floor(node_temperature_celsius)"#),
    both(r#"round(node_temperature_celsius)"#),
    both(r#"round(node_temperature_celsius, 0.5)"#),
    both(r#"clamp(node_temperature_celsius, -5, 5)"#),
    both(r#"clamp_min(node_temperature_celsius, 0)"#),
    both(r#"clamp_max(memory_usage_bytes, 3e8)"#),
    both(r#"sqrt(node_temperature_celsius)"#),
    both(r#"exp(node_temperature_celsius / 10)"#),
    both(r#"ln(memory_usage_bytes)"#),
    both(r#"log2(memory_usage_bytes)"#),
    both(r#"log10(rate(http_requests_total[5m]))"#),
    both(r#"sgn(node_temperature_celsius)"#),
    both(r#"time()"#),
    both(r#"vector(time())"#),
    both(r#"minute(vector(time()))"#),
    both(r#"hour(vector(time()))"#),
    both(r#"day_of_week(vector({AT}))"#),
    both(r#"day_of_month(vector(time())) + month(vector(time())) * 100 + year(vector(time())) * 10000"#),
    both(r#"days_in_month(vector({AT}))"#),
    both(r#"minute(timestamp(up))"#),
    both(r#"timestamp(up)"#),
    both(r#"timestamp(node_temperature_celsius{zone="a"})"#),
    both(r#"time() - timestamp(memory_usage_bytes)"#),
    both(r#"absent(nonexistent_metric{job="x", instance=~"y.*"})"#),
    both_at(r#"absent(up{job="batch"})"#, &[1]),
    both(r#"scalar(sum(up))"#),
    both(r#"scalar(up)"#),
    both(r#"vector(1)"#),
    both(r#"memory_usage_bytes / scalar(sum(memory_usage_bytes))"#),
    both(r#"vector(scalar(count(up)))"#),
];

/// Subqueries.
const SUBQUERIES: &[Case] = &[
    both(r#"max_over_time(rate(http_requests_total[5m])[20m:1m])"#),
    both(r#"avg_over_time(sum by (job) (rate(http_requests_total[2m]))[15m:30s])"#),
    both(r#"min_over_time(node_temperature_celsius[10m:1m])"#),
    both(r#"max_over_time(deriv(node_temperature_celsius[5m])[10m:2m] offset 3m)"#),
    both(r#"rate(sum(http_requests_total)[10m:1m])"#),
    both(r#"quantile_over_time(0.9, sum(rate(request_duration_seconds_count[5m]))[20m:1m])"#),
    both(r#"sum_over_time((node_temperature_celsius > 0)[10m:1m])"#),
    both(r#"count_over_time(absent(up{job="batch"})[20m:1m])"#),
    both(r#"stddev_over_time(memory_usage_bytes[10m:90s])"#),
    both(r#"last_over_time(up[30m:5m])"#),
    both(r#"max_over_time(histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))[15m:1m])"#),
];

/// Literals, precedence, nesting and modifier combinations.
const MIXED: &[Case] = &[
    inst(r#""hello""#, &[0]),
    inst(r#"42"#, &[3]),
    both(r#"2 ^ 3 ^ 2"#),
    both(r#"-2 ^ 2"#),
    both(r#"-(1 + 2) * 3 % 4"#),
    both(r#"memory_usage_bytes offset 5m @ {AT}"#),
    both(r#"max_over_time(rate(http_requests_total[5m])[10m:1m] @ {AT})"#),
    both(r#"sum_over_time(node_temperature_celsius[5m] offset 1m)"#),
    both(r#"max_over_time(node_temperature_celsius[5m] @ end())"#),
    both(r#"node_temperature_celsius > bool scalar(avg(node_temperature_celsius))"#),
    both(r#"max(sum by (job) (rate(http_requests_total[5m])))"#),
    both(r#"absent(sum(nonexistent_metric))"#),
    both(r#"avg_over_time(up[10m])"#),
    both(r#"stddev_over_time(up[10m])"#),
    both(r#"count by (le) (request_duration_seconds_bucket)"#),
    both(r#"histogram_quantile(0.9, sum without (instance) (rate(request_duration_seconds_bucket[5m])))"#),
    both(r#"deriv(http_requests_total{code="200"}[10m])"#),
    both(r#"irate(request_duration_seconds_count[2m])"#),
    both(r#"idelta(http_requests_total[1m])"#),
    both(r#"label_replace(up, "job", "", "job", ".*")"#),
    both(r#"rate(http_requests_total[5m]) and topk(4, rate(http_requests_total[5m]))"#),
    both(r#"sum by (job) (memory_usage_bytes) / on(job) group_left count by (job) (up)"#),
    both(r#"1 - node_temperature_celsius{zone="a"} / ignoring(zone) group_left node_temperature_celsius{zone="b"}"#),
    both(r#"changes(memory_usage_bytes[10m] offset 2m)"#),
];

/// Every case.
pub fn cases() -> Vec<Case> {
    [SELECTORS, BINARY, AGGREGATIONS, RANGE_FUNCTIONS, OVER_TIME, FUNCTIONS, SUBQUERIES, MIXED].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_times_are_off_the_sample_boundaries() {
        let g = Grid::new(1_700_000_000_000);
        for t in g.instants.iter().chain(g.ranges.iter().map(|r| &r.0)) {
            assert_eq!((t * 1000.0).round() as i64 % 1000, 500, "{t}");
        }
        assert!(g.ranges.iter().all(|r| r.2.fract() == 0.0 && r.1 > r.0));
    }

    #[test]
    fn expansion_substitutes_at_and_counts_queries() {
        let g = Grid::new(1_700_000_000_000);
        let qs = g.expand(&cases());
        assert!(qs.len() >= 250, "only {} queries", qs.len());
        assert!(qs.iter().all(|q| !q.expr.contains("{AT}")));
        assert!(qs.iter().any(|q| q.expr.contains("@ 1700001811")));
        let sorted: Vec<&Query> = qs.iter().filter(|q| q.ordered).collect();
        assert!(!sorted.is_empty() && sorted.iter().all(|q| matches!(q.kind, Kind::Instant { .. })));
    }
}
