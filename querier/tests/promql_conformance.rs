//! Runs Prometheus's PromQL test scripts (`../shared/promql-conformance/testdata`,
//! or `$AION_PROMQL_TESTDATA`) against the engine over a `MemStore`.
//!
//! Tier-1 files must pass except the evals listed, with a reason, in
//! `tests/promql_known_failures.txt`; a listed eval that passes fails the test
//! (the list is stale). Other tiers are reported only.
//!
//! Run: `cargo test -p aion-querier --test promql_conformance -- --nocapture`
//! (set `AION_PROMQL_VERBOSE=1` to list skipped evals and known failures too).

use aion_model::memstore::MemStore;
use aion_querier::engine::{Engine, EngineOptions};
use aion_querier::promqltest::{run_dir, KnownFailures, Runner, ScriptStorage, Summary};
use std::path::PathBuf;

const TIER1: &[&str] = &[
    "aggregators.test",
    "at_modifier.test",
    "collision.test",
    "functions.test",
    "histograms.test",
    "literals.test",
    "operators.test",
    "range_queries.test",
    "selectors.test",
    "staleness.test",
    "subquery.test",
    "trig_functions.test",
    "name_label_dropping.test",
];

fn testdata_dir() -> PathBuf {
    match std::env::var("AION_PROMQL_TESTDATA") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        // The run-time value: a binary reused from a shared target dir may have been built in another checkout.
        _ => std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .join("../../shared/promql-conformance/testdata"),
    }
}

#[test]
fn promql_conformance() {
    let dir = testdata_dir();
    if !dir.is_dir() {
        panic!("PromQL test data not found at {} (set AION_PROMQL_TESTDATA)", dir.display());
    }
    let known_text = include_str!("promql_known_failures.txt");
    let known = KnownFailures::parse(known_text).unwrap_or_else(|e| panic!("bad known failures list: {e}"));
    let engine = Engine::new(EngineOptions::default());
    let mut runner = Runner::new(engine, || Box::new(MemStore::new()) as Box<dyn ScriptStorage>);
    let reports = run_dir(&dir, &mut runner).unwrap_or_else(|e| panic!("running scripts: {e}"));
    let verbose = std::env::var("AION_PROMQL_VERBOSE").is_ok_and(|v| !v.is_empty());
    let mut text = String::new();
    let mut total = Summary::default();
    let mut tier1 = Summary::default();
    for r in &reports {
        let is_tier1 = TIER1.contains(&r.file.as_str());
        let s = r.summarize(&known, verbose, &mut text);
        total.add(&s);
        if is_tier1 {
            tier1.add(&s);
        }
    }
    println!("{text}tier 1: {}, {} known failures", tier1.total_line(), tier1.known);
    println!("{}", total.total_line());
    assert!(tier1.stale_known.is_empty(), "known failures that now pass (remove them): {:?}", tier1.stale_known);
    assert_eq!(tier1.failed, 0, "tier-1 PromQL conformance failures (see output above)");
}
