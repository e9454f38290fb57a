//! Batched read index: confirms leadership of every shard a multi-shard
//! read names with ONE `ReadIndex.Confirm` call per peer, instead of one
//! openraft heartbeat round per shard (two RPCs and a core round trip on
//! each follower, per shard and read).
//!
//! For each shard, after the read arrived, the node takes from its
//! published Raft metrics: that it is leader under a committed vote, its
//! last applied index (only when that entry is of its own term — before
//! that, it may lag what earlier leaders committed) and the shard's voters.
//! Each peer is asked once whether it still holds, per shard, a vote with
//! exactly that leader id (`term`, leader node): holding it means the peer
//! has not voted in a later term. Grants from a quorum of the voters (the
//! node itself included; every config of a joint membership) show that no
//! newer leader had been elected before the read arrived. Every write
//! acknowledged before then is then either this leader's (acknowledged only
//! once applied here) or at or below the index taken (earlier leaders'),
//! and the read is served once that index is applied — the same guarantee as
//! openraft's `ensure_linearizable`. A shard that is not confirmed this way
//! (not leader, fresh term, a peer that is down, slow or predates the
//! service) goes through `ensure_linearizable`, with its errors and
//! redirects.
//!
//! Leader lease ([`lease`], on unless `ServerConfig::read_lease` is off):
//! each grant also says how long ago the peer last heard from the leader;
//! from a quorum of those the node derives a lease (at most 400 ms with
//! Aion's Raft timing) keyed by shard, leader id and membership. While it
//! runs and the shard's leader view still shows that leader id and
//! membership, a read skips the `Confirm` round and is served once the
//! view's commit index is applied; otherwise it confirms as above and the
//! answers renew the lease. Reads are counted by how they were confirmed
//! (`lease`, `confirm`, `linearize`).

use super::server::IngesterService;
use crate::raft::{NodeId, ShardData, ShardId};
use crate::shards::{HostedShard, ShardQuery};
use aion_proto::ingester as pb;
use aion_proto::ingester::read_index_client::ReadIndexClient;
use aion_proto::ingester::read_index_server::ReadIndex;
use openraft::{LeaderId, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

pub(super) mod lease;

pub use lease::ReadIndexCounts;
pub(super) use lease::{LeaseTiming, ReadIndexState};
use lease::ReadVia;

/// Longest wait for a peer's `Confirm` answer before the shards fall back
/// to `ensure_linearizable` (which has its own timeout and errors).
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(500);

/// A leader's view of one shard, taken after the read arrived.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LeaderView {
    /// The leader id of the vote it leads under.
    pub leader_id: LeaderId<NodeId>,
    /// Its commit index (an entry of its own term).
    pub read_index: u64,
    /// The voters, one set per config of the (possibly joint) membership.
    pub joint: Vec<BTreeSet<NodeId>>,
    /// The other voters and their addresses.
    pub peers: Vec<(NodeId, String)>,
}

impl LeaderView {
    /// Whether `me` plus the peers in `granted` are a quorum of every config.
    pub fn confirmed_by(&self, me: NodeId, granted: &BTreeSet<NodeId>) -> bool {
        lease::is_quorum(&self.joint, me, |id| granted.contains(id))
    }
}

/// What a peer reported with its grant of one shard: how long ago its
/// committed vote was last touched, and its leader lease if it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VoteAge {
    /// Time since the peer last heard from the leader (rounded up).
    pub age: Duration,
    /// The peer's leader lease, when it reported one.
    pub lease: Option<Duration>,
}

/// A `Confirm` round's answers: shard → granting peer → its vote age
/// (`None`: a grant that gives no lease).
pub(super) type Grants = BTreeMap<ShardId, BTreeMap<NodeId, Option<VoteAge>>>;

/// `shard`'s leader view on node `me`, or `None` when it cannot serve a
/// batched read index (not leader, no entry of its term applied yet).
///
/// Taken from the shard's published Raft metrics, without a round trip to
/// its Raft task. The read index is the last applied entry, which must be
/// of the leader's own term: every entry earlier leaders committed is then
/// applied here too, and every write this leader acknowledged was applied
/// before it was acknowledged, so the state machine as read holds them all
/// (metrics published a moment late only make the read index lower).
fn leader_view<S>(shard: &HostedShard<S>, me: NodeId) -> Option<LeaderView> {
    let metrics = shard.raft.metrics();
    let m = metrics.borrow();
    let vote = &m.vote;
    if m.state != ServerState::Leader || !vote.is_committed() || vote.leader_id.node_id != me {
        return None;
    }
    let applied = m.last_applied?;
    if applied.leader_id != vote.leader_id {
        return None;
    }
    let membership = m.membership_config.membership();
    let joint: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
    let voters: BTreeSet<NodeId> = joint.iter().flatten().copied().collect();
    let peers = voters
        .iter()
        .filter(|id| **id != me)
        .map(|id| Some((*id, membership.get_node(id)?.addr.clone())))
        .collect::<Option<Vec<_>>>()?;
    Some(LeaderView { leader_id: vote.leader_id, read_index: applied.index, joint, peers })
}

