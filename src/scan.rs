//! The pipeline for one scan: discover → (in parallel, per file) read →
//! parse → lower → rules → findings; then sort once.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use indicatif::{ProgressBar, ProgressStyle};

use crate::catalog::{catalog, Catalog};
use crate::discover::{discover, SourceFile, TestPaths};
use crate::filter::config::PathFilter;
use crate::filter::suppress::{self, UnusedSuppression};
use crate::finding::{Finding, LineIndex, RawFinding, Related};
use crate::lang::{lower, Parsers};
use crate::model::{FileModel, Span};
use crate::rules::{Context, Rule};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Io,
    PermissionDenied,
    NotFound,
    SymlinkLoop,
    TooLarge,
    Binary,
    Encoding,
    Syntax,
    Timeout,
    /// Only in SARIF notifications: a suppression that covered nothing.
    UnusedSuppression,
}

impl ErrorKind {
    /// Syntax errors still produce findings for the parts that parsed.
    pub fn is_warning(self) -> bool {
        matches!(self, ErrorKind::Syntax | ErrorKind::UnusedSuppression)
    }
}

/// A per-file problem: reported, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileError {
    pub path: String,
    pub kind: ErrorKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl FileError {
    pub fn io(path: &str, err: &std::io::Error) -> FileError {
        let (kind, message) = match err.kind() {
            std::io::ErrorKind::PermissionDenied => (
                ErrorKind::PermissionDenied,
                "permission denied; skipped".to_string(),
            ),
            std::io::ErrorKind::NotFound => (
                ErrorKind::NotFound,
                "no such file or directory (or a broken symbolic link)".to_string(),
            ),
            _ => (ErrorKind::Io, format!("cannot read: {err}")),
        };
        FileError {
            path: path.to_string(),
            kind,
            message,
            line: None,
        }
    }
}

#[derive(Clone)]
pub struct ScanOptions {
    pub paths: Vec<PathBuf>,
    pub rules: Vec<&'static dyn Rule>,
    pub max_file_size: u64,
    pub jobs: Option<usize>,
    /// A file whose parse takes longer is abandoned with an error entry.
    pub file_time_budget: Duration,
    /// The catalogue with the config's extensions (`None`: built-in only).
    pub catalog: Option<Arc<Catalog>>,
    /// The config's include/exclude globs.
    pub path_filter: Option<Arc<PathFilter>>,
    /// Show a progress bar on stderr (only on a terminal, never in CI).
    pub progress: bool,
    /// Skip files that contain none of the enabled rules' trigger tokens.
    pub prefilter: bool,
    /// Diagnostic: read, parse and walk every tree once; no analysis.
    pub parse_only: bool,
    /// Report in test files too (by default they are out of scope).
    pub include_tests: bool,
    pub test_paths: Arc<TestPaths>,
}

impl ScanOptions {
    pub fn new(paths: Vec<PathBuf>, rules: Vec<&'static dyn Rule>) -> ScanOptions {
        ScanOptions {
            paths,
            rules,
            max_file_size: 5 << 20,
            jobs: None,
            file_time_budget: Duration::from_secs(10),
            catalog: None,
            path_filter: None,
            progress: false,
            prefilter: true,
            parse_only: false,
            include_tests: false,
            test_paths: Arc::new(TestPaths::builtin()),
        }
    }

    fn catalog(&self) -> &Catalog {
        self.catalog.as_deref().unwrap_or_else(|| catalog())
    }
}

#[derive(Debug, Default)]
pub struct ScanResult {
    pub findings: Vec<Finding>,
    pub errors: Vec<FileError>,
    pub files_scanned: usize,
    pub bytes: u64,
    pub lines: u64,
    pub elapsed: Duration,
    pub suppressed: usize,
    pub unused_suppressions: Vec<UnusedSuppression>,
    pub timings: Timings,
}

/// Where the time went, summed over files (so over threads: CPU time).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    pub read_ms: f64,
    pub prefilter_ms: f64,
    pub parse_ms: f64,
    /// One full tree walk (parse-only mode) or the lowering walk.
    pub walk_ms: f64,
    pub rules_ms: f64,
    pub files_parsed: usize,
    pub files_skipped_by_prefilter: usize,
    /// Of those, skipped because they are test files (out of scope).
    pub test_files_skipped: usize,
    pub tree_nodes: u64,
}

