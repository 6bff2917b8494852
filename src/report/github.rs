//! GitHub Actions workflow commands: one annotation per finding.

use super::Report;
use crate::finding::Risk;

/// Escapes a command's message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property (file, title): also `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for f in report.findings {
        let level = match f.risk {
            Risk::High => "error",
            Risk::Medium => "warning",
            Risk::Low => "notice",
        };
        let l = &f.location;
        out.push_str(&format!(
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            escape_property(&l.path),
            l.start.line,
            l.start.column,
            l.end.line,
            l.end.column,
            escape_property(&format!("{} {}", f.rule_id, f.name)),
            escape_data(&format!(
                "{} [risk: {}, confidence: {}]\nSuggested rewrite: {}\n{}",
                f.message, f.risk, f.confidence, f.suggestion.title, f.suggestion.code
            )),
        ));
    }
    for e in report.errors {
        let line = e.line.map(|l| format!(",line={l}")).unwrap_or_default();
        out.push_str(&format!(
            "::warning file={}{line},title=reentrancy-audit::{}\n",
            escape_property(&e.path),
            escape_data(&e.message)
        ));
    }
    out
}
