//! Inline suppressions, one syntax for every language:
//! `// reentrancy-audit-ignore[RA001, RA003]: reason` or `# ...`. A comment
//! on its own line covers the next line; a trailing comment covers its own.
//! Without `[...]` it covers every rule.

use serde::Serialize;

use crate::finding::Finding;

pub const MARKER: &str = "reentrancy-audit-ignore";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The line the comment is on (1-based).
    pub comment_line: usize,
    /// The line whose findings it covers.
    pub target_line: usize,
    /// Empty: every rule.
    pub codes: Vec<String>,
}

/// A suppression that covered no finding.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnusedSuppression {
    pub path: String,
    pub line: usize,
    pub codes: Vec<String>,
}

pub fn parse(src: &str) -> Vec<Suppression> {
    if !src.contains(MARKER) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, line) in src.lines().enumerate() {
        let Some(at) = line.find(MARKER) else {
            continue;
        };
        let before = line[..at].trim_end();
        let comment_start = if before.ends_with("//") || before.ends_with("/*") {
            before.len() - 2
        } else if before.ends_with('#') {
            before.len() - 1
        } else {
            continue;
        };
        let own_line = line[..comment_start].trim().is_empty();
        let rest = &line[at + MARKER.len()..];
        let codes = match rest.strip_prefix('[') {
            Some(inner) => match inner.find(']') {
                Some(end) => inner[..end]
                    .split(',')
                    .map(|c| c.trim().to_ascii_uppercase())
                    .filter(|c| !c.is_empty())
                    .collect(),
                None => continue,
            },
            None => Vec::new(),
        };
        out.push(Suppression {
            comment_line: i + 1,
            target_line: if own_line { i + 2 } else { i + 1 },
            codes,
        });
    }
    out
}

/// Splits findings into kept and suppressed; reports suppressions that
/// covered nothing among the rules that ran (`ran`).
pub fn apply(
    path: &str,
    src: &str,
    findings: Vec<Finding>,
    ran: &[&str],
) -> (Vec<Finding>, usize, Vec<UnusedSuppression>) {
    let suppressions = parse(src);
    if suppressions.is_empty() {
        return (findings, 0, Vec::new());
    }
    let mut used = vec![false; suppressions.len()];
    let mut kept = Vec::new();
    let mut suppressed = 0;
    for f in findings {
        let hit = suppressions.iter().position(|s| {
            s.target_line == f.location.start.line
                && (s.codes.is_empty() || s.codes.iter().any(|c| c == f.rule_id))
        });
        match hit {
            Some(i) => {
                used[i] = true;
                suppressed += 1;
            }
            None => kept.push(f),
        }
    }
    let unused = suppressions
        .iter()
        .zip(used)
        .filter(|(s, used)| {
            !used && (s.codes.is_empty() || s.codes.iter().any(|c| ran.contains(&c.as_str())))
        })
        .map(|(s, _)| UnusedSuppression {
            path: path.to_string(),
            line: s.comment_line,
            codes: s.codes.clone(),
        })
        .collect();
    (kept, suppressed, unused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        let src = "a()\n// reentrancy-audit-ignore[RA001]: checked by a unique index\nb() # reentrancy-audit-ignore[ra002, RA003]: reason\nc() // reentrancy-audit-ignore\nconst s = 'reentrancy-audit-ignore'\n";
        let s = parse(src);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].comment_line, s[0].target_line, s[0].codes.clone()),
            (2, 3, vec!["RA001".to_string()])
        );
        assert_eq!(
            (s[1].comment_line, s[1].target_line, s[1].codes.clone()),
            (3, 3, vec!["RA002".to_string(), "RA003".to_string()])
        );
        assert_eq!((s[2].target_line, s[2].codes.len()), (4, 0));
    }
}
