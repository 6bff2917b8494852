//! File discovery: walks directories (honouring .gitignore and the default
//! excludes), maps extensions to languages, and always keeps files named
//! explicitly on the command line.

use std::path::{Path, PathBuf};

use ignore::overrides::OverrideBuilder;
use ignore::WalkBuilder;

use crate::model::Language;
use crate::scan::{ErrorKind, FileError};

/// Generated, vendored and virtual-env folders skipped by default.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "node_modules",
    "dist",
    "build",
    ".venv",
    "venv",
    "__pycache__",
    "vendor",
    "*.min.js",
    ".git",
];

/// Test code, by path (relative to the scanned root). Tests run one request
/// at a time and never reach production, so no rule reports there unless
/// `--include-tests` is given.
pub const DEFAULT_TEST_PATHS: &[&str] = &[
    "**/test/**",
    "**/tests/**",
    "**/__tests__/**",
    "**/__mocks__/**",
    "**/__fixtures__/**",
    "**/spec/**",
    "**/e2e/**",
    "**/*-tests/**",
    "**/*_tests/**",
    "**/*.test.*",
    "**/*.spec.*",
    "**/*.e2e-spec.*",
    "**/test_*.py",
    "**/*_test.py",
    "**/tests.py",
    "**/conftest.py",
];

/// Compiled test-path globs.
pub struct TestPaths(globset::GlobSet);

impl TestPaths {
    /// Globs are validated by the caller (config load); invalid ones are dropped.
    pub fn new<S: AsRef<str>>(globs: &[S]) -> TestPaths {
        let mut builder = globset::GlobSetBuilder::new();
        for glob in globs {
            if let Ok(glob) = globset::Glob::new(glob.as_ref()) {
                builder.add(glob);
            }
        }
        TestPaths(
            builder
                .build()
                .unwrap_or_else(|_| globset::GlobSet::empty()),
        )
    }

    pub fn builtin() -> TestPaths {
        TestPaths::new(DEFAULT_TEST_PATHS)
    }

    /// `relative`: the path below the scanned root, so a checkout that
    /// happens to live under `/home/me/tests/` is not all test code.
    pub fn is_test(&self, relative: &Path) -> bool {
        self.0.is_match(relative)
    }

    /// A file named on the command line: judged by the path as given, made
    /// relative to the working directory when it is absolute.
    pub fn is_test_named(&self, path: &Path) -> bool {
        if path.is_absolute() {
            let cwd = std::env::current_dir().unwrap_or_default();
            match path.strip_prefix(&cwd) {
                Ok(rel) => self.is_test(rel),
                Err(_) => path.file_name().is_some_and(|n| self.is_test(Path::new(n))),
            }
        } else {
            self.is_test(path)
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The path as reported: relative to the scanned root as given.
    pub display: String,
    pub language: Language,
    /// Matches the test-path globs: out of scope unless tests are included.
    pub test: bool,
}

pub fn display_path(path: &Path) -> String {
    let s = path.to_string_lossy();
    let s = s.strip_prefix("./").unwrap_or(&s);
    s.replace('\\', "/")
}

pub fn discover(
    paths: &[PathBuf],
    tests: &TestPaths,
    errors: &mut Vec<FileError>,
) -> Vec<SourceFile> {
    let mut files = Vec::new();
    for root in paths {
        let meta = std::fs::symlink_metadata(root);
        match meta {
            Err(e) => errors.push(FileError::io(&display_path(root), &e)),
            Ok(m) if !(m.is_dir() || m.file_type().is_symlink() && root.is_dir()) => {
                // Named explicitly: always scanned, whatever the ignore files say.
                if let Some(language) = Language::from_path(root) {
                    files.push(SourceFile {
                        path: root.clone(),
                        display: display_path(root),
                        language,
                        test: tests.is_test_named(root),
                    });
                }
            }
            Ok(_) => walk(root, tests, &mut files, errors),
        }
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    files.dedup_by(|a, b| a.display == b.display);
    files
}

fn walk(root: &Path, tests: &TestPaths, files: &mut Vec<SourceFile>, errors: &mut Vec<FileError>) {
    let mut overrides = OverrideBuilder::new(root);
    for pattern in DEFAULT_EXCLUDES {
        overrides
            .add(&format!("!{pattern}"))
            .expect("default exclude globs are valid");
    }
    let walker = WalkBuilder::new(root)
        .follow_links(true)
        .require_git(false)
        .overrides(overrides.build().expect("default exclude globs are valid"))
        .build();
    for entry in walker {
        match entry {
            Ok(entry) => {
                let is_file = entry.file_type().is_some_and(|t| t.is_file());
                if !is_file {
                    continue;
                }
                if let Some(language) = Language::from_path(entry.path()) {
                    files.push(SourceFile {
                        path: entry.path().to_path_buf(),
                        display: display_path(entry.path()),
                        language,
                        test: tests
                            .is_test(entry.path().strip_prefix(root).unwrap_or(entry.path())),
                    });
                }
            }
            Err(err) => errors.push(walk_error(&err)),
        }
    }
}

fn walk_error(err: &ignore::Error) -> FileError {
    let mut path = None;
    let mut kind = ErrorKind::Io;
    let mut cur = err;
    loop {
        match cur {
            ignore::Error::WithPath { path: p, err } => {
                path = Some(display_path(p));
                cur = err;
            }
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                cur = err
            }
            ignore::Error::Loop { child, .. } => {
                path = Some(display_path(child));
                kind = ErrorKind::SymlinkLoop;
                break;
            }
            ignore::Error::Io(io) => {
                kind = match io.kind() {
                    std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                    std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                    _ => ErrorKind::Io,
                };
                break;
            }
            _ => break,
        }
    }
    let message = match kind {
        ErrorKind::SymlinkLoop => "symbolic link loop; not followed".to_string(),
        ErrorKind::PermissionDenied => "permission denied; skipped".to_string(),
        ErrorKind::NotFound => "broken symbolic link (or the file vanished); skipped".to_string(),
        _ => err.to_string(),
    };
    FileError {
        path: path.unwrap_or_default(),
        kind,
        message,
        line: None,
    }
}
