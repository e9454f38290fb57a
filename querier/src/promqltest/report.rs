//! Running a directory of scripts, known-failure lists and the printed report.

use super::runner::{EvalReport, Outcome, Runner};
use super::script::parse_script;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The evals of one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// File name, e.g. `aggregators.test`.
    pub file: String,
    /// One report per eval, in file order.
    pub evals: Vec<EvalReport>,
}

/// Evals expected to fail, keyed by `file:line`, with the reason.
#[derive(Debug, Clone, Default)]
pub struct KnownFailures(pub BTreeMap<(String, usize), String>);

impl KnownFailures {
    /// Parses lines `file.test:LINE reason`; `#` starts a comment line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut m = BTreeMap::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (loc, reason) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let (f, n) = loc.rsplit_once(':').ok_or_else(|| format!("known failures line {}: no file:line", i + 1))?;
            let n: usize = n.parse().map_err(|_| format!("known failures line {}: bad line number {n:?}", i + 1))?;
            if reason.trim().is_empty() {
                return Err(format!("known failures line {}: {loc} has no reason", i + 1));
            }
            m.insert((f.to_string(), n), reason.trim().to_string());
        }
        Ok(Self(m))
    }
}

/// Counts over a set of files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Evals that passed.
    pub passed: usize,
    /// Evals that failed and are not listed as known failures.
    pub failed: usize,
    /// Evals that failed and are listed.
    pub known: usize,
    /// Evals skipped.
    pub skipped: usize,
    /// Listed known failures that passed (the list is stale).
    pub stale_known: Vec<String>,
}

/// Runs every `*.test` file of `dir` (sorted by name).
pub fn run_dir(dir: &Path, runner: &mut Runner<'_>) -> Result<Vec<FileReport>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for p in files {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        let file = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let cmds = parse_script(&text);
        out.push(FileReport { file, evals: runner.run(&cmds) });
    }
    Ok(out)
}

impl FileReport {
    /// Counts this file's outcomes against `known`, appending a readable report to `text`.
    pub fn summarize(&self, known: &KnownFailures, verbose: bool, text: &mut String) -> Summary {
        let mut s = Summary::default();
        let mut details = String::new();
        for e in &self.evals {
            let key = (self.file.clone(), e.line);
            let listed = known.0.get(&key);
            match (&e.outcome, listed) {
                (Outcome::Passed, None) => s.passed += 1,
                (Outcome::Passed, Some(_)) => {
                    s.passed += 1;
                    s.stale_known.push(format!("{}:{}", self.file, e.line));
                }
                (Outcome::Skipped(why), _) => {
                    s.skipped += 1;
                    if verbose {
                        let _ = writeln!(details, "  skipped {}:{} {} ({why})", self.file, e.line, e.query);
                    }
                }
                (Outcome::Failed(why), Some(reason)) => {
                    s.known += 1;
                    if verbose {
                        let _ =
                            writeln!(details, "  known failure {}:{} {} ({reason}): {why}", self.file, e.line, e.query);
                    }
                }
                (Outcome::Failed(why), None) => {
                    s.failed += 1;
                    let _ = writeln!(details, "  FAILED {}:{} {}\n    {why}", self.file, e.line, e.query);
                }
            }
        }
        let _ = write!(text, "{}: {} passed, {} failed, {} skipped", self.file, s.passed, s.failed, s.skipped);
        if s.known > 0 {
            let _ = write!(text, ", {} known failures", s.known);
        }
        text.push('\n');
        text.push_str(&details);
        for st in &s.stale_known {
            let _ = writeln!(text, "  STALE known failure (now passes): {st}");
        }
        s
    }
}

impl Summary {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Summary) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.known += o.known;
        self.skipped += o.skipped;
        self.stale_known.extend(o.stale_known.iter().cloned());
    }

    /// The final line: `N passed, M failed, K skipped`.
    pub fn total_line(&self) -> String {
        let mut l = format!("{} passed, {} failed", self.passed, self.failed + self.known);
        if self.skipped > 0 {
            let _ = write!(l, ", {} skipped", self.skipped);
        }
        l
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_failures_need_reasons() {
        let k = KnownFailures::parse("# x\nfoo.test:12 needs bar\n").unwrap();
        assert_eq!(k.0.get(&("foo.test".to_string(), 12)).map(String::as_str), Some("needs bar"));
        assert!(KnownFailures::parse("foo.test:12").is_err());
        assert!(KnownFailures::parse("foo.test:x why").is_err());
    }
}
