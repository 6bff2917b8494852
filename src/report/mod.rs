//! Renders a scan: human (miette), JSON, SARIF 2.1.0, GitHub annotations.

pub mod github;
pub mod human;
pub mod json;
pub mod sarif;

use serde::Serialize;

use crate::filter::suppress::UnusedSuppression;
use crate::finding::{Finding, Risk};
use crate::scan::{FileError, ScanResult};

/// Counts shown after every scan and in the JSON summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub findings: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
    pub suppressed: usize,
    pub files_scanned: usize,
    pub files_with_errors: usize,
    pub bytes: u64,
    pub lines: u64,
    pub elapsed_ms: u128,
}

impl Summary {
    pub fn new(result: &ScanResult, findings: &[Finding], suppressed: usize) -> Summary {
        let count = |r: Risk| findings.iter().filter(|f| f.risk == r).count();
        let mut error_files: Vec<&str> = result
            .errors
            .iter()
            .filter(|e| !e.kind.is_warning())
            .map(|e| e.path.as_str())
            .collect();
        error_files.sort_unstable();
        error_files.dedup();
        Summary {
            findings: findings.len(),
            high: count(Risk::High),
            medium: count(Risk::Medium),
            low: count(Risk::Low),
            suppressed,
            files_scanned: result.files_scanned,
            files_with_errors: error_files.len(),
            bytes: result.bytes,
            lines: result.lines,
            elapsed_ms: result.elapsed.as_millis(),
        }
    }

    pub fn line(&self) -> String {
        let mut s = format!(
            "{} finding{} ({} high, {} medium, {} low)",
            self.findings,
            if self.findings == 1 { "" } else { "s" },
            self.high,
            self.medium,
            self.low
        );
        if self.suppressed > 0 {
            s.push_str(&format!(", {} suppressed", self.suppressed));
        }
        s.push_str(&format!(
            " in {} file{}",
            self.files_scanned,
            if self.files_scanned == 1 { "" } else { "s" }
        ));
        if self.files_with_errors > 0 {
            s.push_str(&format!(", {} with errors", self.files_with_errors));
        }
        s.push_str(&format!(" [{} ms]", self.elapsed_ms));
        s
    }
}

/// Everything a reporter needs.
pub struct Report<'a> {
    pub findings: &'a [Finding],
    pub errors: &'a [FileError],
    pub unused_suppressions: &'a [UnusedSuppression],
    pub summary: &'a Summary,
}
