//! Await points and shared state in one function: where it yields, which
//! shared places it reads, checks and writes, in evaluation order, and which
//! earlier reads (and awaited values) each write's value depends on, through
//! locals. RA004 and RA005 are built on these facts.
//!
//! Places. Shared state is in memory: `this.x` / `self.x` (nested paths
//! included), module-level variables, variables captured from an enclosing
//! function, properties of parameters, and records loaded from a database in
//! this function. Locals, and parameters that hold one request's own objects
//! (`ctx`, `req`, `res`, `request`), are not shared.
//!
//! Order. Statements are visited in source order. Inside a statement an event
//! sits at the end of its expression (a member read has its value once it is
//! evaluated, an `await` resumes when its operand settles, an assignment
//! stores last), ties broken read < await < write. So
//! `this.total = this.total + await f()` is read, await, write, and
//! `x += await f()` reads `x` before it yields, as both JavaScript and Python
//! evaluate the left-hand side first.
//!
//! The stand-ins for the guard and external-call analyses other branches
//! build (`holds_guard_across`, `is_external_call`) are at the end of this
//! file, kept small so they can be swapped for the shared modules.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::model::{CtxId, CtxKind, Expr, ExprId, FileModel, FuncId, Function, Span, StmtKind};

const CATALOG_TOML: &str = include_str!("../../rules/catalog/async_state.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncCatalog {
    pub places: PlacesCat,
    pub records: RecordsCat,
    pub collections: CollectionsCat,
    pub lazy: LazyCat,
    pub guards: GuardsCat,
    pub external: ExternalCat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacesCat {
    pub per_request: Vec<String>,
    pub per_call: Vec<String>,
    pub ref_fields: Vec<String>,
    pub sequential_callees: Vec<String>,
    pub builtins: Vec<String>,
    pub status_fields: Vec<String>,
    pub status_suffixes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsCat {
    pub load_methods: Vec<String>,
    pub load_prefixes: Vec<String>,
    pub get_receiver_words: Vec<String>,
    pub lock_markers: Vec<String>,
    pub persist_methods: Vec<String>,
    pub update_methods: Vec<String>,
    pub filter_methods: Vec<String>,
    pub refresh_methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionsCat {
    pub check_methods: Vec<String>,
    pub value_methods: Vec<String>,
    pub collection_constructors: Vec<String>,
    pub add_methods: Vec<String>,
    pub clear_methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LazyCat {
    pub resource_words: Vec<String>,
    pub data_constructors: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardsCat {
    pub lock_words: Vec<String>,
    pub exclusive_methods: Vec<String>,
    pub queue_words: Vec<String>,
    pub queue_methods: Vec<String>,
    pub acquire_methods: Vec<String>,
    pub release_methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalCat {
    pub payment_words: Vec<String>,
    pub http_roots: Vec<String>,
    pub http_words: Vec<String>,
    pub http_methods: Vec<String>,
    pub email_words: Vec<String>,
    pub email_methods: Vec<String>,
    pub queue_words: Vec<String>,
    pub queue_methods: Vec<String>,
}

pub fn catalog() -> &'static AsyncCatalog {
    static CATALOG: OnceLock<AsyncCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        toml::from_str(CATALOG_TOML)
            .expect("rules/catalog/async_state.toml is valid (checked by tests)")
    })
}

fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|x| x == name)
}

pub use crate::catalog::name_tokens as tokens;

pub fn has_token(name: &str, words: &[String]) -> bool {
    tokens(name)
        .iter()
        .any(|t| words.iter().any(|w| w.eq_ignore_ascii_case(t)))
}

/// Where an event happens: the byte offset where it completes, ties broken
/// read < await < write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub offset: u32,
    pub order: u8,
}

