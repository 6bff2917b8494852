mod cli;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command, FailOn, Format, Level, ListFormat, ScanArgs};
use reentrancy_audit::catalog::Catalog;
use reentrancy_audit::discover::{display_path, TestPaths};
use reentrancy_audit::filter::config::{self, PathFilter};
use reentrancy_audit::filter::{self, baseline, since};
use reentrancy_audit::finding::{Confidence, Risk};
use reentrancy_audit::model::Language;
use reentrancy_audit::report::{self, Report, Summary};
use reentrancy_audit::rules::{by_code, RULES};
use reentrancy_audit::scan::{scan, scan_text_result, ScanOptions};

/// No finding reached `--fail-on`.
const EXIT_CLEAN: u8 = 0;
/// A finding reached `--fail-on`.
const EXIT_FINDINGS: u8 = 1;
/// Usage, configuration or internal error.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => run_scan(*args),
        Command::Rules { format } => list_rules(format),
        Command::Explain { code } => explain(&code),
        Command::Init { force } => init(force),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn risk(level: Level) -> Risk {
    match level {
        Level::Low => Risk::Low,
        Level::Medium => Risk::Medium,
        Level::High => Risk::High,
    }
}

fn confidence(level: Level) -> Confidence {
    match level {
        Level::Low => Confidence::Low,
        Level::Medium => Confidence::Medium,
        Level::High => Confidence::High,
    }
}

fn run_scan(args: ScanArgs) -> Result<u8, String> {
    let paths = if args.paths.is_empty() {
        vec![".".into()]
    } else {
        args.paths.clone()
    };
    if args.jobs == Some(0) {
        return Err("--jobs must be at least 1".to_string());
    }
    let loaded = load_config(&args, &paths)?;
    let config = &loaded.config;

    // The command line wins over the config.
    let strings =
        |v: &[toml::Spanned<String>]| v.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
    let select = if args.select.is_empty() {
        strings(&config.select)
    } else {
        args.select.clone()
    };
    let mut ignore = strings(&config.ignore);
    ignore.extend(args.ignore.iter().cloned());
    let rules = filter::select_rules(&select, &ignore)?;
    let fail_on = match args.fail_on {
        Some(f) => fail_on_risk(f),
        None => config.fail_on.map_or(Some(Risk::Low), |l| l.risk()),
    };
    let min_risk = args
        .min_risk
        .map(risk)
        .or(config.min_risk.and_then(|l| l.risk()));
    let min_confidence = args
        .min_confidence
        .map(confidence)
        .or(config.min_confidence.and_then(|l| l.confidence()));
    let mut opts = ScanOptions::new(paths.clone(), rules);
    opts.max_file_size = args
        .max_file_size
        .or(config.max_file_size.as_ref().map(|s| s.get_ref().0))
        .unwrap_or(5 << 20);
    opts.jobs = args.jobs;
    opts.file_time_budget = Duration::from_millis(args.file_timeout_ms);
    opts.catalog = Some(Arc::new(Catalog::extended(&config.catalog)));
    opts.path_filter = loaded
        .path
        .is_some()
        .then(|| Arc::new(PathFilter::new(&loaded)));
    opts.progress = !args.no_progress && args.format == Format::Human && args.output.is_none();
    opts.prefilter = !args.no_prefilter;
    opts.include_tests = args.include_tests || config.include_tests.unwrap_or(false);
    if let Some(globs) = &config.test_paths {
        let globs: Vec<&str> = globs.iter().map(|g| g.get_ref().as_str()).collect();
        opts.test_paths = Arc::new(TestPaths::new(&globs));
    }
    opts.parse_only = args.parse_only;

    let mut stdin_text = None;
    let mut result = match &args.stdin_filename {
        Some(name) => {
            let language = Language::from_path(name).ok_or_else(|| {
                format!(
                    "--stdin-filename {}: not a JavaScript, TypeScript or Python file name",
                    name.display()
                )
            })?;
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            let result = scan_text_result(&display_path(name), language, &text, &opts);
            stdin_text = Some(text);
            result
        }
        None => scan(&opts),
    };

    let overrides: Vec<(String, Risk)> = config
        .rules
        .iter()
        .filter_map(|(code, o)| Some((code.get_ref().to_ascii_uppercase(), o.risk?.risk()?)))
        .collect();
    let mut findings = std::mem::take(&mut result.findings);
    for f in &mut findings {
        if let Some((_, r)) = overrides.iter().find(|(c, _)| c == f.rule_id) {
            f.risk = *r;
        }
    }
    let mut findings = filter::apply_floors(findings, min_risk, min_confidence);
    if let Some(path) = &args.write_baseline {
        baseline::write(path, &findings)?;
        eprintln!(
            "wrote {} finding(s) to the baseline {}",
            findings.len(),
            path.display()
        );
        return Ok(EXIT_CLEAN);
    }
    if let Some(path) = &args.baseline {
        let known = baseline::read(path)?;
        findings.retain(|f| !known.contains(&f.fingerprint));
    }
    if let Some(rev) = &args.since {
        let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
        let changes = since::changes(rev, &cwd)?;
        findings.retain(|f| changes.touches(f, &cwd));
    }
    let unused = if args.report_unused_ignores {
        result.unused_suppressions.clone()
    } else {
        Vec::new()
    };

    let summary = Summary::new(&result, &findings, result.suppressed);
    let report_started = std::time::Instant::now();
    let report = Report {
        findings: &findings,
        errors: &result.errors,
        unused_suppressions: &unused,
        summary: &summary,
    };
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let source = |path: &str| -> Option<String> {
        match &stdin_text {
            Some(text) => Some(text.strip_prefix('\u{feff}').unwrap_or(text).to_string()),
            None => read_source(path),
        }
    };
    let mut sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = match args.format {
        Format::Json => report::json::write(&report, &mut sink),
        Format::Sarif => report::sarif::write(&report, &mut sink),
        Format::Github => sink.write_all(report::github::render(&report).as_bytes()),
        Format::Human => sink.write_all(
            report::human::render(&report, report::human::use_colour(to_terminal), &source)
                .as_bytes(),
        ),
    }
    .and_then(|()| sink.flush());
    drop(sink);
    match (written, &args.output) {
        (Err(e), Some(path)) => return Err(format!("cannot write {}: {e}", path.display())),
        // A closed pipe (`| head`) is not an error worth a message.
        (Err(e), None) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        (Err(e), None) => return Err(format!("cannot write the report: {e}")),
        (Ok(()), _) => {}
    }
    if args.timings {
        let mut timings = serde_json::to_value(&result.timings).expect("timings serialise");
        timings["report_ms"] = (report_started.elapsed().as_secs_f64() * 1000.0).into();
        timings["wall_ms"] = (result.elapsed.as_secs_f64() * 1000.0).into();
        timings["files"] = result.files_scanned.into();
        timings["bytes"] = result.bytes.into();
        timings["lines"] = result.lines.into();
        eprintln!("timings: {timings}");
    }
    if args.format != Format::Human || args.output.is_some() {
        eprintln!("{}", summary.line());
    } else {
        println!("{}", summary.line());
    }
    let failed =
        fail_on.is_some_and(|t| findings.iter().any(|f| f.risk >= t)) || !unused.is_empty();
    Ok(if failed { EXIT_FINDINGS } else { EXIT_CLEAN })
}

