//! The PromQL conformance scripts over the cluster: every script runs once
//! over the in-memory store and once over [`ClusterStorage`] (loads pushed
//! to shard leaders by gRPC, queries through [`FanOutQueryable`]); the
//! outcome of every eval must be the same.
//!
//! Each fresh storage the runner asks for (start of a file, every `clear`)
//! is a new tenant, so scripts never see each other's data.

use crate::support::local_cluster::{LocalCluster, Loader};
use aion_ingester::client::{ClientConfig, ClusterClient, FanOutConfig, FanOutQueryable};
use aion_model::labels::Labels;
use aion_model::matcher::Matcher;
use aion_model::memstore::MemStore;
use aion_model::storage::{AppendOutcome, Appender, Queryable, SelectHints, Series, StorageError, WriteBatch};
use aion_model::tenant::TenantId;
use aion_querier::engine::{Engine, EngineOptions};
use aion_querier::promqltest::{parse_script, Outcome, Runner, ScriptStorage};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn testdata_dir() -> PathBuf {
    match std::env::var("AION_PROMQL_TESTDATA") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => crate::support::repo_dir().join("../shared/promql-conformance/testdata"),
    }
}

/// A script storage on the cluster, under its own tenant (the runner's tenant is replaced).
struct ClusterStorage {
    tenant: TenantId,
    loader: Arc<Loader>,
    reader: Arc<FanOutQueryable>,
}

impl Appender for ClusterStorage {
    fn append(&self, mut batch: WriteBatch) -> Result<AppendOutcome, StorageError> {
        batch.tenant = self.tenant.clone();
        let appended = self.loader.push(&batch).map_err(StorageError::Unavailable)?;
        Ok(AppendOutcome { appended, ..AppendOutcome::default() })
    }
}

impl Queryable for ClusterStorage {
    fn select(&self, _: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        self.reader.select(&self.tenant, hints, matchers)
    }

    fn label_names(&self, _: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.reader.label_names(&self.tenant, hints, matchers)
    }

    fn label_values(&self, _: &TenantId, name: &str, hints: &SelectHints, m: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.reader.label_values(&self.tenant, name, hints, m)
    }

    fn series(&self, _: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        self.reader.series(&self.tenant, hints, matchers)
    }
}

/// Per-eval outcome kinds of one file: (line, query, passed/failed/skipped).
fn outcomes(runner: &mut Runner<'_>, text: &str) -> Vec<(usize, String, &'static str, String)> {
    runner
        .run(&parse_script(text))
        .into_iter()
        .map(|e| {
            let (kind, why) = match e.outcome {
                Outcome::Passed => ("passed", String::new()),
                Outcome::Failed(w) => ("failed", w),
                Outcome::Skipped(w) => ("skipped", w),
            };
            (e.line, e.query, kind, why)
        })
        .collect()
}

/// Runs every script in process and through `cluster`; asserts equal outcomes per eval.
pub fn run_both_and_compare(cluster: &LocalCluster) {
    let dir = testdata_dir();
    assert!(dir.is_dir(), "PromQL test data not found at {} (set AION_PROMQL_TESTDATA)", dir.display());
    let read_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let seeds: Vec<String> = cluster.ingesters.addrs().into_values().collect();
    let client = ClusterClient::new(seeds, cluster.ingesters.shards, ClientConfig::default());
    assert!(read_rt.block_on(client.refresh()) > 0, "no ingester answered Shards");
    let reader = Arc::new(FanOutQueryable::new(client, read_rt.handle().clone(), FanOutConfig::default()));
    let loader = Arc::new(cluster.loader());
    let tenants = AtomicUsize::new(0);

    let engine = Engine::new(EngineOptions::default());
    let mut local = Runner::new(engine.clone(), || Box::new(MemStore::new()) as Box<dyn ScriptStorage>);
    let mut remote = Runner::new(engine, || {
        let n = tenants.fetch_add(1, Ordering::SeqCst);
        let tenant = TenantId::new(&format!("conformance-{n}")).expect("BUG: valid tenant id");
        Box::new(ClusterStorage { tenant, loader: loader.clone(), reader: reader.clone() }) as Box<dyn ScriptStorage>
    });
    let (mut passed, mut remote_passed, mut total) = (0, 0, 0);
    let mut differences = Vec::new();
    let started = Instant::now();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("read testdata dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.ends_with(".test"))
        .collect();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        let t0 = Instant::now();
        let ours = outcomes(&mut local, &text);
        let theirs = outcomes(&mut remote, &text);
        assert_eq!(ours.len(), theirs.len(), "{file}: different eval counts");
        let file_passed = theirs.iter().filter(|o| o.2 == "passed").count();
        for (a, b) in ours.iter().zip(&theirs) {
            total += 1;
            passed += usize::from(a.2 == "passed");
            remote_passed += usize::from(b.2 == "passed");
            if a.2 != b.2 {
                differences.push(format!("  {file}:{} {}: in-process {} / cluster {} {}", a.0, a.1, a.2, b.2, b.3));
            }
        }
        println!("{file}: {file_passed} of {} evals passed through the cluster in {:.1?}", theirs.len(), t0.elapsed());
    }
    println!(
        "conformance through the fan-out: {remote_passed} passed (in-process {passed}) of {total} evals, {} tenants, {:.1?}",
        tenants.load(Ordering::SeqCst),
        started.elapsed()
    );
    assert!(differences.is_empty(), "{} evals differ:\n{}", differences.len(), differences.join("\n"));
    assert_eq!(remote_passed, passed);
    assert!(passed > 500, "suspiciously few passing evals: {passed}");
    drop(read_rt);
}
