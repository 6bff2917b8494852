//! RA007 payment-call-without-idempotency-key: a call that moves money
//! through an API that accepts an idempotency key (Stripe, Adyen, PayPal),
//! made without one. A timeout after the provider acted plus a retry moves
//! the money twice.
//!
//! How: each call is matched against the payment catalogue
//! (`rules/catalog/payments.toml`, read through `analysis::external`), which
//! says where the key goes: a request-options object after the parameters
//! (Stripe / Adyen Node), a keyword argument (stripe-python, Adyen Python),
//! an `options` dict (StripeClient), or a property of the request
//! (PayPal server SDK). Options held in a local built in this function are
//! inspected; options the function cannot see into (a parameter, a spread,
//! `**kwargs`, a helper's result) are given the benefit of the doubt.

use crate::analysis::db::Bindings;
use crate::analysis::external::{self, KeyStyle, MoneyCallMatch};
use crate::finding::{Confidence, RawFinding, Risk, Suggestion};
use crate::model::{Arg, Expr, ExprId, Family, Function, PropKey, Span};
use crate::rules::{Context, RuleMeta};
use crate::suggest;

pub struct Rule;

static META: RuleMeta = RuleMeta {
    code: "RA007",
    name: "payment-call-without-idempotency-key",
    risk: Risk::Medium,
    confidence: Confidence::High,
    doc: include_str!("../../rules/ra007_payment_call_without_idempotency_key.md"),
};

impl super::Rule for Rule {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    /// Every finding is a money-moving call: the first segment of one of the
    /// catalogue's call paths (`paymentIntents`, `Refund`) is in the text.
    fn triggers(&self, catalog: &crate::catalog::Catalog) -> Option<Vec<String>> {
        let mut words: Vec<String> = crate::analysis::external::payments()
            .api
            .iter()
            .flat_map(|api| api.calls.iter())
            .filter_map(|c| c.path.split('.').next().map(str::to_string))
            .collect();
        words.extend(crate::catalog::literal_segments(&catalog.ext.payment));
        Some(words)
    }

    fn check(&self, cx: &Context, out: &mut Vec<RawFinding>) {
        let f = cx.func;
        let family = cx.family();
        let mut bindings = None;
        for id in 0..f.exprs.len() as ExprId {
            let Expr::Call { args, .. } = f.expr(id) else {
                continue;
            };
            let Some(m) = external::money_call(f, id, family) else {
                if let Some(finding) = in_house(cx, id, args) {
                    out.push(finding);
                }
                continue;
            };
            let b = bindings.get_or_insert_with(|| Bindings::new(f));
            match key_state(f, b, id, args, &m) {
                Key::Present | Key::Opaque => {}
                Key::Missing { options } => out.push(report(cx, id, args, &m, options)),
            }
        }
    }
}

enum Key {
    Present,
    /// The function cannot see into the options: not reported.
    Opaque,
    /// No key; `options` is the options object that was passed, if any.
    Missing {
        options: Option<ExprId>,
    },
}

/// An object / dict argument as the function sees it: the literal, or the
/// literal a local was bound to.
enum Obj {
    Literal(ExprId),
    Opaque,
}

fn object_of(f: &Function, b: &Bindings, id: ExprId) -> Obj {
    match f.expr(id) {
        Expr::Object(_) => Obj::Literal(id),
        Expr::Ident(n) => match b.value(f, n, f.span(id).start) {
            Some(v) if matches!(f.expr(v), Expr::Object(_)) => Obj::Literal(v),
            _ => Obj::Opaque,
        },
        _ => Obj::Opaque,
    }
}

/// Whether a non-empty value is given for `key` in an object literal (or
/// later assigned to the local holding it: `opts.idempotencyKey = k`).
fn object_has_key(f: &Function, obj: ExprId, key: &str, local: Option<&str>) -> Option<bool> {
    let Expr::Object(props) = f.expr(obj) else {
        return Some(false);
    };
    for p in props {
        match &p.key {
            PropKey::Name(k) if &**k == key => return Some(!empty(f, p.value)),
            PropKey::Spread => return None,
            _ => {}
        }
    }
    if let Some(local) = local {
        let assigned = f.exprs.iter().any(|e| {
            matches!(e, Expr::Assign { target, .. } if matches!(f.expr(*target),
                Expr::Member { object, property } if &**property == key && matches!(f.expr(*object), Expr::Ident(n) if &**n == local))
                || matches!(f.expr(*target), Expr::Index { object, index } if f.string_value(*index) == Some(key) && matches!(f.expr(*object), Expr::Ident(n) if &**n == local)))
        });
        if assigned {
            return Some(true);
        }
    }
    Some(false)
}

