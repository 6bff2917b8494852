//! External side effects: which calls leave the process (a payment, an HTTP
//! request, an email, a queue publish) and cannot be undone by rolling back
//! the database. Shared by RA001 (risk of a check-then-insert) and RA004
//! (status transitions around an external call); RA007 reads the payment
//! catalogue (`rules/catalog/payments.toml`) for calls that move money and
//! the way each passes its idempotency key.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::catalog::CallPattern;
use crate::model::{Expr, ExprId, Family, Function};

const EXTERNAL_TOML: &str = include_str!("../../rules/catalog/external.toml");
const PAYMENTS_TOML: &str = include_str!("../../rules/catalog/payments.toml");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalKind {
    Payment,
    Http,
    Email,
    Queue,
}

impl ExternalKind {
    pub fn noun(self) -> &'static str {
        match self {
            ExternalKind::Payment => "payment",
            ExternalKind::Http => "HTTP call",
            ExternalKind::Email => "email",
            ExternalKind::Queue => "queue publish",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalCatalog {
    payment: PaymentSide,
    http: Kind,
    email: Kind,
    queue: QueueKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaymentSide {
    sdk_words: Vec<String>,
    read_methods: Vec<String>,
    calls: Vec<CallPattern>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kind {
    calls: Vec<CallPattern>,
    methods: Vec<String>,
    receiver_words: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueKind {
    calls: Vec<CallPattern>,
    methods: Vec<String>,
    receiver_words: Vec<String>,
    python_only: Vec<String>,
}

/// How a payment API takes its idempotency key.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyStyle {
    Options,
    Kwarg,
    OptionsDict,
    ParamsProperty,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentApi {
    pub provider: String,
    pub family: String,
    pub style: KeyStyle,
    pub key: String,
    pub option_keys: Vec<String>,
    pub provider_words: Vec<String>,
    pub param_words: Vec<String>,
    pub calls: Vec<MoneyCall>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyCall {
    pub path: String,
    #[serde(default)]
    pub params: usize,
    #[serde(default)]
    pub generic: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentCatalog {
    pub api: Vec<PaymentApi>,
    /// The last segment of every call path: a quick reject for other calls.
    #[serde(skip)]
    methods: rustc_hash::FxHashSet<String>,
}

fn external() -> &'static ExternalCatalog {
    static C: OnceLock<ExternalCatalog> = OnceLock::new();
    C.get_or_init(|| {
        toml::from_str(EXTERNAL_TOML)
            .expect("rules/catalog/external.toml is valid (checked by tests)")
    })
}

pub fn payments() -> &'static PaymentCatalog {
    static C: OnceLock<PaymentCatalog> = OnceLock::new();
    C.get_or_init(|| {
        let mut c: PaymentCatalog = toml::from_str(PAYMENTS_TOML)
            .expect("rules/catalog/payments.toml is valid (checked by tests)");
        c.methods = c
            .api
            .iter()
            .flat_map(|a| &a.calls)
            .filter_map(|mc| mc.path.rsplit('.').next().map(str::to_string))
            .collect();
        c
    })
}

/// A call that leaves the process.
#[derive(Clone, Debug)]
pub struct External {
    pub kind: ExternalKind,
    /// The callee as written: `stripe.paymentIntents.create`.
    pub label: String,
}

fn contains_word(path: &[&str], words: &[String]) -> bool {
    path.iter().any(|seg| {
        let lower = seg.to_ascii_lowercase();
        words.iter().any(|w| lower.contains(w.as_str()))
    })
}

/// Classifies a call expression as an external side effect.
pub fn classify(f: &Function, call: ExprId, family: Family) -> Option<External> {
    let callee = match f.expr(call) {
        Expr::Call { callee, .. } => *callee,
        _ => return None,
    };
    let path = f.path(callee);
    let method = *path.last()?;
    let receiver = &path[..path.len() - 1];
    let label = || f.callee_text(callee);
    let c = external();
    // The team's own helpers, from the config's `[catalog]`.
    let in_house = crate::catalog::in_house_effect(&path).map(|e| match e {
        crate::catalog::InHouse::Payment => ExternalKind::Payment,
        crate::catalog::InHouse::External => ExternalKind::Http,
    });
    if let Some(kind) = in_house {
        return Some(External {
            kind,
            label: label(),
        });
    }

    if money_call(f, call, family).is_some()
        || c.payment.calls.iter().any(|p| p.matches(&path))
        || (!receiver.is_empty()
            && contains_word(receiver, &c.payment.sdk_words)
            && !c.payment.read_methods.iter().any(|m| m == method)
            && !method.starts_with("retrieve")
            && !method.starts_with("list"))
    {
        return Some(External {
            kind: ExternalKind::Payment,
            label: label(),
        });
    }
    let by_receiver = |methods: &[String], words: &[String]| {
        !receiver.is_empty()
            && methods.iter().any(|m| m == method)
            && contains_word(receiver, words)
    };
    if c.email.calls.iter().any(|p| p.matches(&path))
        || by_receiver(&c.email.methods, &c.email.receiver_words)
    {
        return Some(External {
            kind: ExternalKind::Email,
            label: label(),
        });
    }
    let python = family == Family::Python;
    let queue_call = c.queue.calls.iter().any(|p| p.matches(&path))
        && (python
            || !c
                .queue
                .python_only
                .iter()
                .any(|p| CallPattern::new(p).matches(&path)));
    if queue_call || by_receiver(&c.queue.methods, &c.queue.receiver_words) {
        return Some(External {
            kind: ExternalKind::Queue,
            label: label(),
        });
    }
    if c.http.calls.iter().any(|p| p.matches(&path))
        || by_receiver(&c.http.methods, &c.http.receiver_words)
    {
        return Some(External {
            kind: ExternalKind::Http,
            label: label(),
        });
    }
    None
}

/// A call that moves money through an API that accepts an idempotency key.
pub struct MoneyCallMatch {
    pub api: &'static PaymentApi,
    pub call: &'static MoneyCall,
}

/// Matches `call` against the payment catalogue for its language family.
pub fn money_call(f: &Function, call: ExprId, family: Family) -> Option<MoneyCallMatch> {
    let Expr::Call { callee, args } = f.expr(call) else {
        return None;
    };
    if let Expr::Member { property, .. } = f.expr(*callee) {
        let methods = &payments().methods;
        let base = property.strip_suffix("_async").unwrap_or(property);
        if !methods.contains(&**property) && !methods.contains(base) {
            return None;
        }
    }
    let path = f.path(*callee);
    if path.len() < 2 {
        return None;
    }
    // Checked for every call of every function: compare in place, with the
    // last segment first, instead of splitting the catalogue's paths.
    let last = *path.last()?;
    for api in payments().api.iter().filter(|a| api_for(a, family)) {
        // `create_async` is the async twin of `create` in stripe-python.
        let method = match api.family.as_str() {
            "python" => last.strip_suffix("_async").unwrap_or(last),
            _ => last,
        };
        for mc in &api.calls {
            let mut want = mc.path.rsplit('.');
            if want.next() != Some(method) {
                continue;
            }
            let mut receiver_len = path.len() - 1;
            let mut matched = true;
            for segment in want {
                if receiver_len == 0 || path[receiver_len - 1] != segment {
                    matched = false;
                    break;
                }
                receiver_len -= 1;
            }
            if !matched {
                continue;
            }
            let receiver = &path[..receiver_len];
            if mc.generic {
                let named = contains_word(receiver, &api.provider_words)
                    || receiver.iter().any(|p| p.eq_ignore_ascii_case("v1"));
                let shaped = !api.param_words.is_empty()
                    && args.get(mc.params).is_some_and(|a| match f.expr(a.value) {
                        Expr::Object(props) => props.iter().any(|p| {
                            matches!(&p.key, crate::model::PropKey::Name(k) if k.contains('_') && api.param_words.iter().any(|w| w == &**k))
                        }),
                        _ => false,
                    });
                if !named && !shaped {
                    continue;
                }
            }
            return Some(MoneyCallMatch { api, call: mc });
        }
    }
    None
}

/// Whether a file of this family can use `api`.
pub fn api_for(api: &PaymentApi, family: Family) -> bool {
    match family {
        Family::Js => api.family == "js",
        Family::Python => api.family == "python",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogues_parse() {
        assert!(!payments().api.is_empty());
        assert!(!external().http.calls.is_empty());
    }
}
