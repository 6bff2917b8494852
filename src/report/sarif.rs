//! SARIF 2.1.0, shaped for GitHub code scanning: the hazard in the first
//! sentence, the rewrite in the message markdown, `security-severity` from
//! risk and `precision` from confidence, fingerprints without line numbers.

use std::collections::BTreeMap;

use serde_json::json;
use serde_sarif::sarif;

use super::Report;
use crate::finding::{Confidence, Finding, Location, Risk};
use crate::rules::{Rule, RULES};

pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
pub const INFORMATION_URI: &str = "https://github.com/reentrancy-audit/reentrancy-audit";

pub fn level(risk: Risk) -> sarif::ResultLevel {
    match risk {
        Risk::High => sarif::ResultLevel::Error,
        Risk::Medium => sarif::ResultLevel::Warning,
        Risk::Low => sarif::ResultLevel::Note,
    }
}

pub fn security_severity(risk: Risk) -> &'static str {
    match risk {
        Risk::High => "8.0",
        Risk::Medium => "5.5",
        Risk::Low => "3.0",
    }
}

fn precision(confidence: Confidence) -> &'static str {
    match confidence {
        Confidence::High => "high",
        Confidence::Medium => "medium",
        Confidence::Low => "low",
    }
}

fn text(s: impl Into<String>) -> sarif::MultiformatMessageString {
    sarif::MultiformatMessageString::builder()
        .text(s.into())
        .build()
}