impl Timings {
    fn add(&mut self, other: &Timings) {
        self.read_ms += other.read_ms;
        self.prefilter_ms += other.prefilter_ms;
        self.parse_ms += other.parse_ms;
        self.walk_ms += other.walk_ms;
        self.rules_ms += other.rules_ms;
        self.files_parsed += other.files_parsed;
        self.files_skipped_by_prefilter += other.files_skipped_by_prefilter;
        self.test_files_skipped += other.test_files_skipped;
        self.tree_nodes += other.tree_nodes;
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[derive(Default)]
struct FileOutcome {
    findings: Vec<Finding>,
    errors: Vec<FileError>,
    bytes: u64,
    lines: u64,
    suppressed: usize,
    unused: Vec<UnusedSuppression>,
    timings: Timings,
}

/// The trigger tokens of the enabled rules; a file with none of them cannot
/// produce a finding and is not parsed.
pub struct Prefilter {
    matcher: Option<aho_corasick::AhoCorasick>,
}

impl Prefilter {
    pub fn new(opts: &ScanOptions) -> Prefilter {
        if !opts.prefilter || opts.parse_only {
            return Prefilter { matcher: None };
        }
        let mut words = Vec::new();
        for rule in &opts.rules {
            match rule.triggers(opts.catalog()) {
                Some(w) => words.extend(w),
                // A rule that cannot name its triggers needs every file.
                None => return Prefilter { matcher: None },
            }
        }
        words.retain(|w| !w.is_empty());
        words.sort();
        words.dedup();
        // Case-insensitive: a superset of the case-sensitive matches, so the
        // skip stays sound for `INSERT` / `insert` and `False` / `false`.
        let matcher = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .ascii_case_insensitive(true)
            .build(&words)
            .ok();
        Prefilter { matcher }
    }

    /// False when every file is parsed (`--no-prefilter`, `--parse-only`,
    /// or a rule without triggers).
    pub fn is_active(&self) -> bool {
        self.matcher.is_some()
    }

    pub fn may_match(&self, bytes: &[u8]) -> bool {
        self.matcher.as_ref().is_none_or(|m| m.is_match(bytes))
    }
}

thread_local! {
    static PARSERS: RefCell<Parsers> = RefCell::new(Parsers::default());
}

pub fn scan(opts: &ScanOptions) -> ScanResult {
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut files = discover(&opts.paths, &opts.test_paths, &mut errors);
    if let Some(filter) = &opts.path_filter {
        let explicit = |f: &SourceFile| opts.paths.iter().any(|p| p == &f.path);
        files.retain(|f| !filter.excluded(&f.path) && (explicit(f) || filter.included(&f.path)));
    }
    let bar = progress_bar(opts.progress, files.len());
    let prefilter = Prefilter::new(opts);
    let run = || {
        files
            .par_iter()
            .map(|file| {
                let outcome = scan_file(file, opts, &prefilter);
                bar.inc(1);
                outcome
            })
            .collect::<Vec<_>>()
    };
    let outcomes = match opts.jobs {
        Some(n) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(run),
            Err(_) => run(),
        },
        None => run(),
    };
    let mut result = ScanResult {
        files_scanned: files.len(),
        ..ScanResult::default()
    };
    for outcome in outcomes {
        result.findings.extend(outcome.findings);
        errors.extend(outcome.errors);
        result.bytes += outcome.bytes;
        result.lines += outcome.lines;
        result.suppressed += outcome.suppressed;
        result.unused_suppressions.extend(outcome.unused);
        result.timings.add(&outcome.timings);
    }
    bar.finish_and_clear();
    sort_findings(&mut result.findings);
    result
        .unused_suppressions
        .sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    errors.sort_by(|a, b| (&a.path, a.line, a.kind).cmp(&(&b.path, b.line, b.kind)));
    errors.dedup();
    result.errors = errors;
    result.elapsed = started.elapsed();
    result
}

fn progress_bar(enabled: bool, files: usize) -> ProgressBar {
    let on_terminal = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    if !enabled || !on_terminal || files < 200 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(files as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} scanning {pos}/{len} files [{elapsed}] {wide_bar}")
    {
        bar.set_style(style);
    }
    bar
}

pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (
            &a.location.path,
            a.location.start,
            a.rule_id,
            a.location.end,
            &a.message,
        )
            .cmp(&(
                &b.location.path,
                b.location.start,
                b.rule_id,
                b.location.end,
                &b.message,
            ))
    });
}

fn scan_file(file: &SourceFile, opts: &ScanOptions, prefilter: &Prefilter) -> FileOutcome {
    let mut outcome = FileOutcome::default();
    let started = Instant::now();
    let path = &file.display;
    match std::fs::metadata(&file.path) {
        Ok(meta) if meta.len() > opts.max_file_size => {
            outcome.errors.push(FileError {
                path: path.clone(),
                kind: ErrorKind::TooLarge,
                message: format!(
                    "file is {} bytes, over --max-file-size ({} bytes); skipped",
                    meta.len(),
                    opts.max_file_size
                ),
                line: None,
            });
            return outcome;
        }
        Ok(_) => {}
        Err(e) => {
            outcome.errors.push(FileError::io(path, &e));
            return outcome;
        }
    }
    let bytes = match std::fs::read(&file.path) {
        Ok(b) => b,
        Err(e) => {
            outcome.errors.push(FileError::io(path, &e));
            return outcome;
        }
    };
    outcome.timings.read_ms = ms(started);
    let in_scope = !file.test || opts.include_tests;
    scan_source(
        path,
        file.language,
        &bytes,
        in_scope,
        opts,
        prefilter,
        &mut outcome,
    );
    outcome
}

