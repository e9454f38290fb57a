//! Aion's ingester: the per-shard TSDB on RocksDB.
//!
//! [`Tsdb`] implements the model's [`Appender`](aion_model::storage::Appender)
//! and [`Queryable`](aion_model::storage::Queryable). A write batch is first
//! made durable as a WAL record (a synced RocksDB write, group-committed across
//! concurrent appenders), then applied to the in-memory head strictly in WAL
//! order, so replaying the WAL reproduces the live state exactly — the same
//! contract a Raft state machine has with its log, which will replace the WAL.
//!
//! Invariants: a series is `(tenant, sorted labels)` with a ref assigned in
//! apply from a persisted counter; a tenant's queries only ever reach its own
//! postings; a chunk never spans two 2 h blocks, and chunk keys start with the
//! block so time-range scans and retention touch whole blocks; an append
//! returns only after its WAL record is durable; a checkpoint persists the
//! head and purges the WAL it covers in one atomic write. Byte layouts:
//! `docs/format/rocksdb.md`.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests: a failed unwrap is a failed test

pub mod client;
mod codec;
pub mod config;
pub mod error;
pub mod grpc;
mod head;
mod keys;
mod metrics;
mod postings;
pub mod raft;
mod retention;
mod series;
pub mod shards;
pub mod topology;
mod tsdb;
mod wal;

pub use config::TsdbConfig;
pub use error::{IngesterError, Result};
pub use keys::BLOCK_MS;
pub use tsdb::{ReplicaMark, Tsdb, TsdbStats};
