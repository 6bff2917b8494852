//! RA002 nondeterministic-idempotency-key: an idempotency or dedup key built
//! from time or randomness where the request is handled, so a retry of the
//! same logical request gets a different key.
//!
//! How: a forward taint pass over the function's statements in source order.
//! Sources are the catalogue's time/random calls; taint flows through locals,
//! object-literal fields, templates, concatenation and wrapping calls; sinks
//! are names that denote a key (variables, properties, keyword arguments,
//! headers, queue `jobId` options). One finding per source, at the first sink
//! it reaches, with the source as the related location.

use rustc_hash::FxHashMap as HashMap;

use crate::catalog::Catalog;
use crate::finding::{Confidence, RawFinding, Risk, Suggestion};
use crate::model::{CtxId, CtxKind, Expr, ExprId, Family, Function, PropKey, Span};
use crate::rules::{Context, RuleMeta};
use crate::suggest;

pub struct Rule;

static META: RuleMeta = RuleMeta {
    code: "RA002",
    name: "nondeterministic-idempotency-key",
    risk: Risk::High,
    confidence: Confidence::High,
    doc: include_str!("../../rules/ra002_nondeterministic_idempotency_key.md"),
};

impl super::Rule for Rule {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    /// Every finding starts at a source call: its last named segment (or the
    /// constructor's name) is in the text.
    fn triggers(&self, catalog: &Catalog) -> Option<Vec<String>> {
        let nd = &catalog.nondeterministic;
        let mut words: Vec<String> = nd
            .calls
            .iter()
            .filter_map(|p| p.literal_segment().map(str::to_string))
            .collect();
        words.extend(nd.constructors.iter().cloned());
        Some(words)
    }

    fn check(&self, cx: &Context, out: &mut Vec<RawFinding>) {
        let f = cx.func;
        if !(0..f.exprs.len()).any(|i| source_call(cx.catalog, f, i as ExprId)) {
            return;
        }
        let flows = Flow::run(cx);
        for (source, sinks) in flows.by_source {
            out.push(report(cx, &flows.sources[&source], &sinks));
        }
    }
}

fn opaque(t: Taint) -> Taint {
    Taint { opaque: true, ..t }
}

#[derive(Clone, Copy)]
struct Taint {
    source: ExprId,
    /// Only taken when the caller supplied nothing (`key ?? uuid()`, a
    /// default parameter).
    fallback: bool,
    /// The value merely contains or was computed from a tainted input (an
    /// object literal with a tainted field, a call with a tainted argument):
    /// the value itself may be a key, but its properties are other data.
    opaque: bool,
}

struct Sink {
    span: Span,
    name: String,
    ctx: CtxId,
    fallback: bool,
}

struct SourceSite {
    expr: ExprId,
    ctx: CtxId,
    /// The statement (or parameter) holding the source, for the rewrite.
    stmt: Span,
    /// The `a ?? source` expression when the source is a fallback.
    fallback_of: Option<(Span, Span)>,
    in_param: bool,
}

struct Flow {
    taint: Vec<Option<Taint>>,
    locals: HashMap<String, Taint>,
    fields: HashMap<(String, String), Taint>,
    sources: HashMap<ExprId, SourceSite>,
    by_source: Vec<(ExprId, Vec<Sink>)>,
}

impl Flow {
    fn run(cx: &Context) -> Flow {
        let f = cx.func;
        let mut flow = Flow {
            taint: vec![None; f.exprs.len()],
            locals: HashMap::default(),
            fields: HashMap::default(),
            sources: HashMap::default(),
            by_source: Vec::new(),
        };
        for param in &f.params {
            let Some(default) = param.default else {
                continue;
            };
            flow.eval_tree(cx, default, 0, param.span, true);
            if let Some(t) = flow.taint[default as usize] {
                let t = Taint {
                    fallback: true,
                    ..t
                };
                if cx.catalog.idempotency_sinks.is_key_name(&param.name) {
                    flow.sink(cx, t, param.span, &param.name, 0);
                }
                flow.locals.insert(param.name.to_string(), t);
            }
        }
        for stmt in &f.stmts {
            if let Some(root) = f.stmt_expr(stmt) {
                flow.eval_tree(cx, root, stmt.ctx, stmt.span, false);
            }
        }
        flow
    }