fn fail_on_risk(f: FailOn) -> Option<Risk> {
    match f {
        FailOn::Never => None,
        FailOn::Low => Some(Risk::Low),
        FailOn::Medium => Some(Risk::Medium),
        FailOn::High => Some(Risk::High),
    }
}

/// The config named by `--config`, or found by walking up from the first
/// path (the stdin file name's folder in stdin mode).
fn load_config(args: &ScanArgs, paths: &[PathBuf]) -> Result<config::Loaded, String> {
    if args.no_config {
        return Ok(config::Loaded::default());
    }
    let found = match &args.config {
        Some(file) => config::load(file).map(Some),
        None => {
            let start = match &args.stdin_filename {
                Some(name) => name
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                None => paths[0].clone(),
            };
            config::discover(&start)
        }
    };
    match found {
        Ok(loaded) => Ok(loaded.unwrap_or_default()),
        Err(err) => {
            let mut out = String::new();
            let handler = miette::GraphicalReportHandler::new_themed(
                miette::GraphicalTheme::unicode_nocolor(),
            );
            if handler.render_report(&mut out, err.as_ref()).is_ok() {
                eprint!("{out}");
            }
            Err(err.to_string())
        }
    }
}

fn init(force: bool) -> Result<u8, String> {
    let path = Path::new(config::CONFIG_FILE);
    if path.exists() && !force {
        return Err(format!(
            "{} exists; use --force to overwrite it",
            path.display()
        ));
    }
    std::fs::write(path, config::STARTER)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(EXIT_CLEAN)
}

fn read_source(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.strip_prefix('\u{feff}').unwrap_or(&text).to_string())
}

fn list_rules(format: ListFormat) -> Result<u8, String> {
    match format {
        ListFormat::Json => {
            let rules: Vec<_> = RULES
                .iter()
                .map(|r| {
                    let m = r.meta();
                    serde_json::json!({
                        "code": m.code,
                        "name": m.name,
                        "risk": m.risk,
                        "confidence": m.confidence,
                        "languages": ["javascript", "typescript", "python"],
                        "summary": m.summary(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rules).expect("rules serialise")
            );
        }
        ListFormat::Table => {
            println!(
                "{:<6}  {:<38}  {:<6}  {:<10}  summary",
                "code", "name", "risk", "confidence"
            );
            for r in RULES {
                let m = r.meta();
                println!(
                    "{:<6}  {:<38}  {:<6}  {:<10}  {}",
                    m.code,
                    m.name,
                    m.risk,
                    m.confidence,
                    m.summary()
                );
            }
        }
    }
    Ok(EXIT_CLEAN)
}

fn explain(code: &str) -> Result<u8, String> {
    let rule = by_code(code).ok_or_else(|| {
        let known: Vec<&str> = RULES.iter().map(|r| r.meta().code).collect();
        format!("unknown rule `{code}` (known: {})", known.join(", "))
    })?;
    print!("{}", rule.meta().body());
    Ok(EXIT_CLEAN)
}
