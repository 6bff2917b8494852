//! The CI-gate and editor features: config discovery and errors, inline
//! suppressions, baselines and fingerprint stability, `--since`, GitHub
//! annotations, stdin mode.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

const HAZARD: &str = "async function pay(stripe, order) {\n  const idempotencyKey = `pay-${order.id}-${Date.now()}`;\n  return stripe.paymentIntents.create({ amount: order.total }, { idempotencyKey });\n}\n";

fn bin(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("reentrancy-audit").unwrap();
    cmd.current_dir(dir).env("NO_COLOR", "1");
    cmd
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = bin(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn findings(dir: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["scan", "--format", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(dir, &all);
    (
        code,
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}")),
    )
}

fn count(doc: &Value) -> usize {
    doc["findings"].as_array().unwrap().len()
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn config_is_found_by_walking_up_and_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        d,
        "reentrancy-audit.toml",
        "exclude = [\"src/legacy/**\"]\nfail-on = \"never\"\n[rules.RA002]\nrisk = \"low\"\n",
    );
    write(d, "src/pay.js", HAZARD);
    write(d, "src/legacy/old.js", HAZARD);
    let sub = d.join("src");
    let (code, doc) = findings(&sub, &["."]);
    assert_eq!(code, 0, "fail-on = never from the parent folder's config");
    assert_eq!(count(&doc), 1, "legacy/ is excluded: {doc}");
    assert_eq!(doc["findings"][0]["risk"], "low", "risk override applied");
    // Explicit files are excluded too (pre-commit passes them one by one).
    let (_, doc) = findings(d, &["src/legacy/old.js"]);
    assert_eq!(count(&doc), 0);
    // The command line wins over the config; --no-config ignores it.
    assert_eq!(run(d, &["scan", "src", "--fail-on", "low"]).0, 1);
    let (_, doc) = findings(d, &["src", "--no-config"]);
    assert_eq!(count(&doc), 2);
    assert_eq!(doc["findings"][0]["risk"], "high");
}

#[test]
fn pyproject_table_and_explicit_config() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        d,
        "pyproject.toml",
        "[project]\nname = \"x\"\n\n[tool.reentrancy-audit]\nignore = [\"RA002\"]\n",
    );
    write(d, "pay.js", HAZARD);
    let (code, doc) = findings(d, &["pay.js"]);
    assert_eq!(
        (code, count(&doc)),
        (0, 0),
        "RA002 ignored through pyproject.toml"
    );
    write(d, "other.toml", "min-risk = \"high\"\n");
    let (_, doc) = findings(d, &["pay.js", "--config", "other.toml"]);
    assert_eq!(count(&doc), 1, "--config replaces the discovered one");
}

#[test]
fn config_errors_name_the_file_line_and_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "pay.js", HAZARD);
    for (text, expect) in [
        (
            "fail-on = \"high\"\ncolour = true\n",
            "unknown field `colour`",
        ),
        ("fail-on = \"hgih\"\n", "unknown variant `hgih`"),
        (
            "\nselect = [\"RA002\", \"RA099\"]\n",
            "unknown rule `RA099`",
        ),
        ("exclude = [\"src/[\"]\n", "invalid glob"),
        ("max-file-size = \"lots\"\n", "is not a size"),
        (
            "[catalog]\npayment = [\"billing charge\"]\n",
            "is not a call pattern",
        ),
    ] {
        write(d, "reentrancy-audit.toml", text);
        let (code, _, stderr) = run(d, &["scan", "pay.js"]);
        assert_eq!(code, 2, "{text}");
        assert!(stderr.contains(expect), "{text}: {stderr}");
        assert!(
            stderr.contains("reentrancy-audit.toml:"),
            "names the file and line: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
    write(
        d,
        "reentrancy-audit.toml",
        "fail-on = \"high\"\ncolour = true\n",
    );
    let (_, _, stderr) = run(d, &["scan", "pay.js"]);
    assert!(stderr.contains("reentrancy-audit.toml:2"), "{stderr}");
    assert!(stderr.contains("reentrancy-audit init"), "hint: {stderr}");
}

#[test]
fn init_writes_a_valid_starter_config() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    assert_eq!(run(d, &["init"]).0, 0);
    assert_eq!(run(d, &["init"]).0, 2, "refuses to overwrite");
    assert_eq!(run(d, &["init", "--force"]).0, 0);
    write(d, "pay.js", HAZARD);
    let (code, _, stderr) = run(d, &["scan", "pay.js"]);
    assert_eq!(
        code, 1,
        "starter config loads (fail-on = medium, a high finding): {stderr}"
    );
}

