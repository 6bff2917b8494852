//! Cache and in-memory store operations: which calls read a key (`get`,
//! `exists`, `has`, `key in d`), store it (`set`, `d[k] = v`, `s.add(k)`),
//! reserve it atomically (`SET NX`, `SETNX`, `cache.add`) or run a script,
//! on which client, and whether a store is an idempotency/dedup store.
//! RA005 pairs these; RA004 uses the dedup evidence to grade a check-then-act.

use rustc_hash::FxHashSet as HashSet;
use std::sync::OnceLock;

use serde::Deserialize;

use super::awaits::{has_token, tokens, Pos, RootKind, Scope};
use crate::model::{
    Arg, CtxId, Expr, ExprId, Family, FileModel, FuncId, Function, PropKey, Span, StmtKind,
};

const CATALOG_TOML: &str = include_str!("../../rules/catalog/cache.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheCatalog {
    pub clients: Clients,
    pub ops: Ops,
    pub dedup: Dedup,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clients {
    pub words: Vec<String>,
    pub constructor_words: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    pub checks: Vec<String>,
    pub stores: Vec<String>,
    pub reserves: Vec<String>,
    pub scripts: Vec<String>,
    pub nx_markers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dedup {
    pub strong_words: Vec<String>,
    pub id_words: Vec<String>,
    pub id_tokens: Vec<String>,
    pub marker_values: Vec<String>,
}

pub fn catalog() -> &'static CacheCatalog {
    static CATALOG: OnceLock<CacheCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        toml::from_str(CATALOG_TOML).expect("rules/catalog/cache.toml is valid (checked by tests)")
    })
}

fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|x| x == name)
}

/// Which API the store speaks; decides the rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// node-redis (`{ NX: true }` options objects).
    NodeRedis,
    /// ioredis (`'EX', 300, 'NX'` argument lists).
    IoRedis,
    /// redis-py, sync or asyncio (`nx=True`).
    RedisPy,
    /// Django's cache framework (`cache.add`).
    DjangoCache,
    /// Another cache object (`cacheManager`, `cacheService`, Keyv).
    Cache,
    /// A Map, Set, dict or set held in shared memory.
    Memory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Check,
    Store,
    Reserve,
    Script,
    Clear,
}

#[derive(Clone, Debug)]
pub struct CacheOp {
    pub func: FuncId,
    /// The call, the `k in d` test, or the `d[k] = v` assignment.
    pub expr: ExprId,
    pub kind: OpKind,
    pub backend: Backend,
    /// The receiver's text without whitespace (`this.redis`, `self._seen`).
    pub receiver: String,
    pub method: String,
    pub key: Option<ExprId>,
    /// The key's text; for hashes and sets the field or member is appended.
    pub key_text: String,
    pub value: Option<ExprId>,
    pub span: Span,
    pub ctx: CtxId,
    pub stmt_span: Span,
}