/// Checks, parses and analyses one file's bytes.
fn scan_source(
    path: &str,
    language: crate::model::Language,
    bytes: &[u8],
    in_scope: bool,
    opts: &ScanOptions,
    prefilter: &Prefilter,
    outcome: &mut FileOutcome,
) {
    outcome.bytes = bytes.len() as u64;

    let sniff = &bytes[..bytes.len().min(8192)];
    if sniff.contains(&0) {
        outcome.errors.push(FileError {
            path: path.to_string(),
            kind: ErrorKind::Binary,
            message: "binary content (NUL bytes); skipped".to_string(),
            line: None,
        });
        return;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            outcome.errors.push(FileError {
                path: path.to_string(),
                kind: ErrorKind::Encoding,
                message: format!("not valid UTF-8 (at byte {}); skipped", e.valid_up_to()),
                line: Some(line),
            });
            return;
        }
    };
    // A byte-order mark is not part of the code; columns count from after it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    outcome.lines = bytecount_lines(text.as_bytes());
    let started = Instant::now();
    // No rule reports in an out-of-scope (test) file, so the prefilter need
    // not parse it; without the prefilter it is analysed and its findings
    // are dropped below, which keeps the findings identical either way.
    if !in_scope && prefilter.is_active() {
        outcome.timings.files_skipped_by_prefilter = 1;
        outcome.timings.test_files_skipped = 1;
        return;
    }
    let may_match = prefilter.may_match(bytes);
    outcome.timings.prefilter_ms = ms(started);
    if !may_match {
        outcome.timings.files_skipped_by_prefilter = 1;
        return;
    }

    let started = Instant::now();
    let budget = opts.file_time_budget;
    let tree = PARSERS.with(|parsers| {
        let mut parsers = parsers.borrow_mut();
        let parser = parsers.parser(language);
        let mut over_budget = |_: &tree_sitter::ParseState| started.elapsed() > budget;
        let options = tree_sitter::ParseOptions::new().progress_callback(&mut over_budget);
        let tree = parser.parse_with_options(
            &mut |offset, _| text.as_bytes().get(offset..).unwrap_or(&[]),
            None,
            Some(options),
        );
        if tree.is_none() {
            parser.reset();
        }
        tree
    });
    let Some(tree) = tree else {
        outcome.errors.push(FileError {
            path: path.to_string(),
            kind: ErrorKind::Timeout,
            message: format!(
                "parsing took longer than the per-file budget ({} ms); skipped",
                budget.as_millis()
            ),
            line: None,
        });
        return;
    };
    outcome.timings.parse_ms = ms(started);
    outcome.timings.files_parsed = 1;
    if opts.parse_only {
        let walk = Instant::now();
        outcome.timings.tree_nodes = walk_tree(&tree);
        outcome.timings.walk_ms = ms(walk);
        return;
    }
    let walk = Instant::now();
    let model = lower(&tree, text, language);
    drop(tree);
    outcome.timings.walk_ms = ms(walk);
    let rules_started = Instant::now();
    let index = LineIndex::new(text);
    if let Some(first) = model.syntax_errors.first() {
        outcome.errors.push(FileError {
            path: path.to_string(),
            kind: ErrorKind::Syntax,
            message: format!(
                "{} syntax error(s); findings come from the parts that parsed",
                model.syntax_errors.len()
            ),
            line: Some(index.position(first.start as usize).line),
        });
    }
    crate::catalog::set_active(opts.catalog.clone());
    // The rules get what is left of the file's budget.
    let deadline = started + budget;
    let (findings, finished) = analyse(
        path,
        text,
        &model,
        &opts.rules,
        opts.catalog(),
        &index,
        deadline,
    );
    if !finished {
        outcome.errors.push(FileError {
            path: path.to_string(),
            kind: ErrorKind::Timeout,
            message: format!(
                "analysis took longer than the per-file budget ({} ms); findings may be incomplete",
                budget.as_millis()
            ),
            line: None,
        });
    }
    let ran: Vec<&str> = opts.rules.iter().map(|r| r.meta().code).collect();
    let (kept, suppressed, unused) = suppress::apply(path, text, findings, &ran);
    if !in_scope {
        outcome.timings.rules_ms = ms(rules_started);
        return;
    }
    outcome.findings = kept;
    outcome.suppressed = suppressed;
    outcome.unused = unused;
    outcome.timings.rules_ms = ms(rules_started);
}

