//! Aion's shared model: the vocabulary every role speaks.
//!
//! Labels and label sets, matchers, samples (with the Prometheus staleness
//! marker), tenant ids, series hashing, the XOR chunk codec, and the storage
//! traits ([`storage::Queryable`], [`storage::Appender`]) that the PromQL engine
//! and the write path use. Invariants: a [`labels::Labels`] is always sorted by
//! name with unique names; this crate depends on no storage engine, RPC or HTTP
//! library, so the engine runs unchanged over memory, RocksDB or gRPC.

pub mod chunk;
pub mod error;
pub mod hash;
pub mod labels;
pub mod loopback;
pub mod matcher;
pub mod memo;
pub mod memstore;
pub mod metadata;
pub mod sample;
pub mod storage;
pub mod tenant;

pub use error::{ModelError, Result};
pub use labels::{Label, Labels};
pub use matcher::{MatchOp, Matcher};
pub use sample::Sample;
pub use tenant::TenantId;
