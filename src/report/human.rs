//! Human output: miette diagnostics with the act and the check labelled, the
//! help and the suggested rewrite, then warnings for per-file errors.

use std::fmt;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError,
    MietteSpanContents, NamedSource, Severity, SourceCode, SourceSpan, SpanContents,
};

use super::Report;
use crate::finding::{Finding, Risk};

/// The file's text for miette, reporting columns in Unicode code points (as
/// JSON and SARIF do) instead of miette's byte columns.
struct CharColumns(NamedSource<String>);

impl SourceCode for CharColumns {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let contents = self.0.read_span(span, before, after)?;
        let text = self.0.inner();
        let offset = contents.span().offset().min(text.len());
        let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let column = text
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count());
        let name = contents.name().unwrap_or_default().to_string();
        Ok(Box::new(MietteSpanContents::new_named(
            name,
            contents.data(),
            *contents.span(),
            contents.line(),
            column,
            contents.line_count(),
        )))
    }
}

struct FindingDiagnostic<'a> {
    finding: &'a Finding,
    source: CharColumns,
    code: String,
    help: String,
}

impl fmt::Debug for FindingDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.finding.message)
    }
}

impl fmt::Display for FindingDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} [risk: {}, confidence: {}, in {}]",
            self.finding.message, self.finding.risk, self.finding.confidence, self.finding.function
        )
    }
}

impl std::error::Error for FindingDiagnostic<'_> {}

impl Diagnostic for FindingDiagnostic<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(&self.code))
    }

    fn severity(&self) -> Option<Severity> {
        Some(match self.finding.risk {
            Risk::High => Severity::Error,
            Risk::Medium => Severity::Warning,
            Risk::Low => Severity::Advice,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(&self.help))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let len = self.source.0.inner().len();
        let clamp = |s: usize, e: usize| {
            let s = s.min(len);
            (s, e.clamp(s, len) - s)
        };
        let span = self.finding.location.span;
        let (s, l) = clamp(span.start as usize, span.end as usize);
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some("the act".to_string()),
            (s, l),
        )];
        for r in &self.finding.related {
            let (s, l) = clamp(r.location.span.start as usize, r.location.span.end as usize);
            labels.push(LabeledSpan::new_with_span(Some(r.message.clone()), (s, l)));
        }
        Some(Box::new(labels.into_iter()))
    }
}

pub fn use_colour(to_terminal: bool) -> bool {
    to_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Renders every finding; `source` returns a file's text (BOM stripped).
pub fn render(report: &Report, colour: bool, source: &dyn Fn(&str) -> Option<String>) -> String {
    let theme = if colour {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_context_lines(1)
        .with_width(120)
        .with_wrap_lines(false)
        .without_syntax_highlighting();
    let mut out = String::new();
    let mut cached: Option<(String, String)> = None;
    for finding in report.findings {
        let path = &finding.location.path;
        if cached.as_ref().is_none_or(|(p, _)| p != path) {
            let text = source(path).unwrap_or_default();
            cached = Some((path.clone(), text));
        }
        let text = cached.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
        let code = indent(&finding.suggestion.code, "    ");
        let diagnostic = FindingDiagnostic {
            finding,
            source: CharColumns(NamedSource::new(path, text)),
            code: format!("{} {}", finding.rule_id, finding.name),
            help: format!("{}\n\n{}", finding.suggestion.title, code),
        };
        if handler.render_report(&mut out, &diagnostic).is_err() {
            out.push_str(&format!("{}: {}\n", path, finding.message));
        }
        out.push('\n');
    }
    for u in report.unused_suppressions {
        let codes = if u.codes.is_empty() {
            "all rules".to_string()
        } else {
            u.codes.join(", ")
        };
        out.push_str(&format!(
            "warning: {}:{}: unused suppression ({codes}): nothing is reported there\n",
            u.path, u.line
        ));
    }
    for e in report.errors {
        let line = e.line.map(|l| format!(":{l}")).unwrap_or_default();
        let label = if e.kind.is_warning() {
            "warning"
        } else {
            "error"
        };
        out.push_str(&format!("{label}: {}{}: {}\n", e.path, line, e.message));
    }
    out
}

fn indent(code: &str, prefix: &str) -> String {
    code.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
