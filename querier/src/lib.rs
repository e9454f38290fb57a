//! Aion's querier: the PromQL [`engine`] (Prometheus 3.x semantics over any
//! `Queryable`), and the Prometheus HTTP query [`api`] that serves it.
//! Invariant: there is one engine; the API, the ruler and the conformance
//! runner all evaluate through it.

pub mod api;
pub mod config;
pub mod engine;
pub mod limits;
pub mod promqltest;
pub mod pushdown;
pub mod selector;