#[test]
fn catalog_extensions_make_in_house_helpers_count() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        d,
        "pay.js",
        "function pay(order) {\n  return queue.add('pay', order, { jobId: ids.fresh() });\n}\n",
    );
    let (_, doc) = findings(d, &["pay.js"]);
    assert_eq!(count(&doc), 0);
    write(
        d,
        "reentrancy-audit.toml",
        "[catalog]\nnondeterministic = [\"ids.fresh\"]\n",
    );
    let (_, doc) = findings(d, &["pay.js"]);
    assert_eq!(
        count(&doc),
        1,
        "ids.fresh() is now a nondeterministic source: {doc}"
    );
}

#[test]
fn catalog_extensions_for_every_effect_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let js = "async function signUp(db, email) {\n  const existing = await db.findUserByEmail(email);\n  if (existing) return existing;\n  await warehouse.notifyWarehouse(email);\n  return db.insertUser({ email });\n}\n\nasync function pay(order) {\n  return billing.chargeCustomer(order.customerId, order.total);\n}\n\nasync function payKeyed(order, idempotencyKey) {\n  return billing.chargeCustomer(order.customerId, order.total, { idempotencyKey });\n}\n\nasync function work(jobs, id) {\n  await jobs.pin(id);\n  await doWork(id);\n  await jobs.unpin(id);\n}\n";
    write(d, "app.js", js);
    let (_, doc) = findings(d, &["app.js"]);
    assert_eq!(
        count(&doc),
        0,
        "nothing is known about these helpers yet: {doc}"
    );
    let config = "[catalog]\ndb-read = [\"**.findUserByEmail\"]\ndb-insert = [\"**.insertUser\"]\npayment = [\"billing.chargeCustomer\"]\nlock-acquire = [\"**.pin\"]\nlock-release = [\"**.unpin\"]\n";
    write(d, "reentrancy-audit.toml", config);
    let (_, doc) = findings(d, &["app.js"]);
    let got: Vec<(String, u64, String)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_string(),
                f["location"]["start"]["line"].as_u64().unwrap(),
                f["risk"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("RA001".to_string(), 5, "medium".to_string()),
            ("RA007".to_string(), 9, "medium".to_string()),
            ("RA003".to_string(), 19, "high".to_string()),
        ],
        "the keyed call is not reported"
    );
    // An in-house external call between the check and the insert raises the risk.
    write(
        d,
        "reentrancy-audit.toml",
        &format!("{config}external = [\"**.notifyWarehouse\"]\n"),
    );
    let (_, doc) = findings(d, &["app.js", "--select", "RA001"]);
    assert_eq!(doc["findings"][0]["risk"], "high", "{doc}");
    // RA004 (c): a status moved on around an in-house external call is high.
    write(d, "ship.js", "async function ship(order) {\n  if (order.status !== 'paid') return;\n  order.status = 'shipping';\n  await order.save();\n  await warehouse.dispatchParcel(order.id);\n  order.status = 'shipped';\n  await order.save();\n}\n");
    let (_, doc) = findings(d, &["ship.js", "--select", "RA004"]);
    assert_eq!(doc["findings"][0]["risk"], "medium", "{doc}");
    write(
        d,
        "reentrancy-audit.toml",
        "[catalog]\nexternal = [\"warehouse.dispatchParcel\"]\n",
    );
    let (_, doc) = findings(d, &["ship.js", "--select", "RA004"]);
    assert_eq!(doc["findings"][0]["risk"], "high", "{doc}");
    // The prefilter knows the helpers too: identical with and without it.
    let (_, off) = findings(d, &["app.js", "--no-prefilter"]);
    let (_, on) = findings(d, &["app.js"]);
    assert_eq!(on["findings"], off["findings"]);
}