fn bytecount_lines(bytes: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    newlines + u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}

/// One full traversal of the tree (the parse-only yardstick), iterative.
fn walk_tree(tree: &tree_sitter::Tree) -> u64 {
    let mut cursor = tree.walk();
    let mut nodes = 1u64;
    loop {
        if cursor.goto_first_child() || cursor.goto_next_sibling() {
            nodes += 1;
            continue;
        }
        loop {
            if !cursor.goto_parent() {
                return nodes;
            }
            if cursor.goto_next_sibling() {
                nodes += 1;
                break;
            }
        }
    }
}

/// Runs the rules over every function of a lowered file.
pub fn analyse(
    path: &str,
    src: &str,
    model: &FileModel,
    rules: &[&'static dyn Rule],
    cat: &Catalog,
    index: &LineIndex,
    deadline: Instant,
) -> (Vec<Finding>, bool) {
    let mut findings = Vec::new();
    let mut raw = Vec::new();
    let mut finished = true;
    for (func_id, func) in model.functions.iter().enumerate() {
        if Instant::now() > deadline {
            finished = false;
            break;
        }
        let cx = Context {
            file: model,
            func,
            func_id: func_id as crate::model::FuncId,
            src,
            catalog: cat,
        };
        for rule in rules {
            raw.clear();
            rule.check(&cx, &mut raw);
            for r in raw.drain(..) {
                findings.push(finish(path, src, &func.name, r, *rule, index));
            }
        }
    }
    assign_fingerprints(&mut findings, src);
    (findings, finished)
}

fn finish(
    path: &str,
    _src: &str,
    function: &str,
    raw: RawFinding,
    rule: &dyn Rule,
    index: &LineIndex,
) -> Finding {
    let meta = rule.meta();
    Finding {
        rule_id: meta.code,
        name: meta.name,
        risk: raw.risk,
        confidence: raw.confidence,
        message: raw.message,
        location: index.location(path, raw.span),
        related: raw
            .related
            .into_iter()
            .map(|(span, message)| Related {
                location: index.location(path, span),
                message,
            })
            .collect(),
        function: function.to_string(),
        suggestion: raw.suggestion,
        fingerprint: String::new(),
    }
}

/// Fingerprints hash the code, path, enclosing function, the normalised text
/// of the act and of the check, and an occurrence index among identical ones:
/// no line numbers, so they survive edits elsewhere in the file.
fn assign_fingerprints(findings: &mut [Finding], src: &str) {
    let normal = |span: Span| -> String {
        src.get(span.range())
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    sort_findings(findings);
    let mut seen: Vec<String> = Vec::new();
    for f in findings.iter_mut() {
        let mut key = format!(
            "{}\0{}\0{}\0{}",
            f.rule_id,
            f.location.path,
            f.function,
            normal(f.location.span)
        );
        for r in &f.related {
            key.push('\0');
            key.push_str(&normal(r.location.span));
        }
        let occurrence = seen.iter().filter(|k| **k == key).count();
        seen.push(key.clone());
        key.push_str(&format!("\0{occurrence}"));
        f.fingerprint = blake3::hash(key.as_bytes()).to_hex()[..32].to_string();
    }
}

/// Scans source text that did not come from a file (stdin, tests).
pub fn scan_text(
    path: &str,
    language: crate::model::Language,
    text: &str,
    opts: &ScanOptions,
) -> (Vec<Finding>, Vec<FileError>) {
    let result = scan_text_result(path, language, text, opts);
    (result.findings, result.errors)
}

/// Like [`scan_text`], with the counts a report needs (stdin mode).
pub fn scan_text_result(
    path: &str,
    language: crate::model::Language,
    text: &str,
    opts: &ScanOptions,
) -> ScanResult {
    let started = Instant::now();
    let mut outcome = FileOutcome::default();
    let prefilter = Prefilter::new(opts);
    let in_scope = opts.include_tests || !opts.test_paths.is_test_named(Path::new(path));
    scan_source(
        path,
        language,
        text.as_bytes(),
        in_scope,
        opts,
        &prefilter,
        &mut outcome,
    );
    ScanResult {
        findings: outcome.findings,
        errors: outcome.errors,
        files_scanned: 1,
        bytes: outcome.bytes,
        lines: outcome.lines,
        elapsed: started.elapsed(),
        suppressed: outcome.suppressed,
        unused_suppressions: outcome.unused,
        timings: outcome.timings,
    }
}
