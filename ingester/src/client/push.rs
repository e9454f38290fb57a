//! The write path of the cluster client: push one shard's batch to the
//! shard's Raft leader.
//!
//! The leader comes from the [`super::ShardMap`] (refreshed first when the
//! shard is unknown). A `NotLeader` answer names the real leader: the map
//! is updated ([`ClusterClient::note_leader`]) and the batch re-sent there at
//! once (bounded, so two confused nodes cannot bounce a request forever).
//! `UNAVAILABLE`, timeouts and transport errors forget the leader and try the
//! next candidate (leader, then the other voters, then learners) after an
//! exponential backoff, for at most [`RetryPolicy::max_attempts`] attempts
//! and never past the request's deadline. Re-sending a batch that may have
//! committed is safe: the state machine accepts exact duplicate samples
//! silently. `INVALID_ARGUMENT` is final.

use super::pre_encoded::{encode_push, encode_push_batch, push_encoded, PUSH_ENCODED_PATH, PUSH_PATH};

mod multi;

pub use multi::MultiSupport;
use super::{ClientError, ClusterClient};
use bytes::Bytes;
use crate::raft::ShardId;
use aion_model::storage::WriteBatch;
use aion_proto::ingester as pb;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Most `NotLeader` redirects followed in a row before it counts as a
/// failed attempt (two nodes naming each other cannot bounce a request).
const MAX_REDIRECTS_IN_A_ROW: u32 = 3;

/// Retry timing of a shard push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per shard batch (the first one included); redirects are free.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each further one.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Longest one shard push may take, retries included.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 10 attempts, 20 ms doubling to 320 ms (≈2 s of backoff: enough to ride
    /// out one leader election), within 10 s.
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(320),
            deadline: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.deadline.is_zero() {
            return Err("deadline must be positive".into());
        }
        if self.initial_backoff > self.max_backoff {
            return Err(format!(
                "initial_backoff {:?} is larger than max_backoff {:?}",
                self.initial_backoff, self.max_backoff
            ));
        }
        Ok(())
    }

    /// The pause after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// A committed shard push: what the state machine did, and what it took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushReport {
    /// The shard's answer.
    pub result: pb::PushResult,
    /// Address of the ingester that committed it.
    pub leader_addr: String,
    /// Attempts made (1 when the first one succeeded).
    pub attempts: u32,
    /// `NotLeader` redirects followed.
    pub redirects: u32,
}

/// What one push attempt ended with, when it did not commit.
enum AttemptError {
    /// Follow the redirect to this leader now.
    Redirect { leader: u64, addr: String },
    /// A failure: retry (if retryable) after a backoff.
    Failed(ClientError),
}

impl ClusterClient {
    /// Pushes `req` (one tenant's batch for `req.shard`) to the shard's
    /// leader, following redirects and retrying per `policy`. The request is
    /// encoded once; every attempt sends the same bytes.
    pub async fn push_shard(&self, req: &pb::PushRequest, policy: &RetryPolicy) -> Result<PushReport, ClientError> {
        self.push_body(req.shard, PUSH_PATH, encode_push(req), policy).await
    }

    /// Like [`ClusterClient::push_shard`] for `batch` (one tenant's series
    /// of `shard`), sent with `PushEncoded` in the Raft batch codec: the
    /// leader validates and appends the bytes without building the series.
    pub async fn push_shard_batch(
        &self,
        shard: ShardId,
        batch: &WriteBatch,
        policy: &RetryPolicy,
    ) -> Result<PushReport, ClientError> {
        self.push_body(shard, PUSH_ENCODED_PATH, encode_push_batch(shard, batch), policy).await
    }

    /// The retry loop of a push: the request `body` to the Push method at `path`.
    async fn push_body(
        &self,
        shard: ShardId,
        path: &'static str,
        body: Bytes,
        policy: &RetryPolicy,
    ) -> Result<PushReport, ClientError> {
        let deadline = Instant::now() + policy.deadline;
        self.push_body_until(shard, path, body, policy, deadline, PushReport::default()).await
    }