impl<S: ShardData + ShardQuery> IngesterService<S> {
    /// [`IngesterService::leader_shard`] for several shards at once: shards
    /// with a valid lease skip confirmation, the others share one `Confirm`
    /// call per peer (see the module docs); answers in the order of `shards`.
    pub async fn leader_shards(&self, shards: &[ShardId]) -> Vec<Result<Arc<HostedShard<S>>, Status>> {
        let me = self.host.node_id();
        let hosted: Vec<Result<Arc<HostedShard<S>>, Status>> = shards.iter().map(|&s| self.shard(s)).collect();
        let views: Vec<Option<LeaderView>> =
            hosted.iter().map(|h| h.as_ref().ok().and_then(|h| leader_view(h, me))).collect();
        let leased: Vec<bool> =
            shards.iter().zip(&views).map(|(s, v)| v.as_ref().is_some_and(|v| self.leased(*s, v))).collect();
        let to_confirm: Vec<(ShardId, &LeaderView)> = shards
            .iter()
            .zip(&views)
            .zip(&leased)
            .filter_map(|((s, v), leased)| Some((*s, v.as_ref().filter(|_| !leased)?)))
            .collect();
        let t_send = Instant::now();
        let grants = self.ask_peers(&to_confirm).await;
        if self.config.read_lease {
            self.renew_leases(me, &hosted, shards, &to_confirm, &grants, t_send);
        }
        let confirms = hosted.into_iter().zip(&views).zip(shards).zip(leased).map(|(((h, view), shard), leased)| {
            let granted: Option<BTreeSet<NodeId>> = grants.get(shard).map(|g| g.keys().copied().collect());
            async move {
                let h = h?;
                match view {
                    Some(v) if leased => {
                        self.reads.count_read(ReadVia::Lease);
                        self.wait_applied(&h, v.read_index).await?
                    }
                    Some(v) if granted.is_some_and(|g| v.confirmed_by(me, &g)) => {
                        self.reads.count_read(ReadVia::Confirm);
                        self.wait_applied(&h, v.read_index).await?
                    }
                    _ => {
                        self.reads.count_read(ReadVia::Linearize);
                        self.linearize(&h).await?
                    }
                }
                Ok(h)
            }
        });
        futures::future::join_all(confirms).await
    }

    /// Whether `shard` may skip the `Confirm` round: leases are on and one
    /// runs now for exactly `view`'s leader id and membership.
    fn leased(&self, shard: ShardId, view: &LeaderView) -> bool {
        self.config.read_lease && self.reads.leases.valid(shard, &view.leader_id, &view.joint, Instant::now())
    }

    /// Records the lease that each confirmed shard's grants (asked for at
    /// `t_send`) give.
    fn renew_leases(
        &self,
        me: NodeId,
        hosted: &[Result<Arc<HostedShard<S>>, Status>],
        shards: &[ShardId],
        confirmed: &[(ShardId, &LeaderView)],
        grants: &Grants,
        t_send: Instant,
    ) {
        for (shard, view) in confirmed {
            let Some(granted) = grants.get(shard) else { continue };
            let Some(Ok(h)) = shards.iter().position(|s| s == shard).and_then(|i| hosted.get(i)) else { continue };
            let timing = LeaseTiming::of(h.raft.config());
            let spans: BTreeMap<NodeId, Duration> = granted
                .iter()
                .filter_map(|(id, age)| Some((*id, age.and_then(|a| timing.peer_span(a.age, a.lease))?)))
                .collect();
            if let Some(span) = lease::lease_span(&view.joint, me, &spans, timing.cap) {
                self.reads.leases.extend(*shard, view.leader_id, &view.joint, t_send + span);
            }
        }
    }

