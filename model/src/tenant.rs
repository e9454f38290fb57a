//! Tenant ids, as carried by the `X-Scope-OrgID` header.

use crate::error::{ModelError, Result};
use std::fmt;

/// Longest tenant id accepted (Cortex/Mimir use the same limit).
pub const MAX_TENANT_LEN: usize = 150;

/// Tenant used for every request when multi-tenancy is off.
pub const ANONYMOUS: &str = "anonymous";

/// A validated tenant id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Validates `s`: 1..=150 characters from `[A-Za-z0-9!_.*'()-]`, not `.` or `..`.
    pub fn new(s: &str) -> Result<Self> {
        let bad = |reason: &str| ModelError::InvalidTenant { tenant: s.to_string(), reason: reason.into() };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_TENANT_LEN {
            return Err(bad(&format!("longer than {MAX_TENANT_LEN} characters")));
        }
        if s == "." || s == ".." {
            return Err(bad("'.' and '..' are not allowed"));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c))) {
            return Err(bad(&format!("character {c:?} is not allowed (use A-Z a-z 0-9 ! - _ . * ' ( ))")));
        }
        Ok(Self(s.to_string()))
    }

    /// The tenant of a request from its `X-Scope-OrgID` header value: `anonymous`
    /// when multi-tenancy is off, required and validated when it is on.
    pub fn from_header(value: Option<&str>, multitenancy_enabled: bool) -> Result<Self> {
        if !multitenancy_enabled {
            return Ok(Self::anonymous());
        }
        match value {
            None | Some("") => Err(ModelError::MissingTenant),
            Some(v) => Self::new(v),
        }
    }

    /// The `anonymous` tenant.
    pub fn anonymous() -> Self {
        Self(ANONYMOUS.to_string())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn validates_charset_and_length() {
        assert!(TenantId::new("team-a").is_ok());
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("a/b").is_err());
        assert!(TenantId::new("..").is_err());
        assert!(TenantId::new(&"x".repeat(151)).is_err());
        assert_eq!(TenantId::from_header(None, false).unwrap().as_str(), "anonymous");
        assert_eq!(TenantId::from_header(None, true), Err(ModelError::MissingTenant));
        assert_eq!(TenantId::from_header(Some("t1"), true).unwrap().as_str(), "t1");
    }
}
