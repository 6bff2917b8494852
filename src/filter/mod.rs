//! Which findings are reported: rule selection, risk/confidence floors,
//! config, inline suppressions, baselines and `--since`.

pub mod baseline;
pub mod config;
pub mod since;
pub mod suppress;

use crate::finding::{Confidence, Finding, Risk};
use crate::rules::{by_code, Rule, RULES};

/// The rules to run, from `--select` and `--ignore`. Unknown codes are errors.
pub fn select_rules(
    select: &[String],
    ignore: &[String],
) -> Result<Vec<&'static dyn Rule>, String> {
    for code in select.iter().chain(ignore) {
        if by_code(code).is_none() {
            let known: Vec<&str> = RULES.iter().map(|r| r.meta().code).collect();
            return Err(format!(
                "unknown rule `{code}` (known: {})",
                known.join(", ")
            ));
        }
    }
    let chosen = |code: &str| {
        (select.is_empty() || select.iter().any(|s| s.eq_ignore_ascii_case(code)))
            && !ignore.iter().any(|s| s.eq_ignore_ascii_case(code))
    };
    Ok(RULES
        .iter()
        .copied()
        .filter(|r| chosen(r.meta().code))
        .collect())
}

pub fn apply_floors(
    findings: Vec<Finding>,
    min_risk: Option<Risk>,
    min_confidence: Option<Confidence>,
) -> Vec<Finding> {
    findings
        .into_iter()
        .filter(|f| min_risk.is_none_or(|r| f.risk >= r))
        .filter(|f| min_confidence.is_none_or(|c| f.confidence >= c))
        .collect()
}