impl Pos {
    pub fn read(span: Span) -> Pos {
        Pos {
            offset: span.end,
            order: 0,
        }
    }
    pub fn yields(offset: u32) -> Pos {
        Pos { offset, order: 1 }
    }
    pub fn write(span: Span) -> Pos {
        Pos {
            offset: span.end,
            order: 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKind {
    /// `this` / `self` / `cls`.
    This,
    Module,
    /// A local or parameter of an enclosing function, shared by every call of
    /// the closure.
    Captured,
    /// A property of an object passed in.
    Param,
    /// A record loaded from the database in this function.
    Record,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub root: crate::model::Name,
    pub kind: RootKind,
    /// Property names; `[]` for an index.
    pub path: Vec<crate::model::Name>,
}

impl Place {
    pub fn key(&self) -> String {
        let mut s = self.root.to_string();
        for p in &self.path {
            s.push('.');
            s.push_str(p);
        }
        s
    }

    /// `self` is `other` or a part of it (`this.a.b` extends `this.a`).
    pub fn extends(&self, other: &Place) -> bool {
        self.root == other.root
            && self.path.len() >= other.path.len()
            && self.path[..other.path.len()] == other.path[..]
    }

    pub fn last(&self) -> &str {
        self.path.last().map_or(&*self.root, |p| &**p)
    }

    pub fn is_status(&self) -> bool {
        let cat = &catalog().places;
        let last = self.last();
        has(&cat.status_fields, last)
            || cat
                .status_suffixes
                .iter()
                .any(|s| last.ends_with(s.as_str()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// `p = v`.
    Assign,
    /// `p += v`, `p++`: reads `p` first.
    Compound,
    /// `p.add(k)`, `p.set(k, v)`, `p[k] = v`, `p.push(v)`.
    Add,
    /// `p.delete(k)`, `del p[k]`, `p = null`: a release, not an act.
    Clear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write(WriteKind),
}

/// A value's origin, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Src {
    /// An access (a read of a place) by index into `Facts::accesses`.
    Read(u32),
    /// The same, passed through one call's arguments (`merge(prev, next)`).
    /// A second call drops it: a value computed by a chain of calls that
    /// once took the old value is not that value.
    Derived(u32),
    /// An awaited value: the `await` expression.
    Await(ExprId),
    /// A call a rule asked to follow (a cache `get`).
    Call(ExprId),
}

impl Src {
    /// The read access, directly or through one call.
    pub fn read(self) -> Option<u32> {
        match self {
            Src::Read(r) | Src::Derived(r) => Some(r),
            _ => None,
        }
    }
}

/// What a call's result takes from its arguments: one more hop.
fn through_call(src: &[Src]) -> Vec<Src> {
    src.iter()
        .filter_map(|s| match *s {
            Src::Read(r) => Some(Src::Derived(r)),
            Src::Derived(_) => None,
            other => Some(other),
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct Access {
    pub place: usize,
    pub kind: AccessKind,
    pub pos: Pos,
    /// The place expression for a read; the assignment, call or `del` for a
    /// write.
    pub expr: ExprId,
    pub stmt: usize,
    pub ctx: CtxId,
    /// The entry of a collection: `k` in `p.has(k)`, `p[k] = v`, `k in p`.
    pub key: Option<ExprId>,
    /// The value written.
    pub value: Option<ExprId>,
    /// What the written value is made from.
    pub deps: Vec<Src>,
    /// For `p ??= v` / `p ||= v`: the read of `p` that decides the write.
    pub guard: Option<u32>,
}

impl Access {
    pub fn is_write(&self) -> bool {
        matches!(self.kind, AccessKind::Write(_))
    }
    pub fn is_clear(&self) -> bool {
        self.kind == AccessKind::Write(WriteKind::Clear)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalKind {
    Payment,
    Http,
    Email,
    Queue,
}

impl ExternalKind {
    pub fn label(self) -> &'static str {
        match self {
            ExternalKind::Payment => "payment",
            ExternalKind::Http => "HTTP call",
            ExternalKind::Email => "email",
            ExternalKind::Queue => "queue publish",
        }
    }
}

/// An event's place in the function: when, in which context, where.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    pub pos: Pos,
    pub ctx: CtxId,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct AwaitPoint {
    pub pos: Pos,
    pub span: Span,
    /// The `await` expression; `None` for `for await` / `async for` /
    /// `async with`.
    pub expr: Option<ExprId>,
    pub stmt: usize,
}

/// An `if`/`while`/`elif`/`switch` condition (not a `for ... of` source).
#[derive(Clone, Debug)]
pub struct Test {
    pub stmt: usize,
    pub expr: ExprId,
    /// What the condition is made from (places read, awaited values, followed
    /// calls), directly or through locals.
    pub srcs: Vec<Src>,
}

/// A local assigned from a database load.
#[derive(Clone, Debug)]
pub struct Record {
    pub load: ExprId,
    /// The load call's callee text (`prisma.order.findUnique`).
    pub callee: String,
    /// The load takes a row lock (`select_for_update`, `FOR UPDATE`).
    pub locked: bool,
}

/// Which names mean what inside one function.
pub struct Scope {
    pub family: crate::model::Family,
    locals: HashSet<crate::model::Name>,
    params: HashSet<crate::model::Name>,
    captured: HashSet<crate::model::Name>,
    /// Whether concurrent calls of this closure can overlap (so what it
    /// captures is shared between them).
    captured_shared: bool,
    module: HashSet<crate::model::Name>,
    pub records: HashMap<crate::model::Name, Record>,
}

impl Scope {
    pub fn new(file: &FileModel, id: FuncId, src: &str) -> Scope {
        let f = &file.functions[id as usize];
        let family = file.language.family();
        let declared_outer = python_outer_names(f, src, family);
        let mut locals = function_locals(f, family);
        for n in &declared_outer {
            locals.remove(n.as_str());
        }
        let params: HashSet<crate::model::Name> = f.params.iter().map(|p| p.name.clone()).collect();
        let mut captured = HashSet::default();
        let mut parent = f.parent;
        while let Some(p) = parent {
            if p == 0 {
                break;
            }
            let g = &file.functions[p as usize];
            captured.extend(function_locals(g, family));
            captured.extend(g.params.iter().map(|p| p.name.clone()));
            parent = g.parent;
        }
        let module = file.module_vars.iter().cloned().collect();
        let records = records_of(f, src, &locals);
        let captured_shared = !captured.is_empty() && closure_runs_concurrently(file, id);
        Scope {
            family,
            locals,
            params,
            captured,
            captured_shared,
            module,
            records,
        }
    }

    /// What kind of shared root `name` is, if any.
    pub fn resolve(&self, name: &str) -> Option<RootKind> {
        let cat = &catalog().places;
        if self.records.contains_key(name) {
            return Some(RootKind::Record);
        }
        if self.params.contains(name) {
            return (!has(&cat.per_request, name) && !has(&cat.per_call, name))
                .then_some(RootKind::Param);
        }
        if self.locals.contains(name) {
            return None;
        }
        if has(&cat.builtins, name) || has(&cat.per_request, name) {
            return None;
        }
        if self.captured.contains(name) {
            return (self.captured_shared && !has(&cat.per_call, name))
                .then_some(RootKind::Captured);
        }
        if self.module.contains(name) {
            return Some(RootKind::Module);
        }
        None
    }

    pub fn is_local(&self, name: &str) -> bool {
        self.locals.contains(name) || self.params.contains(name)
    }
}

/// Whether the calls of a closure can overlap: it is handed to a caller
/// that may run it many times at once (`items.map(async ...)`, `app.use`,
/// `new Worker(name, async (job) => ...)`) or returned from a factory (a
/// middleware). A closure kept in a local, an object literal (`read()` of a
/// stream), or handed to `reduce` / `then` / a React hook runs its calls one
/// at a time.
fn closure_runs_concurrently(file: &FileModel, id: FuncId) -> bool {
    let cat = &catalog().places;
    let g = &file.functions[id as usize];
    let Some(parent) = g.parent else { return false };
    let p = &file.functions[parent as usize];
    let Some(site) = p
        .exprs
        .iter()
        .position(|e| matches!(e, Expr::Function(fid) if *fid == id))
    else {
        return false;
    };
    let site = site as ExprId;
    let parents = p.parents();
    match parents[site as usize].map(|x| (x, p.expr(x))) {
        Some((_, Expr::Call { callee, args } | Expr::New { callee, args })) => {
            if !args.iter().any(|a| a.value == site) {
                return false;
            }
            let name = p.callee_name(*callee).unwrap_or("");
            !has(&cat.sequential_callees, name)
        }
        None => p
            .stmts
            .iter()
            .any(|s| matches!(s.kind, StmtKind::Return(Some(e)) if e == site)),
        _ => false,
    }
}

/// Names a function binds: JS declarations, Python assignment targets.
fn function_locals(f: &Function, family: crate::model::Family) -> HashSet<crate::model::Name> {
    let mut out = HashSet::default();
    for e in &f.exprs {
        let Expr::Assign { target, decl, .. } = e else {
            continue;
        };
        if family == crate::model::Family::Js && !decl {
            continue;
        }
        // Destructuring targets: every bare name in the pattern.
        let mut stack = vec![*target];
        while let Some(t) = stack.pop() {
            match f.expr(t) {
                Expr::Ident(n) => {
                    out.insert(n.clone());
                }
                Expr::Array(items) | Expr::Other(items) => stack.extend(items.iter().copied()),
                Expr::Object(props) => stack.extend(props.iter().map(|p| p.value)),
                Expr::Unary { arg, .. } => stack.push(*arg),
                _ => {}
            }
        }
    }
    out
}

/// Python `global x` / `nonlocal x` in this function (not lowered into the
/// model, so read from the source text of the function's own lines).
pub(crate) fn python_outer_names(
    f: &Function,
    src: &str,
    family: crate::model::Family,
) -> Vec<String> {
    if family != crate::model::Family::Python {
        return Vec::new();
    }
    let text = src.get(f.span.range()).unwrap_or("");
    // Most bodies declare neither: skip the line-by-line pass (it reads the
    // whole file for the module and again for every enclosing function).
    let declares = |w: &[u8]| memchr::memmem::find(text.as_bytes(), w).is_some();
    if !declares(b"global") && !declares(b"nonlocal") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        for kw in ["global ", "nonlocal "] {
            if let Some(rest) = line.strip_prefix(kw) {
                out.extend(rest.split(',').map(|n| n.trim().to_string()));
            }
        }
    }
    out
}

/// Locals assigned from a database load (`await repo.findOne(...)`,
/// `await session.get(Order, id)`, `await Order.objects.aget(...)`).
fn records_of(
    f: &Function,
    src: &str,
    locals: &HashSet<crate::model::Name>,
) -> HashMap<crate::model::Name, Record> {
    let cat = &catalog().records;
    let mut out = HashMap::default();
    for stmt in &f.stmts {
        let StmtKind::Expr(root) = stmt.kind else {
            continue;
        };
        let Expr::Assign { target, value, .. } = f.expr(root) else {
            continue;
        };
        let Expr::Ident(name) = f.expr(*target) else {
            continue;
        };
        if !locals.contains(name) {
            continue;
        }
        let Some(call) = load_call(f, *value) else {
            continue;
        };
        let text = src.get(f.span(*value).range()).unwrap_or("");
        let locked = cat.lock_markers.iter().any(|m| text.contains(m.as_str()));
        let Expr::Call { callee, .. } = f.expr(call) else {
            continue;
        };
        out.insert(
            name.clone(),
            Record {
                load: call,
                callee: f.callee_text(*callee),
                locked,
            },
        );
    }
    out
}

/// The database load call a value comes from, if it is one (through `await`,
/// and a result accessor such as `.scalar_one()` on an awaited execute).
pub fn load_call(f: &Function, value: ExprId) -> Option<ExprId> {
    let cat = &catalog().records;
    let mut cur = f.unwrap_await(value);
    // `(await session.execute(q)).scalar_one_or_none()`.
    for _ in 0..6 {
        let Expr::Call { callee, .. } = f.expr(cur) else {
            return None;
        };
        let Expr::Member { object, property } = f.expr(*callee) else {
            return None;
        };
        // Mongoose query helpers: `Order.findById(id).lean().exec()`.
        if matches!(&**property, "exec" | "lean" | "populate" | "orFail") {
            cur = *object;
            continue;
        }
        let is_load = has(&cat.load_methods, property)
            || cat
                .load_prefixes
                .iter()
                .any(|p| property.starts_with(p.as_str()))
            || (matches!(&**property, "get" | "aget")
                && f.path(*object)
                    .iter()
                    .any(|s| has_token(s, &cat.get_receiver_words)));
        if is_load {
            return Some(cur);
        }
        match f.expr(*object) {
            Expr::Await(inner) => cur = f.unwrap_await(*inner),
            _ => return None,
        }
    }
    None
}

/// Everything RA004/RA005 need to know about one function.
pub struct Facts<'a> {
    pub file: &'a FileModel,
    pub func: &'a Function,
    pub id: FuncId,
    pub src: &'a str,
    pub scope: Scope,
    pub places: Vec<Place>,
    pub accesses: Vec<Access>,
    pub awaits: Vec<AwaitPoint>,
    pub tests: Vec<Test>,
    /// Statement indices in source order.
    pub order: Vec<usize>,
    /// What each expression's value is made from.
    pub taint: Vec<Vec<Src>>,
    pub parents: Vec<Option<ExprId>>,
    /// Names the file assigns an in-memory collection (computed on demand).
    collections: std::cell::OnceCell<std::rc::Rc<CollectionNames>>,
}

/// At most this many origins are kept per value: enough for any real
/// dependence, and a bound on work for long concatenations.
const MAX_SRCS: usize = 24;

fn union_into(dst: &mut Vec<Src>, src: &[Src]) {
    for s in src {
        if dst.len() >= MAX_SRCS {
            return;
        }
        if !dst.contains(s) {
            dst.push(*s);
        }
    }
}

impl<'a> Facts<'a> {
    /// The id of `func` within `file`.
    pub fn func_id(file: &FileModel, func: &Function) -> FuncId {
        file.func_id(func).unwrap_or(0)
    }

    /// Builds the facts; `follow` marks calls whose results should be traced
    /// as `Src::Call` (RA005 traces cache reads into the conditions).
    pub fn build(
        file: &'a FileModel,
        id: FuncId,
        src: &'a str,
        follow: &dyn Fn(&Function, ExprId) -> bool,
    ) -> Facts<'a> {
        let func = &file.functions[id as usize];
        let scope = Scope::new(file, id, src);
        let mut order: Vec<usize> = (0..func.stmts.len()).collect();
        order.sort_by_key(|&i| func.stmts[i].span.start);
        let mut facts = Facts {
            file,
            func,
            id,
            src,
            scope,
            places: Vec::new(),
            accesses: Vec::new(),
            awaits: Vec::new(),
            tests: Vec::new(),
            order: order.clone(),
            taint: vec![Vec::new(); func.exprs.len()],
            parents: func.parents(),
            collections: std::cell::OnceCell::new(),
        };
        let mut env: HashMap<crate::model::Name, Vec<Src>> = HashMap::default();
        let mut aliases: HashMap<crate::model::Name, usize> = HashMap::default();
        for &si in &order {
            let stmt = &func.stmts[si];
            let Some(root) = func.stmt_expr(stmt) else {
                if matches!(stmt.kind, StmtKind::AwaitPoint) {
                    facts.awaits.push(AwaitPoint {
                        pos: Pos::yields(stmt.span.start),
                        span: stmt.span,
                        expr: None,
                        stmt: si,
                    });
                }
                continue;
            };
            let mut ids = func.descendants(root);
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                facts.visit(id, si, stmt.ctx, &mut env, &mut aliases, follow);
            }
            if let StmtKind::Test(e) = stmt.kind {
                if !facts.is_iteration_source(stmt.span) {
                    facts.tests.push(Test {
                        stmt: si,
                        expr: e,
                        srcs: facts.taint[e as usize].clone(),
                    });
                }
            }
        }
        facts.awaits.sort_by_key(|a| a.pos);
        facts
    }

    pub fn text(&self, span: Span) -> &'a str {
        self.src.get(span.range()).unwrap_or("")
    }

    pub fn expr_text(&self, id: ExprId) -> &'a str {
        self.text(self.func.span(id))
    }

    /// `for (const x of <expr>)` / `for x in <expr>:`: an iteration, not a check.
    fn is_iteration_source(&self, span: Span) -> bool {
        let before = self.src.get(..span.start as usize).unwrap_or("");
        let before = before.trim_end();
        (before.ends_with(" of") || before.ends_with(" in"))
            && before
                .rsplit(['\n', ';', '{', '}'])
                .next()
                .is_some_and(|l| {
                    l.trim_start().starts_with("for") || l.trim_start().starts_with("async for")
                })
    }

    fn intern(&mut self, place: Place) -> usize {
        match self.places.iter().position(|p| *p == place) {
            Some(i) => i,
            None => {
                self.places.push(place);
                self.places.len() - 1
            }
        }
    }

    /// The shared place an expression names, with the collection key of an
    /// outermost index (`this.cache[key]`).
    pub fn place_of(
        &self,
        id: ExprId,
        aliases: &HashMap<crate::model::Name, usize>,
    ) -> Option<(Place, Option<ExprId>)> {
        let f = self.func;
        let mut path: Vec<crate::model::Name> = Vec::new();
        let mut key = None;
        let mut cur = id;
        let mut depth = 0;
        loop {
            depth += 1;
            if depth > 64 {
                return None;
            }
            match f.expr(cur) {
                Expr::Member { object, property } => {
                    path.push(property.clone());
                    cur = *object;
                }
                // The outermost index is the entry of a collection:
                // `this.cache[key]` is `this.cache` at `key`.
                Expr::Index { object, index } => {
                    if depth == 1 {
                        key = Some(*index);
                    } else {
                        path.push("[]".into());
                    }
                    cur = *object;
                }
                Expr::This => {
                    path.reverse();
                    if path.is_empty() {
                        return None;
                    }
                    // `this.ctx`, `self.request`: the request's own objects.
                    if has(&catalog().places.per_request, &path[0]) {
                        return None;
                    }
                    return Some((
                        Place {
                            root: "this".into(),
                            kind: RootKind::This,
                            path,
                        },
                        key,
                    ));
                }
                Expr::Ident(name) => {
                    path.reverse();
                    if !path.is_empty() {
                        if let Some(&p) = aliases.get(name) {
                            let mut place = self.places[p].clone();
                            place.path.extend(path);
                            return Some((place, key));
                        }
                    }
                    let kind = self.scope.resolve(name)?;
                    if path.is_empty()
                        && matches!(kind, RootKind::Param | RootKind::Record | RootKind::This)
                    {
                        return None;
                    }
                    // `ref.current` of a UI component: its own mutable box.
                    if matches!(kind, RootKind::Param | RootKind::Captured)
                        && path
                            .first()
                            .is_some_and(|p| has(&catalog().places.ref_fields, p))
                    {
                        return None;
                    }
                    return Some((
                        Place {
                            root: name.clone(),
                            kind,
                            path,
                        },
                        key,
                    ));
                }
                _ => return None,
            }
        }
    }

    fn is_place_expr(&self, id: ExprId) -> bool {
        matches!(
            self.func.expr(id),
            Expr::Member { .. } | Expr::Index { .. } | Expr::Ident(_)
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn push_access(
        &mut self,
        place: Place,
        kind: AccessKind,
        pos: Pos,
        expr: ExprId,
        stmt: usize,
        ctx: CtxId,
        key: Option<ExprId>,
        value: Option<ExprId>,
        deps: Vec<Src>,
    ) -> u32 {
        let place = self.intern(place);
        self.accesses.push(Access {
            place,
            kind,
            pos,
            expr,
            stmt,
            ctx,
            key,
            value,
            deps,
            guard: None,
        });
        (self.accesses.len() - 1) as u32
    }

    fn visit(
        &mut self,
        id: ExprId,
        stmt: usize,
        ctx: CtxId,
        env: &mut HashMap<crate::model::Name, Vec<Src>>,
        aliases: &mut HashMap<crate::model::Name, usize>,
        follow: &dyn Fn(&Function, ExprId) -> bool,
    ) {
        let f = self.func;
        let cat = catalog();
        let span = f.span(id);
        let parent = self.parents[id as usize];
        let mut t: Vec<Src> = Vec::new();
        match f.expr(id) {
            Expr::Await(inner) => {
                self.awaits.push(AwaitPoint {
                    pos: Pos::yields(span.end),
                    span,
                    expr: Some(id),
                    stmt,
                });
                t.push(Src::Await(id));
                union_into(&mut t, &self.taint[*inner as usize].clone());
            }
            Expr::Assign {
                target, op, value, ..
            } => {
                let (target, op, value) = (*target, op.clone(), *value);
                // `p ??= v`, `p ||= v`, `p &&= v`: a check of `p` and a plain
                // store, not a read-modify-write.
                let logical = matches!(&*op, "??=" | "||=" | "&&=");
                let compound = &*op != "=" && !logical;
                union_into(&mut t, &self.taint[value as usize].clone());
                match f.expr(target) {
                    Expr::Ident(name)
                        if self.scope.is_local(name) || self.scope.resolve(name).is_none() =>
                    {
                        let name = name.clone();
                        if compound {
                            if let Some(prev) = env.get(&name) {
                                union_into(&mut t, &prev.clone());
                            }
                        }
                        env.insert(name.clone(), t.clone());
                        match self.place_of(f.unwrap_await(value), aliases) {
                            Some((p, None)) if !matches!(f.expr(value), Expr::Await(_)) => {
                                let p = self.intern(p);
                                aliases.insert(name, p);
                            }
                            _ => {
                                aliases.remove(&name);
                            }
                        }
                    }
                    Expr::Ident(_) | Expr::Member { .. } | Expr::Index { .. } => {
                        if let Some((place, key)) = self.place_of(target, aliases) {
                            let tspan = f.span(target);
                            let mut deps = t.clone();
                            let guard = logical.then(|| {
                                self.push_access(
                                    place.clone(),
                                    AccessKind::Read,
                                    Pos::read(tspan),
                                    target,
                                    stmt,
                                    ctx,
                                    key,
                                    None,
                                    Vec::new(),
                                )
                            });
                            if compound {
                                let r = self.push_access(
                                    place.clone(),
                                    AccessKind::Read,
                                    Pos::read(tspan),
                                    target,
                                    stmt,
                                    ctx,
                                    key,
                                    None,
                                    Vec::new(),
                                );
                                union_into(&mut deps, &[Src::Read(r)]);
                            }
                            let kind = if compound {
                                WriteKind::Compound
                            } else if key.is_some() {
                                if is_clearing(f, value) {
                                    WriteKind::Clear
                                } else {
                                    WriteKind::Add
                                }
                            } else if is_clearing(f, value) {
                                WriteKind::Clear
                            } else {
                                WriteKind::Assign
                            };
                            let w = self.push_access(
                                place,
                                AccessKind::Write(kind),
                                Pos::write(span),
                                id,
                                stmt,
                                ctx,
                                key,
                                Some(value),
                                deps,
                            );
                            self.accesses[w as usize].guard = guard;
                        }
                    }
                    // `a, b = x, y`: element by element.
                    Expr::Array(targets) if matches!(f.expr(value), Expr::Array(values) if values.len() == targets.len()) =>
                    {
                        let Expr::Array(values) = f.expr(value) else {
                            unreachable!()
                        };
                        for (t_el, v_el) in targets.clone().into_iter().zip(values.clone()) {
                            if let Expr::Ident(n) = f.expr(t_el) {
                                env.insert(n.clone(), self.taint[v_el as usize].clone());
                                aliases.remove(n);
                            }
                        }
                    }
                    _ => {
                        // Destructuring: every bare name gets the whole value.
                        let mut stack = vec![target];
                        while let Some(x) = stack.pop() {
                            match f.expr(x) {
                                Expr::Ident(n) => {
                                    env.insert(n.clone(), t.clone());
                                    aliases.remove(n);
                                }
                                Expr::Array(items) | Expr::Other(items) => {
                                    stack.extend(items.iter().copied())
                                }
                                Expr::Object(props) => stack.extend(props.iter().map(|p| p.value)),
                                _ => {}
                            }
                        }
                    }
                }
            }
            Expr::Unary { op, arg } if matches!(&**op, "del" | "delete") => {
                let arg = *arg;
                if let Some((place, key)) = self.place_of(arg, aliases) {
                    self.push_access(
                        place,
                        AccessKind::Write(WriteKind::Clear),
                        Pos::write(span),
                        id,
                        stmt,
                        ctx,
                        key,
                        None,
                        Vec::new(),
                    );
                }
            }
            Expr::Call { callee, args } => {
                let (callee, args) = (*callee, args.clone());
                for a in &args {
                    union_into(&mut t, &through_call(&self.taint[a.value as usize]));
                }
                if let Expr::Member { object, property } = f.expr(callee) {
                    let (object, property) = (*object, property.clone());
                    union_into(&mut t, &self.taint[object as usize].clone());
                    if self.is_place_expr(object) {
                        if let Some((place, _)) = self.place_of(object, aliases) {
                            let key = args.first().map(|a| a.value);
                            let c = &cat.collections;
                            let collection = self.is_collection(&place);
                            if !collection && !has(&c.value_methods, &property) {
                                // A method of a service or client held in
                                // the place: a call, not a read of state.
                            } else if !collection {
                                let r = self.push_access(
                                    place,
                                    AccessKind::Read,
                                    Pos::read(span),
                                    object,
                                    stmt,
                                    ctx,
                                    None,
                                    None,
                                    Vec::new(),
                                );
                                union_into(&mut t, &[Src::Read(r)]);
                            } else if has(&c.add_methods, &property) {
                                let value = match &*property {
                                    "set" | "put" | "setdefault" | "insert" => {
                                        args.get(1).map(|a| a.value)
                                    }
                                    _ => key,
                                };
                                let deps = value
                                    .map(|v| self.taint[v as usize].clone())
                                    .unwrap_or_default();
                                let keyed = !matches!(
                                    &*property,
                                    "push"
                                        | "unshift"
                                        | "append"
                                        | "extend"
                                        | "update"
                                        | "appendleft"
                                );
                                self.push_access(
                                    place,
                                    AccessKind::Write(WriteKind::Add),
                                    Pos::write(span),
                                    id,
                                    stmt,
                                    ctx,
                                    if keyed { key } else { None },
                                    value,
                                    deps,
                                );
                            } else if has(&c.clear_methods, &property) {
                                self.push_access(
                                    place,
                                    AccessKind::Write(WriteKind::Clear),
                                    Pos::write(span),
                                    id,
                                    stmt,
                                    ctx,
                                    key,
                                    None,
                                    Vec::new(),
                                );
                            } else {
                                let key = if has(&c.check_methods, &property) {
                                    key
                                } else {
                                    None
                                };
                                let r = self.push_access(
                                    place,
                                    AccessKind::Read,
                                    Pos::read(span),
                                    object,
                                    stmt,
                                    ctx,
                                    key,
                                    None,
                                    Vec::new(),
                                );
                                union_into(&mut t, &[Src::Read(r)]);
                            }
                        }
                    }
                }
            }
            Expr::New { args, .. } => {
                for a in args.clone() {
                    union_into(&mut t, &through_call(&self.taint[a.value as usize]));
                }
            }
            Expr::Function(_) => {}
            Expr::Ident(name)
                if self.scope.is_local(name) || self.scope.resolve(name).is_none() =>
            {
                if let Some(v) = env.get(name) {
                    t = v.clone();
                }
            }
            Expr::Member { .. } | Expr::Index { .. } | Expr::Ident(_) => {
                let mut kids = Vec::new();
                f.children(id, &mut kids);
                for k in kids {
                    union_into(&mut t, &self.taint[k as usize].clone());
                }
                if self.is_value_read(id, parent) {
                    if let Some((place, mut key)) = self.place_of(id, aliases) {
                        // `key in self.cache`: a keyed membership check.
                        if let Some(Expr::Binary { op, left, right }) = parent.map(|p| f.expr(p)) {
                            if *right == id && matches!(&**op, "in" | "not in") {
                                key = Some(*left);
                            }
                        }
                        let r = self.push_access(
                            place,
                            AccessKind::Read,
                            Pos::read(span),
                            id,
                            stmt,
                            ctx,
                            key,
                            None,
                            Vec::new(),
                        );
                        union_into(&mut t, &[Src::Read(r)]);
                    }
                }
            }
            _ => {
                let mut kids = Vec::new();
                f.children(id, &mut kids);
                for k in kids {
                    union_into(&mut t, &self.taint[k as usize].clone());
                }
            }
        }
        if follow(f, id) {
            union_into(&mut t, &[Src::Call(id)]);
        }
        self.taint[id as usize] = t;
    }

    /// Whether a place expression is read as a value here (not the target of
    /// an assignment, not part of a longer place, not a method's receiver,
    /// which the call records).
    fn is_value_read(&self, id: ExprId, parent: Option<ExprId>) -> bool {
        let f = self.func;
        let Some(p) = parent else {
            return true;
        };
        match f.expr(p) {
            Expr::Member { object, .. } if *object == id => false,
            Expr::Index { object, .. } if *object == id => false,
            Expr::Assign { target, .. } if *target == id => false,
            Expr::Unary { op, .. } if matches!(&**op, "del" | "delete") => false,
            _ => true,
        }
    }

    /// Whether a place holds an in-memory collection: the file assigns its
    /// name a `new Map()`, `new Set()`, `{}`, `[]`, `dict()`, `set()`...
    pub fn is_collection(&self, place: &Place) -> bool {
        let names = self.collections.get_or_init(|| collection_names(self.file));
        names.0.contains(place.key().as_str())
    }

    pub fn place(&self, access: &Access) -> &Place {
        &self.places[access.place]
    }

    /// Await points strictly between two events.
    pub fn awaits_between(&self, from: Pos, to: Pos) -> impl Iterator<Item = &AwaitPoint> {
        self.awaits
            .iter()
            .filter(move |a| from < a.pos && a.pos < to)
    }

    /// Await points between two events that one call can pass on its way
    /// from the first to the second (not in a sibling branch, not in a
    /// branch that has already returned).
    pub fn awaits_on_path(&self, from: Site, to: Site) -> impl Iterator<Item = &AwaitPoint> + '_ {
        self.awaits.iter().filter(move |a| {
            let at = self.site_of_await(a);
            from.pos < a.pos && a.pos < to.pos && self.reaches(from, at) && self.reaches(at, to)
        })
    }

    pub fn site_of_await(&self, a: &AwaitPoint) -> Site {
        let stmt = &self.func.stmts[a.stmt];
        Site {
            pos: a.pos,
            ctx: stmt.ctx,
            span: a.expr.map_or(stmt.span, |e| self.func.span(e)),
        }
    }

    pub fn site_of(&self, access: &Access) -> Site {
        Site {
            pos: access.pos,
            ctx: access.ctx,
            span: self.func.span(access.expr),
        }
    }

    /// Whether code at `b` can run after code at `a` in the same call: they
    /// are not in sibling branches of one `if`, and `a` is not in a branch
    /// that leaves (`return`, `throw`) before `b`.
    pub fn reaches(&self, a: Site, b: Site) -> bool {
        let f = self.func;
        let chain_a: Vec<CtxId> = f.ctx_chain(a.ctx).map(|(id, _)| id).collect();
        let chain_b: Vec<CtxId> = f.ctx_chain(b.ctx).map(|(id, _)| id).collect();
        for &x in &chain_a {
            let cx = &f.ctxs[x as usize];
            for &y in &chain_b {
                let cy = &f.ctxs[y as usize];
                // `if`/`else`, and sibling `elif` clauses (each an `else`
                // of the same `if`).
                if x != y
                    && cx.test.is_some()
                    && cx.test == cy.test
                    && matches!(cx.kind, CtxKind::Then | CtxKind::Else)
                    && matches!(cy.kind, CtxKind::Then | CtxKind::Else)
                {
                    return false;
                }
            }
            if chain_b.contains(&x) || !matches!(cx.kind, CtxKind::Then | CtxKind::Else) {
                continue;
            }
            let leaves = f.stmts.iter().any(|s| {
                s.ctx == x
                    && s.span.end >= a.span.end
                    && matches!(s.kind, StmtKind::Return(_) | StmtKind::Throw(_))
            });
            if leaves && b.span.start >= cx.span.end {
                return false;
            }
        }
        true
    }

    /// Whether `a` and `b` sit in different arms of one conditional
    /// expression, so at most one of them runs.
    pub fn exclusive(&self, a: ExprId, b: ExprId) -> bool {
        let f = self.func;
        let (sa, sb) = (f.span(a), f.span(b));
        f.exprs.iter().any(|e| {
            let Expr::Cond {
                then, otherwise, ..
            } = e
            else {
                return false;
            };
            let (st, so) = (f.span(*then), f.span(*otherwise));
            (st.contains(sa) && so.contains(sb)) || (so.contains(sa) && st.contains(sb))
        })
    }

    /// Whether the code at (`ctx`, `span`) runs only as decided by `test`:
    /// inside its branch or loop, after an early exit it guards
    /// (`if (seen) return;`), or inside the `switch` on it.
    pub fn controls(&self, test: &Test, ctx: CtxId, span: Span) -> bool {
        let f = self.func;
        for (cid, c) in f.ctx_chain(ctx) {
            if c.test == Some(test.expr) {
                return true;
            }
            if c.kind == CtxKind::Switch {
                let tspan = f.stmts[test.stmt].span;
                let between = self
                    .src
                    .get(tspan.end as usize..c.span.start as usize)
                    .unwrap_or("x");
                if tspan.end <= c.span.start
                    && between.trim().trim_start_matches(')').trim().is_empty()
                {
                    return true;
                }
            }
            let _ = cid;
        }
        let test_ctx = f.stmts[test.stmt].ctx;
        if !f.in_ctx(ctx, test_ctx) {
            return false;
        }
        f.ctxs.iter().enumerate().any(|(i, c)| {
            c.test == Some(test.expr)
                && c.kind == CtxKind::Then
                && span.start >= c.span.end
                && self.exits(i as CtxId)
        })
    }

    /// A branch that always leaves: a `return`/`throw`/`raise` directly in it,
    /// or a `continue`/`break` as its first statement.
    pub fn exits(&self, ctx: CtxId) -> bool {
        let f = self.func;
        if f.stmts
            .iter()
            .any(|s| s.ctx == ctx && matches!(s.kind, StmtKind::Return(_) | StmtKind::Throw(_)))
        {
            return true;
        }
        let text = self.text(f.ctxs[ctx as usize].span);
        let text = text
            .trim_start()
            .trim_start_matches(['{', ':'])
            .trim_start();
        ["continue", "break", "return", "raise", "throw"]
            .iter()
            .any(|k| text.starts_with(k))
    }

    /// The tests whose condition reads one of `reads` (access indices).
    pub fn tests_reading<'s>(
        &'s self,
        pred: impl Fn(u32) -> bool + 's,
    ) -> impl Iterator<Item = &'s Test> + 's {
        self.tests
            .iter()
            .filter(move |t| t.srcs.iter().any(|s| s.read().is_some_and(&pred)))
    }

    /// Whether a write stores something derived from an awaited value.
    pub fn from_await(&self, access: &Access) -> bool {
        access.deps.iter().any(|s| matches!(s, Src::Await(_)))
    }

    /// Compares two optional keys: different key texts that share no name
    /// are different entries.
    pub fn same_key(&self, a: Option<ExprId>, b: Option<ExprId>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => same_key_text(self.expr_text(a), self.expr_text(b)),
            _ => true,
        }
    }
}

/// Every variable or property path (`seen`, `this.pending`, `cache.entries`)
/// the file assigns an in-memory collection.
/// Names the file binds to in-memory collections.
pub struct CollectionNames(pub HashSet<crate::model::Name>);

/// Whole-file: computed once per file (`FileModel::memo`).
pub fn collection_names(file: &FileModel) -> std::rc::Rc<CollectionNames> {
    file.memo
        .get(0, || CollectionNames(collect_collection_names(file)))
}

fn collect_collection_names(file: &FileModel) -> HashSet<crate::model::Name> {
    let ctors = &catalog().collections.collection_constructors;
    let mut out = HashSet::default();
    for g in &file.functions {
        for e in &g.exprs {
            let Expr::Assign { target, value, .. } = e else {
                continue;
            };
            let name: crate::model::Name = match g.expr(*target) {
                Expr::Ident(n) => n.clone(),
                Expr::Member { .. } => {
                    let path = g.path(*target);
                    if path.iter().any(|p| *p == "()" || *p == "?") {
                        continue;
                    }
                    path.join(".").into()
                }
                _ => continue,
            };
            let is = match g.expr(*value) {
                Expr::Object(_) | Expr::Array(_) => true,
                Expr::New { callee, .. } | Expr::Call { callee, .. } => {
                    g.callee_name(*callee).is_some_and(|c| has(ctors, c))
                }
                _ => false,
            };
            if is {
                out.insert(name);
            }
        }
    }
    out
}

pub fn same_key_text(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<String>();
    if norm(a) == norm(b) {
        return true;
    }
    let names = |s: &str| -> HashSet<String> {
        s.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .filter(|w| w.len() > 1 && !w.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    };
    let (na, nb) = (names(a), names(b));
    na.iter().any(|n| nb.contains(n))
}

/// `null`, `undefined`, `None`, `false`, `0`, `''`: a reset, not a value.
pub fn is_clearing(f: &Function, value: ExprId) -> bool {
    match f.expr(value) {
        Expr::Null | Expr::Bool(false) => true,
        Expr::Num(n) => &**n == "0",
        Expr::Str(s) => s.is_empty(),
        Expr::Ident(n) => &**n == "undefined",
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Stand-ins for the shared guard (src/analysis/guards.rs) and external-call
// (src/analysis/external.rs) analyses being built on other branches. Keep
// them small: they are to be replaced by those modules when branches merge.
// ---------------------------------------------------------------------------

/// Whether a lock, mutex or serialising queue is held over the whole stretch
/// from `from` to `to` in the function: the function is a callback run under
/// one (`mutex.runExclusive(async () => ...)`, `lock.acquire(key, cb)`,
/// `queue.add(() => ...)`), the stretch follows an `await using` of a lock,
/// sits inside `with lock:` / `async with lock:`, or follows an explicit
/// acquire with no release in between.
pub fn holds_guard_across(facts: &Facts, from: Pos, to: Pos) -> bool {
    let cat = &catalog().guards;
    let f = facts.func;
    if runs_under_guard(facts.file, facts.id) {
        return true;
    }
    // `await using lock = await mutex.acquire()` / `using _ = lock.hold()`.
    for s in &f.stmts {
        if s.span.start >= from.offset {
            continue;
        }
        let text = facts.text(s.span).trim_start();
        if (text.starts_with("await using ") || text.starts_with("using "))
            && (has_token(text, &cat.lock_words) || text.contains("acquire"))
        {
            return true;
        }
    }
    // `with lock:` / `async with self._lock:`.
    for c in &f.ctxs {
        if let CtxKind::With { items, .. } = &c.kind {
            let lockish = items.iter().any(|i| {
                let text = facts.expr_text(*i);
                has_token(text, &cat.lock_words)
            });
            if lockish && c.span.start <= from.offset && to.offset <= c.span.end {
                return true;
            }
        }
    }
    // An explicit acquire before, no release in between.
    let mut acquired = false;
    let mut released = false;
    for (i, e) in f.exprs.iter().enumerate() {
        let Expr::Call { callee, args } = e else {
            continue;
        };
        let Some(name) = f.callee_name(*callee) else {
            continue;
        };
        let span = f.span(i as ExprId);
        let receiver = f.path(*callee).join(".");
        let lockish = has_token(&receiver, &cat.lock_words);
        if has(&cat.acquire_methods, name)
            && (lockish || name.contains("Lock") || name.contains("_lock"))
            && span.end <= from.offset
        {
            acquired = true;
        }
        // A redis SET NX on a key named lock: the distributed-lock acquire.
        if name == "set" && span.end <= from.offset && lockish_nx(facts, args) {
            acquired = true;
        }
        if has(&cat.release_methods, name) && span.start > from.offset && span.end < to.offset {
            released = true;
        }
    }
    acquired && !released
}

fn lockish_nx(facts: &Facts, args: &[crate::model::Arg]) -> bool {
    let cat = &catalog().guards;
    let Some(first) = args.first() else {
        return false;
    };
    let key = facts.expr_text(first.value);
    let nx = args.iter().skip(1).any(|a| {
        let t = facts.expr_text(a.value);
        t.contains("NX") || (a.name.as_deref() == Some("nx"))
    });
    nx && has_token(key, &cat.lock_words)
}

/// Whether every call of this method in the file (`self._get_conn()`) is
/// made under a lock (`async with self._conn_lock:`) or from a callback run
/// under one: the caller holds the guard across the method's awaits.
pub fn only_called_under_guard(file: &FileModel, id: FuncId, src: &str) -> bool {
    let cat = &catalog().guards;
    let g = &file.functions[id as usize];
    if g.kind != crate::model::FunctionKind::Method {
        return false;
    }
    let name = g.name.rsplit('.').next().unwrap_or(&g.name);
    let mut sites = 0;
    for (fid, h) in file.functions.iter().enumerate() {
        for (i, e) in h.exprs.iter().enumerate() {
            let Expr::Call { callee, .. } = e else {
                continue;
            };
            let Expr::Member { object, property } = h.expr(*callee) else {
                continue;
            };
            if &**property != name || !matches!(h.expr(*object), Expr::This) {
                continue;
            }
            sites += 1;
            let span = h.span(i as ExprId);
            let in_lock = h.ctxs.iter().any(|c| match &c.kind {
                CtxKind::With { items, .. } => {
                    c.span.contains(span)
                        && items.iter().any(|it| {
                            has_token(src.get(h.span(*it).range()).unwrap_or(""), &cat.lock_words)
                        })
                }
                _ => false,
            });
            if !in_lock && !runs_under_guard(file, fid as FuncId) {
                return false;
            }
        }
    }
    sites > 0
}

/// Whether the function is a callback that a lock or queue runs exclusively.
pub fn runs_under_guard(file: &FileModel, id: FuncId) -> bool {
    let cat = &catalog().guards;
    let mut cur = id;
    // The callback itself, or any function it is nested in.
    for _ in 0..16 {
        let g = &file.functions[cur as usize];
        let Some(parent) = g.parent else {
            return false;
        };
        let p = &file.functions[parent as usize];
        let site = p
            .exprs
            .iter()
            .position(|e| matches!(e, Expr::Function(fid) if *fid == cur));
        if let Some(site) = site {
            let parents = p.parents();
            let mut up = parents[site];
            // Through `async () => ...` wrappers such as `.bind(this)`.
            for _ in 0..3 {
                let Some(u) = up else { break };
                if let Expr::Call { callee, .. } = p.expr(u) {
                    let name = p.callee_name(*callee).unwrap_or("");
                    let receiver = p.path(*callee);
                    let receiver = receiver[..receiver.len().saturating_sub(1)].join(".");
                    let lockish = has_token(&receiver, &cat.lock_words);
                    let specific = has(&cat.exclusive_methods, name)
                        && !matches!(name, "acquire" | "lock" | "using");
                    if specific
                        || (has(&cat.exclusive_methods, name) && lockish)
                        || (has(&cat.queue_methods, name) && has_token(&receiver, &cat.queue_words))
                    {
                        return true;
                    }
                    break;
                }
                up = parents[u as usize];
            }
        }
        cur = parent;
    }
    false
}

/// Whether a call leaves the process: a payment, an HTTP request, an email
/// or a queue publish, judged from the names on its callee path.
pub fn is_external_call(f: &Function, call: ExprId) -> Option<ExternalKind> {
    let cat = &catalog().external;
    let Expr::Call { callee, .. } = f.expr(call) else {
        return None;
    };
    let path = f.path(*callee);
    // The team's own helpers, from the config's `[catalog]`.
    let in_house = crate::catalog::in_house_effect(&path).map(|e| match e {
        crate::catalog::InHouse::Payment => ExternalKind::Payment,
        crate::catalog::InHouse::External => ExternalKind::Http,
    });
    if in_house.is_some() {
        return in_house;
    }
    let names: Vec<&str> = path
        .iter()
        .copied()
        .filter(|s| *s != "()" && *s != "this")
        .collect();
    let last = *names.last()?;
    // A repository named after a payment (`payouts.save`) is the database.
    let rec = &catalog().records;
    if names.len() >= 2
        && ((has(&rec.persist_methods, last) && !matches!(last, "add" | "put" | "merge"))
            || has(&rec.update_methods, last)
            || has(&rec.load_methods, last)
            || rec
                .load_prefixes
                .iter()
                .any(|p| last.starts_with(p.as_str()))
            || matches!(
                last,
                "find" | "findMany" | "findAll" | "query" | "count" | "aggregate"
            ))
    {
        return None;
    }
    let toks: Vec<String> = names.iter().flat_map(|n| tokens(n)).collect();
    let any = |words: &[String]| {
        toks.iter()
            .any(|t| words.iter().any(|w| w.eq_ignore_ascii_case(t)))
    };
    if any(&cat.payment_words) {
        return Some(ExternalKind::Payment);
    }
    if has(&cat.email_methods, last) || any(&cat.email_words) {
        return Some(ExternalKind::Email);
    }
    if names.first().is_some_and(|r| has(&cat.http_roots, r)) || any(&cat.http_words) {
        return Some(ExternalKind::Http);
    }
    if names.len() >= 2
        && has(&cat.http_methods, last)
        && names[..names.len() - 1].iter().any(|n| {
            let t = tokens(n);
            t.iter()
                .any(|x| matches!(x.as_str(), "client" | "api" | "http" | "session" | "axios"))
        })
    {
        return Some(ExternalKind::Http);
    }
    if (names.len() >= 2 && has(&cat.queue_methods, last)) || any(&cat.queue_words) {
        return Some(ExternalKind::Queue);
    }
    None
}

/// The external calls (by expression) anywhere in the function between two
/// positions.
pub fn external_calls_between(facts: &Facts, from: Pos, to: Pos) -> Vec<(ExprId, ExternalKind)> {
    let f = facts.func;
    let mut out = Vec::new();
    for i in 0..f.exprs.len() as ExprId {
        let span = f.span(i);
        if span.end <= from.offset || span.end > to.offset {
            continue;
        }
        // Only calls the function waits for: an `email.split('@')` is not
        // an email sent.
        if !matches!(
            facts.parents[i as usize].map(|p| f.expr(p)),
            Some(Expr::Await(_))
        ) {
            continue;
        }
        if let Some(k) = is_external_call(f, i) {
            out.push((i, k));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses() {
        assert!(!catalog().places.per_request.is_empty());
    }

    #[test]
    fn splits_names_into_tokens() {
        assert_eq!(tokens("paymentGateway"), vec!["payment", "gateway"]);
        assert_eq!(tokens("HTTPClient"), vec!["http", "client"]);
        assert_eq!(tokens("this._conn_lock"), vec!["this", "conn", "lock"]);
        assert_eq!(tokens("idem:${key}"), vec!["idem", "key"]);
    }

    #[test]
    fn keys_compare_by_text_or_shared_names() {
        assert!(same_key_text("event.id", "event.id"));
        assert!(same_key_text("`idem:${key}`", "key"));
        assert!(!same_key_text("a.id", "b.id"));
    }
}
