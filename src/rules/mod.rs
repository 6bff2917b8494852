//! The rule registry. A rule is one file: metadata, the check over one
//! function's model, the message and the rewrite. Adding a rule is one line in
//! [`RULES`].

mod ra001_check_then_insert;
mod ra002_nondeterministic_idempotency_key;
mod ra003_guard_release_not_in_finally;
mod ra004_state_mutation_across_await;
mod ra005_cache_check_then_set;
mod ra006_unsafe_distributed_lock;
mod ra007_payment_call_without_idempotency_key;

use crate::catalog::Catalog;
use crate::finding::{Confidence, RawFinding, Risk};
use crate::model::{FileModel, Function, FunctionKind};

/// Metadata declared once; `rules`, `explain`, SARIF and the README table are
/// derived from it, and a test checks it against the rule's doc.
#[derive(Debug)]
pub struct RuleMeta {
    pub code: &'static str,
    pub name: &'static str,
    pub risk: Risk,
    pub confidence: Confidence,
    /// The rule's Markdown doc (front matter + sections), from `rules/`.
    pub doc: &'static str,
}

impl RuleMeta {
    /// A front-matter value of the doc (`summary`, `languages`, ...).
    pub fn front_matter(&self, key: &str) -> Option<&'static str> {
        let body = self.doc.strip_prefix("---\n")?;
        let end = body.find("\n---")?;
        body[..end].lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim())
        })
    }

    pub fn summary(&self) -> &'static str {
        self.front_matter("summary").unwrap_or("")
    }

    /// The doc without its front matter.
    pub fn body(&self) -> &'static str {
        self.doc
            .strip_prefix("---\n")
            .and_then(|b| b.find("\n---\n").map(|i| &b[i + 5..]))
            .unwrap_or(self.doc)
            .trim_start()
    }

    /// The doc's first paragraph under "What it detects".
    pub fn description(&self) -> String {
        let body = self.body();
        let Some(start) = body.find("## What it detects") else {
            return self.summary().to_string();
        };
        let rest = &body[start + "## What it detects".len()..];
        let end = rest.find("\n## ").unwrap_or(rest.len());
        rest[..end]
            .trim()
            .split("\n\n")
            .next()
            .unwrap_or("")
            .replace('\n', " ")
    }
}

/// What a rule sees: one function of one file, and the shared knowledge.
pub struct Context<'a> {
    pub file: &'a FileModel,
    pub func: &'a Function,
    /// `func`'s index in `file.functions`.
    pub func_id: crate::model::FuncId,
    pub src: &'a str,
    pub catalog: &'a Catalog,
}

impl<'a> Context<'a> {
    pub fn text(&self, span: crate::model::Span) -> &'a str {
        self.src.get(span.range()).unwrap_or("")
    }

    pub fn expr_text(&self, id: crate::model::ExprId) -> &'a str {
        self.text(self.func.span(id))
    }

    pub fn family(&self) -> crate::model::Family {
        self.file.language.family()
    }

    pub fn is_module(&self) -> bool {
        self.func.kind == FunctionKind::Module
    }
}

pub trait Rule: Sync {
    fn meta(&self) -> &'static RuleMeta;
    fn check(&self, cx: &Context, out: &mut Vec<RawFinding>);

    /// Byte strings of which at least one must occur in a file for this rule
    /// to possibly report there (the prefilter skips other files before
    /// parsing). `None`: the rule cannot say, every file is parsed. Must be
    /// sound: derive it from what `check` requires, never from what is common.
    fn triggers(&self, _catalog: &Catalog) -> Option<Vec<String>> {
        None
    }
}

pub static RULES: &[&dyn Rule] = &[
    &ra001_check_then_insert::Rule,
    &ra002_nondeterministic_idempotency_key::Rule,
    &ra003_guard_release_not_in_finally::Rule,
    &ra004_state_mutation_across_await::Rule,
    &ra005_cache_check_then_set::Rule,
    &ra006_unsafe_distributed_lock::Rule,
    &ra007_payment_call_without_idempotency_key::Rule,
];

pub fn by_code(code: &str) -> Option<&'static dyn Rule> {
    RULES
        .iter()
        .copied()
        .find(|r| r.meta().code.eq_ignore_ascii_case(code))
}