fn bag(tags: Option<Vec<String>>, props: &[(&str, serde_json::Value)]) -> sarif::PropertyBag {
    sarif::PropertyBag {
        tags,
        additional_properties: props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn descriptor(rule: &dyn Rule) -> sarif::ReportingDescriptor {
    let meta = rule.meta();
    let mut full = meta.description();
    if full.chars().count() > 1024 {
        full = full.chars().take(1021).collect::<String>() + "...";
    }
    let level = serde_json::to_value(level(meta.risk)).expect("level serialises");
    sarif::ReportingDescriptor::builder()
        .id(meta.code)
        .name(meta.name)
        .short_description(text(meta.summary()))
        .full_description(text(full))
        .help(
            sarif::MultiformatMessageString::builder()
                .text(meta.body())
                .markdown(meta.body())
                .build(),
        )
        .default_configuration(sarif::ReportingConfiguration {
            level: Some(level),
            ..Default::default()
        })
        .properties(bag(
            Some(vec![
                "security".to_string(),
                "concurrency".to_string(),
                "reentrancy".to_string(),
            ]),
            &[
                ("security-severity", json!(security_severity(meta.risk))),
                ("precision", json!(precision(meta.confidence))),
            ],
        ))
        .build()
}

/// Percent-encodes what a URI reference cannot hold (spaces, non-ASCII).
pub fn uri(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn location(loc: &Location, message: Option<&str>, id: Option<i64>) -> sarif::Location {
    sarif::Location {
        id,
        message: message.map(|m| sarif::Message {
            text: Some(m.to_string()),
            ..Default::default()
        }),
        physical_location: Some(sarif::PhysicalLocation {
            artifact_location: Some(sarif::ArtifactLocation {
                uri: Some(uri(&loc.path)),
                ..Default::default()
            }),
            region: Some(sarif::Region {
                start_line: Some(loc.start.line as i64),
                start_column: Some(loc.start.column as i64),
                end_line: Some(loc.end.line as i64),
                end_column: Some(loc.end.column as i64),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn language_tag(path: &str) -> &'static str {
    if path.ends_with(".py") {
        "python"
    } else if path.ends_with(".ts")
        || path.ends_with(".tsx")
        || path.ends_with(".mts")
        || path.ends_with(".cts")
    {
        "ts"
    } else {
        "js"
    }
}

fn result(f: &Finding) -> sarif::Result {
    let rule_index = RULES.iter().position(|r| r.meta().code == f.rule_id);
    let markdown = format!(
        "{}.\n\n**Suggested rewrite:** {}\n\n```{}\n{}\n```",
        f.message,
        f.suggestion.title,
        language_tag(&f.location.path),
        f.suggestion.code
    );
    let mut props = vec![
        ("risk", json!(f.risk.as_str())),
        ("confidence", json!(f.confidence.as_str())),
        ("function", json!(f.function)),
    ];
    props.push(("name", json!(f.name)));
    let mut result = sarif::Result::builder()
        .rule_id(f.rule_id)
        .level(level(f.risk))
        .message(sarif::Message {
            text: Some(format!(
                "{}. Suggested rewrite: {}.",
                f.message, f.suggestion.title
            )),
            markdown: Some(markdown),
            ..Default::default()
        })
        .locations(vec![location(&f.location, None, None)])
        .partial_fingerprints(BTreeMap::from([(
            "reentrancyAudit/v1".to_string(),
            f.fingerprint.clone(),
        )]))
        .properties(bag(None, &props))
        .build();
    result.rule_index = rule_index.map(|i| i as i64);
    result.related_locations = (!f.related.is_empty()).then(|| {
        f.related
            .iter()
            .enumerate()
            .map(|(i, r)| location(&r.location, Some(&r.message), Some(i as i64 + 1)))
            .collect()
    });
    result
}

pub fn render(report: &Report) -> String {
    let mut out = Vec::new();
    write(report, &mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("SARIF is UTF-8")
}

/// Streams the log: a large report is never held twice in memory.
pub fn write(report: &Report, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let unused = report
        .unused_suppressions
        .iter()
        .map(|u| crate::scan::FileError {
            path: u.path.clone(),
            kind: crate::scan::ErrorKind::UnusedSuppression,
            message: format!(
                "unused suppression ({})",
                if u.codes.is_empty() {
                    "all rules".to_string()
                } else {
                    u.codes.join(", ")
                }
            ),
            line: Some(u.line),
        });
    let all_errors: Vec<crate::scan::FileError> =
        report.errors.iter().cloned().chain(unused).collect();
    let notifications: Vec<sarif::Notification> = all_errors
        .iter()
        .map(|e| {
            let mut n = sarif::Notification::builder()
                .message(sarif::Message {
                    text: Some(format!("{}: {}", e.path, e.message)),
                    ..Default::default()
                })
                .level(json!(if e.kind.is_warning() {
                    "warning"
                } else {
                    "error"
                }))
                .properties(bag(None, &[("kind", json!(e.kind))]))
                .build();
            n.locations = (!e.path.is_empty()).then(|| {
                vec![sarif::Location {
                    physical_location: Some(sarif::PhysicalLocation {
                        artifact_location: Some(sarif::ArtifactLocation {
                            uri: Some(uri(&e.path)),
                            ..Default::default()
                        }),
                        region: e.line.map(|l| sarif::Region {
                            start_line: Some(l as i64),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]
            });
            n
        })
        .collect();
    let driver = sarif::ToolComponent::builder()
        .name(env!("CARGO_PKG_NAME"))
        .version(env!("CARGO_PKG_VERSION"))
        .semantic_version(env!("CARGO_PKG_VERSION"))
        .information_uri(INFORMATION_URI)
        .rules(RULES.iter().map(|r| descriptor(*r)).collect::<Vec<_>>())
        .build();
    let mut invocation = sarif::Invocation::builder()
        .execution_successful(true)
        .build();
    invocation.tool_execution_notifications = (!notifications.is_empty()).then_some(notifications);
    let run = sarif::Run::builder()
        .tool(sarif::Tool::builder().driver(driver).build())
        .column_kind(json!("unicodeCodePoints"))
        // Filled in by `write`, one result at a time.
        .results(Vec::new())
        .invocations(vec![invocation])
        .build();
    let log = sarif::Sarif::builder()
        .schema(SCHEMA)
        .version(json!("2.1.0"))
        .runs(vec![run])
        .build();
    // The log without results is small; the results are streamed into its
    // empty array one by one, so a report with many findings never exists
    // twice in memory. Inside JSON strings quotes are escaped, so the raw
    // `"results": []` occurs once: the run's own key.
    let skeleton = serde_json::to_string_pretty(&log).expect("SARIF serialises");
    let (head, tail) = skeleton
        .split_once("\"results\": []")
        .expect("the run has a results array");
    out.write_all(head.as_bytes())?;
    out.write_all(b"\"results\": [")?;
    for (i, f) in report.findings.iter().enumerate() {
        out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer_pretty(&mut *out, &result(f))?;
    }
    out.write_all(if report.findings.is_empty() {
        b"]"
    } else {
        b"\n]"
    })?;
    out.write_all(tail.as_bytes())?;
    out.write_all(b"\n")
}
