//! Warning and info annotations collected while evaluating, deduplicated,
//! with Prometheus's `PromQL warning: ` / `PromQL info: ` prefixes.

/// Annotations of one query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    /// Warnings, prefixed, in first-seen order.
    pub warnings: Vec<String>,
    /// Infos, prefixed, in first-seen order.
    pub infos: Vec<String>,
}

impl Annotations {
    /// Adds a warning (text without prefix) unless already present.
    pub fn warn(&mut self, msg: String) {
        let m = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    /// Adds an info (text without prefix) unless already present.
    pub fn info(&mut self, msg: String) {
        let m = format!("PromQL info: {msg}");
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_dedups() {
        let mut a = Annotations::default();
        a.warn("x".into());
        a.warn("x".into());
        a.info("y".into());
        assert_eq!(a.warnings, vec!["PromQL warning: x".to_string()]);
        assert_eq!(a.infos, vec!["PromQL info: y".to_string()]);
    }
}
