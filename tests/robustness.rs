//! Hostile input: nothing panics, each case yields a per-file error or a
//! correct result, and the exit code stays as documented.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("reentrancy-audit").unwrap();
    cmd.env("NO_COLOR", "1");
    cmd
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = bin().args(args).output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    assert!(
        r.code == 0 || r.code == 1 || r.code == 2,
        "exit {}: {}",
        r.code,
        r.stderr
    );
    r
}

fn json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["scan", "--format", "json"];
    all.extend_from_slice(args);
    let r = run(&all);
    let doc = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stderr));
    (r.code, doc)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn deep_nesting_does_not_overflow_in_any_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 100_000;
    let cases = [
        (
            "expr.js",
            format!(
                "const idempotencyKey = {}Date.now(){};\n",
                "(".repeat(n),
                ")".repeat(n)
            ),
        ),
        (
            "block.ts",
            format!(
                "async function f() {{{}}}\n",
                "{".repeat(n) + &"}".repeat(n)
            ),
        ),
        (
            "list.py",
            format!("x = {}1{}\n", "[".repeat(n), "]".repeat(n)),
        ),
        (
            "unary.py",
            format!("idempotency_key = {}time.time()\n", "-".repeat(n)),
        ),
        (
            "calls.js",
            format!(
                "const dedupKey = {}uuid(){};\n",
                "String(".repeat(n / 2),
                ")".repeat(n / 2)
            ),
        ),
    ];
    for (name, text) in &cases {
        write(tmp.path(), name, text.as_bytes());
    }
    let started = Instant::now();
    for format in ["json", "sarif", "human", "github"] {
        let r = run(&["scan", s(tmp.path()), "--format", format]);
        assert_eq!(
            r.code, 1,
            "{format}: the deep hazards are still found: {}",
            r.stderr
        );
    }
    let (_, doc) = json(&[s(tmp.path())]);
    let hits: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["location"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn huge_files_are_skipped_or_scanned_in_bounded_time() {
    let tmp = tempfile::tempdir().unwrap();
    let unit = "export async function pay(stripe, order) {\n  const total = order.items.reduce((s, i) => s + i.price * i.qty, 0);\n  return stripe.paymentIntents.create({ amount: total }, { idempotencyKey: `pay-${order.id}` });\n}\n";
    let mut text = String::with_capacity(21 << 20);
    while text.len() < 20 << 20 {
        text.push_str(unit);
    }
    text.push_str("const dedupKey = `x-${Date.now()}`;\n");
    let file = write(tmp.path(), "bundle.js", text.as_bytes());
    let (code, doc) = json(&[s(&file)]);
    assert_eq!(code, 0);
    assert_eq!(doc["errors"][0]["kind"], "too_large");
    assert!(doc["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("--max-file-size"));
    let started = Instant::now();
    let (code, doc) = json(&[
        s(&file),
        "--max-file-size",
        "30M",
        "--file-timeout-ms",
        "120000",
    ]);
    assert_eq!(code, 1, "{}", doc["errors"]);
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
    // A budget too small for the file abandons it with an error entry.
    let (code, doc) = json(&[s(&file), "--max-file-size", "30M", "--file-timeout-ms", "1"]);
    assert_eq!(code, 0);
    assert_eq!(doc["errors"][0]["kind"], "timeout", "{}", doc["errors"]);
}

#[test]
fn minified_one_line_bundle_reports_the_right_column() {
    let tmp = tempfile::tempdir().unwrap();
    let mut line = String::new();
    for i in 0..5000 {
        line.push_str(&format!("function f{i}(a,b){{return a+b*{i}}};"));
    }
    let at = line.chars().count();
    line.push_str("function k(q){return q.add('x',{},{jobId:'j'+Date.now()})};");
    for i in 0..100 {
        line.push_str(&format!("var v{i}={i};"));
    }
    let file = write(tmp.path(), "bundle.js", line.as_bytes());
    let (code, doc) = json(&[s(&file)]);
    assert_eq!(code, 1);
    let f = &doc["findings"][0];
    assert_eq!(f["location"]["start"]["line"], 1);
    let expected = at + "function k(q){return q.add('x',{},{".chars().count() + 1;
    assert_eq!(
        f["location"]["start"]["column"].as_u64().unwrap() as usize,
        expected
    );
}

#[test]
fn columns_are_right_with_bom_crlf_tabs_and_non_ascii() {
    let tmp = tempfile::tempdir().unwrap();
    // BOM, CRLF line ends, a tab and a non-ASCII character before the act.
    let text = "\u{feff}// ünïcode\r\nfunction pay(stripe) {\r\n\tconst ключ = 1; const idempotencyKey = `k-${Date.now()}`;\r\n\treturn stripe.refunds.create({}, { idempotencyKey });\r\n}\r\n";
    let file = write(tmp.path(), "crlf.js", text.as_bytes());
    let (_, doc) = json(&[s(&file)]);
    let loc = &doc["findings"][0]["location"];
    // Line 3: a tab (one column) and `const ключ = 1; const ` (22 code
    // points) come before the declarator, which is the act.
    assert_eq!(
        (
            loc["start"]["line"].as_u64(),
            loc["start"]["column"].as_u64()
        ),
        (Some(3), Some(24))
    );
    let related = &doc["findings"][0]["related"][0]["location"]["start"];
    let col = "\tconst ключ = 1; const idempotencyKey = `k-${"
        .chars()
        .count()
        + 1;
    assert_eq!(related["column"].as_u64().unwrap() as usize, col);
    // SARIF declares code-point columns and carries the same numbers.
    let r = run(&["scan", s(&file), "--format", "sarif"]);
    let sarif: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(sarif["runs"][0]["columnKind"], "unicodeCodePoints");
    let region = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (region["startLine"].as_u64(), region["startColumn"].as_u64()),
        (Some(3), Some(24))
    );
    // Human output points at the same line and column.
    let r = run(&["scan", s(&file)]);
    assert!(r.stdout.contains("crlf.js:3:24"), "{}", r.stdout);
    // The BOM file parses cleanly: no syntax warning.
    assert!(
        doc["errors"].as_array().unwrap().is_empty(),
        "{}",
        doc["errors"]
    );
}

#[test]
fn odd_files_and_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "empty.js", b"");
    write(d, "only-bom.py", "\u{feff}".as_bytes());
    write(
        d,
        "binary.js",
        &[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0xff, 0xfe],
    );
    write(
        d,
        "bad-utf8.ts",
        b"const dedupKey = `k-${Date.now()}`;\n// \xc3\x28 broken\n",
    );
    write(d, "dir with space/na\u{ef}ve \u{65e5}\u{672c}.py", b"import uuid\n\ndef pay(stripe):\n    return stripe.Refund.create(charge='c', idempotency_key=str(uuid.uuid4()))\n");
    let (code, doc) = json(&[s(d)]);
    assert_eq!(code, 1);
    let errors = doc["errors"].as_array().unwrap();
    let kind = |name: &str| {
        errors
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(name))
            .map(|e| e["kind"].as_str().unwrap().to_string())
    };
    assert_eq!(kind("binary.js").as_deref(), Some("binary"));
    assert_eq!(kind("bad-utf8.ts").as_deref(), Some("encoding"));
    let line = errors.iter().find(|e| e["kind"] == "encoding").unwrap()["line"].as_u64();
    assert_eq!(line, Some(2), "the encoding error names its line");
    assert_eq!(kind("empty.js"), None);
    assert_eq!(kind("only-bom.py"), None);
    let paths: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["location"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 1);
    assert!(
        paths[0].ends_with("dir with space/na\u{ef}ve \u{65e5}\u{672c}.py"),
        "{paths:?}"
    );
    assert_eq!(doc["summary"]["files_scanned"], 5);
}