    /// [`Self::push_body`] ending at `deadline`, counting on from `report`
    /// (what earlier tries of this batch, e.g. a multi-shard call, took).
    pub(super) async fn push_body_until(
        &self,
        shard: ShardId,
        path: &'static str,
        body: Bytes,
        policy: &RetryPolicy,
        deadline: Instant,
        mut report: PushReport,
    ) -> Result<PushReport, ClientError> {
        let mut redirect: Option<String> = None;
        // Addresses that failed this request: not chosen again while another
        // candidate is left (a refresh may re-install a dead leader for as
        // long as its followers have not noticed).
        let mut failed: Vec<String> = Vec::new();
        let mut hops = 0;
        loop {
            let addr = match redirect.take() {
                Some(a) => Some(a),
                None => self.target(shard, &mut failed).await,
            };
            let Some(addr) = addr else {
                let err = ClientError::NoReplica { shard };
                self.pause_or_fail(shard, policy, deadline, &mut report, err).await?;
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.push_attempt(&addr, shard, path, body.clone(), remaining).await {
                Ok(result) => {
                    report.attempts += 1;
                    report.result = result;
                    self.confirm_leader(shard, &addr);
                    report.leader_addr = addr;
                    return Ok(report);
                }
                Err(AttemptError::Redirect { leader, addr: to })
                    if hops < MAX_REDIRECTS_IN_A_ROW && to != addr && !to.is_empty() =>
                {
                    hops += 1;
                    report.redirects += 1;
                    self.note_leader(shard, leader, &to);
                    redirect = Some(to);
                }
                Err(AttemptError::Redirect { leader, addr: to }) => {
                    let err = ClientError::NoLeader {
                        shard,
                        reason: format!("{addr} redirected to node {leader} at {to:?} after {hops} redirects in a row"),
                    };
                    hops = 0;
                    self.forget_leader(shard);
                    failed.push(addr);
                    self.pause_or_fail(shard, policy, deadline, &mut report, err).await?;
                }
                Err(AttemptError::Failed(err)) => {
                    hops = 0;
                    if !err.is_retryable() {
                        return Err(err);
                    }
                    failed.push(addr.clone());
                    if self.route(shard).and_then(|r| r.leader).is_some_and(|(_, a)| a == addr) {
                        self.forget_leader(shard);
                    }
                    self.pause_or_fail(shard, policy, deadline, &mut report, err).await?;
                }
            }
        }
    }

    /// Counts a failed attempt; returns the error when the budget is spent,
    /// else sleeps the backoff (refreshing the map when no leader is known).
    async fn pause_or_fail(
        &self,
        shard: ShardId,
        policy: &RetryPolicy,
        deadline: Instant,
        report: &mut PushReport,
        err: ClientError,
    ) -> Result<(), ClientError> {
        report.attempts += 1;
        if report.attempts >= policy.max_attempts {
            return Err(err);
        }
        let pause = policy.backoff(report.attempts);
        if Instant::now() + pause >= deadline {
            return Err(ClientError::Deadline { shard, deadline: policy.deadline, last: err.to_string() });
        }
        tracing::debug!(shard, attempt = report.attempts, error = %err, backoff = ?pause, "shard push failed; retrying");
        tokio::time::sleep(pause).await;
        if self.route(shard).and_then(|r| r.leader).is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, self.refresh()).await;
        }
        Ok(())
    }

    /// The address to try next: the first candidate (the leader when known,
    /// then the other members) that has not `failed` this request; when all
    /// have, `failed` is cleared and the round starts over. Refreshes an
    /// unknown shard.
    async fn target(&self, shard: ShardId, failed: &mut Vec<String>) -> Option<String> {
        if self.route(shard).is_none_or(|r| r.replicas.is_empty()) {
            self.refresh().await;
        }
        let candidates = self.route(shard)?.candidates();
        if let Some(addr) = candidates.iter().find(|a| !failed.contains(a)) {
            return Some(addr.clone());
        }
        failed.clear();
        candidates.into_iter().next()
    }

    /// Records that `addr` accepted a write for `shard` (it is the leader).
    fn confirm_leader(&self, shard: ShardId, addr: &str) {
        let Some(route) = self.route(shard) else { return };
        if route.leader.as_ref().is_some_and(|(_, a)| a == addr) {
            return;
        }
        if let Some(r) = route.replicas.iter().find(|r| r.addr == addr) {
            self.note_leader(shard, r.node, addr);
        }
    }

    /// One call of the Push method at `path` with the encoded request `body`
    /// to `addr`, bounded by `timeout`.
    async fn push_attempt(
        &self,
        addr: &str,
        shard: ShardId,
        path: &'static str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<pb::PushResult, AttemptError> {
        let channel = self.inner.pool.channel(addr).map_err(|e| {
            AttemptError::Failed(ClientError::BadAddress { addr: addr.to_string(), reason: e.to_string() })
        })?;
        let reply = match tokio::time::timeout(timeout, push_encoded(channel, path, body)).await {
            Err(_) => {
                return Err(AttemptError::Failed(ClientError::Rpc {
                    shard,
                    addr: addr.to_string(),
                    status: format!("Push timed out after {timeout:?}"),
                    retryable: true,
                }))
            }
            Ok(Err(status)) => return Err(AttemptError::Failed(ClientError::from_status(shard, addr, &status))),
            Ok(Ok(r)) => r,
        };
        match reply.outcome {
            Some(pb::push_response::Outcome::Ok(result)) => Ok(result),
            Some(pb::push_response::Outcome::NotLeader(nl)) => {
                Err(AttemptError::Redirect { leader: nl.leader_id, addr: nl.leader_addr })
            }
            None => Err(AttemptError::Failed(ClientError::Rpc {
                shard,
                addr: addr.to_string(),
                status: "Push answer has no outcome".into(),
                retryable: true,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let got: Vec<u64> = (1..=7).map(|a| p.backoff(a).as_millis() as u64).collect();
        assert_eq!(got, vec![20, 40, 80, 160, 320, 320, 320]);
        assert_eq!(p.backoff(200), Duration::from_millis(320));
        assert!(p.validate().is_ok());
        let bad = RetryPolicy { max_attempts: 0, ..p };
        assert!(bad.validate().unwrap_err().contains("max_attempts"));
    }
}
