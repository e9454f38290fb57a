//! The PromQL test-script language of Prometheus (`load`, `eval`, `expect`,
//! `clear`): a parser and a runner that evaluates scripts with the
//! [`crate::engine::Engine`] over any storage implementing `Queryable` and
//! `Appender`. Used by the conformance test and reusable by cluster tests.

pub mod check;
pub mod report;
pub mod runner;
pub mod script;
pub mod series;

pub use report::{run_dir, FileReport, KnownFailures, Summary};
pub use runner::{EvalReport, Outcome, Runner, ScriptStorage};
pub use script::{parse_script, Command, EvalCmd};
