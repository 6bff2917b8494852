//! What a rule reports, and where.

use std::fmt;

use serde::Serialize;

use crate::model::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// How sure the rule is that the pattern it matched is the hazard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
    pub fn parse(s: &str) -> Option<Risk> {
        match s {
            "low" => Some(Risk::Low),
            "medium" => Some(Risk::Medium),
            "high" => Some(Risk::High),
            _ => None,
        }
    }
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
    pub fn parse(s: &str) -> Option<Confidence> {
        match s {
            "low" => Some(Confidence::Low),
            "medium" => Some(Confidence::Medium),
            "high" => Some(Confidence::High),
            _ => None,
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for Confidence {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A suggested guarded rewrite. Shown, never applied: these rewrites change
/// behaviour (a unique constraint, a try/finally, a reservation).
#[derive(Clone, Debug, Serialize)]
pub struct Suggestion {
    pub title: String,
    pub code: String,
}

/// A finding as a rule reports it: byte spans within the file.
#[derive(Clone, Debug)]
pub struct RawFinding {
    pub code: &'static str,
    pub risk: Risk,
    pub confidence: Confidence,
    pub message: String,
    pub span: Span,
    pub related: Vec<(Span, String)>,
    pub suggestion: Suggestion,
}

/// A 1-based line and column (columns count Unicode code points).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    pub path: String,
    pub start: Position,
    pub end: Position,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Related {
    pub location: Location,
    pub message: String,
}

/// A finding ready to report.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub rule_id: &'static str,
    pub name: &'static str,
    pub risk: Risk,
    pub confidence: Confidence,
    pub message: String,
    pub location: Location,
    pub related: Vec<Related>,
    pub function: String,
    pub suggestion: Suggestion,
    /// Stable identity across unrelated edits: no line numbers in it.
    pub fingerprint: String,
}

/// Maps byte offsets to 1-based lines and code-point columns.
pub struct LineIndex<'a> {
    src: &'a str,
    /// Built on first use: most files have no finding and never need it.
    starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> LineIndex<'a> {
    pub fn new(src: &'a str) -> Self {
        LineIndex {
            src,
            starts: std::cell::OnceCell::new(),
        }
    }

    fn starts(&self) -> &[usize] {
        self.starts.get_or_init(|| {
            let mut starts = vec![0];
            starts.extend(memchr::memchr_iter(b'\n', self.src.as_bytes()).map(|i| i + 1));
            starts
        })
    }

    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.src.len());
        let starts = self.starts();
        let line = starts.partition_point(|&s| s <= offset) - 1;
        let line_start = starts[line];
        let column = self
            .src
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count())
            + 1;
        Position {
            line: line + 1,
            column,
        }
    }

    pub fn location(&self, path: &str, span: Span) -> Location {
        Location {
            path: path.to_string(),
            start: self.position(span.start as usize),
            end: self.position(span.end as usize),
            span,
        }
    }

    /// The text of line `line` (1-based) without its line break.
    pub fn line_text(&self, line: usize) -> &'a str {
        let starts = self.starts();
        let start = starts.get(line - 1).copied().unwrap_or(self.src.len());
        let end = starts.get(line).copied().unwrap_or(self.src.len());
        self.src[start..end].trim_end_matches(['\n', '\r'])
    }
}
