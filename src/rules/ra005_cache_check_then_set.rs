//! RA005 cache-check-then-set: an idempotency/dedup cache is read (`get`,
//! `exists`, `has`, `key in d`), and on a miss the work runs and the result
//! is stored with a plain `set`: nothing reserves the key atomically between
//! the read and the write, so two concurrent requests both miss and both run
//! the work.
//!
//! How: `analysis::cache` lists the function's cache operations (node-redis,
//! ioredis, redis-py, Django's cache, other cache objects, and Map/Set/dict
//! stores in shared memory), and those of the closures it defines (the store
//! in a response hook a middleware installs). A plain store is reported when
//! a check of the same key on the same client comes before it, the check's
//! result decides whether the store runs (the miss branch, or after an early
//! return on a hit), the key or value marks a dedup store, and nothing
//! reserves the key: no `SET NX` / `SETNX` / `cache.add` / Lua script on it,
//! no lock held across, and for an in-memory store no write of the key
//! before the first await after the check.

use rustc_hash::FxHashMap as HashMap;

use crate::analysis::awaits::{holds_guard_across, Facts, Pos, Site, Src, Test};
use crate::analysis::cache::{self, Backend, CacheOp, Evidence, OpKind};
use crate::finding::{Confidence, RawFinding, Risk, Suggestion};
use crate::model::{CtxId, Expr, ExprId, Family, FuncId, Span};
use crate::rules::{Context, RuleMeta};
use crate::suggest;

pub struct Rule;

static META: RuleMeta = RuleMeta {
    code: "RA005",
    name: "cache-check-then-set",
    risk: Risk::High,
    confidence: Confidence::High,
    doc: include_str!("../../rules/ra005_cache_check_then_set.md"),
};

impl super::Rule for Rule {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    /// Every finding ends at a store: a cache client's store method, or an
    /// in-memory store, which counts only in async code.
    fn triggers(&self, _catalog: &crate::catalog::Catalog) -> Option<Vec<String>> {
        let mut words = crate::analysis::cache::catalog().ops.stores.clone();
        words.push("async".to_string());
        Some(words)
    }

    fn check(&self, cx: &Context, out: &mut Vec<RawFinding>) {
        let file = cx.file;
        if cx.is_module() {
            return;
        }
        let id = cx.func_id;
        let scope = cache::subtree(file, id);
        let per_function: Vec<_> = scope
            .iter()
            .map(|&fid| cache::ops_of(file, fid, cx.src))
            .collect();
        let has = |kind: OpKind| {
            per_function
                .iter()
                .any(|ops| ops.iter().any(|o| o.kind == kind))
        };
        if !has(OpKind::Check) || !has(OpKind::Store) {
            return;
        }
        let ops: Vec<CacheOp> = per_function
            .iter()
            .flat_map(|ops| ops.iter().cloned())
            .collect();
        let mut facts: HashMap<FuncId, Facts> = HashMap::default();
        for store in ops.iter().filter(|o| o.kind == OpKind::Store) {
            if reserved(&ops, store) || defines_script(cx, &scope, &store.receiver) {
                continue;
            }
            for check in ops.iter().filter(|o| o.kind == OpKind::Check) {
                if check.receiver != store.receiver
                    || !crate::analysis::awaits::same_key_text(&check.key_text, &store.key_text)
                    || check.span.end > store.span.start
                    || cache::common_ancestor(file, check.func, store.func) != id
                    || !closure_of(file, id, check.func)
                    || !closure_of(file, id, store.func)
                {
                    continue;
                }
                let fx = facts.entry(check.func).or_insert_with(|| {
                    let checks: Vec<ExprId> = ops
                        .iter()
                        .filter(|o| o.func == check.func && o.kind == OpKind::Check)
                        .map(|o| o.expr)
                        .collect();
                    Facts::build(file, check.func, cx.src, &move |_, e| checks.contains(&e))
                });
                if let Some(evidence) = hazard(cx, fx, check, store) {
                    out.push(report(cx, fx, check, store, evidence));
                    break;
                }
            }
        }
    }
}

