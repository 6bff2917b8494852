//! Bytes in, any language: the front-ends, every rule and every reporter
//! must return without panicking, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reentrancy_audit::model::Language;
use reentrancy_audit::report::{self, Report, Summary};
use reentrancy_audit::rules::RULES;
use reentrancy_audit::scan::{scan_text_result, ScanOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let language = match selector % 4 {
        0 => Language::JavaScript,
        1 => Language::TypeScript,
        2 => Language::Tsx,
        _ => Language::Python,
    };
    // Invalid UTF-8 must be an error entry, not a panic: feed it as is.
    let text = String::from_utf8_lossy(rest);
    let mut opts = ScanOptions::new(Vec::new(), RULES.to_vec());
    opts.prefilter = selector & 0x80 == 0;
    let result = scan_text_result("fuzz.src", language, &text, &opts);
    let summary = Summary::new(&result, &result.findings, result.suppressed);
    let r = Report {
        findings: &result.findings,
        errors: &result.errors,
        unused_suppressions: &result.unused_suppressions,
        summary: &summary,
    };
    let _ = report::json::render(&r);
    let _ = report::sarif::render(&r);
    let _ = report::github::render(&r);
    let source = |_: &str| Some(text.to_string());
    let _ = report::human::render(&r, false, &source);
});
