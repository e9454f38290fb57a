//! The ingester's gRPC server over a [`ShardHost`](crate::shards::ShardHost):
//! the `Ingester` service (Push, Select, LabelNames, LabelValues) and the
//! `Raft` transport service and the `Admin` service (host/drop/move
//! replicas), on one port (`proto/aion/ingester.proto`).
//!
//! Push commits the batch as one Raft entry on the shard's leader and
//! answers with what the state machine did; a follower answers
//! `NotLeader { leader_id, leader_addr }` in-band. Reads confirm leadership
//! first (`ensure_linearizable`) and fail on a follower with
//! `FAILED_PRECONDITION` plus `aion-leader-id`/`aion-leader-addr` metadata,
//! unless a `Select` sets `allow_follower_read`: then any replica answers
//! from its applied state at once (possibly stale, never a redirect).
//! No leader, no quorum or a commit slower than the write timeout is
//! `UNAVAILABLE` (retryable) — never an unbounded wait.

mod admin_service;
pub mod convert;
pub mod metadata_service;
mod raft_service;
mod read_index;
mod select_service;
pub mod server;

pub use admin_service::host_error_status;
pub use convert::{not_leader_from_status, ConvertError};
pub use server::{serve, serve_with, IngesterService, ServerConfig};