/// `inner` is `outer` or a closure defined in it (through other closures):
/// a method of a class defined inside is a separate unit.
fn closure_of(file: &crate::model::FileModel, outer: FuncId, inner: FuncId) -> bool {
    let mut cur = inner;
    while cur != outer {
        let g = &file.functions[cur as usize];
        if g.kind == crate::model::FunctionKind::Method {
            return false;
        }
        match g.parent {
            Some(p) => cur = p,
            None => return false,
        }
    }
    true
}

/// A reservation of the key (SET NX, SETNX, `cache.add`, `setdefault`) or a
/// script on the same client anywhere in scope.
fn reserved(ops: &[CacheOp], store: &CacheOp) -> bool {
    ops.iter().any(|o| {
        o.receiver == store.receiver
            && (o.kind == OpKind::Script
                || (o.kind == OpKind::Reserve
                    && crate::analysis::awaits::same_key_text(&o.key_text, &store.key_text)))
    })
}

/// A Lua command registered on the same client anywhere in the file and
/// called in scope: `redis.defineCommand('claimEvent', ...)` then
/// `redis.claimEvent(...)`, or `claim = redis.register_script(...)` then
/// `claim(...)`. The claim is made by that script.
fn defines_script(cx: &Context, scope: &[FuncId], receiver: &str) -> bool {
    if !(cx.src.contains("defineCommand")
        || cx.src.contains("register_script")
        || cx.src.contains("registerScript"))
    {
        return false;
    }
    let squash = |t: &str| t.split_whitespace().collect::<String>();
    // The names a script can be called by.
    let mut names: Vec<String> = Vec::new();
    for g in &cx.file.functions {
        let parents = g.parents();
        for (i, e) in g.exprs.iter().enumerate() {
            let Expr::Call { callee, args } = e else {
                continue;
            };
            let Expr::Member { object, property } = g.expr(*callee) else {
                continue;
            };
            if squash(cx.text(g.span(*object))) != receiver {
                continue;
            }
            match &**property {
                "defineCommand" => {
                    if let Some(name) = args.first().and_then(|a| g.string_value(a.value)) {
                        names.push(name.to_string());
                    }
                }
                "register_script" | "registerScript" => {
                    if let Some(Expr::Assign { target, .. }) = parents[i].map(|p| g.expr(p)) {
                        if let Some(name) = g.callee_name(*target) {
                            names.push(name.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    !names.is_empty()
        && scope.iter().any(|&fid| {
            let g = &cx.file.functions[fid as usize];
            g.exprs.iter().any(|e| {
                matches!(e, Expr::Call { callee, .. } if g.callee_name(*callee).is_some_and(|n| names.iter().any(|x| x == n)))
            })
        })
}

/// Where the store sits as the check's function sees it: the store itself,
/// or the definition of the closure that holds it.
fn store_site(
    cx: &Context,
    check_func: FuncId,
    store: &CacheOp,
) -> Option<(CtxId, Span, Option<FuncId>)> {
    if store.func == check_func {
        return Some((store.ctx, store.stmt_span, None));
    }
    let file = cx.file;
    // The function nested directly in the check's function on the way down.
    let mut cur = store.func;
    loop {
        let parent = file.functions[cur as usize].parent?;
        if parent == check_func {
            break;
        }
        cur = parent;
    }
    let g = &file.functions[check_func as usize];
    let site = g
        .exprs
        .iter()
        .position(|e| matches!(e, Expr::Function(fid) if *fid == cur))? as ExprId;
    let span = g.span(site);
    let stmt = g
        .stmts
        .iter()
        .filter(|s| s.span.contains(span))
        .min_by_key(|s| s.span.end - s.span.start)?;
    Some((stmt.ctx, stmt.span, Some(cur)))
}

/// A closure run right away by an array method (`ids.forEach(id => seen.add(id))`):
/// no time passes between its definition and its body.
fn runs_synchronously(cx: &Context, check_func: FuncId, closure: FuncId) -> bool {
    let g = &cx.file.functions[check_func as usize];
    let Some(site) = g
        .exprs
        .iter()
        .position(|e| matches!(e, Expr::Function(fid) if *fid == closure))
    else {
        return false;
    };
    let parents = g.parents();
    let Some(call) = parents[site] else {
        return false;
    };
    matches!(g.expr(call), Expr::Call { callee, .. }
        if g.callee_name(*callee).is_some_and(|m| matches!(m, "forEach" | "map" | "filter" | "reduce" | "some" | "every" | "find" | "flatMap" | "sort")))
}

/// Whether the check's condition being true means the key was found.
fn hit_when_true(fx: &Facts, expr: ExprId, check: ExprId) -> Option<bool> {
    let f = fx.func;
    let mut cur = expr;
    let mut negate = false;
    for _ in 0..16 {
        if cur == check {
            let found = !matches!(f.expr(check), Expr::Binary { op, .. } if &**op == "not in");
            return Some(found != negate);
        }
        match f.expr(cur) {
            Expr::Unary { op, arg } if matches!(&**op, "!" | "not") => {
                negate = !negate;
                cur = *arg;
            }
            Expr::Await(inner) => cur = *inner,
            Expr::Binary { op, left, right } => {
                let nullish = |e: ExprId| {
                    matches!(f.expr(e), Expr::Null)
                        || matches!(f.expr(e), Expr::Ident(n) if &**n == "undefined")
                };
                let zero = |e: ExprId| matches!(f.expr(e), Expr::Num(n) if &**n == "0");
                let (side, lit) = if nullish(*right) || zero(*right) {
                    (*left, *right)
                } else if nullish(*left) || zero(*left) {
                    (*right, *left)
                } else {
                    return None;
                };
                let _ = lit;
                match &**op {
                    "===" | "==" | "is" => negate = !negate,
                    "!==" | "!=" | "is not" | ">" => {}
                    _ => return None,
                }
                cur = side;
            }
            // A local holding the check's result.
            Expr::Ident(_) if fx.taint[cur as usize].contains(&Src::Call(check)) => {
                return Some(!negate);
            }
            _ => return None,
        }
    }
    None
}

/// Whether code at (`ctx`, `span`) runs on the hit path of `test`.
fn on_hit_path(fx: &Facts, test: &Test, check: ExprId, ctx: CtxId, span: Span) -> bool {
    let Some(hit) = hit_when_true(fx, test.expr, check) else {
        return false;
    };
    let f = fx.func;
    for (_, c) in f.ctx_chain(ctx) {
        if c.test == Some(test.expr) {
            return match c.kind {
                crate::model::CtxKind::Then => hit,
                crate::model::CtxKind::Else => !hit,
                _ => false,
            };
        }
    }
    // After `if (<test>) return`: the path where the test was false.
    let _ = span;
    !hit
}

fn hazard(cx: &Context, fx: &Facts, check: &CacheOp, store: &CacheOp) -> Option<Evidence> {
    let file = cx.file;
    let memory = store.backend == Backend::Memory;
    if memory
        && !file.functions[check.func as usize].is_async
        && !file.functions[store.func as usize].is_async
    {
        return None;
    }
    let site = store_site(cx, check.func, store);
    // The check's result must decide whether the store runs, on the miss path.
    let tests: Vec<&Test> = fx
        .tests
        .iter()
        .filter(|t| {
            t.srcs.contains(&Src::Call(check.expr)) || fx.func.span(t.expr).contains(check.span)
        })
        .collect();
    if tests.is_empty() {
        return None;
    }
    if let Some((ctx, span, _)) = site {
        let miss = tests
            .iter()
            .any(|t| fx.controls(t, ctx, span) && !on_hit_path(fx, t, check.expr, ctx, span));
        if !miss {
            return None;
        }
    }
    let check_pos = check.pos();
    let store_pos = match site {
        Some((_, _, None)) => store.pos(),
        // In a closure: it runs later, after the function has returned.
        _ => Pos::write(fx.func.span),
    };
    if memory {
        match site {
            Some((_, _, None)) => {
                // The store must come after an await: before the first one it
                // is a synchronous reservation.
                let from = Site {
                    pos: check_pos,
                    ctx: check.ctx,
                    span: check.span,
                };
                let to = Site {
                    pos: store_pos,
                    ctx: store.ctx,
                    span: store.span,
                };
                fx.awaits_on_path(from, to).next()?;
            }
            Some((_, _, Some(closure))) if runs_synchronously(cx, check.func, closure) => {
                return None
            }
            _ => {}
        }
    }
    if holds_guard_across(fx, check_pos, store_pos) {
        return None;
    }
    cache::dedup_evidence(file, cx.src, Some(check), store)
}

fn short(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 60 {
        format!("{}…", one.chars().take(59).collect::<String>())
    } else {
        one
    }
}

fn report(
    cx: &Context,
    fx: &Facts,
    check: &CacheOp,
    store: &CacheOp,
    evidence: Evidence,
) -> RawFinding {
    let store_func = &cx.file.functions[store.func as usize];
    let check_text = short(cx.text(check.span));
    let store_text = short(cx.text(store.span));
    let where_ = if store.func == check.func {
        String::new()
    } else {
        format!(" (in `{}`)", store_func.name)
    };
    let message = format!(
        "`{check_text}` misses, the work runs, then `{store_text}`{where_} stores the result with no reservation in between: concurrent requests with the same key all miss and all run the work"
    );
    RawFinding {
        code: META.code,
        risk: Risk::High,
        confidence: match evidence {
            Evidence::Key => Confidence::High,
            Evidence::Value => Confidence::Medium,
        },
        message,
        span: store.span,
        related: vec![(
            check.span,
            format!("`{}` is checked here", short(&check.key_text)),
        )],
        suggestion: rewrite(cx, fx, check, store),
    }
}

/// How the code answers "in progress" to a concurrent duplicate.
fn conflict_reply(cx: &Context, func: FuncId) -> String {
    let file = cx.file;
    let family = cx.family();
    // Parameters (with their declarations) of the function and the
    // functions around it.
    let mut params: Vec<(String, String)> = Vec::new();
    let mut cur = Some(func);
    while let Some(id) = cur {
        let g = &file.functions[id as usize];
        params.extend(
            g.params
                .iter()
                .map(|p| (p.name.to_string(), cx.text(p.span).to_string())),
        );
        cur = g.parent;
    }
    let has = |n: &str| params.iter().any(|(p, _)| p == n);
    let declared = |needle: &str| params.iter().any(|(_, d)| d.contains(needle));
    let src = cx.src;
    let body = cx.text(file.functions[func as usize].span);
    let plain = match family {
        Family::Js => "return; // a concurrent delivery of the same key is being handled",
        Family::Python => "return  # a concurrent delivery of the same key is being handled",
    };
    match family {
        Family::Js => {
            if has("reply") {
                "return reply.code(409).send({ error: 'request in progress' });".into()
            } else if has("res") {
                "return res.status(409).json({ error: 'request in progress' });".into()
            } else if has("ctx") && src.contains("koa") {
                "ctx.status = 409;\nctx.body = { error: 'request in progress' };\nreturn;".into()
            } else if src.contains("@nestjs") && (has("context") || has("request") || has("req")) {
                "throw new ConflictException('request in progress');".into()
            } else {
                plain.into()
            }
        }
        Family::Python => {
            let fastapi = src.contains("fastapi") || src.contains("starlette");
            if fastapi
                && (declared(": Request")
                    || declared("Header(")
                    || declared("Depends(")
                    || declared("Body("))
            {
                "raise HTTPException(status_code=409, detail=\"request in progress\")".into()
            } else if src.contains("django") && has("request") {
                "return JsonResponse({\"error\": \"request in progress\"}, status=409)".into()
            } else if src.contains("flask") && body.contains("request.") {
                "return jsonify(error=\"request in progress\"), 409".into()
            } else {
                plain.into()
            }
        }
    }
}

const LUA_RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

/// The statement of the first await between the check and the store: the
/// work the reservation protects.
fn work_stmt(cx: &Context, fx: &Facts, check: &CacheOp, store: &CacheOp) -> Option<String> {
    let end = if store.func == check.func {
        store.pos()
    } else {
        Pos::write(fx.func.span)
    };
    let a = fx.awaits_between(check.pos(), end).find(|a| {
        let s = fx.func.stmts[a.stmt].span;
        !s.contains(check.span) && !s.contains(store.span)
    })?;
    Some(suggest::rewrite(cx.src, fx.func.stmts[a.stmt].span, &[]))
}

fn rewrite(cx: &Context, fx: &Facts, check: &CacheOp, store: &CacheOp) -> Suggestion {
    let family = cx.family();
    let hash = suggest::comment(family);
    let file = cx.file;
    let is_async = file.functions[check.func as usize].is_async;
    let aw = if is_async { "await " } else { "" };
    let client = &check.receiver;
    let key = check
        .key
        .map(|k| short(cx.text(file.functions[check.func as usize].span(k))))
        .unwrap_or_else(|| check.key_text.clone());
    let store_stmt = suggest::rewrite(cx.src, store.stmt_span, &[]);
    let reply = conflict_reply(cx, check.func);
    let work = work_stmt(cx, fx, check, store);
    let indent = |t: &str, by: &str| {
        t.lines()
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{by}{l}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The store's own argument shape tells node-redis (`{ EX: 300 }`) from
    // ioredis (`'EX', 300`) when a file imports both.
    let store_fn = &file.functions[store.func as usize];
    let store_args: Vec<ExprId> = match store_fn.expr(store.expr) {
        Expr::Call { args, .. } => args.iter().map(|a| a.value).collect(),
        _ => Vec::new(),
    };
    let camel = store.method.chars().any(|c| c.is_ascii_uppercase());
    let backend = match store.backend {
        // node-redis v4 names its commands in camelCase (`hSet`, `sAdd`).
        Backend::NodeRedis | Backend::IoRedis if camel => Backend::NodeRedis,
        Backend::NodeRedis | Backend::IoRedis => {
            if store_args.iter().skip(1).any(|a| matches!(store_fn.expr(*a), Expr::Object(_))) {
                Backend::NodeRedis
            } else if store_args
                .iter()
                .any(|a| matches!(store_fn.expr(*a), Expr::Str(s) if matches!(&**s, "EX" | "PX" | "KEEPTTL")))
            {
                Backend::IoRedis
            } else {
                store.backend
            }
        }
        other => other,
    };
    let key = key.trim().to_string();
    let title_key = if key.starts_with('`') {
        key.clone()
    } else {
        format!("`{key}`")
    };
    // A hash field or a set member: reserve that field or member itself.
    let member = store_args.get(1).map(|a| short(cx.text(store_fn.span(*a))));
    let hash_op = matches!(store.method.as_str(), "hset" | "hSet");
    let set_op = matches!(store.method.as_str(), "sadd" | "sAdd");
    if let (true, Some(field)) = (hash_op || set_op, member) {
        let js = family == Family::Js;
        let node = backend == Backend::NodeRedis;
        let (reserve, release) = if hash_op {
            let hsetnx = if node { "hSetNX" } else { "hsetnx" };
            let lua = "if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('hdel', KEYS[1], ARGV[1]) end return 0";
            let release = if node {
                format!("{aw}{client}.eval(\"{lua}\", {{ keys: [{key}], arguments: [{field}, token] }});")
            } else if js {
                format!("{aw}{client}.eval(\"{lua}\", 1, {key}, {field}, token);")
            } else {
                format!("{aw}{client}.eval(\"{lua}\", 1, {key}, {field}, token)")
            };
            (
                format!(
                    "{}reserved = {aw}{client}.{hsetnx}({key}, {field}, token){}",
                    if js { "const " } else { "" },
                    if js { ";" } else { "" }
                ),
                release,
            )
        } else {
            let (sadd, srem) = if node {
                ("sAdd", "sRem")
            } else {
                ("sadd", "srem")
            };
            (
                format!(
                    "{}reserved = {aw}{client}.{sadd}({key}, {field}){}",
                    if js { "const " } else { "" },
                    if js { ";" } else { "" }
                ),
                format!(
                    "{aw}{client}.{srem}({key}, {field}){} {hash} only this request added it",
                    if js { ";" } else { " " }
                ),
            )
        };
        let token_line = match (family, hash_op) {
            (Family::Js, true) => "const token = crypto.randomUUID();\n",
            (Family::Python, true) => "token = uuid.uuid4().hex\n",
            _ => "",
        };
        let work_text = work
            .as_deref()
            .map(|w| format!("{}\n", indent(w, if js { "  " } else { "    " })))
            .unwrap_or_default();
        let code = match family {
            Family::Js => format!(
                "{hash} reserve the {} before the work: exactly one request runs it\n{token_line}{reserve}\nif (!reserved) {{\n{}\n}}\ntry {{\n{work_text}{} {hash} record the result\n}} catch (err) {{\n  {release}\n  throw err;\n}}",
                if hash_op { "field" } else { "member" },
                indent(&reply, "  "),
                indent(&store_stmt, "  ")
            ),
            Family::Python => format!(
                "{hash} reserve the {} before the work: exactly one request runs it\n{token_line}{reserve}\nif not reserved:\n{}\ntry:\n{work_text}{}  {hash} record the result\nexcept BaseException:\n    {release}\n    raise",
                if hash_op { "field" } else { "member" },
                indent(&reply, "    "),
                indent(&store_stmt, "    ")
            ),
        };
        return Suggestion {
            title: format!(
                "Reserve {field} in {title_key} with {} before the work",
                if hash_op { "HSETNX" } else { "SADD's result" }
            ),
            code,
        };
    }
    let cache_note = if backend == Backend::Cache {
        format!("{hash} `{client}` must expose SET NX (use the Redis client behind it if it does not)\n")
    } else {
        String::new()
    };
    let (reserve, release, title) = match backend {
        Backend::NodeRedis | Backend::Cache => (
            format!("const reserved = {aw}{client}.set({key}, token, {{ NX: true, EX: 300 }});"),
            format!(
                "{aw}{client}.eval(\"{LUA_RELEASE}\", {{ keys: [{key}], arguments: [token] }});"
            ),
            format!("Reserve {title_key} with SET NX before the work"),
        ),
        Backend::IoRedis => (
            format!("const reserved = {aw}{client}.set({key}, token, 'EX', 300, 'NX');"),
            format!("{aw}{client}.eval(\"{LUA_RELEASE}\", 1, {key}, token);"),
            format!("Reserve {title_key} with SET NX before the work"),
        ),
        Backend::RedisPy => (
            format!("reserved = {aw}{client}.set({key}, token, nx=True, ex=300)"),
            format!("{aw}{client}.eval(\"{LUA_RELEASE}\", 1, {key}, token)"),
            format!("Reserve {title_key} with SET NX before the work"),
        ),
        Backend::DjangoCache => (
            format!("reserved = {}{client}.{}({key}, token, timeout=300)", aw, if is_async { "aadd" } else { "add" }),
            format!(
                "get_redis_connection(\"default\").eval(\"{LUA_RELEASE}\", 1, {client}.make_key({key}), token)  {hash} django-redis: an atomic compare-and-delete"
            ),
            format!("Reserve {title_key} with `cache.add` before the work"),
        ),
        Backend::Memory => {
            let (mark, unmark) = match (family, store.method.as_str()) {
                (Family::Js, "add") => (format!("{client}.add({key});"), format!("{client}.delete({key});")),
                (Family::Js, _) => (
                    format!("{client}.set({key}, token);"),
                    format!("if ({client}.get({key}) === token) {client}.delete({key});"),
                ),
                (Family::Python, "add") => (format!("{client}.add({key})"), format!("{client}.discard({key})")),
                (Family::Python, _) => (
                    format!("{client}[{key}] = token"),
                    format!("if {client}.get({key}) is token:\n    del {client}[{key}]"),
                ),
            };
            let set_like = store.method == "add";
            let work_text = work.as_deref().map(|w| format!("{}\n", indent(w, if family == Family::Js { "  " } else { "    " }))).unwrap_or_default();
            if set_like {
                let code = match family {
                    Family::Js => format!(
                        "{hash} reserve synchronously, before the first await: a concurrent duplicate sees it\n{mark}\ntry {{\n{work_text}}} catch (err) {{\n  {unmark} {hash} a failed attempt can be retried\n  throw err;\n}}"
                    ),
                    Family::Python => format!(
                        "{hash} reserve synchronously, before the first await: a concurrent duplicate sees it\n{mark}\ntry:\n{work_text}except BaseException:\n    {unmark}  {hash} a failed or cancelled attempt can be retried\n    raise"
                    ),
                };
                return Suggestion {
                    title: format!("Add {title_key} to `{client}` before the first await"),
                    code,
                };
            }
            let code = match family {
                Family::Js => format!(
                    "{hash} reserve synchronously, before the first await: a concurrent duplicate sees it\nconst token = Symbol('in progress');\n{mark}\ntry {{\n{}{}\n}} catch (err) {{\n  {unmark} {hash} only this request's reservation\n  throw err;\n}}",
                    work.as_deref().map(|w| format!("{}\n", indent(w, "  "))).unwrap_or_default(),
                    indent(&store_stmt, "  ")
                ),
                Family::Python => format!(
                    "{hash} reserve synchronously, before the first await: a concurrent duplicate sees it\ntoken = object()\n{mark}\ntry:\n{}{}\nexcept BaseException:\n{}  {hash} only this request's reservation\n    raise",
                    work.as_deref().map(|w| format!("{}\n", indent(w, "    "))).unwrap_or_default(),
                    indent(&store_stmt, "    "),
                    indent(&unmark, "    ")
                ),
            };
            return Suggestion {
                title: format!("Reserve {title_key} in `{client}` before the first await"),
                code,
            };
        }
    };
    let code = match family {
        Family::Js => format!(
            "{cache_note}{hash} reserve the key before the work: exactly one request runs it\nconst token = crypto.randomUUID();\n{reserve}\nif (!reserved) {{\n{}\n}}\ntry {{\n{}{} {hash} overwrite the reservation with the result\n}} catch (err) {{\n  {hash} release only our own reservation (compare-and-delete)\n  {release}\n  throw err;\n}}",
            indent(&reply, "  "),
            work.as_deref().map(|w| format!("{}\n", indent(w, "  "))).unwrap_or_default(),
            indent(&store_stmt, "  ")
        ),
        Family::Python => format!(
            "{cache_note}{hash} reserve the key before the work: exactly one request runs it\ntoken = uuid.uuid4().hex\n{reserve}\nif not reserved:\n{}\ntry:\n{}{}  {hash} overwrite the reservation with the result\nexcept BaseException:\n    {hash} release only our own reservation (compare-and-delete)\n    {release}\n    raise",
            indent(&reply, "    "),
            work.as_deref().map(|w| format!("{}\n", indent(w, "    "))).unwrap_or_default(),
            indent(&store_stmt, "    ")
        ),
    };
    Suggestion { title, code }
}
