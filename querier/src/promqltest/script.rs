//! Parsing of test scripts into [`Command`]s.

use super::series::{parse_duration_ms, parse_float, parse_series_desc, read_quoted, SeriesDesc};

/// One command of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `load <interval>` / `load_with_nhcb <interval>` and its series.
    Load {
        /// Line of the `load`.
        line: usize,
        /// Spacing of the points, milliseconds.
        interval_ms: i64,
        /// Whether classic histograms are also loaded as native ones (`load_with_nhcb`).
        nhcb: bool,
        /// The series.
        series: Vec<SeriesDesc>,
    },
    /// `clear`: drop all data.
    Clear,
    /// One `eval`.
    Eval(Box<EvalCmd>),
    /// A command that did not parse (reported as a failure; the script goes on).
    Invalid {
        /// Line of the command.
        line: usize,
        /// What was wrong.
        error: String,
    },
}

/// When an eval runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalKind {
    /// `eval instant at <t>`.
    Instant {
        /// Evaluation time, ms.
        at_ms: i64,
    },
    /// `eval range from <start> to <end> step <step>`.
    Range {
        /// First step, ms.
        start_ms: i64,
        /// Last step, ms.
        end_ms: i64,
        /// Step, ms.
        step_ms: i64,
    },
}

/// How an expected annotation or failure message is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum MsgMatch {
    /// Any message.
    Any,
    /// Exactly this text.
    Exact(String),
    /// A regex that must match.
    Regex(String),
}

/// What an eval expects besides its result lines.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Expectations {
    /// The query must fail.
    pub fail: Option<MsgMatch>,
    /// A warning must be produced (one entry per `expect warn`).
    pub warn: Vec<MsgMatch>,
    /// An info must be produced.
    pub info: Vec<MsgMatch>,
    /// No warning may be produced.
    pub no_warn: bool,
    /// No info may be produced.
    pub no_info: bool,
    /// Result order matters.
    pub ordered: bool,
    /// A string result is expected.
    pub string: Option<String>,
    /// An instant query returns a range vector over these timestamps (start, end, step).
    pub range_vector: Option<(i64, i64, i64)>,
}

/// One expected result line.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpectedLine {
    /// A bare scalar.
    Scalar(f64),
    /// A series with its points.
    Series(SeriesDesc),
}

/// One `eval` command.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalCmd {
    /// 1-based line of the `eval`.
    pub line: usize,
    /// The query text.
    pub query: String,
    /// Instant or range.
    pub kind: EvalKind,
    /// `expect` directives.
    pub expect: Expectations,
    /// Expected result lines.
    pub results: Vec<ExpectedLine>,
}

/// Parses a whole script; commands that do not parse become [`Command::Invalid`].
pub fn parse_script(text: &str) -> Vec<Command> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let line = raw.trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lineno = i;
        let body_end = block_end(&lines, i);
        let body: Vec<&str> = lines[i..body_end].iter().map(|l| l.trim()).filter(|l| !l.starts_with('#')).collect();
        i = body_end;
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let cmd = match word {
            "clear" => Ok(Command::Clear),
            "load" | "load_with_nhcb" => parse_load(lineno, word, rest, &body),
            w if w.starts_with("eval") => parse_eval(lineno, w, rest, &body).map(|e| Command::Eval(Box::new(e))),
            other => Err(format!("unknown command {other:?}")),
        };
        cmds.push(cmd.unwrap_or_else(|error| Command::Invalid { line: lineno, error }));
    }
    cmds
}

fn parse_load(line: usize, word: &str, rest: &str, body: &[&str]) -> Result<Command, String> {
    let interval_ms = parse_duration_ms(rest.trim())?;
    let series = body.iter().map(|l| parse_series_desc(l)).collect::<Result<Vec<_>, _>>()?;
    Ok(Command::Load { line, interval_ms, nhcb: word == "load_with_nhcb", series })
}

fn block_end(lines: &[&str], mut i: usize) -> usize {
    while i < lines.len() {
        let l = lines[i];
        if l.trim().is_empty() || !l.starts_with([' ', '\t']) {
            break;
        }
        i += 1;
    }
    i
}

