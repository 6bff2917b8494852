//! `--since REF`: keep findings whose act touches lines changed since a git
//! ref (committed, staged, unstaged, and untracked files), so a PR gate shows
//! only new problems. Uses the `git` command: no network.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::finding::Finding;

pub struct Changes {
    /// Absolute path -> changed line ranges; `None` means the whole file.
    files: HashMap<PathBuf, Option<Vec<RangeInclusive<usize>>>>,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("--since needs git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn changes(rev: &str, cwd: &Path) -> Result<Changes, String> {
    let top = PathBuf::from(git(cwd, &["rev-parse", "--show-toplevel"])?.trim());
    git(
        &top,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .map_err(|_| format!("--since: `{rev}` is not a commit in this repository"))?;
    let diff = git(
        &top,
        &[
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--unified=0",
            rev,
            "--",
        ],
    )?;
    let mut files: HashMap<PathBuf, Option<Vec<RangeInclusive<usize>>>> = HashMap::new();
    let mut current: Option<PathBuf> = None;
    for line in diff.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            current = path.strip_prefix("b/").map(|p| top.join(p));
            if let Some(p) = &current {
                files.entry(p.clone()).or_insert_with(|| Some(Vec::new()));
            }
        } else if let (Some(hunk), Some(path)) = (line.strip_prefix("@@ "), &current) {
            // @@ -a,b +c,d @@: lines c..c+d-1 of the new file changed.
            let Some(added) = hunk.split(' ').find(|p| p.starts_with('+')) else {
                continue;
            };
            let mut parts = added[1..].split(',');
            let start: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let count: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1);
            if count > 0 {
                if let Some(Some(ranges)) = files.get_mut(path) {
                    ranges.push(start..=start + count - 1);
                }
            }
        }
    }
    for path in git(&top, &["ls-files", "--others", "--exclude-standard", "-z"])?.split('\0') {
        if !path.is_empty() {
            files.insert(top.join(path), None);
        }
    }
    Ok(Changes { files })
}

impl Changes {
    pub fn touches(&self, finding: &Finding, cwd: &Path) -> bool {
        let path = Path::new(&finding.location.path);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            cwd.join(path)
        };
        let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
        let lines = finding.location.start.line..=finding.location.end.line;
        match self.files.get(&abs).or_else(|| {
            // The repository root may be reached through a symlink.
            self.files
                .iter()
                .find(|(p, _)| std::fs::canonicalize(p).ok().as_deref() == Some(&abs))
                .map(|(_, v)| v)
        }) {
            None => false,
            Some(None) => true,
            Some(Some(ranges)) => ranges
                .iter()
                .any(|r| r.start() <= lines.end() && lines.start() <= r.end()),
        }
    }
}
