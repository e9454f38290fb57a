//! Several shard batches of one request to the same leader in one
//! `Ingester/PushEncodedMulti` call instead of one `PushEncoded` each.
//!
//! The batches are grouped by the leader the [`super::super::ShardMap`]
//! knows for their shard; a group of two or more goes as one call, a lone
//! batch (or one whose leader is unknown) as its own `PushEncoded`. Each
//! shard in the answer is handled as that shard's own push would be: `Ok`
//! is final, a `NotLeader` is noted and the batch re-sent through the
//! per-shard retry loop ([`ClusterClient::push_body_until`]) to the named
//! leader, `INVALID_ARGUMENT` is final, any other failure forgets the leader
//! and goes through the retry loop too. A failed call as a whole (transport,
//! timeout) sends every batch of the group through the retry loop; a node
//! that answers `UNIMPLEMENTED` (an older ingester) is remembered in
//! [`MultiSupport`] and gets per-shard pushes from then on. Every batch keeps
//! one deadline, the multi call included.

use super::super::pre_encoded::{encode_push_batch, encode_push_multi, push_encoded_multi, PUSH_ENCODED_PATH};
use super::super::{ClientError, ClusterClient};
use super::{PushReport, RetryPolicy};
use crate::raft::ShardId;
use aion_model::storage::WriteBatch;
use aion_proto::ingester as pb;
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

/// Ingester addresses that answered `PushEncodedMulti` with `UNIMPLEMENTED`
/// (sent per-shard `PushEncoded` from then on).
#[derive(Debug, Default)]
pub struct MultiSupport {
    unsupported: RwLock<HashSet<String>>,
}

impl MultiSupport {
    fn supports(&self, addr: &str) -> bool {
        !self.unsupported.read().contains(addr)
    }

    fn mark_unsupported(&self, addr: &str) {
        tracing::info!(addr, "ingester has no PushEncodedMulti; pushing per shard to it");
        self.unsupported.write().insert(addr.to_string());
    }
}

/// One shard batch on its way: shard, encoded `PushEncodedRequest`.
struct Pending {
    shard: ShardId,
    body: Bytes,
}

/// What the multi call left a batch with.
enum Next {
    /// Committed.
    Done(Result<PushReport, ClientError>),
    /// Send it through the per-shard retry loop, counting on from the report.
    Retry(PushReport),
}

impl ClusterClient {
    /// Pushes every shard batch of `batches` (one tenant's request split by
    /// shard) to its leader, the batches sharing a leader in one call; the
    /// results in the order of `batches`. Each batch is retried on its own
    /// per `policy`, as [`ClusterClient::push_shard_batch`] would.
    pub async fn push_shard_batches(
        &self,
        batches: &BTreeMap<ShardId, WriteBatch>,
        policy: &RetryPolicy,
        support: &MultiSupport,
    ) -> Vec<Result<PushReport, ClientError>> {
        let deadline = Instant::now() + policy.deadline;
        let mut groups: BTreeMap<String, Vec<(usize, Pending)>> = BTreeMap::new();
        let mut solo: Vec<(usize, Pending)> = Vec::new();
        for (i, (&shard, batch)) in batches.iter().enumerate() {
            let p = Pending { shard, body: encode_push_batch(shard, batch) };
            match self.route(shard).and_then(|r| r.leader) {
                Some((_, addr)) if support.supports(&addr) => groups.entry(addr).or_default().push((i, p)),
                _ => solo.push((i, p)),
            }
        }
        let mut calls = Vec::new();
        for (addr, group) in groups {
            if group.len() < 2 {
                solo.extend(group);
            } else {
                calls.push(futures::future::Either::Left(self.push_group(addr, group, policy, deadline, support)));
            }
        }
        for (i, p) in solo {
            calls.push(futures::future::Either::Right(async move {
                let report = PushReport::default();
                vec![(i, self.push_body_until(p.shard, PUSH_ENCODED_PATH, p.body, policy, deadline, report).await)]
            }));
        }
        let mut out: Vec<Option<Result<PushReport, ClientError>>> = (0..batches.len()).map(|_| None).collect();
        for (i, result) in futures::future::join_all(calls).await.into_iter().flatten() {
            out[i] = Some(result);
        }
        // Every index gets exactly one result by construction; a hole would
        // be a bug here, answered as a retryable failure rather than a panic.
        out.into_iter()
            .zip(batches.keys())
            .map(|(r, &shard)| {
                r.unwrap_or_else(|| Err(ClientError::NoLeader { shard, reason: "internal: batch left unsent".into() }))
            })
            .collect()
    }

