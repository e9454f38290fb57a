//! Leader leases for the batched read index: the arithmetic that turns a
//! `Confirm` round's vote ages into a lease, the per-shard lease table, the
//! startup vote hold and the read counters.
//!
//! Why a lease holds: an openraft follower whose vote is committed refuses
//! every vote request while `now <= vote_last_modified + leader_lease`
//! (`Engine::handle_vote_req`), touches that time on each AppendEntries or
//! heartbeat from its leader, and does not elect itself before
//! `leader_lease + election_timeout` has passed since. A peer answering
//! `Confirm` at or after the leader's `t_send` with "my committed vote for
//! you was touched `age` ago" therefore refuses other candidates until at
//! least `t_send - age + leader_lease`. If the leader plus peers with such
//! bounds form a quorum of every config, no other leader can be elected
//! before the smallest of those bounds: any electing quorum shares a node
//! with them, and the leader itself only votes for another candidate after
//! stepping down, which the reader sees (the read's leader view is taken
//! after the read arrived and must still show the same leader id).
//!
//! Clock assumption: the peers' and the leader's monotonic clocks advance
//! at rates within [`LEASE_SHARE`] of each other over a lease (20 %), and
//! a lease never runs longer than [`LeaseTiming::cap`] past `t_send`.

use crate::raft::{NodeId, ShardId};
use openraft::LeaderId;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Share of a peer's leader lease the leader relies on, as a fraction
/// (numerator, denominator): the rest absorbs clock-rate drift between
/// nodes and scheduling delays.
pub(crate) const LEASE_SHARE: (u32, u32) = (4, 5);

/// How much longer than the leader lease a freshly started node refuses
/// vote requests (see [`VoteHold`]).
pub(crate) const VOTE_HOLD_MARGIN: Duration = Duration::from_millis(200);

/// Lease lengths derived from a shard's openraft config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseTiming {
    /// openraft's `leader_lease` (= `election_timeout_max`).
    pub leader_lease: Duration,
    /// Longest lease past `t_send`: half the leader lease, and below the
    /// shortest election timeout (the earliest a peer that lost its vote
    /// time could elect itself after answering).
    pub cap: Duration,
}

impl LeaseTiming {
    /// The timing of a Raft group running with `config`.
    pub fn of(config: &openraft::Config) -> Self {
        let leader_lease = Duration::from_millis(config.election_timeout_max);
        let min_election = Duration::from_millis(config.election_timeout_min);
        let cap = (leader_lease / 2).min(min_election * LEASE_SHARE.0 / LEASE_SHARE.1);
        Self { leader_lease, cap }
    }

    /// How long past `t_send` a peer's grant with `age` (and its own leader
    /// lease, when it reported one) keeps other candidates out, shrunk by
    /// [`LEASE_SHARE`] and capped; `None` when that is no time at all.
    pub fn peer_span(&self, age: Duration, peer_lease: Option<Duration>) -> Option<Duration> {
        let lease = peer_lease.map_or(self.leader_lease, |p| p.min(self.leader_lease));
        let trusted = lease * LEASE_SHARE.0 / LEASE_SHARE.1;
        let span = trusted.checked_sub(age)?.min(self.cap);
        (!span.is_zero()).then_some(span)
    }
}

/// Whether `me` plus the nodes `has` accepts are a majority of every config
/// in `joint` (an empty membership is no quorum).
pub(crate) fn is_quorum(joint: &[BTreeSet<NodeId>], me: NodeId, has: impl Fn(&NodeId) -> bool) -> bool {
    !joint.is_empty()
        && joint.iter().all(|c| {
            let yes = c.iter().filter(|id| **id == me || has(id)).count();
            yes * 2 > c.len()
        })
}

/// The longest span (past `t_send`) for which `me` plus peers whose span
/// (`spans`, already capped) reaches it are a quorum of every config of
/// `joint`; the leader itself counts for `cap`. `None`: no lease.
pub(crate) fn lease_span(
    joint: &[BTreeSet<NodeId>],
    me: NodeId,
    spans: &BTreeMap<NodeId, Duration>,
    cap: Duration,
) -> Option<Duration> {
    let mut candidates: Vec<Duration> = spans.values().copied().filter(|s| !s.is_zero()).collect();
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    candidates.dedup();
    candidates
        .into_iter()
        .map(|s| s.min(cap))
        .find(|span| is_quorum(joint, me, |id| spans.get(id).is_some_and(|s| s >= span)))
}

/// A lease on one shard: valid for reads under exactly this leader id and
/// membership until `until`.
#[derive(Debug, Clone, PartialEq)]
struct Lease {
    leader_id: LeaderId<NodeId>,
    joint: Vec<BTreeSet<NodeId>>,
    until: Instant,
}

/// The leases this node holds, one per shard at most.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    leases: Mutex<HashMap<ShardId, Lease>>,
}