#[cfg(unix)]
#[test]
fn symlink_loops_and_dangling_links() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(d, "a/pay.js", b"const dedupKey = `k-${Date.now()}`;\n");
    std::os::unix::fs::symlink(d.join("a"), d.join("a/loop")).unwrap();
    std::os::unix::fs::symlink(d.join("nowhere.js"), d.join("dangling.js")).unwrap();
    let (code, doc) = json(&[s(d)]);
    assert_eq!(code, 1, "the real file is still scanned");
    let kinds: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"symlink_loop"), "{kinds:?}");
    assert!(kinds.contains(&"not_found"), "{kinds:?}");
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1);
}

#[cfg(unix)]
#[test]
fn permission_denied_file_and_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(d, "ok.js", b"const dedupKey = `k-${Date.now()}`;\n");
    let secret = write(d, "secret.js", b"const dedupKey = `k-${Date.now()}`;\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let closed = d.join("closed");
    write(d, "closed/inner.js", b"const x = 1;\n");
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o000)).unwrap();
    let exe = assert_cmd::cargo::cargo_bin("reentrancy-audit");
    // Root reads everything: run the scan as an unprivileged user then.
    let is_root = unsafe { libc_geteuid() } == 0;
    let out = if is_root {
        let exe_dir = std::env::temp_dir().join(format!("ra-bin-{}", std::process::id()));
        std::fs::create_dir_all(&exe_dir).unwrap();
        std::fs::set_permissions(&exe_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = exe_dir.join("reentrancy-audit");
        std::fs::copy(&exe, &copy).unwrap();
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&copy)
            .args(["scan", s(d), "--format", "json"])
            .current_dir("/")
            .output()
            .unwrap()
    } else {
        Command::new(&exe)
            .args(["scan", s(d), "--format", "json"])
            .output()
            .unwrap()
    };
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let denied: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "permission_denied")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        denied.iter().any(|p| p.ends_with("secret.js")),
        "{denied:?}"
    );
    assert!(denied.iter().any(|p| p.ends_with("closed")), "{denied:?}");
    assert_eq!(
        doc["findings"].as_array().unwrap().len(),
        1,
        "ok.js is still scanned"
    );
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn prefilter_never_changes_the_findings() {
    // On the fixtures and on generated code mixing hazards and safe code.
    let tmp = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .args([
            "scripts/bench.py",
            "--generate",
            "20000",
            "--out",
            s(tmp.path()),
        ])
        .status();
    let mut targets = vec!["fixtures".to_string()];
    if status.is_ok_and(|s| s.success()) {
        targets.push(s(tmp.path()).to_string());
    }
    for target in &targets {
        let (_, on) = json(&[target, "--fail-on", "never"]);
        let (_, off) = json(&[target, "--fail-on", "never", "--no-prefilter"]);
        assert_eq!(on["findings"], off["findings"], "{target}");
        assert!(
            !on["findings"].as_array().unwrap().is_empty(),
            "{target} has findings"
        );
    }
    assert_eq!(targets.len(), 2, "python3 generated the corpus");
}