fn parse_eval(line: usize, word: &str, rest: &str, body: &[&str]) -> Result<EvalCmd, String> {
    let mut expect = Expectations::default();
    match word {
        "eval" => {}
        "eval_fail" => expect.fail = Some(MsgMatch::Any),
        "eval_warn" => expect.warn.push(MsgMatch::Any),
        "eval_info" => expect.info.push(MsgMatch::Any),
        "eval_ordered" => expect.ordered = true,
        w => return Err(format!("unknown eval form {w:?}")),
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (kind, query) = match words.as_slice() {
        ["instant", "at", t, ..] => {
            let q = after_words(rest, 3);
            (EvalKind::Instant { at_ms: parse_duration_ms(t)? }, q)
        }
        ["range", "from", a, "to", b, "step", s, ..] => {
            let q = after_words(rest, 7);
            let kind = EvalKind::Range {
                start_ms: parse_duration_ms(a)?,
                end_ms: parse_duration_ms(b)?,
                step_ms: parse_duration_ms(s)?,
            };
            (kind, q)
        }
        _ => return Err(format!("bad eval {rest:?}")),
    };
    let mut results = Vec::new();
    for l in body {
        if let Some(e) = l.strip_prefix("expect ") {
            parse_expect(e.trim(), &mut expect)?;
        } else if let Some(v) = parse_float(l).filter(|_| !l.contains(char::is_whitespace)) {
            results.push(ExpectedLine::Scalar(v));
        } else {
            results.push(ExpectedLine::Series(parse_series_desc(l)?));
        }
    }
    Ok(EvalCmd { line, query: query.to_string(), kind, expect, results })
}

fn after_words(s: &str, n: usize) -> &str {
    let mut rest = s.trim_start();
    for _ in 0..n {
        let e = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[e..].trim_start();
    }
    rest
}

fn parse_msg(rest: &str) -> MsgMatch {
    let rest = rest.trim();
    if let Some(m) = rest.strip_prefix("msg:") {
        MsgMatch::Exact(m.trim().to_string())
    } else if let Some(r) = rest.strip_prefix("regex:") {
        MsgMatch::Regex(r.trim().to_string())
    } else {
        MsgMatch::Any
    }
}

fn parse_expect(e: &str, x: &mut Expectations) -> Result<(), String> {
    let (word, rest) = e.split_once(char::is_whitespace).unwrap_or((e, ""));
    match word {
        "fail" => x.fail = Some(parse_msg(rest)),
        "warn" => x.warn.push(parse_msg(rest)),
        "info" => x.info.push(parse_msg(rest)),
        "no_warn" => x.no_warn = true,
        "no_info" => x.no_info = true,
        "ordered" => x.ordered = true,
        "string" => x.string = Some(read_quoted(rest.trim())?.0),
        "range" => {
            let w: Vec<&str> = rest.split_whitespace().collect();
            match w.as_slice() {
                ["vector", "from", a, "to", b, "step", s] => {
                    x.range_vector = Some((parse_duration_ms(a)?, parse_duration_ms(b)?, parse_duration_ms(s)?))
                }
                _ => return Err(format!("bad expect range {rest:?}")),
            }
        }
        other => return Err(format!("unknown expectation {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_load_eval_and_expectations() {
        let s = "# c\nload 5m\n  a{x=\"1\"} 1 2\n\neval instant at 10m a\n  expect warn msg: boom\n  a{x=\"1\"} 2\n\neval_fail range from 0 to 10m step 5m sum(a)\nclear\neval instant at 0 1\n  1\n";
        let cmds = parse_script(s);
        assert_eq!(cmds.len(), 5);
        let Command::Eval(e) = &cmds[1] else { panic!("not eval") };
        assert_eq!(e.kind, EvalKind::Instant { at_ms: 600_000 });
        assert_eq!(e.query, "a");
        assert_eq!(e.expect.warn, vec![MsgMatch::Exact("boom".into())]);
        let Command::Eval(e) = &cmds[2] else { panic!("not eval") };
        assert_eq!(e.expect.fail, Some(MsgMatch::Any));
        assert_eq!(e.query, "sum(a)");
        assert_eq!(cmds[3], Command::Clear);
        assert!(matches!(parse_script("frobnicate\n")[0], Command::Invalid { line: 1, .. }));
    }
}
