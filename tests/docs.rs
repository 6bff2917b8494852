//! Rule docs and the registry agree, and the docs' examples are real: every
//! `bad` example is reported by its rule, every `good` one is not.

use std::collections::BTreeSet;
use std::time::Duration;

use reentrancy_audit::model::Language;
use reentrancy_audit::rules::RULES;
use reentrancy_audit::scan::{scan_text, ScanOptions};

fn doc_files() -> Vec<(String, String)> {
    let mut docs: Vec<(String, String)> = std::fs::read_dir("rules")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    docs.sort();
    docs
}

fn front_matter(doc: &str) -> Vec<(String, String)> {
    let body = doc
        .strip_prefix("---\n")
        .expect("doc starts with front matter");
    let end = body.find("\n---").expect("front matter is closed");
    body[..end]
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn every_rule_has_a_doc_and_every_doc_a_rule() {
    let docs = doc_files();
    let doc_codes: BTreeSet<String> = docs
        .iter()
        .map(|(_, text)| {
            front_matter(text)
                .into_iter()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v)
                .expect("doc has a code")
        })
        .collect();
    let rule_codes: BTreeSet<String> = RULES.iter().map(|r| r.meta().code.to_string()).collect();
    assert_eq!(
        doc_codes, rule_codes,
        "rules/ docs and registered rules differ"
    );
}

#[test]
fn doc_front_matter_agrees_with_rule_metadata() {
    for rule in RULES {
        let meta = rule.meta();
        let fm = front_matter(meta.doc);
        let get = |k: &str| fm.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let keys: Vec<&str> = fm.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["code", "name", "risk", "confidence", "languages", "summary"],
            "{}",
            meta.code
        );
        assert_eq!(get("code"), Some(meta.code));
        assert_eq!(get("name"), Some(meta.name));
        assert_eq!(get("risk"), Some(meta.risk.as_str()), "{}", meta.code);
        assert_eq!(
            get("confidence"),
            Some(meta.confidence.as_str()),
            "{}",
            meta.code
        );
        let summary = get("summary").unwrap();
        assert!(
            !summary.is_empty() && summary.len() <= 120,
            "{}: summary",
            meta.code
        );
        let file = format!(
            "rules/{}_{}.md",
            meta.code.to_lowercase(),
            meta.name.replace('-', "_")
        );
        let on_disk = std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{file} exists"));
        assert_eq!(on_disk, meta.doc, "{file} is the embedded doc");
        for section in [
            "## What it detects",
            "## Why it is dangerous",
            "## Examples",
            "## Use instead",
            "## Not a hazard",
            "## Suggested rewrite and its safety",
            "## Decisions",
        ] {
            assert!(
                meta.doc.contains(section),
                "{}: missing `{section}`",
                meta.code
            );
        }
    }
}

/// (language tag, bad/good, code) of each fenced example.
fn examples(doc: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let (Some(lang), Some(kind)) = (words.next(), words.next()) else {
            // An unlabelled block: skip to its end.
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
            }
            continue;
        };
        let mut code = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            code.push_str(l);
            code.push('\n');
        }
        if kind == "bad" || kind == "good" {
            out.push((lang.to_string(), kind.to_string(), code));
        }
    }
    out
}

#[test]
fn doc_examples_are_reported_exactly_when_bad() {
    let opts = {
        let mut o = ScanOptions::new(Vec::new(), RULES.to_vec());
        o.jobs = Some(1);
        o.file_time_budget = Duration::from_secs(10);
        o
    };
    let mut problems = Vec::new();
    for rule in RULES {
        let meta = rule.meta();
        let ex = examples(meta.doc);
        let langs: BTreeSet<&str> = ex.iter().map(|(l, _, _)| l.as_str()).collect();
        assert!(
            langs.is_superset(&BTreeSet::from(["js", "ts", "python"])),
            "{}: examples for js, ts and python",
            meta.code
        );
        for (lang, kind, code) in &ex {
            let language = match lang.as_str() {
                "js" | "javascript" => Language::JavaScript,
                "ts" | "typescript" => Language::TypeScript,
                "python" | "py" => Language::Python,
                other => panic!("{}: unknown example language {other}", meta.code),
            };
            let (findings, errors) = scan_text("example", language, code, &opts);
            if !errors.is_empty() {
                problems.push(format!("{} {lang} {kind}: {:?}", meta.code, errors));
            }
            let hits = findings.iter().filter(|f| f.rule_id == meta.code).count();
            if kind == "bad" && hits == 0 {
                problems.push(format!(
                    "{} {lang} bad example is not reported:\n{code}",
                    meta.code
                ));
            }
            if kind == "good" && hits > 0 {
                problems.push(format!(
                    "{} {lang} good example is reported:\n{code}",
                    meta.code
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn readme_lists_every_rule_with_its_name_and_risk() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    for rule in RULES {
        let meta = rule.meta();
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", meta.code)))
            .unwrap_or_else(|| panic!("README has no row for {}", meta.code));
        assert!(row.contains(&format!("| {} |", meta.name)), "{row}");
        assert!(
            row.contains(meta.risk.as_str()),
            "{row}: default risk {}",
            meta.risk
        );
    }
}
