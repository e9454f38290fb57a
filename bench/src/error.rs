//! Errors of the benchmark harness.

use std::path::PathBuf;
use thiserror::Error;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, BenchError>;

/// Everything that can go wrong while generating load or running a target.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A URL given on the command line or built for a target is not `http://host:port/path`.
    #[error("invalid URL {url:?}: {why}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A socket operation failed.
    #[error("{what} {addr}: {source}")]
    Io {
        /// What was being done (`connecting to`, `writing to`, ...).
        what: &'static str,
        /// The peer address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server sent something that is not a valid HTTP/1.1 response.
    #[error("malformed HTTP response from {addr}: {why}")]
    BadResponse {
        /// The peer address.
        addr: String,
        /// What was wrong.
        why: String,
    },
    /// The server closed the connection before the response was complete.
    #[error("{addr} closed the connection before the response was complete")]
    Closed {
        /// The peer address.
        addr: String,
    },
    /// A request took longer than the per-request timeout.
    #[error("request to {addr} timed out after {secs} s")]
    Timeout {
        /// The peer address.
        addr: String,
        /// The timeout.
        secs: u64,
    },
    /// A `/proc` file could not be read or parsed.
    #[error("reading {path}: {why}")]
    Proc {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// A target process could not be started or did not become ready.
    #[error("target {target}: {why}")]
    Target {
        /// The target's name.
        target: String,
        /// What went wrong (includes the tail of its log when useful).
        why: String,
    },
    /// A binary the benchmark needs is missing.
    #[error("binary {path} not found: {hint}")]
    MissingBinary {
        /// Where it was looked for.
        path: PathBuf,
        /// How to get it.
        hint: &'static str,
    },
    /// A command-line value is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
