//! `reentrancy-audit.toml` (or `[tool.reentrancy-audit]` in pyproject.toml):
//! found by walking up from the scanned path; unknown keys and bad values are
//! errors that point at the file and line.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::finding::{Confidence, Risk};

pub const CONFIG_FILE: &str = "reentrancy-audit.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Globs (relative to the config's folder) a walked file must match.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// Globs of files never scanned, even when named explicitly.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Report in test code too (default: test files are out of scope).
    pub include_tests: Option<bool>,
    /// Globs of test files, replacing the built-in ones; matched against the
    /// path below the scanned directory.
    pub test_paths: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub select: Vec<Spanned<String>>,
    #[serde(default)]
    pub ignore: Vec<Spanned<String>>,
    pub fail_on: Option<Level>,
    pub min_risk: Option<Level>,
    pub min_confidence: Option<Level>,
    pub max_file_size: Option<Spanned<Size>>,
    /// Per-rule overrides: `[rules.RA004] risk = "low"`.
    #[serde(default)]
    pub rules: BTreeMap<Spanned<String>, RuleOverride>,
    /// In-house helpers mapped to the catalogue's effect kinds.
    #[serde(default)]
    pub catalog: CatalogExtensions,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Low,
    Medium,
    High,
    Never,
}

impl Level {
    pub fn risk(self) -> Option<Risk> {
        match self {
            Level::Low => Some(Risk::Low),
            Level::Medium => Some(Risk::Medium),
            Level::High => Some(Risk::High),
            Level::Never => None,
        }
    }
    pub fn confidence(self) -> Option<Confidence> {
        self.risk().map(|r| match r {
            Risk::Low => Confidence::Low,
            Risk::Medium => Confidence::Medium,
            Risk::High => Confidence::High,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    pub risk: Option<Level>,
}

/// A size in bytes: an integer, or a string with a K/M/G suffix.
#[derive(Debug, Clone, Copy)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Size(n)),
            Raw::Text(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("`{s}` is not a size (examples: 5000000, \"512K\", \"5M\")"))
}

/// Call patterns (dotted, `*` one segment, leading `**` any prefix) that
/// make a team's own helpers count as the catalogue's effects.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogExtensions {
    /// Calls that return a new value each time (RA002 sources).
    #[serde(default)]
    pub nondeterministic: Vec<String>,
    /// Calls that read/check a row (RA001 checks).
    #[serde(default)]
    pub db_read: Vec<String>,
    /// Calls that insert a row (RA001 acts).
    #[serde(default)]
    pub db_insert: Vec<String>,
    /// Calls that insert atomically (upserts: never RA001).
    #[serde(default)]
    pub db_upsert: Vec<String>,
    /// Calls that move money and need an idempotency key (RA007).
    #[serde(default)]
    pub payment: Vec<String>,
    /// Calls with an external side effect (payment, HTTP, email, queue).
    #[serde(default)]
    pub external: Vec<String>,
    /// Calls that acquire / release a guard or lock (RA003).
    #[serde(default)]
    pub lock_acquire: Vec<String>,
    #[serde(default)]
    pub lock_release: Vec<String>,
}

/// A config problem, with where it is.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub source_text: String,
    named: miette::NamedSource<String>,
    pub span: Option<Range<usize>>,
    pub message: String,
    pub help: String,
}

impl ConfigError {
    fn new(
        path: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: String,
        help: String,
    ) -> Box<ConfigError> {
        Box::new(ConfigError {
            path: path.to_path_buf(),
            source_text: text.to_string(),
            named: miette::NamedSource::new(path.display().to_string(), text.to_string()),
            span,
            message,
            help,
        })
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let line = self
            .span
            .as_ref()
            .map(|s| {
                self.source_text[..s.start.min(self.source_text.len())]
                    .lines()
                    .count()
                    .max(1)
            })
            .map(|l| format!(":{l}"))
            .unwrap_or_default();
        write!(f, "{}{}: {}", self.path.display(), line, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl miette::Diagnostic for ConfigError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("config"))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.help))
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.named)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.span.clone()?;
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_primary_with_span(Some(self.message.clone()), span),
        )))
    }
}