    /// Evaluates a statement's expressions children-first. Children always
    /// have lower ids than their parent, so ascending id order is post-order.
    fn eval_tree(&mut self, cx: &Context, root: ExprId, ctx: CtxId, stmt: Span, in_param: bool) {
        let mut ids = cx.func.descendants(root);
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let t = self.eval(cx, id, ctx, stmt, in_param);
            self.taint[id as usize] = t;
            self.sinks_at(cx, id, ctx);
        }
    }

    fn t(&self, id: ExprId) -> Option<Taint> {
        self.taint[id as usize]
    }

    fn eval(
        &mut self,
        cx: &Context,
        id: ExprId,
        ctx: CtxId,
        stmt: Span,
        in_param: bool,
    ) -> Option<Taint> {
        let f = cx.func;
        let expr = f.expr(id);
        if source_call(cx.catalog, f, id) {
            self.sources.insert(
                id,
                SourceSite {
                    expr: id,
                    ctx,
                    stmt,
                    fallback_of: None,
                    in_param,
                },
            );
            return Some(Taint {
                source: id,
                fallback: false,
                opaque: false,
            });
        }
        match expr {
            Expr::Ident(name) => self.locals.get(&**name).copied(),
            Expr::Member { object, property } => {
                let field = match f.expr(*object) {
                    Expr::Ident(o) => self
                        .fields
                        .get(&(o.to_string(), property.to_string()))
                        .copied(),
                    _ => None,
                };
                field.or_else(|| self.t(*object).filter(|t| !t.opaque))
            }
            Expr::Index { object, index } => {
                if is_call_to(f, *object, "split") {
                    return None;
                }
                self.t(*object).or_else(|| self.t(*index))
            }
            Expr::Call { callee, args } => {
                let from_args = || args.iter().find_map(|a| self.t(a.value)).map(opaque);
                match f.expr(*callee) {
                    Expr::Member { object, property } => {
                        if coarse(cx, f, *object, property, args) {
                            None
                        } else {
                            self.t(*object).or_else(from_args)
                        }
                    }
                    _ => from_args(),
                }
            }
            Expr::New { args, .. } => args.iter().find_map(|a| self.t(a.value)).map(opaque),
            Expr::Binary { op, left, right } => match &**op {
                "??" | "||" | "or" => match (self.t(*left), self.t(*right)) {
                    (Some(t), _) => Some(t),
                    (None, Some(t)) => {
                        if let Some(site) = self.sources.get_mut(&t.source) {
                            site.fallback_of = Some((f.span(id), f.span(*left)));
                        }
                        Some(Taint {
                            fallback: true,
                            ..t
                        })
                    }
                    _ => None,
                },
                "&&" | "and" => self.t(*right),
                "/" | "//" if self.t(*left).is_some() && coarse_divisor(cx, f, *right) => None,
                "==" | "===" | "!=" | "!==" | "<" | ">" | "<=" | ">=" | "in" | "not in"
                | "instanceof" | "is" | "is not" => None,
                _ => self.t(*left).or_else(|| self.t(*right)),
            },
            Expr::Unary { op, arg } => match &**op {
                "!" | "not" | "typeof" | "void" | "delete" | "del" => None,
                _ => self.t(*arg),
            },
            Expr::Cond {
                then, otherwise, ..
            } => self.t(*then).or_else(|| self.t(*otherwise)),
            Expr::Assign {
                target, value, op, ..
            } => {
                let t = if &**op == "=" {
                    self.t(*value)
                } else {
                    self.t(*value).or_else(|| self.t(*target))
                };
                self.bind(cx, *target, *value, t);
                t
            }
            Expr::Function(_)
            | Expr::Str(_)
            | Expr::Num(_)
            | Expr::Bool(_)
            | Expr::Null
            | Expr::This => None,
            Expr::Object(_) | Expr::Array(_) => {
                let mut kids = Vec::new();
                f.children(id, &mut kids);
                kids.into_iter().find_map(|k| self.t(k)).map(opaque)
            }
            Expr::Await(_) | Expr::Template { .. } | Expr::Other(_) => {
                let mut kids = Vec::new();
                f.children(id, &mut kids);
                kids.into_iter().find_map(|k| self.t(k))
            }
        }
    }

    /// Records what an assignment binds: a local, an object's field, or the
    /// fields of an object literal.
    fn bind(&mut self, cx: &Context, target: ExprId, value: ExprId, t: Option<Taint>) {
        let f = cx.func;
        match f.expr(target) {
            Expr::Ident(name) => {
                match t {
                    Some(t) => self.locals.insert(name.to_string(), t),
                    None => self.locals.remove(&**name),
                };
                if let Expr::Object(props) = f.expr(value) {
                    for p in props {
                        if let (PropKey::Name(k), Some(pt)) = (&p.key, self.t(p.value)) {
                            self.fields.insert((name.to_string(), k.to_string()), pt);
                        }
                    }
                }
            }
            Expr::Member { object, property } => {
                if let (Expr::Ident(o), Some(t)) = (f.expr(*object), t) {
                    self.fields.insert((o.to_string(), property.to_string()), t);
                }
            }
            _ => {}
        }
    }

    /// Files a sink of `t`'s source. A sink reached only when the caller sent
    /// no key counts as a fallback: a branch whose test checks that very name
    /// (`if not idempotency_key: idempotency_key = uuid4()`).
    fn sink(&mut self, cx: &Context, t: Taint, span: Span, name: &str, ctx: CtxId) {
        let sink = Sink {
            span,
            name: name.to_string(),
            ctx,
            fallback: t.fallback || branch_tests_name(cx, ctx, name),
        };
        match self.by_source.iter_mut().find(|(s, _)| *s == t.source) {
            Some((_, sinks)) => sinks.push(sink),
            None => self.by_source.push((t.source, vec![sink])),
        }
    }

    fn sinks_at(&mut self, cx: &Context, id: ExprId, ctx: CtxId) {
        let f = cx.func;
        let sinks = &cx.catalog.idempotency_sinks;
        match f.expr(id) {
            Expr::Assign { target, value, .. } => {
                let name = match f.expr(*target) {
                    Expr::Ident(n) => Some(n.to_string()),
                    Expr::Member { property, .. } => Some(property.to_string()),
                    Expr::Index { index, .. } => f.string_value(*index).map(str::to_string),
                    _ => None,
                };
                if let (Some(name), Some(t)) = (name, self.t(*value)) {
                    if sinks.is_key_name(&name) {
                        self.sink(cx, t, f.span(id), &name, ctx);
                    }
                }
            }
            Expr::Object(props) => {
                for p in props {
                    if let (PropKey::Name(k), Some(t)) = (&p.key, self.t(p.value)) {
                        if sinks.is_key_name(k) {
                            let span = Span {
                                start: p.key_span.start,
                                end: f.span(p.value).end.max(p.key_span.end),
                            };
                            self.sink(cx, t, span, k, ctx);
                        }
                    }
                }
            }
            Expr::Call { callee, args } => {
                let method = f.callee_name(*callee).unwrap_or("");
                let queue_call = sinks.queue_methods.iter().any(|m| m == method);
                for a in args {
                    if let (Some(k), Some(t)) = (&a.name, self.t(a.value)) {
                        if sinks.is_key_name(k)
                            || (queue_call && sinks.queue_options.iter().any(|q| **q == **k))
                        {
                            self.sink(cx, t, f.span(a.value), k, ctx);
                        }
                    }
                    if !queue_call {
                        continue;
                    }
                    if let Expr::Object(props) = f.expr(a.value) {
                        for p in props {
                            let (PropKey::Name(k), Some(t)) = (&p.key, self.t(p.value)) else {
                                continue;
                            };
                            if sinks.queue_options.iter().any(|q| **q == **k) {
                                let span = Span {
                                    start: p.key_span.start,
                                    end: f.span(p.value).end,
                                };
                                self.sink(cx, t, span, k, ctx);
                            }
                        }
                    }
                }
                if sinks.header_setters.iter().any(|h| h == method) && args.len() >= 2 {
                    if let (Some(header), Some(t)) =
                        (f.string_value(args[0].value), self.t(args[1].value))
                    {
                        if sinks.is_key_name(header) {
                            self.sink(cx, t, f.span(id), header, ctx);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Whether `ctx` lies in a branch whose condition mentions `name` (as an
/// identifier, a property or a string such as `"Idempotency-Key" in headers`).
fn branch_tests_name(cx: &Context, ctx: CtxId, name: &str) -> bool {
    let f = cx.func;
    f.ctx_chain(ctx).any(|(_, c)| {
        matches!(c.kind, CtxKind::Then | CtxKind::Else)
            && c.test.is_some_and(|test| {
                f.descendants(test).into_iter().any(|e| match f.expr(e) {
                    Expr::Ident(n) => &**n == name,
                    Expr::Member { property, .. } => &**property == name,
                    Expr::Str(s) => &**s == name,
                    _ => false,
                })
            })
    })
}

/// A call (or `new Date()`) that yields a new value every time.
fn source_call(catalog: &Catalog, f: &Function, id: ExprId) -> bool {
    let nd = &catalog.nondeterministic;
    match f.expr(id) {
        Expr::Call { callee, .. } => {
            let path = f.path(*callee);
            nd.calls.iter().any(|p| p.matches(&path))
        }
        Expr::New { callee, args } => {
            args.is_empty()
                && matches!(f.expr(*callee), Expr::Ident(n) if nd.constructors.iter().any(|c| **c == **n))
        }
        _ => false,
    }
}

fn is_call_to(f: &Function, id: ExprId, method: &str) -> bool {
    matches!(f.expr(id), Expr::Call { callee, .. } if f.callee_name(*callee) == Some(method))
}

/// A method that truncates a time value to a deliberate window: a date, an
/// ISO string cut at the day/hour/minute, a `strftime` without seconds.
fn coarse(
    cx: &Context,
    f: &Function,
    receiver: ExprId,
    method: &str,
    args: &[crate::model::Arg],
) -> bool {
    if cx
        .catalog
        .nondeterministic
        .coarse_methods
        .iter()
        .any(|m| m == method)
    {
        return true;
    }
    let iso = is_call_to(f, receiver, "toISOString")
        || is_call_to(f, receiver, "toJSON")
        || is_call_to(f, receiver, "isoformat");
    match method {
        "slice" | "substring" | "substr" if iso => args
            .get(1)
            .and_then(|a| number(f, a.value))
            .is_some_and(|end| end <= 16.0),
        "split" if iso => true,
        "strftime" => args
            .first()
            .and_then(|a| f.string_value(a.value))
            .is_some_and(|fmt| {
                !["%H", "%I", "%M", "%S", "%f", "%s", "%X", "%c", "%T", "%p"]
                    .iter()
                    .any(|d| fmt.contains(d))
            }),
        _ => false,
    }
}

/// Dividing a timestamp by a minute or more (or a named window) buckets it.
fn coarse_divisor(cx: &Context, f: &Function, divisor: ExprId) -> bool {
    match f.expr(divisor) {
        Expr::Ident(_) | Expr::Member { .. } => true,
        _ => {
            let min = match cx.family() {
                Family::Js => 60_000.0,
                Family::Python => 60.0,
            };
            number(f, divisor).is_some_and(|n| n >= min)
        }
    }
}

/// A numeric literal, or a product of literals (`24 * 60 * 60 * 1000`).
fn number(f: &Function, id: ExprId) -> Option<f64> {
    match f.expr(id) {
        Expr::Num(n) => n.replace('_', "").parse().ok(),
        Expr::Binary { op, left, right } if &**op == "*" => {
            Some(number(f, *left)? * number(f, *right)?)
        }
        _ => None,
    }
}

fn report(cx: &Context, site: &SourceSite, sinks: &[Sink]) -> RawFinding {
    let f = cx.func;
    let first = &sinks[0];
    let fallback = sinks.iter().any(|s| s.fallback);
    // A key made once and reused by a retry loop in this function survives the
    // loop's retries, but not a retry of the whole request.
    let retry_loop = sinks.iter().any(|s| {
        f.enclosing_loop(s.ctx)
            .is_some_and(|l| !f.in_ctx(site.ctx, l))
    });
    let source_text = short(cx.expr_text(site.expr));
    let kind = if first.name.to_lowercase().contains("dedup") {
        "dedup key"
    } else {
        "idempotency key"
    };
    let message = if fallback {
        format!(
            "`{}` falls back to `{}` when the caller sends no key, so such a caller gets a different {kind} on every retry",
            first.name, source_text
        )
    } else if retry_loop {
        format!(
            "`{}` is built from `{}`: the retry loop here reuses it, but a retry of the whole request gets a different {kind}",
            first.name, source_text
        )
    } else {
        format!(
            "`{}` is built from `{}`, so a retry of the same request gets a different {kind}",
            first.name, source_text
        )
    };
    RawFinding {
        code: META.code,
        risk: if fallback || retry_loop {
            Risk::Medium
        } else {
            Risk::High
        },
        confidence: if fallback {
            Confidence::Medium
        } else {
            Confidence::High
        },
        message,
        span: first.span,
        related: vec![(
            f.span(site.expr),
            format!("`{source_text}` returns a new value on every call"),
        )],
        suggestion: rewrite(cx, site, first),
    }
}

fn short(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 60 {
        format!("{}…", one_line.chars().take(59).collect::<String>())
    } else {
        one_line
    }
}

/// The whole value made from the source: `datetime.now().isoformat()`,
/// `str(uuid4())`, `Math.random().toString(36).slice(2)`.
fn value_chain(f: &Function, source: ExprId) -> ExprId {
    let parents = f.parents();
    let mut cur = source;
    while let Some(p) = parents[cur as usize] {
        let wraps = match f.expr(p) {
            Expr::Member { object, .. } => *object == cur,
            Expr::Call { callee, args } => {
                *callee == cur || (args.len() == 1 && args[0].value == cur)
            }
            Expr::Await(_) => true,
            _ => false,
        };
        if !wraps {
            break;
        }
        cur = p;
    }
    cur
}

/// The statement that makes the key, with the time/random value replaced by
/// the caller's request id (and the business ids the function already uses).
fn rewrite(cx: &Context, site: &SourceSite, sink: &Sink) -> Suggestion {
    let family = cx.family();
    let hash = suggest::comment(family);
    let f = cx.func;
    let source_span = f.span(site.expr);
    let mut lines = Vec::new();

    if site.in_param {
        // `idempotencyKey = randomUUID()`: make the caller pass it.
        let param = cx.text(site.stmt);
        let name = param.split(['=', ':']).next().unwrap_or(param).trim();
        lines.push(format!(
            "{hash} require the key from the caller: a retry must send the same one"
        ));
        lines.push(match family {
            Family::Js => format!("{name}: string"),
            Family::Python => format!("{name}: str"),
        });
        return Suggestion {
            title: format!("Make `{}` a required parameter", sink.name),
            code: lines.join("\n"),
        };
    }

    if let Some((whole, left)) = site.fallback_of {
        lines.push(format!(
            "{hash} reject a request without a key (400) instead of inventing one"
        ));
        lines.push(suggest::rewrite(
            cx.src,
            site.stmt,
            &[(whole, cx.text(left).to_string())],
        ));
        return Suggestion {
            title: format!(
                "Require the caller's key instead of falling back to `{}`",
                short(cx.text(source_span))
            ),
            code: lines.join("\n"),
        };
    }

    let chain = value_chain(f, site.expr);
    let source_span = f.span(chain);
    let caller = suggest::caller_key(cx);
    let ids = suggest::business_ids(cx, 2);
    let stmt_text = cx.text(site.stmt);
    // Inside a template or concatenation the key already has its other parts:
    // swap the time/random part for the caller's id. A bare value gets the
    // business ids too, unless the statement already names them.
    let embedded = f.parents()[chain as usize].is_some_and(|p| {
        matches!(
            f.expr(p),
            Expr::Template { .. } | Expr::Binary { .. } | Expr::Array(_)
        )
    });
    let missing_ids: Vec<&String> =
        if embedded || ids.iter().any(|i| stmt_text.contains(i.as_str())) {
            Vec::new()
        } else {
            ids.iter().collect()
        };
    let replacement = if missing_ids.is_empty() {
        caller.name.clone()
    } else {
        let parts: Vec<String> = std::iter::once(caller.name.clone())
            .chain(missing_ids.iter().map(|s| s.to_string()))
            .collect();
        match family {
            Family::Js => format!(
                "`{}`",
                parts
                    .iter()
                    .map(|p| format!("${{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(":")
            ),
            Family::Python => {
                let body = parts
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(":");
                let inner_quote = stmt_text.contains('"') || body.contains('"');
                if inner_quote {
                    format!("f'{body}'")
                } else {
                    format!("f\"{body}\"")
                }
            }
        }
    };
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
    lines.push(suggest::rewrite(
        cx.src,
        site.stmt,
        &[(source_span, replacement)],
    ));
    Suggestion {
        title: format!(
            "Derive `{}` from the caller's request id{}",
            sink.name,
            if missing_ids.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = missing_ids.iter().map(|s| s.as_str()).collect();
                format!(" and {}", names.join(", "))
            }
        ),
        code: lines.join("\n"),
    }
}