    /// One `Confirm` per peer named by any view: shard → peers that granted
    /// (with their vote ages).
    async fn ask_peers(&self, views: &[(ShardId, &LeaderView)]) -> Grants {
        let mut per_peer: BTreeMap<(NodeId, &str), Vec<pb::ShardVote>> = BTreeMap::new();
        for (shard, v) in views {
            for (id, addr) in &v.peers {
                let vote = pb::ShardVote { shard: *shard, term: v.leader_id.term, leader_node: v.leader_id.node_id };
                per_peer.entry((*id, addr.as_str())).or_default().push(vote);
            }
        }
        self.reads.count_confirm_calls(per_peer.len() as u64);
        let calls = per_peer.into_iter().map(|((id, addr), votes)| async move {
            let Ok(ch) = self.host.pool().channel(addr) else { return (id, None) };
            let mut client = ReadIndexClient::new(ch);
            match tokio::time::timeout(CONFIRM_TIMEOUT, client.confirm(pb::ConfirmLeadershipRequest { votes })).await {
                Ok(Ok(r)) => (id, Some(r.into_inner())),
                _ => (id, None),
            }
        });
        let mut out = Grants::new();
        for (id, answer) in futures::future::join_all(calls).await {
            let Some(answer) = answer else { continue };
            let ages: BTreeMap<ShardId, VoteAge> = answer
                .vote_ages
                .iter()
                .map(|a| {
                    let lease = (a.leader_lease_ms > 0).then(|| Duration::from_millis(a.leader_lease_ms));
                    (a.shard, VoteAge { age: Duration::from_millis(a.vote_age_ms), lease })
                })
                .collect();
            for shard in answer.granted {
                out.entry(shard).or_default().insert(id, ages.get(&shard).copied());
            }
        }
        out
    }

    /// Waits until `shard` has applied `index` (within the read timeout).
    async fn wait_applied(&self, shard: &HostedShard<S>, index: u64) -> Result<(), Status> {
        if shard.raft.metrics().borrow().last_applied.is_some_and(|l| l.index >= index) {
            return Ok(());
        }
        let timeout = self.config.read_timeout;
        match shard.raft.wait(Some(timeout)).applied_index_at_least(Some(index), "read index").await {
            Ok(_) => Ok(()),
            Err(e) => Err(Status::unavailable(format!(
                "shard {}: commit index {index} not applied within {timeout:?} ({e}); retry",
                shard.id
            ))),
        }
    }

    /// This service's counts of shard reads by how they were confirmed.
    pub fn read_index_counts(&self) -> ReadIndexCounts {
        self.reads.stats.counts()
    }

    /// The same counts over every service of this process (for `/metrics`:
    /// `aion_read_index_shard_reads_total{via="lease"|"confirm"|"linearize"}`).
    pub fn process_read_index_counts() -> ReadIndexCounts {
        lease::PROCESS_READ_STATS.counts()
    }
}

/// `d` in whole milliseconds, rounded up.
fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_millis();
    let rounded = if d > Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)) { ms + 1 } else { ms };
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

#[tonic::async_trait]
impl<S: ShardData + ShardQuery> ReadIndex for IngesterService<S> {
    /// Grants each shard whose vote has exactly the asked leader id; for a
    /// committed vote also reports how long ago it was last touched.
    async fn confirm(&self, req: Request<pb::ConfirmLeadershipRequest>) -> Result<Response<pb::ConfirmLeadershipResponse>, Status> {
        let checks = req.into_inner().votes.into_iter().map(|v| async move {
            let hosted = self.host.shard(v.shard)?;
            let want = LeaderId::new(v.term, v.leader_node);
            let leader_lease_ms = hosted.raft.config().election_timeout_max;
            let held = hosted.raft.with_raft_state(move |st| {
                let vote = st.vote_ref();
                if vote.leader_id != want {
                    return None;
                }
                let touched = st.vote_last_modified().filter(|_| vote.is_committed());
                Some(touched.map(|t| tokio::time::Instant::now().saturating_duration_since(t)))
            });
            let age = held.await.ok()??;
            let age = age.map(|a| pb::ShardVoteAge { shard: v.shard, vote_age_ms: ceil_ms(a), leader_lease_ms });
            Some((v.shard, age))
        });
        let answers: Vec<(ShardId, Option<pb::ShardVoteAge>)> =
            futures::future::join_all(checks).await.into_iter().flatten().collect();
        let granted = answers.iter().map(|(s, _)| *s).collect();
        let vote_ages = answers.into_iter().filter_map(|(_, a)| a).collect();
        Ok(Response::new(pb::ConfirmLeadershipResponse { granted, vote_ages }))
    }
}

#[cfg(test)]
#[path = "read_index/tests.rs"]
mod tests;