/// A loaded config and the folder its globs are relative to.
#[derive(Debug, Default)]
pub struct Loaded {
    pub config: Config,
    pub path: Option<PathBuf>,
    pub root: PathBuf,
}

const HELP: &str = "see `reentrancy-audit init` for a commented starter config";

/// Walks up from `start` to the first `reentrancy-audit.toml` or
/// `pyproject.toml` with a `[tool.reentrancy-audit]` table.
pub fn discover(start: &Path) -> Result<Option<Loaded>, Box<ConfigError>> {
    let start = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
    let mut dir = if start.is_file() {
        start.parent().map(Path::to_path_buf)
    } else {
        Some(start)
    };
    while let Some(d) = dir {
        let own = d.join(CONFIG_FILE);
        if own.is_file() {
            return load(&own).map(Some);
        }
        let pyproject = d.join("pyproject.toml");
        if pyproject.is_file() {
            if let Ok(text) = std::fs::read_to_string(&pyproject) {
                if text.contains("[tool.reentrancy-audit") {
                    return load(&pyproject).map(Some);
                }
            }
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Ok(None)
}

pub fn load(path: &Path) -> Result<Loaded, Box<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path,
            "",
            None,
            format!("cannot read config: {e}"),
            HELP.to_string(),
        )
    })?;
    let is_pyproject = path.file_name().is_some_and(|n| n == "pyproject.toml");
    let parsed: Result<Config, toml::de::Error> = if is_pyproject {
        #[derive(Deserialize)]
        struct Pyproject {
            tool: Option<Tool>,
        }
        #[derive(Deserialize)]
        struct Tool {
            #[serde(rename = "reentrancy-audit")]
            reentrancy_audit: Option<Config>,
        }
        toml::from_str::<Pyproject>(&text)
            .map(|p| p.tool.and_then(|t| t.reentrancy_audit).unwrap_or_default())
    } else {
        toml::from_str::<Config>(&text)
    };
    let config = parsed.map_err(|e| {
        ConfigError::new(
            path,
            &text,
            e.span(),
            e.message().trim().to_string(),
            HELP.to_string(),
        )
    })?;
    let loaded = Loaded {
        config,
        path: Some(path.to_path_buf()),
        root: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    validate(&loaded, &text)?;
    Ok(loaded)
}

/// Checks what serde cannot: rule codes exist, globs compile.
fn validate(loaded: &Loaded, text: &str) -> Result<(), Box<ConfigError>> {
    let path = loaded.path.clone().unwrap_or_default();
    let err = |span: Range<usize>, message: String, help: String| {
        ConfigError::new(&path, text, Some(span), message, help)
    };
    let c = &loaded.config;
    let known: Vec<&str> = crate::rules::RULES.iter().map(|r| r.meta().code).collect();
    let codes = c.select.iter().chain(&c.ignore).chain(c.rules.keys());
    for code in codes {
        if crate::rules::by_code(code.get_ref()).is_none() {
            return Err(err(
                code.span(),
                format!("unknown rule `{}`", code.get_ref()),
                format!("known rules: {}", known.join(", ")),
            ));
        }
    }
    let test_paths = c.test_paths.iter().flatten();
    for glob in c.include.iter().chain(&c.exclude).chain(test_paths) {
        if let Err(e) = globset::Glob::new(glob.get_ref()) {
            return Err(err(
                glob.span(),
                format!("invalid glob `{}`: {}", glob.get_ref(), e.kind()),
                "globs use `*`, `**` and `{a,b}`; they are relative to the config's folder"
                    .to_string(),
            ));
        }
    }
    let ext = &c.catalog;
    for pattern in ext
        .nondeterministic
        .iter()
        .chain(&ext.db_read)
        .chain(&ext.db_insert)
        .chain(&ext.db_upsert)
        .chain(&ext.payment)
        .chain(&ext.external)
        .chain(&ext.lock_acquire)
        .chain(&ext.lock_release)
    {
        let valid = !pattern.is_empty()
            && pattern.split('.').all(|s| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '*')
            });
        if !valid {
            let at = text
                .find(&format!("\"{pattern}\""))
                .map_or(0..0, |i| i..i + pattern.len() + 2);
            return Err(err(
                at,
                format!("`{pattern}` is not a call pattern"),
                "a call pattern is a dotted path such as `db.findUserByEmail`, `**.charge_customer` or `billing.*`".to_string(),
            ));
        }
    }
    Ok(())
}

