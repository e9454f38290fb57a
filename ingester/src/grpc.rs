//! The ingester's gRPC server over a [`ShardHost`](crate::shards::ShardHost):
//! the `Ingester` service (Push, Select, LabelNames, LabelValues) and the
//! `Raft` transport service, on one port (`proto/aion/ingester.proto`).
//!
//! Push commits the batch as one Raft entry on the shard's leader and
//! answers with what the state machine did; a follower answers
//! `NotLeader { leader_id, leader_addr }` in-band. Reads confirm leadership
//! first (`ensure_linearizable`) and fail on a follower with
//! `FAILED_PRECONDITION` plus `aion-leader-id`/`aion-leader-addr` metadata.
//! No leader, no quorum or a commit slower than the write timeout is
//! `UNAVAILABLE` (retryable) — never an unbounded wait.

pub mod convert;
mod raft_service;
pub mod server;

pub use convert::{not_leader_from_status, ConvertError};
pub use server::{serve, IngesterService, ServerConfig};