#[test]
fn suppressions_in_every_form_and_unused_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let js = "function a(stripe) {\n  // reentrancy-audit-ignore[RA002]: reviewed, the key is regenerated on purpose\n  return stripe.refunds.create({}, { idempotencyKey: `r-${Date.now()}` });\n}\nfunction b(stripe) {\n  return stripe.refunds.create({}, { idempotencyKey: `r-${Date.now()}` }); // reentrancy-audit-ignore\n}\nfunction c(stripe) {\n  return stripe.refunds.create({}, { idempotencyKey: `r-${Date.now()}` }); // reentrancy-audit-ignore[RA001, RA002]: both\n}\nfunction d(stripe) {\n  return stripe.refunds.create({}, { idempotencyKey: `r-${Date.now()}` }); // reentrancy-audit-ignore[RA001]: wrong code\n}\n// reentrancy-audit-ignore[RA002]: nothing here\nconst x = 1;\n";
    write(d, "s.js", js);
    let py = "import uuid\n\ndef pay(stripe):\n    # reentrancy-audit-ignore[RA002]: reviewed\n    return stripe.Refund.create(charge='c', idempotency_key=str(uuid.uuid4()))\n\ndef pay2(stripe):\n    return stripe.Refund.create(charge='c', idempotency_key=str(uuid.uuid4()))  # reentrancy-audit-ignore\n";
    write(d, "s.py", py);
    let (code, doc) = findings(d, &["."]);
    let lines: Vec<(String, u64)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["location"]["path"].as_str().unwrap().to_string(),
                f["location"]["start"]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![("s.js".to_string(), 12)],
        "only the wrongly-coded suppression lets its finding through"
    );
    assert_eq!(code, 1);
    assert_eq!(doc["summary"]["suppressed"], 5);
    assert!(
        doc.get("unused_suppressions").is_none(),
        "not reported unless asked"
    );
    // Only rules that ran can leave a suppression unused: with RA002 alone,
    // the RA001-only comment on line 12 says nothing about this run.
    let (code, doc) = findings(
        d,
        &[
            ".",
            "--report-unused-ignores",
            "--select",
            "RA002",
            "--fail-on",
            "never",
        ],
    );
    let unused: Vec<u64> = doc["unused_suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["line"].as_u64().unwrap())
        .collect();
    assert_eq!(unused, vec![14], "the one above `const x` covers nothing");
    assert_eq!(code, 1, "unused suppressions fail the gate when asked for");
    let (_, stdout, _) = run(d, &["scan", ".", "--report-unused-ignores"]);
    assert!(stdout.contains("unused suppression"), "{stdout}");
    assert!(stdout.contains("5 suppressed"), "{stdout}");
}

