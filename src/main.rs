mod cli;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Command, FailOn, Format, Level, ListFormat, ScanArgs};
use reentrancy_audit::filter;
use reentrancy_audit::finding::{Confidence, Risk};
use reentrancy_audit::report::{self, Report, Summary};
use reentrancy_audit::rules::{by_code, RULES};
use reentrancy_audit::scan::{scan, ScanOptions};

/// No finding reached `--fail-on`.
const EXIT_CLEAN: u8 = 0;
/// A finding reached `--fail-on`.
const EXIT_FINDINGS: u8 = 1;
/// Usage, configuration or internal error.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => run_scan(args),
        Command::Rules { format } => list_rules(format),
        Command::Explain { code } => explain(&code),
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
    let rules = filter::select_rules(&args.select, &args.ignore)?;
    let paths = if args.paths.is_empty() {
        vec![".".into()]
    } else {
        args.paths.clone()
    };
    if args.jobs == Some(0) {
        return Err("--jobs must be at least 1".to_string());
    }
    let opts = ScanOptions {
        paths,
        rules,
        max_file_size: args.max_file_size,
        jobs: args.jobs,
        file_time_budget: Duration::from_millis(args.file_timeout_ms),
    };
    let result = scan(&opts);
    let findings = filter::apply_floors(
        result.findings.clone(),
        args.min_risk.map(risk),
        args.min_confidence.map(confidence),
    );
    let summary = Summary::new(&result, &findings, 0);
    let report = Report {
        findings: &findings,
        errors: &result.errors,
        summary: &summary,
    };
    let to_terminal = args.output.is_none() && std::io::stdout().is_terminal();
    let rendered = match args.format {
        Format::Json => report::json::render(&report),
        Format::Sarif => report::sarif::render(&report),
        Format::Human => report::human::render(
            &report,
            report::human::use_colour(to_terminal),
            &read_source,
        ),
    };
    match &args.output {
        Some(path) => std::fs::write(path, &rendered)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = stdout.write_all(rendered.as_bytes());
        }
    }
    if args.format != Format::Human || args.output.is_some() {
        eprintln!("{}", summary.line());
    } else {
        println!("{}", summary.line());
    }
    let threshold = match args.fail_on {
        FailOn::Never => None,
        FailOn::Low => Some(Risk::Low),
        FailOn::Medium => Some(Risk::Medium),
        FailOn::High => Some(Risk::High),
    };
    let failed = threshold.is_some_and(|t| findings.iter().any(|f| f.risk >= t));
    Ok(if failed { EXIT_FINDINGS } else { EXIT_CLEAN })
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
