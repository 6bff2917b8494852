//! The prefilter must be sound: for every rule on its own, the findings with
//! it are the findings without it. One rule at a time, so another rule's
//! trigger words cannot hide a gap in this rule's; and on small pieces (each
//! top-level block of every fixture, every doc example, and hand-written
//! cases whose hazard is named by no trigger word of its own), so the rest of
//! a file cannot either.

use std::path::Path;

use reentrancy_audit::analysis::guards::{may_release, FunctionGuards};
use reentrancy_audit::lang::{lower, Parsers};
use reentrancy_audit::model::Language;
use reentrancy_audit::rules::{Rule, RULES};
use reentrancy_audit::scan::{scan_text, ScanOptions};

/// Hazards spelled without the obvious words.
const SPARSE_CASES: &[(&str, &str)] = &[
    // A bound release with a name of its own.
    (
        "b.js",
        "const mutex = makeMutex();\nfunction handle(job) {\n  const done = mutex.acquire();\n  work(job);\n  done();\n}\n",
    ),
    (
        "b.py",
        "def handle(job):\n    done = LOCK.acquire()\n    work(job)\n    done()\n",
    ),
];

fn pieces(text: &str) -> Vec<String> {
    // Top-level blocks: a line starting in column 0 after a blank line
    // begins a new piece.
    let mut out = vec![String::new()];
    let mut blank = false;
    for line in text.lines() {
        let top = line.starts_with(|c: char| !c.is_whitespace());
        if blank && top && !out.last().unwrap().is_empty() {
            out.push(String::new());
        }
        blank = line.trim().is_empty();
        let piece = out.last_mut().unwrap();
        piece.push_str(line);
        piece.push('\n');
    }
    out.retain(|p| !p.trim().is_empty());
    out
}

/// Every fixture file: (path, language, text).
fn fixture_files() -> Vec<(String, Language, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if let Some(language) = Language::from_path(&path) {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), language, text));
            }
        }
    }
    out
}

fn inputs() -> Vec<(String, Language, String)> {
    let mut out = Vec::new();
    for (name, language, text) in fixture_files() {
        for (i, piece) in pieces(&text).into_iter().enumerate() {
            out.push((format!("{name}#{i}"), language, piece));
        }
        out.push((name, language, text));
    }
    for rule in RULES {
        for (lang, code) in doc_examples(rule.meta().doc) {
            out.push((format!("{} doc", rule.meta().code), lang, code));
        }
    }
    for (name, code) in SPARSE_CASES {
        let language = Language::from_path(Path::new(name)).unwrap();
        out.push((name.to_string(), language, code.to_string()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn doc_examples(doc: &str) -> Vec<(Language, String)> {
    let mut out = Vec::new();
    let mut current: Option<(Language, String)> = None;
    for line in doc.lines() {
        if let Some(info) = line.strip_prefix("```") {
            if let Some(done) = current.take() {
                out.push(done);
                continue;
            }
            let language = match info.split_whitespace().next() {
                Some("js" | "javascript") => Language::JavaScript,
                Some("ts" | "typescript") => Language::TypeScript,
                Some("python" | "py") => Language::Python,
                _ => Language::JavaScript,
            };
            current = Some((language, String::new()));
        } else if let Some((_, code)) = current.as_mut() {
            code.push_str(line);
            code.push('\n');
        }
    }
    out
}

fn findings(
    rule: &'static dyn Rule,
    name: &str,
    lang: Language,
    code: &str,
    on: bool,
) -> Vec<String> {
    let mut opts = ScanOptions::new(Vec::new(), vec![rule]);
    opts.prefilter = on;
    let (findings, _) = scan_text(name, lang, code, &opts);
    findings
        .iter()
        .map(|f| format!("{} {}:{}", f.rule_id, f.location.start.line, f.message))
        .collect()
}

#[test]
fn every_rule_alone_finds_the_same_with_and_without_the_prefilter() {
    let inputs = inputs();
    assert!(inputs.len() > 300, "{} inputs", inputs.len());
    let mut problems = Vec::new();
    let mut compared = 0;
    for rule in RULES {
        for (name, lang, code) in &inputs {
            let off = findings(*rule, name, *lang, code, false);
            let on = findings(*rule, name, *lang, code, true);
            compared += usize::from(!off.is_empty());
            if on != off {
                problems.push(format!(
                    "{} on {name}: with prefilter {on:?}, without {off:?}\n{code}",
                    rule.meta().code
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert!(compared > 100, "only {compared} inputs had findings");
    // The hand-written cases are hazards: the comparison is not vacuous.
    for (name, code) in SPARSE_CASES {
        let lang = Language::from_path(Path::new(name)).unwrap();
        let all: usize = RULES
            .iter()
            .map(|r| findings(*r, name, lang, code, false).len())
            .sum();
        assert!(all > 0, "{name} is reported without the prefilter");
    }
}

/// RA003 skips a function in which `may_release` finds no release candidate:
/// none of those may hold a guard region (an acquire paired with a release).
#[test]
fn functions_without_a_release_candidate_have_no_guard_region() {
    let mut parsers = Parsers::default();
    let (mut skipped, mut with_regions) = (0, 0);
    for (name, language, text) in inputs() {
        let Some(tree) = parsers.parser(language).parse(&text, None) else {
            continue;
        };
        let file = lower(&tree, &text, language);
        for f in &file.functions {
            let regions = FunctionGuards::analyse(&file, f, &text).regions.len();
            with_regions += usize::from(regions > 0);
            if !may_release(f) {
                skipped += 1;
                assert_eq!(regions, 0, "{name}: {}", f.name);
            }
        }
    }
    assert!(
        skipped > 50 && with_regions > 20,
        "{skipped} skipped, {with_regions} with regions"
    );
}