fn fingerprints(dir: &Path) -> Vec<String> {
    let (_, doc) = findings(dir, &["."]);
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fingerprint"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn baselines_hide_known_findings_and_fingerprints_are_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let two = format!("{HAZARD}\nfunction refund(stripe, c) {{\n  return stripe.refunds.create({{ charge: c.id }}, {{ idempotencyKey: String(Math.random()) }});\n}}\n");
    write(d, "pay.js", &two);
    let before = fingerprints(d);
    assert_eq!(before.len(), 2);
    assert_ne!(before[0], before[1]);
    let (code, _, _) = run(d, &["scan", ".", "--write-baseline", "baseline.json"]);
    assert_eq!(code, 0);
    let (code, doc) = findings(d, &[".", "--baseline", "baseline.json"]);
    assert_eq!((code, count(&doc)), (0, 0), "everything known");

    // Unrelated edits: lines added above, reformatting elsewhere.
    let shifted = format!(
        "// header\nimport Stripe from 'stripe';\n\n\n{}",
        two.replace(
            "function refund(stripe, c) {",
            "function   refund( stripe,  c ) {"
        )
    );
    write(d, "pay.js", &shifted);
    assert_eq!(
        fingerprints(d),
        before,
        "fingerprints survive unrelated edits"
    );
    let (_, doc) = findings(d, &[".", "--baseline", "baseline.json"]);
    assert_eq!(count(&doc), 0);

    // The hazard itself changes: a new fingerprint, reported again.
    write(
        d,
        "pay.js",
        &shifted.replace("Date.now()", "performance.now()"),
    );
    let after = fingerprints(d);
    assert_ne!(after[0], before[0]);
    assert_eq!(after[1], before[1]);
    let (code, doc) = findings(d, &[".", "--baseline", "baseline.json"]);
    assert_eq!((code, count(&doc)), (1, 1));
    let (code, _, stderr) = run(d, &["scan", ".", "--baseline", "missing.json"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read baseline"), "{stderr}");
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn since_reports_only_changed_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    git(d, &["init", "-q"]);
    write(d, "old.js", HAZARD);
    git(d, &["add", "."]);
    git(d, &["commit", "-qm", "one"]);
    let base = String::from_utf8(
        Command::new("git")
            .current_dir(d)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let base = base.trim();
    // Second commit: a new hazard in the same file, far from the old one.
    let edited = format!("{HAZARD}\nfunction refund(stripe, c) {{\n  return stripe.refunds.create({{ charge: c.id }}, {{ idempotencyKey: `${{c.id}}-${{Date.now()}}` }});\n}}\n");
    write(d, "old.js", &edited);
    git(d, &["commit", "-qam", "two"]);
    // And an untracked file.
    write(d, "new.py", "import uuid\n\ndef pay(stripe):\n    return stripe.Refund.create(charge='c', idempotency_key=str(uuid.uuid4()))\n");
    let (_, all) = findings(d, &["."]);
    assert_eq!(count(&all), 3);
    let (code, doc) = findings(d, &[".", "--since", base]);
    let got: Vec<(String, u64)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["location"]["path"].as_str().unwrap().to_string(),
                f["location"]["start"]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("new.py".to_string(), 4), ("old.js".to_string(), 7)]
    );
    assert_eq!(code, 1);
    let (_, doc) = findings(d, &[".", "--since", "HEAD"]);
    assert_eq!(count(&doc), 1, "only the untracked file changed since HEAD");
    let (code, _, stderr) = run(d, &["scan", ".", "--since", "no-such-ref"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a commit"), "{stderr}");
}

#[test]
fn github_annotations_are_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "a,b:c%.js", HAZARD);
    let (code, stdout, _) = run(d, &["scan", ".", "--format", "github"]);
    assert_eq!(code, 1);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("::error "))
        .expect("an error annotation");
    assert!(
        line.starts_with("::error file=a%2Cb%3Ac%25.js,line=2,col=9,endLine=2,endColumn="),
        "{line}"
    );
    assert!(
        line.contains(",title=RA002 nondeterministic-idempotency-key::"),
        "{line}"
    );
    let message = line.split_once("::").unwrap().1.split_once("::").unwrap().1;
    assert!(!message.contains('\n'));
    assert!(
        message.contains("%0A"),
        "newlines in the message are escaped: {message}"
    );
    assert_eq!(
        reentrancy_audit::report::github::escape_property("a:b,c%\r\n"),
        "a%3Ab%2Cc%25%0D%0A"
    );
    assert_eq!(
        reentrancy_audit::report::github::escape_data("50% a:b,\n"),
        "50%25 a:b,%0A"
    );
}

#[test]
fn stdin_mode_scans_the_text_under_the_given_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut child = bin(d)
        .args(["scan", "--stdin-filename", "src/pay.ts", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(HAZARD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["findings"][0]["location"]["path"], "src/pay.ts");
    assert_eq!(doc["findings"][0]["location"]["start"]["line"], 2);
    // Human output renders the snippet from stdin, not from disk.
    let mut child = bin(d)
        .args(["scan", "--stdin-filename", "pay.js"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(HAZARD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("const idempotencyKey = `pay-${order.id}-${Date.now()}`"),
        "{stdout}"
    );
    let (code, _, stderr) = run(d, &["scan", "--stdin-filename", "notes.txt"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a JavaScript, TypeScript or Python file name"));
}
