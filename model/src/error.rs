//! Errors of the shared model.

use thiserror::Error;

/// Errors raised while building model values from user input.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ModelError {
    /// A regex matcher whose pattern does not compile.
    #[error("invalid regular expression {pattern:?} in matcher for label {name:?}: {reason}")]
    InvalidRegex {
        /// Label the matcher applies to.
        name: String,
        /// The pattern as given.
        pattern: String,
        /// Why it does not compile.
        reason: String,
    },
    /// A tenant id that is empty, too long or has forbidden characters.
    #[error("invalid tenant id {tenant:?}: {reason}")]
    InvalidTenant {
        /// The id as given.
        tenant: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Multi-tenancy is on and the request named no tenant.
    #[error("no org id: the X-Scope-OrgID header is required when multi-tenancy is enabled")]
    MissingTenant,
    /// A chunk whose bytes cannot be decoded.
    #[error("corrupt chunk: {0}")]
    CorruptChunk(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