impl CacheOp {
    pub fn pos(&self) -> Pos {
        match self.kind {
            OpKind::Check => Pos::read(self.span),
            _ => Pos::write(self.span),
        }
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

/// Every cache and shared-store operation in one function (not its nested
/// functions). Computed once per function: the rule asks for each function's
/// ops again from every enclosing function.
pub fn ops_of(file: &FileModel, id: FuncId, src: &str) -> std::rc::Rc<Vec<CacheOp>> {
    struct PerFunction(std::cell::RefCell<Vec<Option<std::rc::Rc<Vec<CacheOp>>>>>);
    let cache = file.memo.get(0, || {
        PerFunction(std::cell::RefCell::new(vec![None; file.functions.len()]))
    });
    if let Some(ops) = &cache.0.borrow()[id as usize] {
        return ops.clone();
    }
    let ops = std::rc::Rc::new(collect_ops(file, id, src));
    cache.0.borrow_mut()[id as usize] = Some(ops.clone());
    ops
}

fn collect_ops(file: &FileModel, id: FuncId, src: &str) -> Vec<CacheOp> {
    let f = &file.functions[id as usize];
    let cat = catalog();
    let text = |e: ExprId| src.get(f.span(e).range()).unwrap_or("");
    // Cheap exit: no method this rule knows and no `in` / subscript store.
    let any_known = f.exprs.iter().any(|e| match e {
        Expr::Call { callee, .. } => f.callee_name(*callee).is_some_and(|m| {
            has(&cat.ops.checks, m)
                || has(&cat.ops.stores, m)
                || has(&cat.ops.reserves, m)
                || has(&cat.ops.scripts, m)
                || matches!(
                    m,
                    "includes"
                        | "push"
                        | "delete"
                        | "del"
                        | "unlink"
                        | "discard"
                        | "remove"
                        | "pop"
                        | "setdefault"
                )
        }),
        Expr::Binary { op, .. } => matches!(&**op, "in" | "not in"),
        Expr::Assign { target, .. } => matches!(f.expr(*target), Expr::Index { .. }),
        _ => false,
    });
    if !any_known {
        return Vec::new();
    }
    let scope = Scope::new(file, id, src);
    let collections = &super::awaits::collection_names(file).0;
    let stmt_of = stmt_index(f);
    let mut out = Vec::new();
    for (i, e) in f.exprs.iter().enumerate() {
        let i = i as ExprId;
        let Some((stmt_span, ctx)) = stmt_of[i as usize] else {
            continue;
        };
        let push = |out: &mut Vec<CacheOp>,
                    kind,
                    backend,
                    receiver: ExprId,
                    method: &str,
                    key: Option<ExprId>,
                    key_text: String,
                    value| {
            out.push(CacheOp {
                func: id,
                expr: i,
                kind,
                backend,
                receiver: squash(text(receiver)),
                method: method.to_string(),
                key,
                key_text,
                value,
                span: f.span(i),
                ctx,
                stmt_span,
            })
        };
        match e {
            Expr::Call { callee, args } => {
                let Expr::Member { object, property } = f.expr(*callee) else {
                    continue;
                };
                let (receiver, method) = (*object, &**property);
                // A method neither a client nor a memory store knows: skip
                // before resolving the receiver.
                let client_method = has(&cat.ops.scripts, method)
                    || has(&cat.ops.reserves, method)
                    || has(&cat.ops.stores, method)
                    || has(&cat.ops.checks, method)
                    || matches!(
                        method,
                        "del" | "delete" | "unlink" | "adelete" | "hdel" | "srem"
                    );
                let memory_method = matches!(
                    method,
                    "has"
                        | "get"
                        | "includes"
                        | "has_key"
                        | "__contains__"
                        | "set"
                        | "add"
                        | "push"
                        | "append"
                        | "setdefault"
                        | "delete"
                        | "remove"
                        | "discard"
                        | "pop"
                );
                if !client_method && !memory_method {
                    continue;
                }
                let arg = |n: usize| args.get(n).map(|a| a.value);
                let arg_text = |n: usize| arg(n).map(|a| squash(text(a))).unwrap_or_default();
                if let Some(backend) = client_backend(file, id, src, &scope, receiver) {
                    let two_part = matches!(
                        method,
                        "hget"
                            | "hexists"
                            | "sismember"
                            | "hset"
                            | "sadd"
                            | "hsetnx"
                            | "hGet"
                            | "hExists"
                            | "sIsMember"
                            | "hSet"
                            | "sAdd"
                            | "hSetNX"
                    );
                    let key_text = if two_part {
                        format!("{}|{}", arg_text(0), arg_text(1))
                    } else {
                        arg_text(0)
                    };
                    let value = match method {
                        "setex" | "psetex" | "setEx" | "pSetEx" => arg(2),
                        "sadd" | "sAdd" => arg(1),
                        "hset" | "hSet" | "hsetnx" | "hSetNX" => arg(2),
                        _ => arg(1),
                    };
                    let kind = if has(&cat.ops.scripts, method) {
                        OpKind::Script
                    } else if has(&cat.ops.reserves, method) {
                        OpKind::Reserve
                    } else if has(&cat.ops.stores, method) {
                        if nx_option(f, args) {
                            OpKind::Reserve
                        } else {
                            OpKind::Store
                        }
                    } else if has(&cat.ops.checks, method) {
                        OpKind::Check
                    } else if matches!(
                        method,
                        "del" | "delete" | "unlink" | "adelete" | "hdel" | "srem"
                    ) {
                        OpKind::Clear
                    } else {
                        continue;
                    };
                    push(
                        &mut out,
                        kind,
                        backend,
                        receiver,
                        method,
                        arg(0),
                        key_text,
                        value,
                    );
                } else if shared_store(f, &scope, collections, receiver) {
                    let kind = match method {
                        "has" | "get" | "includes" | "has_key" | "__contains__" => OpKind::Check,
                        "set" | "add" | "push" | "append" => OpKind::Store,
                        "setdefault" => OpKind::Reserve,
                        "delete" | "remove" | "discard" | "pop" => OpKind::Clear,
                        _ => continue,
                    };
                    let value = match method {
                        "set" => arg(1),
                        _ => arg(0),
                    };
                    push(
                        &mut out,
                        kind,
                        Backend::Memory,
                        receiver,
                        method,
                        arg(0),
                        arg_text(0),
                        value,
                    );
                }
            }
            // `key in self._processed`
            Expr::Binary { op, left, right }
                if matches!(&**op, "in" | "not in")
                    && shared_store(f, &scope, collections, *right) =>
            {
                push(
                    &mut out,
                    OpKind::Check,
                    Backend::Memory,
                    *right,
                    op,
                    Some(*left),
                    squash(text(*left)),
                    None,
                );
            }
            // `self._responses[key] = response`
            Expr::Assign {
                target, value, op, ..
            } if &**op == "=" => {
                if let Expr::Index { object, index } = f.expr(*target) {
                    if shared_store(f, &scope, collections, *object) {
                        push(
                            &mut out,
                            OpKind::Store,
                            Backend::Memory,
                            *object,
                            "[]=",
                            Some(*index),
                            squash(text(*index)),
                            Some(*value),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The statement span and context of every expression.
/// The first statement holding each expression, indexed by expression id.
fn stmt_index(f: &Function) -> Vec<Option<(Span, CtxId)>> {
    let mut out = vec![None; f.exprs.len()];
    for s in &f.stmts {
        let Some(root) = f.stmt_expr(s) else { continue };
        for d in f.descendants(root) {
            let slot = &mut out[d as usize];
            if slot.is_none() {
                *slot = Some((s.span, s.ctx));
            }
        }
    }
    out
}

/// A receiver that is a Map/Set/dict/set held in shared memory (`this.x`,
/// `self.x`, a module or captured variable the file fills with a
/// collection).
fn shared_store(
    f: &Function,
    scope: &Scope,
    collections: &HashSet<crate::model::Name>,
    receiver: ExprId,
) -> bool {
    let name: String = match f.expr(receiver) {
        Expr::Member { object, property } if matches!(f.expr(*object), Expr::This) => {
            format!("this.{property}")
        }
        Expr::Ident(n)
            if matches!(
                scope.resolve(n),
                Some(RootKind::Module | RootKind::Captured)
            ) =>
        {
            n.to_string()
        }
        _ => return false,
    };
    collections.contains(name.as_str())
}

/// Whether a receiver is a redis or cache client, and which API it speaks.
fn client_backend(
    file: &FileModel,
    id: FuncId,
    src: &str,
    scope: &Scope,
    receiver: ExprId,
) -> Option<Backend> {
    let f = &file.functions[id as usize];
    let cat = &catalog().clients;
    let path = f.path(receiver);
    if path.contains(&"?") && !matches!(f.expr(receiver), Expr::Member { .. } | Expr::Ident(_)) {
        return None;
    }
    let names: Vec<&str> = path
        .iter()
        .copied()
        .filter(|p| *p != "this" && *p != "()" && *p != "?")
        .collect();
    let last = names.last().copied().unwrap_or("");
    // A local or parameter is a client only if its name says so; `client`
    // alone is one if it was built by a redis/cache constructor.
    let named = names.iter().any(|n| has_token(n, &cat.words))
        || (names.len() == 1 && typed_as_client(file, id, src, last));
    let constructed = !named && !last.is_empty() && built_by_client_ctor(file, src, last);
    if !named && !constructed {
        return None;
    }
    let _ = scope;
    let src_has = |word: &'static str| {
        // Searched once per file and word: per receiver it would be quadratic.
        struct Mentions(bool);
        let key = word.as_ptr() as usize as u32;
        file.memo.get(key, || Mentions(src.contains(word))).0
    };
    let is_redis = names.iter().any(|n| {
        tokens(n).iter().any(|t| {
            matches!(
                t.as_str(),
                "redis" | "ioredis" | "aioredis" | "valkey" | "upstash" | "rds"
            )
        })
    }) || constructed && src_has("edis");
    Some(match file.language.family() {
        Family::Python => {
            if !is_redis
                && src_has("django.core.cache")
                && matches!(last, "cache" | "caches" | "default_cache")
            {
                Backend::DjangoCache
            } else if is_redis || src_has("redis") {
                Backend::RedisPy
            } else {
                Backend::DjangoCache
            }
        }
        Family::Js => {
            let typed_redis = names.len() == 1
                && param_decl(file, id, src, last).is_some_and(|d| d.contains("edis"));
            if !is_redis && !typed_redis {
                Backend::Cache
            } else if src_has("ioredis") || src_has("new Redis(") || src_has("new IORedis(") {
                Backend::IoRedis
            } else {
                Backend::NodeRedis
            }
        }
    })
}

/// A parameter (of the function or one around it) declared with a client
/// type: `client: Redis`, `cache: Cache`.
fn typed_as_client(file: &FileModel, id: FuncId, src: &str, name: &str) -> bool {
    let cat = &catalog().clients;
    param_decl(file, id, src, name).is_some_and(|decl| {
        decl.split_once(':')
            .is_some_and(|(_, ty)| has_token(ty, &cat.words))
    })
}

/// The declaration text of a parameter of the function or one around it.
fn param_decl<'s>(file: &FileModel, id: FuncId, src: &'s str, name: &str) -> Option<&'s str> {
    let mut cur = Some(id);
    while let Some(fid) = cur {
        let g = &file.functions[fid as usize];
        if let Some(p) = g.params.iter().find(|p| &*p.name == name) {
            return src.get(p.span.range());
        }
        cur = g.parent;
    }
    None
}

/// Whether some assignment in the file binds `name` (or `this.name`) to a
/// redis/cache constructor call.
fn built_by_client_ctor(file: &FileModel, src: &str, name: &str) -> bool {
    struct ClientNames(HashSet<String>);
    file.memo
        .get(0, || ClientNames(client_ctor_names(file, src)))
        .0
        .contains(name)
}

/// Every name (or `this.name`) the file binds to a redis/cache constructor
/// call: computed once per file.
fn client_ctor_names(file: &FileModel, src: &str) -> HashSet<String> {
    let cat = &catalog().clients;
    let mut names = HashSet::default();
    for g in &file.functions {
        for e in &g.exprs {
            let Expr::Assign { target, value, .. } = e else {
                continue;
            };
            let bound = match g.expr(*target) {
                Expr::Ident(n) => n.to_string(),
                Expr::Member { object, property } if matches!(g.expr(*object), Expr::This) => {
                    property.to_string()
                }
                _ => continue,
            };
            let v = g.unwrap_await(*value);
            let callee = match g.expr(v) {
                Expr::Call { callee, .. } | Expr::New { callee, .. } => *callee,
                _ => continue,
            };
            let text = src.get(g.span(callee).range()).unwrap_or("");
            if cat
                .constructor_words
                .iter()
                .any(|w| text.contains(w.as_str()))
            {
                names.insert(bound);
            }
        }
    }
    names
}

/// `{ NX: true }`, `'NX'`, `nx=True`, `{ condition: 'NX' }`.
fn nx_option(f: &Function, args: &[Arg]) -> bool {
    let cat = &catalog().ops;
    for a in args.iter().skip(1) {
        if a.name.as_deref().is_some_and(|n| has(&cat.nx_markers, n)) {
            return !matches!(f.expr(a.value), Expr::Bool(false));
        }
        for d in f.descendants(a.value) {
            match f.expr(d) {
                Expr::Str(s) if has(&cat.nx_markers, s) => return true,
                Expr::Object(props)
                    if props.iter().any(|p| {
                        matches!(&p.key, PropKey::Name(k) if has(&cat.nx_markers, k))
                            && !matches!(f.expr(p.value), Expr::Bool(false))
                    }) =>
                {
                    return true;
                }
                _ => {}
            }
        }
    }
    false
}

/// How strongly a check/store pair looks like an idempotency or dedup store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// Only the stored value says so (a marker, a response).
    Value,
    /// The key or the store names a request, event, message or idempotency key.
    Key,
}

/// The dedup evidence for a store (and the check it follows). A read-through
/// cache of data (`user:${id}` holding the user, a query's result) has none.
pub fn dedup_evidence(
    file: &FileModel,
    src: &str,
    check: Option<&CacheOp>,
    store: &CacheOp,
) -> Option<Evidence> {
    let cat = &catalog().dedup;
    let mut names: Vec<Vec<String>> = Vec::new();
    for op in check.into_iter().chain(std::iter::once(store)) {
        names.push(tokens(&op.receiver));
        names.push(tokens(&op.key_text));
        if let Some(k) = op.key {
            names.push(tokens(&definition_text(file, src, op.func, k)));
        }
    }
    let strong = names.iter().flatten().any(|w| has(&cat.strong_words, w));
    // `event.id`, `messageId`, `request_id`: the word, then an id.
    let per_item = names.iter().any(|toks| {
        toks.windows(2)
            .any(|w| has(&cat.id_words, &w[0]) && has(&cat.id_tokens, &w[1]))
    });
    if strong || per_item {
        return Some(Evidence::Key);
    }
    let f = &file.functions[store.func as usize];
    // `seen.add(id)`: membership itself is the marker.
    if store.backend == Backend::Memory && store.method == "add" {
        return Some(Evidence::Value);
    }
    let value = store.value?;
    let literal = match f.expr(value) {
        Expr::Str(s) => has(&cat.marker_values, &s.to_lowercase()),
        Expr::Num(n) => &**n == "1",
        Expr::Bool(b) => *b,
        _ => false,
    };
    literal.then_some(Evidence::Value)
}

/// The text an identifier key was built from (`const key = \`idem:${id}\``),
/// found in its function or an enclosing one; the key's own text otherwise.
fn definition_text(file: &FileModel, src: &str, func: FuncId, key: ExprId) -> String {
    let f = &file.functions[func as usize];
    let Expr::Ident(name) = f.expr(key) else {
        return String::new();
    };
    let mut cur = Some(func);
    while let Some(id) = cur {
        let g = &file.functions[id as usize];
        for s in &g.stmts {
            let StmtKind::Expr(root) = s.kind else {
                continue;
            };
            if let Expr::Assign { target, value, .. } = g.expr(root) {
                if matches!(g.expr(*target), Expr::Ident(n) if n == name) {
                    return src.get(g.span(*value).range()).unwrap_or("").to_string();
                }
            }
        }
        cur = g.parent;
    }
    String::new()
}

/// The functions nested (at any depth) in `id`, with `id` first.
pub fn subtree(file: &FileModel, id: FuncId) -> Vec<FuncId> {
    // Each function's direct children, built once per file: scanning every
    // later function for each function would be quadratic.
    struct Children(Vec<Vec<FuncId>>);
    let children = file.memo.get(0, || {
        let mut kids = vec![Vec::new(); file.functions.len()];
        for (i, g) in file.functions.iter().enumerate() {
            if let Some(p) = g.parent {
                kids[p as usize].push(i as FuncId);
            }
        }
        Children(kids)
    });
    let mut out = vec![id];
    let mut next = 0;
    while next < out.len() {
        out.extend(children.0[out[next] as usize].iter().copied());
        next += 1;
    }
    out
}

/// The nearest function that contains both `a` and `b`.
pub fn common_ancestor(file: &FileModel, a: FuncId, b: FuncId) -> FuncId {
    let chain = |mut x: FuncId| {
        let mut v = vec![x];
        while let Some(p) = file.functions[x as usize].parent {
            v.push(p);
            x = p;
        }
        v
    };
    let ca = chain(a);
    let cb: HashSet<FuncId> = chain(b).into_iter().collect();
    ca.into_iter().find(|x| cb.contains(x)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses() {
        assert!(!catalog().ops.checks.is_empty());
    }
}