/// Compiled include/exclude globs.
pub struct PathFilter {
    root: PathBuf,
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
}

impl PathFilter {
    pub fn new(loaded: &Loaded) -> PathFilter {
        let build = |globs: &[Spanned<String>]| {
            if globs.is_empty() {
                return None;
            }
            let mut b = globset::GlobSetBuilder::new();
            for g in globs {
                // Validated at load time.
                if let Ok(glob) = globset::Glob::new(g.get_ref()) {
                    b.add(glob);
                }
            }
            b.build().ok()
        };
        PathFilter {
            root: loaded.root.clone(),
            include: build(&loaded.config.include),
            exclude: build(&loaded.config.exclude),
        }
    }

    fn relative(&self, path: &Path) -> PathBuf {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(path)
        };
        let abs = normalize(&abs);
        abs.strip_prefix(&self.root)
            .map(Path::to_path_buf)
            .unwrap_or(abs)
    }

    pub fn excluded(&self, path: &Path) -> bool {
        self.exclude
            .as_ref()
            .is_some_and(|s| s.is_match(self.relative(path)))
    }

    pub fn included(&self, path: &Path) -> bool {
        self.include
            .as_ref()
            .is_none_or(|s| s.is_match(self.relative(path)))
    }
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub const STARTER: &str = r#"# reentrancy-audit configuration. Every key is optional.
# Found by walking up from the scanned path; `--config FILE` picks another,
# `--no-config` ignores it. The same keys work under [tool.reentrancy-audit]
# in pyproject.toml.

# Globs relative to this file. `include` narrows the walked files; `exclude`
# applies even to files named on the command line (pre-commit passes them).
# include = ["src/**", "app/**"]
exclude = ["**/migrations/**", "**/*.test.ts", "**/tests/fixtures/**"]

# Test code (tests/, __tests__/, *.test.ts, test_*.py, conftest.py, ...) is
# out of scope: tests run one request at a time. `test-paths` replaces the
# built-in globs (matched below the scanned directory).
# include-tests = true
# test-paths = ["**/tests/**", "**/*.test.ts"]

# Rules to run (default: all) and rules to skip.
# select = ["RA001", "RA002", "RA003", "RA005", "RA006", "RA007"]
# ignore = ["RA004"]

# Exit 1 when a finding at or above this risk is reported: low, medium, high, never.
fail-on = "medium"

# Report only findings at or above these levels.
# min-risk = "low"
# min-confidence = "medium"

# Files over this size are skipped with an error entry.
max-file-size = "5M"

# Per-rule risk overrides.
# [rules.RA004]
# risk = "low"

# In-house helpers mapped to the catalogue's effect kinds (dotted call
# patterns; `*` matches one segment, a leading `**` any prefix).
[catalog]
# nondeterministic = ["ids.newRequestId"]
# db-read = ["**.findUserByEmail"]
# db-insert = ["**.insertUser"]
# db-upsert = ["**.upsertUser"]
# payment = ["billing.charge_customer"]
# external = ["**.notifyWarehouse"]
# lock-acquire = ["**.takeLock"]
# lock-release = ["**.dropLock"]
"#;