/// `undefined`, `null`, `None`, `''` count as no key.
fn empty(f: &Function, v: ExprId) -> bool {
    match f.expr(v) {
        Expr::Null => true,
        Expr::Ident(n) => &**n == "undefined" || &**n == "None",
        Expr::Str(s) => s.is_empty(),
        _ => false,
    }
}

fn local_name(f: &Function, id: ExprId) -> Option<&str> {
    match f.expr(id) {
        Expr::Ident(n) => Some(n),
        _ => None,
    }
}

fn key_state(f: &Function, b: &Bindings, _call: ExprId, args: &[Arg], m: &MoneyCallMatch) -> Key {
    let key = m.api.key.as_str();
    let params = m.call.params;
    // `**params` built here from a dict literal is inspected like kwargs.
    for a in args.iter().filter(|a| a.spread) {
        let inner = match f.expr(a.value) {
            Expr::Unary { arg, .. } => *arg,
            _ => a.value,
        };
        if m.api.style != KeyStyle::Kwarg {
            return Key::Opaque;
        }
        match object_of(f, b, inner) {
            Obj::Opaque => return Key::Opaque,
            Obj::Literal(o) => match object_has_key(f, o, key, local_name(f, inner)) {
                None => return Key::Opaque,
                Some(true) => return Key::Present,
                Some(false) => {}
            },
        }
    }
    match m.api.style {
        KeyStyle::Options => {
            let mut options = None;
            for a in args.iter().skip(params + 1) {
                match object_of(f, b, a.value) {
                    Obj::Opaque => return Key::Opaque,
                    Obj::Literal(o) => match object_has_key(f, o, key, local_name(f, a.value)) {
                        None => return Key::Opaque,
                        Some(true) => return Key::Present,
                        Some(false) => options = Some(o),
                    },
                }
            }
            // A single argument that is an options hash (only option keys).
            if let Some(a) = args.get(params) {
                if let Obj::Literal(o) = object_of(f, b, a.value) {
                    if let Expr::Object(props) = f.expr(o) {
                        let only_options = !props.is_empty()
                            && props.iter().all(|p| matches!(&p.key, PropKey::Name(k) if m.api.option_keys.iter().any(|ok| ok == &**k)));
                        if only_options {
                            return match object_has_key(f, o, key, local_name(f, a.value)) {
                                Some(true) => Key::Present,
                                None => Key::Opaque,
                                Some(false) => Key::Missing { options: Some(o) },
                            };
                        }
                    }
                }
            }
            Key::Missing { options }
        }
        KeyStyle::Kwarg => match args.iter().find(|a| a.name.as_deref() == Some(key)) {
            Some(a) if empty(f, a.value) => Key::Missing { options: None },
            Some(_) => Key::Present,
            None => Key::Missing { options: None },
        },
        KeyStyle::OptionsDict => {
            let opt = args
                .iter()
                .find(|a| a.name.as_deref() == Some("options"))
                .or_else(|| args.iter().filter(|a| a.name.is_none()).nth(params + 1));
            match opt {
                None => Key::Missing { options: None },
                Some(a) => match object_of(f, b, a.value) {
                    Obj::Opaque => Key::Opaque,
                    Obj::Literal(o) => match object_has_key(f, o, key, local_name(f, a.value)) {
                        None => Key::Opaque,
                        Some(true) => Key::Present,
                        Some(false) => Key::Missing { options: Some(o) },
                    },
                },
            }
        }
        KeyStyle::ParamsProperty => {
            let Some(a) = args.first() else {
                return Key::Missing { options: None };
            };
            if a.name.as_deref() == Some(key) {
                return Key::Present;
            }
            match object_of(f, b, a.value) {
                Obj::Opaque => Key::Opaque,
                Obj::Literal(o) => match object_has_key(f, o, key, local_name(f, a.value)) {
                    None => Key::Opaque,
                    Some(true) => Key::Present,
                    Some(false) => {
                        if args
                            .iter()
                            .any(|x| x.name.as_deref() == Some(key) && !empty(f, x.value))
                        {
                            Key::Present
                        } else {
                            Key::Missing { options: Some(o) }
                        }
                    }
                },
            }
        }
    }
}

