//! The linger of [`GroupCommit`] on a real one-node Raft group: while push
//! calls overlap, writes that reach an idle shard within the
//! linger share one log entry; a lone caller, or no linger, proposes at once.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::{GroupCommit, PushLoad};
use crate::raft::{MemShardData, RaftLogDb, ShardStateMachine, ShardWrite};
use crate::shards::{default_raft_config, HostedShard, ShardHost};
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn write(name: &str) -> ShardWrite {
    let batch = WriteBatch {
        tenant: TenantId::new("t").unwrap(),
        series: vec![SeriesSamples {
            labels: Labels::from_pairs([("__name__", name.to_string())]),
            samples: vec![Sample::new(1, 1.0)],
        }],
    };
    ShardWrite::from_batch(&batch)
}

/// A one-node host leading shard 0, with `linger` on its writes.
async fn leader(linger: Duration) -> (Arc<ShardHost<MemShardData>>, Arc<HostedShard<MemShardData>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(default_raft_config().validate().unwrap());
    let host = Arc::new(
        ShardHost::new(1, "127.0.0.1:1", RaftLogDb::open(dir.path()).unwrap(), config)
            .with_write_linger(linger),
    );
    host.open_shard(0, ShardStateMachine::new(Arc::new(MemShardData::new()))).await.unwrap();
    let members: BTreeMap<u64, String> = [(1, "127.0.0.1:1".to_string())].into();
    host.initialize(0, &members).await.unwrap();
    let shard = host.shard(0).unwrap();
    shard.raft.wait(Some(Duration::from_secs(5))).current_leader(1, "leader").await.unwrap();
    (host, shard, dir)
}

fn last_index(shard: &HostedShard<MemShardData>) -> u64 {
    shard.raft.metrics().borrow().last_log_index.unwrap_or(0)
}

/// Writes `a`, then `b` 20 ms later, both through the group committer;
/// returns how many log entries they took.
async fn entries_for_two_writes(shard: &Arc<HostedShard<MemShardData>>) -> u64 {
    let before = last_index(shard);
    let (s1, s2) = (Arc::clone(shard), Arc::clone(shard));
    let first = tokio::spawn(async move { s1.writer.write(&s1.raft, write("a")).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = tokio::spawn(async move { s2.writer.write(&s2.raft, write("b")).await });
    let (r1, r2) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    assert_eq!((r1.appended, r2.appended), (1, 1), "each write gets its own summary");
    last_index(shard) - before
}

#[tokio::test]
async fn under_concurrent_pushes_writes_within_the_linger_share_one_entry() {
    let (host, shard, _dir) = leader(Duration::from_millis(300)).await;
    let (_own, _other) = (host.push_load().enter(), host.push_load().enter());
    assert_eq!(entries_for_two_writes(&shard).await, 1);
}

#[tokio::test]
async fn a_lone_push_call_does_not_wait_for_the_linger() {
    let (host, shard, _dir) = leader(Duration::from_secs(3)).await;
    let _own = host.push_load().enter();
    let started = std::time::Instant::now();
    shard.writer.write(&shard.raft, write("x")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn without_a_linger_an_idle_shard_proposes_at_once() {
    let (host, shard, _dir) = leader(Duration::ZERO).await;
    let (_own, _other) = (host.push_load().enter(), host.push_load().enter());
    // `a` commits (an fsync on one node) well within the 20 ms before `b`.
    assert_eq!(entries_for_two_writes(&shard).await, 2);
}

#[test]
fn default_has_no_linger_and_the_load_counts_guards() {
    let gc = GroupCommit::default();
    assert!(gc.linger.is_zero());
    let one = gc.load.enter();
    assert!(!gc.load.concurrent());
    let two = gc.load.enter();
    assert!(gc.load.concurrent());
    drop((one, two));
    assert!(gc.load.concurrent(), "an overlap a moment ago still counts");
    assert!(!PushLoad::default().concurrent());
}