impl LeaseTable {
    /// Whether `shard` has a lease for `leader_id` and `joint` that runs past `now`.
    pub fn valid(&self, shard: ShardId, leader_id: &LeaderId<NodeId>, joint: &[BTreeSet<NodeId>], now: Instant) -> bool {
        self.leases
            .lock()
            .get(&shard)
            .is_some_and(|l| l.leader_id == *leader_id && l.joint == joint && now < l.until)
    }

    /// Records a lease on `shard` until `until`; a lease for the same leader
    /// id and membership that runs longer is kept.
    pub fn extend(&self, shard: ShardId, leader_id: LeaderId<NodeId>, joint: &[BTreeSet<NodeId>], until: Instant) {
        let mut leases = self.leases.lock();
        if let Some(l) = leases.get(&shard) {
            if l.leader_id == leader_id && l.joint == joint && l.until >= until {
                return;
            }
        }
        leases.insert(shard, Lease { leader_id, joint: joint.to_vec(), until });
    }
}

/// How a shard's linearizable read was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadVia {
    /// A valid leader lease: no `Confirm` round.
    Lease,
    /// A batched `Confirm` round with a quorum of grants.
    Confirm,
    /// openraft's `ensure_linearizable` (not leader, fresh term, no quorum of grants).
    Linearize,
}

/// Counts of shard reads by how they were confirmed, and of `Confirm`
/// calls sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadIndexCounts {
    /// Shard reads served under a leader lease.
    pub lease: u64,
    /// Shard reads confirmed by a `Confirm` round.
    pub confirm: u64,
    /// Shard reads that went through `ensure_linearizable`.
    pub linearize: u64,
    /// `Confirm` calls sent to peers.
    pub confirm_calls: u64,
}

/// Atomic [`ReadIndexCounts`].
#[derive(Debug, Default)]
pub(crate) struct ReadIndexStats {
    lease: AtomicU64,
    confirm: AtomicU64,
    linearize: AtomicU64,
    confirm_calls: AtomicU64,
}

/// The counters of every service of this process (what `/metrics` shows).
pub(crate) static PROCESS_READ_STATS: ReadIndexStats = ReadIndexStats {
    lease: AtomicU64::new(0),
    confirm: AtomicU64::new(0),
    linearize: AtomicU64::new(0),
    confirm_calls: AtomicU64::new(0),
};

impl ReadIndexStats {
    /// Counts one shard read confirmed `via`.
    pub fn read(&self, via: ReadVia) {
        let c = match via {
            ReadVia::Lease => &self.lease,
            ReadVia::Confirm => &self.confirm,
            ReadVia::Linearize => &self.linearize,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` `Confirm` calls sent.
    pub fn confirm_calls(&self, n: u64) {
        self.confirm_calls.fetch_add(n, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn counts(&self) -> ReadIndexCounts {
        ReadIndexCounts {
            lease: self.lease.load(Ordering::Relaxed),
            confirm: self.confirm.load(Ordering::Relaxed),
            linearize: self.linearize.load(Ordering::Relaxed),
            confirm_calls: self.confirm_calls.load(Ordering::Relaxed),
        }
    }
}

/// Refusal of vote requests right after start. A node that restarts may
/// have lost when it last heard from a leader (openraft keeps that time in
/// memory only) while that leader still holds a lease counting on it; so
/// for the leader lease plus [`VOTE_HOLD_MARGIN`] after the service started,
/// it grants no vote for a shard whose vote has a term (a node that never
/// voted, as in a cluster's bootstrap, cannot have backed a lease).
#[derive(Debug, Clone, Copy)]
pub(crate) struct VoteHold {
    started: Instant,
}

impl VoteHold {
    /// A hold starting now.
    pub fn starting_now() -> Self {
        Self { started: Instant::now() }
    }

    /// Whether, at `now`, a vote request of a group with `timing` falls in the hold.
    pub fn holds(&self, timing: &LeaseTiming, now: Instant) -> bool {
        now < self.started + timing.leader_lease + VOTE_HOLD_MARGIN
    }
}

/// The read-index state one node's services share.
#[derive(Debug)]
pub(crate) struct ReadIndexState {
    /// Leases by shard.
    pub leases: LeaseTable,
    /// This service's read counters (the process-wide ones are [`PROCESS_READ_STATS`]).
    pub stats: ReadIndexStats,
    /// The startup vote hold.
    pub vote_hold: VoteHold,
}

impl ReadIndexState {
    /// Fresh state: no leases, zero counts, a vote hold starting now.
    pub fn new() -> Self {
        Self { leases: LeaseTable::default(), stats: ReadIndexStats::default(), vote_hold: VoteHold::starting_now() }
    }

    /// Counts one shard read confirmed `via`, here and process-wide.
    pub fn count_read(&self, via: ReadVia) {
        self.stats.read(via);
        PROCESS_READ_STATS.read(via);
    }

    /// Counts `n` `Confirm` calls sent, here and process-wide.
    pub fn count_confirm_calls(&self, n: u64) {
        self.stats.confirm_calls(n);
        PROCESS_READ_STATS.confirm_calls(n);
    }
}

#[cfg(test)]
#[path = "lease_test.rs"]
mod tests;