/// A call to one of the team's own payment helpers (config `payment`) that
/// passes nothing named like an idempotency key. A spread or `**kwargs` may
/// carry one: not reported.
fn in_house(cx: &Context, call: ExprId, args: &[Arg]) -> Option<RawFinding> {
    let f = cx.func;
    let Expr::Call { callee, .. } = f.expr(call) else {
        return None;
    };
    if !crate::catalog::matches_any(&cx.catalog.ext.payment, &f.path(*callee)) {
        return None;
    }
    let sinks = &cx.catalog.idempotency_sinks;
    for a in args {
        if a.spread || a.name.as_deref().is_some_and(|n| sinks.is_key_name(n)) {
            return None;
        }
        match f.expr(a.value) {
            Expr::Ident(n) if sinks.is_key_name(n) => return None,
            Expr::Object(props) => {
                for p in props {
                    match &p.key {
                        PropKey::Spread => return None,
                        PropKey::Name(k) if sinks.is_key_name(k) => return None,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let label = f.callee_text(*callee);
    let family = cx.family();
    let caller = suggest::caller_key(cx);
    let stmt = f
        .stmts
        .iter()
        .find(|s| s.span.contains(f.span(call)))
        .map_or(f.span(call), |s| s.span);
    let last = args.last().map(|a| f.span(a.value));
    let (key_arg, comment) = match family {
        Family::Js => (format!(", {{ idempotencyKey: {} }}", caller.name), "//"),
        Family::Python => (format!(", idempotency_key={}", caller.name), "#"),
    };
    let mut code = Vec::new();
    code.push(format!(
        "{comment} pass a key that is the same on every retry of this request (and make `{label}` forward it to the provider)"
    ));
    code.extend(caller.setup.clone());
    code.push(match last {
        Some(last) => suggest::rewrite(
            cx.src,
            stmt,
            &[(
                Span {
                    start: last.end,
                    end: last.end,
                },
                key_arg,
            )],
        ),
        None => cx.text(stmt).to_string(),
    });
    Some(RawFinding {
        code: META.code,
        risk: META.risk,
        confidence: Confidence::Medium,
        message: format!(
            "`{label}` moves money (a payment helper named in the config) but is given no idempotency key: a retried request pays twice"
        ),
        span: f.span(call),
        related: Vec::new(),
        suggestion: Suggestion {
            title: format!("Pass an idempotency key to `{label}`"),
            code: code.join("\n"),
        },
    })
}

fn report(
    cx: &Context,
    call: ExprId,
    args: &[Arg],
    m: &MoneyCallMatch,
    options: Option<ExprId>,
) -> RawFinding {
    let f = cx.func;
    let Expr::Call { callee, .. } = f.expr(call) else {
        unreachable!("money_call matched a call")
    };
    let label = f.callee_text(*callee);
    let provider = &m.api.provider;
    let key = &m.api.key;
    let mut message = format!(
        "`{label}` moves money through {provider} without an idempotency key: if the request times out after {provider} acted and the call is retried, {provider} performs it again"
    );
    if let Some(o) = options {
        if m.api.style != KeyStyle::ParamsProperty {
            let names: Vec<String> = match f.expr(o) {
                Expr::Object(props) => props
                    .iter()
                    .filter_map(|p| match &p.key {
                        PropKey::Name(k) => Some(format!("`{k}`")),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if !names.is_empty() {
                message.push_str(&format!(
                    "; the options pass {} but no `{key}`",
                    names.join(", ")
                ));
            }
        }
    }
    RawFinding {
        code: META.code,
        risk: META.risk,
        confidence: META.confidence,
        message,
        span: f.span(call),
        related: Vec::new(),
        suggestion: rewrite(cx, call, args, m, options, &label),
    }
}

/// The statement around the call, with the key added where the SDK reads it,
/// derived from the caller's request id and the business ids in scope.
fn rewrite(
    cx: &Context,
    call: ExprId,
    args: &[Arg],
    m: &MoneyCallMatch,
    options: Option<ExprId>,
    label: &str,
) -> Suggestion {
    let f = cx.func;
    let family = cx.family();
    let hash = suggest::comment(family);
    let caller = suggest::caller_key(cx);
    // Method names such as `Order.findById` are not identifiers of the operation.
    let ids: Vec<String> = suggest::business_ids(cx, 4)
        .into_iter()
        .filter(|i| {
            !f.exprs
                .iter()
                .any(|e| matches!(e, Expr::Call { callee, .. } if cx.expr_text(*callee) == i))
        })
        .take(2)
        .collect();
    let tag = m.call.path.as_str();
    let key_expr = match family {
        Family::Js => {
            let mut s = format!("`{tag}:${{{}}}", caller.name);
            for id in &ids {
                s.push_str(&format!(":${{{id}}}"));
            }
            s.push('`');
            s
        }
        Family::Python => {
            let mut s = format!("f\"{tag}:{{{}}}", caller.name);
            for id in &ids {
                s.push_str(&format!(":{{{id}}}"));
            }
            s.push('"');
            s
        }
    };
    let key = &m.api.key;
    let call_span = f.span(call);
    let after_last = args
        .last()
        .map_or(call_span.end.saturating_sub(1), |a| f.span(a.value).end);
    let at = |pos: u32, text: String| (Span::new(pos as usize, pos as usize), text);
    let inside = |o: ExprId, text: String| at(f.span(o).start + 1, text);
    // An explicit empty key (`idempotencyKey: undefined`, `idempotency_key=None`).
    let empty_key = args
        .iter()
        .find(|a| a.name.as_deref() == Some(key.as_str()))
        .map(|a| a.value)
        .or_else(|| match options.map(|o| f.expr(o)) {
            Some(Expr::Object(props)) => props
                .iter()
                .find(|p| matches!(&p.key, PropKey::Name(k) if **k == **key))
                .map(|p| p.value),
            _ => None,
        });
    let edit = if let Some(v) = empty_key {
        (f.span(v), key_expr.clone())
    } else {
        match m.api.style {
            KeyStyle::Options => match options {
                Some(o) if f.span(o).start > call_span.start && call_span.contains(f.span(o)) => {
                    inside(o, format!(" {key}: {key_expr},"))
                }
                _ => {
                    let missing = (m.call.params + 1).saturating_sub(args.len());
                    let filler = ", {}".repeat(missing);
                    at(after_last, format!("{filler}, {{ {key}: {key_expr} }}"))
                }
            },
            KeyStyle::Kwarg => {
                let sep = if args.is_empty() { "" } else { ", " };
                at(after_last, format!("{sep}{key}={key_expr}"))
            }
            KeyStyle::OptionsDict => match options {
                Some(o) if call_span.contains(f.span(o)) => {
                    inside(o, format!("\"{key}\": {key_expr}, "))
                }
                _ => {
                    let sep = if args.is_empty() { "" } else { ", " };
                    at(
                        after_last,
                        format!("{sep}options={{\"{key}\": {key_expr}}}"),
                    )
                }
            },
            KeyStyle::ParamsProperty => match options {
                Some(o) if call_span.contains(f.span(o)) => match family {
                    Family::Js => inside(o, format!(" {key}: {key_expr},")),
                    Family::Python => inside(o, format!("\"{key}\": {key_expr}, ")),
                },
                _ => at(after_last, format!(", {key}={key_expr}")),
            },
        }
    };
    let stmt = f
        .stmts
        .iter()
        .filter(|s| s.span.contains(call_span))
        .min_by_key(|s| s.span.end - s.span.start)
        .map_or(call_span, |s| s.span);
    let mut lines = Vec::new();
    if caller.needs_param {
        lines.push(format!(
            "{hash} add a `{}` parameter: the caller's id for this logical request, the same on every retry",
            caller.name
        ));
    } else {
        lines.push(format!(
            "{hash} the caller's key is the same on every retry of this request"
        ));
    }
    lines.extend(caller.setup.clone());
    lines.push(suggest::rewrite(cx.src, stmt, &[edit]));
    Suggestion {
        title: format!(
            "Pass `{key}` to `{label}`, derived from the caller's request id{}",
            if ids.is_empty() {
                String::new()
            } else {
                format!(" and {}", ids.join(", "))
            }
        ),
        code: lines.join("\n"),
    }
}
