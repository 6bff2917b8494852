//! End-to-end tests of the binary: exit codes, formats, filters, determinism,
//! the SARIF schema, and bad input.

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("reentrancy-audit").unwrap();
    cmd.env("NO_COLOR", "1");
    cmd
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_scan(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["scan", "--format", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(&all);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, doc)
}

const HAZARD_JS: &str = "async function pay(stripe, order) {\n  const idempotencyKey = `pay-${order.id}-${Date.now()}`;\n  return stripe.paymentIntents.create({ amount: order.total }, { idempotencyKey });\n}\n";
const SAFE_JS: &str = "async function pay(stripe, order, requestId) {\n  const idempotencyKey = `pay-${order.id}-${requestId}`;\n  return stripe.paymentIntents.create({ amount: order.total }, { idempotencyKey });\n}\n";

fn write(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn exit_codes_follow_fail_on() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.js", HAZARD_JS.as_bytes());
    let good = write(dir.path(), "good.js", SAFE_JS.as_bytes());
    let bad = bad.to_str().unwrap();
    assert_eq!(
        run(&["scan", bad]).0,
        1,
        "a high finding fails the default gate"
    );
    assert_eq!(run(&["scan", bad, "--fail-on", "high"]).0, 1);
    assert_eq!(run(&["scan", bad, "--fail-on", "never"]).0, 0);
    assert_eq!(run(&["scan", good.to_str().unwrap()]).0, 0);
    let (code, _, stderr) = run(&["scan", bad, "--select", "RA999"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown rule `RA999`"), "{stderr}");
    assert_eq!(
        run(&["scan", bad, "--fail-on", "sometimes"]).0,
        2,
        "usage error"
    );
}

#[test]
fn fail_on_medium_ignores_low_and_counts_medium() {
    let dir = tempfile::tempdir().unwrap();
    // A fallback key is risk medium.
    let src = "function handler(req, res) {\n  const idempotencyKey = req.get('Idempotency-Key') ?? crypto.randomUUID();\n  return queue.add('x', {}, { jobId: idempotencyKey });\n}\n";
    let file = write(dir.path(), "m.js", src.as_bytes());
    let f = file.to_str().unwrap();
    let (_, doc) = json_scan(&[f, "--fail-on", "never"]);
    assert_eq!(doc["findings"][0]["risk"], "medium");
    assert_eq!(run(&["scan", f, "--fail-on", "medium"]).0, 1);
    assert_eq!(run(&["scan", f, "--fail-on", "high"]).0, 0);
}

#[test]
fn json_report_has_documented_shape() {
    let (code, doc) = json_scan(&["fixtures/RA002"]);
    assert_eq!(code, 1);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["tool"]["name"], "reentrancy-audit");
    let findings = doc["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    let f = &findings[0];
    for key in [
        "rule_id",
        "name",
        "risk",
        "confidence",
        "message",
        "location",
        "related",
        "function",
        "suggestion",
        "fingerprint",
    ] {
        assert!(f.get(key).is_some(), "finding lacks `{key}`: {f}");
    }
    assert!(f["location"]["path"]
        .as_str()
        .unwrap()
        .starts_with("fixtures/RA002/"));
    assert!(f["location"]["start"]["line"].as_u64().unwrap() >= 1);
    assert!(f["suggestion"]["code"].as_str().unwrap().len() > 10);
    let summary = &doc["summary"];
    assert_eq!(
        summary["findings"].as_u64().unwrap() as usize,
        findings.len()
    );
    assert_eq!(summary["files_scanned"], 6);
    assert!(doc["errors"].as_array().unwrap().is_empty());
}

#[test]
fn output_file_and_summary_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.sarif");
    let (code, stdout, stderr) = run(&[
        "scan",
        "fixtures/RA002",
        "--format",
        "sarif",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stdout.is_empty(),
        "report went to the file, not stdout: {stdout}"
    );
    assert!(stderr.contains("findings ("), "summary on stderr: {stderr}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(doc["version"], "2.1.0");
}

#[test]
fn human_output_labels_act_and_check_and_shows_rewrite() {
    let (code, stdout, _) = run(&["scan", "fixtures/RA002/ts/positive.ts"]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("RA002 nondeterministic-idempotency-key"),
        "{stdout}"
    );
    assert!(stdout.contains("the act"));
    assert!(stdout.contains("returns a new value on every call"));
    assert!(stdout.contains("risk: high, confidence: high"));
    assert!(stdout.contains("Derive `"), "the suggestion title is shown");
    assert!(
        !stdout.contains('\u{1b}'),
        "no colour with NO_COLOR or off a terminal"
    );
    let last = stdout.lines().last().unwrap();
    assert!(
        last.contains("findings (") && last.contains("in 1 file"),
        "summary line: {last}"
    );
}

#[test]
fn filters_select_ignore_and_floors() {
    let (_, all) = json_scan(&["fixtures/RA002", "--fail-on", "never"]);
    let total = all["findings"].as_array().unwrap().len();
    let (_, ignored) = json_scan(&["fixtures/RA002", "--ignore", "RA002"]);
    assert_eq!(ignored["findings"].as_array().unwrap().len(), 0);
    let (_, selected) = json_scan(&["fixtures/RA002", "--select", "ra002"]);
    assert_eq!(selected["findings"].as_array().unwrap().len(), total);
    let (_, high) = json_scan(&["fixtures/RA002", "--min-risk", "high"]);
    let high = high["findings"].as_array().unwrap();
    assert!(
        !high.is_empty() && high.len() < total,
        "some RA002 fixtures are medium"
    );
    assert!(high.iter().all(|f| f["risk"] == "high"));
    let (_, conf) = json_scan(&["fixtures/RA002", "--min-confidence", "high"]);
    assert!(conf["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["confidence"] == "high"));
}

fn strip_volatile(mut doc: Value) -> Value {
    doc["summary"]["elapsed_ms"] = Value::Null;
    doc
}

#[test]
fn output_is_identical_across_job_counts() {
    let (_, one) = json_scan(&["fixtures", "--jobs", "1"]);
    let (_, four) = json_scan(&["fixtures", "--jobs", "4"]);
    assert_eq!(strip_volatile(one), strip_volatile(four));
    let sarif = |jobs: &str| run(&["scan", "fixtures", "--format", "sarif", "--jobs", jobs]).1;
    assert_eq!(sarif("1"), sarif("4"));
}

#[test]
fn sarif_validates_against_the_official_schema() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bin.js", b"\x00\x01\x02binary");
    write(
        dir.path(),
        "broken.ts",
        b"const at = Date.now();\nfunction (((\n",
    );
    write(dir.path(), "sub dir/naïve.js", HAZARD_JS.as_bytes());
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new("../shared/sarif/sarif-schema-2.1.0.json"))
            .expect("the official schema sits in ../shared"),
    )
    .unwrap();
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles");
    // The validator is live: a wrong level is rejected.
    let (_, stdout, _) = run(&["scan", "fixtures/RA002", "--format", "sarif"]);
    let mut broken: Value = serde_json::from_str(&stdout).unwrap();
    broken["runs"][0]["results"][0]["level"] = Value::from("fatal");
    assert!(!validator.is_valid(&broken));
    for target in ["fixtures", dir.path().to_str().unwrap()] {
        let (_, stdout, _) = run(&["scan", target, "--format", "sarif"]);
        let doc: Value = serde_json::from_str(&stdout).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "SARIF invalid for {target}:\n{}",
            errors.join("\n")
        );
        let run = &doc["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        assert!(!rules.is_empty());
        for rule in rules {
            assert!(
                rule["fullDescription"]["text"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .count()
                    <= 1024
            );
            assert!(rule["help"]["markdown"].as_str().unwrap().contains("## "));
            let tags = rule["properties"]["tags"].as_array().unwrap();
            assert!(tags.iter().any(|t| t == "security"));
            assert!(rule["properties"]["security-severity"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .is_ok());
        }
        for result in run["results"].as_array().unwrap() {
            assert!(
                result["locations"][0]["physicalLocation"]["region"]["startLine"]
                    .as_u64()
                    .unwrap()
                    >= 1
            );
            assert!(
                result["partialFingerprints"]["reentrancyAudit/v1"]
                    .as_str()
                    .unwrap()
                    .len()
                    >= 16
            );
            assert!(result["message"]["markdown"]
                .as_str()
                .unwrap()
                .contains("```"));
        }
    }
    // Per-file errors become notifications; the space and non-ASCII path is a valid URI.
    let (_, stdout, _) = run(&["scan", dir.path().to_str().unwrap(), "--format", "sarif"]);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let notes = doc["runs"][0]["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    assert!(notes.len() >= 2, "{notes:?}");
    let uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
        ["uri"]
        .as_str()
        .unwrap();
    assert!(uri.ends_with("sub%20dir/na%C3%AFve.js"), "{uri}");
}

#[test]
fn bad_input_is_reported_per_file_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "binary.js", b"\x7fELF\x00\x00\x00\x00garbage");
    write(d, "latin1.py", b"name = '\xe9t\xe9'\n");
    write(d, "huge.js", &vec![b' '; 2 * 1024 * 1024]);
    write(d, "broken.js", b"async function pay(stripe, order) {\n  const idempotencyKey = `k-${Date.now()}`;\n  await stripe.paymentIntents.create({}, { idempotencyKey });\n}\nfunction ((( {\n");
    write(d, "empty.ts", b"");
    write(d, "ok.js", HAZARD_JS.as_bytes());
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(d.join("missing.js"), d.join("dangling.js")).unwrap();
        std::fs::create_dir(d.join("loop")).unwrap();
        std::os::unix::fs::symlink(d.join("loop"), d.join("loop/again")).unwrap();
    }
    let (code, doc) = json_scan(&[d.to_str().unwrap(), "--max-file-size", "1M"]);
    assert_eq!(code, 1, "the hazards still fail the gate");
    let errors = doc["errors"].as_array().unwrap();
    let kind_of = |name: &str| -> Vec<String> {
        errors
            .iter()
            .filter(|e| e["path"].as_str().unwrap().ends_with(name))
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kind_of("binary.js"), ["binary"]);
    assert_eq!(kind_of("latin1.py"), ["encoding"]);
    assert_eq!(kind_of("huge.js"), ["too_large"]);
    assert_eq!(kind_of("broken.js"), ["syntax"]);
    assert!(kind_of("empty.ts").is_empty());
    #[cfg(unix)]
    {
        assert!(
            !kind_of("dangling.js").is_empty(),
            "broken symlink reported: {errors:?}"
        );
        assert!(
            kind_of("again").contains(&"symlink_loop".to_string()),
            "loop reported: {errors:?}"
        );
    }
    let files: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["location"]["path"].as_str().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("broken.js")),
        "the parsed part of a broken file still reports"
    );
    assert!(files.iter().any(|f| f.ends_with("ok.js")));
}

