//! Scans every file under fixtures/ with all rules and checks its inline
//! markers both ways (see fixtures/README.md): each expected finding is
//! reported where and as marked, and nothing is reported that no marker expects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reentrancy_audit::finding::Finding;
use reentrancy_audit::model::Language;
use reentrancy_audit::rules::RULES;
use reentrancy_audit::scan::{scan_text, ScanOptions};

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Expect,
    Related,
    Ok,
    TodoExpect,
    TodoOk,
}

#[derive(Debug, Clone)]
struct Marker {
    kind: Kind,
    line: usize,
    code: String,
    attrs: Vec<(String, String)>,
}

fn parse_markers(text: &str) -> Vec<Marker> {
    const KEYWORDS: &[(&str, Kind)] = &[
        ("todo-expect:", Kind::TodoExpect),
        ("todo-ok:", Kind::TodoOk),
        ("expect:", Kind::Expect),
        ("related:", Kind::Related),
        ("ok:", Kind::Ok),
    ];
    let mut markers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(comment_at) = line.find("//").or_else(|| line.find('#')) else {
            continue;
        };
        let comment = &line[comment_at..];
        for (keyword, kind) in KEYWORDS {
            let mut from = 0;
            while let Some(pos) = comment[from..].find(keyword) {
                let at = from + pos;
                from = at + keyword.len();
                // `expect:` inside `todo-expect:` belongs to the longer keyword.
                if at > 0 && comment.as_bytes()[at - 1] == b'-' {
                    continue;
                }
                let mut rest = comment[from..].trim_start();
                loop {
                    let code_len = rest
                        .char_indices()
                        .take_while(|(j, c)| {
                            if *j < 2 {
                                c.is_ascii_uppercase()
                            } else {
                                c.is_ascii_digit()
                            }
                        })
                        .count();
                    if code_len != 5 || !rest.starts_with("RA") {
                        break;
                    }
                    let code = rest[..5].to_string();
                    rest = &rest[5..];
                    let mut attrs = Vec::new();
                    if let Some(inner) = rest.strip_prefix('{') {
                        let end = inner.find('}').expect("unclosed `{` in marker");
                        for pair in inner[..end].split(',') {
                            let (k, v) =
                                pair.split_once('=').expect("marker attribute is key=value");
                            attrs.push((k.trim().to_string(), v.trim().to_string()));
                        }
                        rest = &inner[end + 1..];
                    }
                    markers.push(Marker {
                        kind: kind.clone(),
                        line: i + 1,
                        code,
                        attrs,
                    });
                    match rest.trim_start().strip_prefix(',') {
                        Some(r) => rest = r.trim_start(),
                        None => break,
                    }
                }
            }
        }
    }
    markers
}

fn fixture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            fixture_files(&path, out);
        } else if Language::from_path(&path).is_some() {
            out.push(path);
        }
    }
}

fn options() -> ScanOptions {
    {
        let mut o = ScanOptions::new(Vec::new(), RULES.to_vec());
        o.jobs = Some(1);
        o.file_time_budget = Duration::from_secs(30);
        o
    }
}