    /// One `PushEncodedMulti` of `group` to `addr`, then the per-shard retry
    /// loop for every batch it did not commit.
    async fn push_group(
        &self,
        addr: String,
        group: Vec<(usize, Pending)>,
        policy: &RetryPolicy,
        deadline: Instant,
        support: &MultiSupport,
    ) -> Vec<(usize, Result<PushReport, ClientError>)> {
        let answers = self.multi_call(&addr, &group, deadline, support).await;
        let retries = group.into_iter().zip(answers).map(|((i, p), next)| {
            let addr = &addr;
            async move {
                let next = match next {
                    Some(answer) => self.handle_answer(p.shard, addr, answer),
                    None => Next::Retry(PushReport::default()),
                };
                let result = match next {
                    Next::Done(r) => r,
                    Next::Retry(report) => {
                        self.push_body_until(p.shard, PUSH_ENCODED_PATH, p.body, policy, deadline, report).await
                    }
                };
                (i, result)
            }
        });
        futures::future::join_all(retries).await
    }

    /// The call itself: one answer per batch of `group`, or `None`s when the
    /// call as a whole failed (or the node lacks the method).
    async fn multi_call(
        &self,
        addr: &str,
        group: &[(usize, Pending)],
        deadline: Instant,
        support: &MultiSupport,
    ) -> Vec<Option<pb::ShardPushAnswer>> {
        let none = || group.iter().map(|_| None).collect();
        let Ok(channel) = self.inner.pool.channel(addr) else { return none() };
        let body = encode_push_multi(group.iter().map(|(_, p)| &p.body));
        let timeout = deadline.saturating_duration_since(Instant::now());
        let reply = match tokio::time::timeout(timeout, push_encoded_multi(channel, body)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                support.mark_unsupported(addr);
                return none();
            }
            Ok(Err(status)) => {
                tracing::debug!(addr, %status, "PushEncodedMulti failed; retrying per shard");
                return none();
            }
            Err(_) => return none(),
        };
        let mut by_shard: BTreeMap<ShardId, pb::ShardPushAnswer> =
            reply.shards.into_iter().map(|a| (a.shard, a)).collect();
        group.iter().map(|(_, p)| by_shard.remove(&p.shard)).collect()
    }

    /// What `addr`'s answer for `shard` means for the batch.
    fn handle_answer(&self, shard: ShardId, addr: &str, answer: pb::ShardPushAnswer) -> Next {
        let report = PushReport { attempts: 1, ..PushReport::default() };
        if answer.status_code != 0 {
            let status = tonic::Status::new(tonic::Code::from(answer.status_code), answer.status_message);
            let err = ClientError::from_status(shard, addr, &status);
            if !err.is_retryable() {
                return Next::Done(Err(err));
            }
            if self.route(shard).and_then(|r| r.leader).is_some_and(|(_, a)| a == addr) {
                self.forget_leader(shard);
            }
            return Next::Retry(report);
        }
        match answer.response.and_then(|r| r.outcome) {
            Some(pb::push_response::Outcome::Ok(result)) => {
                self.confirm_leader(shard, addr);
                Next::Done(Ok(PushReport { result, leader_addr: addr.to_string(), ..report }))
            }
            Some(pb::push_response::Outcome::NotLeader(nl)) => {
                if !nl.leader_addr.is_empty() && nl.leader_addr != addr {
                    self.note_leader(shard, nl.leader_id, &nl.leader_addr);
                } else {
                    self.forget_leader(shard);
                }
                Next::Retry(PushReport { attempts: 0, redirects: 1, ..PushReport::default() })
            }
            None => Next::Retry(report),
        }
    }
}