#[test]
fn ignored_paths_skipped_but_explicit_files_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "node_modules/lib/pay.js", HAZARD_JS.as_bytes());
    write(d, "dist/pay.js", HAZARD_JS.as_bytes());
    write(d, "app.min.js", HAZARD_JS.as_bytes());
    write(d, "generated/pay.js", HAZARD_JS.as_bytes());
    write(d, ".gitignore", b"generated/\n");
    write(d, "src/pay.py", b"import uuid\n\ndef pay(stripe, order):\n    return stripe.Refund.create(charge=order.charge_id, idempotency_key=str(uuid.uuid4()))\n");
    let (_, doc) = json_scan(&[d.to_str().unwrap()]);
    let paths: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["location"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(paths[0].ends_with("src/pay.py"));
    let explicit = d.join("generated/pay.js");
    let (_, doc) = json_scan(&[explicit.to_str().unwrap()]);
    assert_eq!(
        doc["findings"].as_array().unwrap().len(),
        1,
        "explicit files are always scanned"
    );
}

#[test]
fn rules_and_explain() {
    let (code, stdout, _) = run(&["rules"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("RA002") && stdout.contains("nondeterministic-idempotency-key"));
    let (_, stdout, _) = run(&["rules", "--format", "json"]);
    let rules: Value = serde_json::from_str(&stdout).unwrap();
    assert!(rules
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "RA002" && r["risk"] == "high"));
    let (code, stdout, _) = run(&["explain", "ra002"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("# RA002 nondeterministic-idempotency-key"));
    assert!(stdout.contains("## What it detects"));
    let (code, _, stderr) = run(&["explain", "RA123"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown rule"));
}

fn finding_paths(doc: &Value) -> Vec<String> {
    let mut paths: Vec<String> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["location"]["path"].as_str().unwrap().replace('\\', "/"))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

#[test]
fn test_code_is_out_of_scope_unless_included() {
    let dir = tempfile::tempdir().unwrap();
    // The checkout itself lives under a `tests/` folder: only the path below
    // the scanned root decides.
    let root = dir.path().join("tests/checkout");
    let py = "import uuid\n\ndef pay(stripe, order):\n    return stripe.Refund.create(charge=order.charge_id, idempotency_key=str(uuid.uuid4()))\n";
    write(&root, "src/pay.js", HAZARD_JS.as_bytes());
    write(&root, "src/pay.test.js", HAZARD_JS.as_bytes());
    write(&root, "src/pay.spec.ts", HAZARD_JS.as_bytes());
    write(&root, "src/__tests__/pay.js", HAZARD_JS.as_bytes());
    write(&root, "tests/helpers.js", HAZARD_JS.as_bytes());
    write(&root, "app/test_pay.py", py.as_bytes());
    write(&root, "app/conftest.py", py.as_bytes());
    write(&root, "app/pay.py", py.as_bytes());
    let r = root.to_str().unwrap();
    let rel = |paths: Vec<String>| -> Vec<String> {
        let prefix = format!("{}/", r.replace('\\', "/"));
        paths.into_iter().map(|p| p.replace(&prefix, "")).collect()
    };

    let (_, doc) = json_scan(&[r, "--no-config"]);
    assert_eq!(rel(finding_paths(&doc)), ["app/pay.py", "src/pay.js"]);
    // Without the prefilter test files are parsed and analysed, and still
    // report nothing.
    let (_, doc) = json_scan(&[r, "--no-config", "--no-prefilter"]);
    assert_eq!(rel(finding_paths(&doc)), ["app/pay.py", "src/pay.js"]);

    let (_, doc) = json_scan(&[r, "--no-config", "--include-tests"]);
    assert_eq!(finding_paths(&doc).len(), 8, "{:?}", finding_paths(&doc));

    // Config: include-tests, and test-paths replacing the built-in globs.
    write(&root, "reentrancy-audit.toml", b"include-tests = true\n");
    let (_, doc) = json_scan(&[r]);
    assert_eq!(finding_paths(&doc).len(), 8);
    write(
        &root,
        "reentrancy-audit.toml",
        b"test-paths = [\"app/**\"]\n",
    );
    let (_, doc) = json_scan(&[r]);
    let paths = rel(finding_paths(&doc));
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert!(paths
        .iter()
        .all(|p| p.starts_with("src/") || p.starts_with("tests/")));
    write(&root, "reentrancy-audit.toml", b"test-paths = [\"[\"]\n");
    let (code, _, stderr) = run(&["scan", r]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid glob"), "{stderr}");
    std::fs::remove_file(root.join("reentrancy-audit.toml")).unwrap();

    // Files named explicitly (pre-commit) and stdin are judged by their name.
    let out = bin()
        .current_dir(&root)
        .args([
            "scan",
            "--format",
            "json",
            "--no-config",
            "src/pay.test.js",
            "src/pay.js",
        ])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(finding_paths(&doc), ["src/pay.js"]);
    let mut child = bin()
        .args([
            "scan",
            "--format",
            "json",
            "--no-config",
            "--stdin-filename",
            "tests/pay.js",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(HAZARD_JS.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(finding_paths(&doc).is_empty(), "{doc}");
}