/// Checks one file; returns human-readable problems.
fn check_file(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let display = path.to_string_lossy().replace('\\', "/");
    let language = Language::from_path(path).unwrap();
    let (findings, errors) = scan_text(&display, language, &text, &options());
    let mut problems = Vec::new();
    for e in &errors {
        problems.push(format!(
            "{display}: unexpected error entry: {} ({:?})",
            e.message, e.kind
        ));
    }
    let registered = |code: &str| RULES.iter().any(|r| r.meta().code == code);
    let markers: Vec<Marker> = parse_markers(&text)
        .into_iter()
        .filter(|m| registered(&m.code))
        .collect();
    let at = |line: usize, code: &str| -> Vec<&Finding> {
        findings
            .iter()
            .filter(|f| f.location.start.line == line && f.rule_id == code)
            .collect()
    };
    let marked = |kind: Kind, line: usize, code: &str| {
        markers
            .iter()
            .any(|m| m.kind == kind && m.line == line && m.code == code)
    };
    for m in &markers {
        let here = at(m.line, &m.code);
        match m.kind {
            Kind::Expect => {
                if here.is_empty() {
                    problems.push(format!(
                        "{display}:{}: expected {} was not reported",
                        m.line, m.code
                    ));
                }
                for (k, v) in &m.attrs {
                    let ok = here.iter().any(|f| match k.as_str() {
                        "risk" => f.risk.as_str() == v,
                        "confidence" => f.confidence.as_str() == v,
                        other => panic!("{display}:{}: unknown marker attribute `{other}`", m.line),
                    });
                    if !here.is_empty() && !ok {
                        let got: Vec<String> = here
                            .iter()
                            .map(|f| format!("risk={} confidence={}", f.risk, f.confidence))
                            .collect();
                        problems.push(format!(
                            "{display}:{}: {} expected {k}={v}, got {}",
                            m.line,
                            m.code,
                            got.join("; ")
                        ));
                    }
                }
            }
            Kind::Ok | Kind::TodoExpect => {
                if !here.is_empty() {
                    let why = if m.kind == Kind::Ok {
                        "a deliberate near-miss (ok:) was reported"
                    } else {
                        "a todo-expect is now reported: upgrade it to expect"
                    };
                    problems.push(format!(
                        "{display}:{}: {} {why}: {}",
                        m.line, m.code, here[0].message
                    ));
                }
            }
            Kind::TodoOk => {
                if here.is_empty() {
                    problems.push(format!(
                        "{display}:{}: {} todo-ok is no longer reported: remove the marker",
                        m.line, m.code
                    ));
                }
            }
            Kind::Related => {
                let found = findings.iter().any(|f| {
                    f.rule_id == m.code
                        && f.related
                            .first()
                            .is_some_and(|r| r.location.start.line == m.line)
                });
                if !found {
                    problems.push(format!(
                        "{display}:{}: no {} finding has its related location on this line",
                        m.line, m.code
                    ));
                }
            }
        }
    }
    for f in &findings {
        let line = f.location.start.line;
        if !marked(Kind::Expect, line, f.rule_id) && !marked(Kind::TodoOk, line, f.rule_id) {
            problems.push(format!(
                "{display}:{line}: unexpected {} ({}): {}",
                f.rule_id, f.name, f.message
            ));
        }
        if let Some(r) = f.related.first() {
            if marked(Kind::Expect, line, f.rule_id)
                && !marked(Kind::Related, r.location.start.line, f.rule_id)
            {
                problems.push(format!(
                    "{display}:{line}: {} has its related location on line {} but no `related: {}` marker is there",
                    f.rule_id, r.location.start.line, f.rule_id
                ));
            }
        }
    }
    problems
}

#[test]
fn fixtures_match_their_markers() {
    let mut files = Vec::new();
    fixture_files(Path::new("fixtures"), &mut files);
    assert!(!files.is_empty(), "no fixtures found");
    let problems: Vec<String> = files.iter().flat_map(|f| check_file(f)).collect();
    assert!(
        problems.is_empty(),
        "{} fixture problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_rule_has_positive_and_negative_fixtures_per_language() {
    let mut missing = Vec::new();
    for rule in RULES {
        let code = rule.meta().code;
        for (dir, exts) in [
            ("js", &["js", "jsx", "mjs", "cjs"][..]),
            ("ts", &["ts", "tsx"][..]),
            ("py", &["py"][..]),
        ] {
            for kind in ["positive", "negative"] {
                let exists = exts
                    .iter()
                    .any(|e| Path::new(&format!("fixtures/{code}/{dir}/{kind}.{e}")).exists());
                if !exists {
                    missing.push(format!("fixtures/{code}/{dir}/{kind}.*"));
                }
            }
        }
        // Positives must expect the rule, negatives must carry near-misses.
        for dir in ["js", "ts", "py"] {
            let Ok(entries) = std::fs::read_dir(format!("fixtures/{code}/{dir}")) else {
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                let markers = parse_markers(&text);
                let expects = markers
                    .iter()
                    .filter(|m| m.kind == Kind::Expect && m.code == code)
                    .count();
                let oks = markers
                    .iter()
                    .filter(|m| m.kind == Kind::Ok && m.code == code)
                    .count();
                if name.starts_with("positive") && expects == 0 {
                    missing.push(format!(
                        "{}: a positive fixture with no `expect: {code}`",
                        path.display()
                    ));
                }
                if name.starts_with("negative") && (oks == 0 || expects > 0) {
                    missing.push(format!(
                        "{}: a negative fixture needs `ok: {code}` near-misses and no expect",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn marker_parser_reads_every_form() {
    let m = parse_markers("x = 1  # expect: RA001{risk=medium,confidence=low}, RA007 related: RA002 todo-ok: RA003\n// ok: RA004");
    let summary: Vec<(Kind, usize, &str, usize)> = m
        .iter()
        .map(|m| (m.kind.clone(), m.line, m.code.as_str(), m.attrs.len()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Kind::TodoOk, 1, "RA003", 0),
            (Kind::Expect, 1, "RA001", 2),
            (Kind::Expect, 1, "RA007", 0),
            (Kind::Related, 1, "RA002", 0),
            (Kind::Ok, 2, "RA004", 0),
        ]
    );
}
