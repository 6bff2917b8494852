//! The JSON report: one versioned document (schema in docs/json-schema.md).

use serde::Serialize;

use super::{Report, Summary};
use crate::filter::suppress::UnusedSuppression;
use crate::finding::Finding;
use crate::scan::FileError;

/// Bumped on any incompatible change to the document's shape.
pub const JSON_VERSION: u32 = 1;

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    tool: Tool,
    findings: &'a [Finding],
    errors: &'a [FileError],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    unused_suppressions: &'a [UnusedSuppression],
    summary: &'a Summary,
}

pub fn render(report: &Report) -> String {
    let mut out = Vec::new();
    write(report, &mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Streams the document: a large report is never held twice in memory.
pub fn write(report: &Report, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let doc = Document {
        version: JSON_VERSION,
        tool: Tool {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
        },
        findings: report.findings,
        errors: report.errors,
        unused_suppressions: report.unused_suppressions,
        summary: report.summary,
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    out.write_all(b"\n")
}
