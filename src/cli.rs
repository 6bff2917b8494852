//! Command-line interface (clap). Parsing only; `main.rs` runs the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "reentrancy-audit",
    version,
    about = "Finds reentrancy and concurrency hazards in JavaScript, TypeScript and Python backends",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scan files and directories for hazards.
    Scan(Box<ScanArgs>),
    /// List every rule.
    Rules {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Print a rule's documentation.
    Explain {
        /// A rule code, e.g. RA002.
        code: String,
    },
    /// Write a commented starter `reentrancy-audit.toml`.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Sarif,
    /// GitHub Actions workflow commands (annotations).
    Github,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    Low,
    Medium,
    High,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Low,
    Medium,
    High,
    Never,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Files or directories (default: the current directory). Files named
    /// explicitly are scanned even when ignored.
    pub paths: Vec<PathBuf>,

    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,

    /// Write the report to FILE (the summary still goes to stderr).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Exit 1 when a finding at or above this risk is reported [default: low].
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,

    /// Report only findings at or above this risk.
    #[arg(long, value_enum)]
    pub min_risk: Option<Level>,

    /// Report only findings at or above this confidence.
    #[arg(long, value_enum)]
    pub min_confidence: Option<Level>,

    /// Run only these rules (comma-separated codes).
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub select: Vec<String>,

    /// Skip these rules (comma-separated codes).
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub ignore: Vec<String>,

    /// Worker threads (default: all cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,

    /// Skip files larger than this (bytes, or with a K/M suffix) [default: 5M].
    #[arg(long, value_parser = parse_size)]
    pub max_file_size: Option<u64>,

    /// Abandon a file whose parse takes longer than this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub file_timeout_ms: u64,

    /// Use this config file instead of the one found by walking up.
    #[arg(long, value_name = "FILE", conflicts_with = "no_config")]
    pub config: Option<PathBuf>,

    /// Ignore any config file.
    #[arg(long)]
    pub no_config: bool,

    /// Report only findings that are not in this baseline.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Record the current findings as a baseline (and exit 0).
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,

    /// Report only findings on lines changed since this git ref.
    #[arg(long, value_name = "REF")]
    pub since: Option<String>,

    /// Read the source from stdin and report it under this name.
    #[arg(long, value_name = "NAME")]
    pub stdin_filename: Option<PathBuf>,

    /// Report suppression comments that suppress nothing (they fail the gate).
    #[arg(long)]
    pub report_unused_ignores: bool,

    /// Report in test code too (tests/, __tests__/, *.test.ts, test_*.py,
    /// conftest.py, ...: out of scope by default).
    #[arg(long)]
    pub include_tests: bool,

    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Parse every file, even those in which no rule can fire (the
    /// prefilter never changes the findings; this is for checking that).
    #[arg(long)]
    pub no_prefilter: bool,

    /// Print where the time went (read, prefilter, parse, walk, rules,
    /// report) as JSON on stderr.
    #[arg(long)]
    pub timings: bool,

    /// Diagnostic: read, parse and walk every tree once, without analysis
    /// (the yardstick for benchmarks).
    #[arg(long)]
    pub parse_only: bool,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    reentrancy_audit::filter::config::parse_size(s)
}