#[test]
fn update_expression_chains_stay_linear() {
    // Found by the fuzzer: `i------…d` once made the model a DAG whose walks
    // doubled at every level.
    let tmp = tempfile::tempdir().unwrap();
    let chain = format!(
        "class W {{ p = new Set(); f() {{ e(i{}d); this.p.delete(i) }} }}\n",
        "-".repeat(4000)
    );
    for name in ["chain.tsx", "chain.js"] {
        write(tmp.path(), name, chain.as_bytes());
    }
    let started = Instant::now();
    let r = run(&["scan", s(tmp.path()), "--no-prefilter"]);
    assert!(r.code == 0 || r.code == 1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_lowered_model_is_a_tree() {
    use reentrancy_audit::lang::{lower, Parsers};
    use reentrancy_audit::model::Language;
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::from("fixtures")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if Language::from_path(&p).is_some() {
                files.push(p);
            }
        }
    }
    let mut parsers = Parsers::default();
    for path in files {
        let language = Language::from_path(&path).unwrap();
        let src = std::fs::read_to_string(&path).unwrap();
        let tree = parsers.parser(language).parse(&src, None).unwrap();
        let model = lower(&tree, &src, language);
        for f in &model.functions {
            let mut parent: Vec<Option<u32>> = vec![None; f.exprs.len()];
            let mut kids = Vec::new();
            for id in 0..f.exprs.len() as u32 {
                kids.clear();
                f.children(id, &mut kids);
                for k in &kids {
                    assert!(
                        *k < id,
                        "{}: a child ({k}) is lowered before its parent ({id})",
                        path.display()
                    );
                    if let Some(other) = parent[*k as usize] {
                        panic!(
                            "{} {}: {:?} has two parents, {:?} and {:?}",
                            path.display(),
                            f.name,
                            f.expr(*k),
                            f.expr(other),
                            f.expr(id)
                        );
                    }
                    parent[*k as usize] = Some(id);
                }
            }
        }
    }
}
