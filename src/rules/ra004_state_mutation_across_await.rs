//! RA004 state-mutation-across-await: in an async function, shared state is
//! read or checked before an `await` and written after it, with no guard held
//! across the await, so concurrent calls interleave at the await.
//!
//! How: `analysis::awaits` orders the function's reads, checks and writes of
//! shared places (`this.x`, `self.x`, module and captured variables,
//! properties of parameters, loaded records) against its await points and
//! traces which reads each written value is made from. Per place, the first
//! of these is reported at the write after the await:
//! - (c) a status checked (or, on a stored record, set) before an await and
//!   set again after it, in memory or with an UPDATE that does not re-check
//!   it, with no conditional update claiming the transition;
//! - (a) a write whose value is made from a read taken before the await;
//! - (b) a write the code only reaches through a check of the same place
//!   made before the await (lazy initialisation when it stores an awaited
//!   value into an empty place).
//!
//! Not reported: locals and per-request objects; a write that does not
//! depend on the earlier read; a place the function itself writes between
//! the check and the await (its own guard: RA003 judges its release); a lock,
//! mutex or queue held across; a record locked or reloaded in between.

use crate::analysis::awaits::{
    self, external_calls_between, holds_guard_across, AccessKind, AwaitPoint, ExternalKind, Facts,
    Pos, RootKind, Site, Src, Test, WriteKind,
};
use crate::analysis::cache;
use crate::finding::{Confidence, RawFinding, Risk, Suggestion};
use crate::model::{Expr, ExprId, Family, Function, PropKey, Span};
use crate::rules::{Context, RuleMeta};
use crate::suggest;

pub struct Rule;

static META: RuleMeta = RuleMeta {
    code: "RA004",
    name: "state-mutation-across-await",
    risk: Risk::Medium,
    confidence: Confidence::High,
    doc: include_str!("../../rules/ra004_state_mutation_across_await.md"),
};

impl super::Rule for Rule {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    /// Every finding spans an await point, which needs `await` or `async`
    /// (`async for`, `async with`).
    fn triggers(&self, _catalog: &crate::catalog::Catalog) -> Option<Vec<String>> {
        Some(vec!["await".to_string(), "async".to_string()])
    }

    fn check(&self, cx: &Context, out: &mut Vec<RawFinding>) {
        let f = cx.func;
        if !f.is_async || !yields(f) || !writes_something(f) {
            return;
        }
        let id = Facts::func_id(cx.file, f);
        if awaits::runs_under_guard(cx.file, id)
            || awaits::only_called_under_guard(cx.file, id, cx.src)
        {
            return;
        }
        let facts = Facts::build(cx.file, id, cx.src, &|_, _| false);
        if facts.awaits.is_empty() {
            return;
        }
        let updates = status_updates(&facts);
        if updates.is_empty() && !facts.accesses.iter().any(|a| a.is_write()) {
            return;
        }
        for place in 0..facts.places.len() {
            let hazard = status_transition(&facts, place, &updates)
                .or_else(|| lost_update(&facts, place))
                .or_else(|| check_then_act(&facts, place));
            if let Some(h) = hazard {
                out.push(report(cx, &facts, &h, &updates));
            }
        }
    }
}

/// Cheap exits: an await point and something that could write shared state.
fn yields(f: &Function) -> bool {
    f.exprs.iter().any(|e| matches!(e, Expr::Await(_)))
        || f.stmts
            .iter()
            .any(|s| matches!(s.kind, crate::model::StmtKind::AwaitPoint))
}

fn writes_something(f: &Function) -> bool {
    f.exprs.iter().any(|e| match e {
        Expr::Assign { target, decl, .. } => !decl && !matches!(f.expr(*target), Expr::Array(_)),
        Expr::Call { callee, .. } => f.callee_name(*callee).is_some_and(|m| {
            let c = &awaits::catalog().collections;
            c.add_methods.iter().any(|x| x == m)
                || awaits::catalog()
                    .records
                    .update_methods
                    .iter()
                    .any(|x| x == m)
        }),
        Expr::Str(t) | Expr::Template { text: t, .. } => t
            .trim_start()
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("update")),
        _ => false,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    LostUpdate,
    /// A lost update whose stale value only feeds the awaited call.
    Transform,
    CheckThenAct,
    LazyInit,
    Status,
}

struct Hazard {
    variant: Variant,
    place: usize,
    /// The write after the await (an access, or a status UPDATE call).
    act: Act,
    /// The read, check or first status write before the await.
    earlier: ExprId,
    /// The check's test, when there is one.
    test: Option<usize>,
    /// The first await between the two halves.
    yield_at: AwaitPoint,
    external: Option<(ExprId, ExternalKind)>,
    /// (b)/(c): the first await after the check (where a claim must precede).
    first_await_stmt: usize,
}

#[derive(Clone, Copy)]
enum Act {
    Write(usize),
    Update(usize),
}

impl Act {
    fn expr(self, facts: &Facts, updates: &[StatusUpdate]) -> ExprId {
        match self {
            Act::Write(w) => facts.accesses[w].expr,
            Act::Update(u) => updates[u].call,
        }
    }
    fn pos(self, facts: &Facts, updates: &[StatusUpdate]) -> Pos {
        match self {
            Act::Write(w) => facts.accesses[w].pos,
            Act::Update(u) => updates[u].pos,
        }
    }
}

// ---------------------------------------------------------------------------
// (a) lost update
// ---------------------------------------------------------------------------

fn lost_update(facts: &Facts, place: usize) -> Option<Hazard> {
    let p = &facts.places[place];
    if !shared_enough(facts, place) {
        return None;
    }
    for (wi, w) in facts.accesses.iter().enumerate() {
        if w.place != place {
            continue;
        }
        let AccessKind::Write(kind) = w.kind else {
            continue;
        };
        // An unkeyed append (`push`) adds, it does not overwrite.
        if kind == WriteKind::Clear || (kind == WriteKind::Add && w.key.is_none()) {
            continue;
        }
        for dep in &w.deps {
            let Some(r) = dep.read() else { continue };
            let r = &facts.accesses[r as usize];
            if !facts.places[r.place].extends(p) || !facts.same_key(r.key, w.key) {
                continue;
            }
            // An identifier does not go stale: `order.sub = await
            // load(order.sub.id)` reloads, it does not overwrite an update.
            if id_like(facts.places[r.place].last()) {
                continue;
            }
            let Some(a) = facts
                .awaits_on_path(facts.site_of(r), facts.site_of(w))
                .find(|a| !a.expr.is_some_and(|e| facts.exclusive(r.expr, e)))
            else {
                continue;
            };
            if claimed_between(facts, place, w.key, r.pos, a.pos)
                || safe_stretch(facts, place, r.pos, w.pos)
            {
                continue;
            }
            // `x = await next(x)`: the old value only feeds the awaited call,
            // a transformation (a cursor, a reducer) rather than a counter
            // (ESLint #11899). On a parameter or captured variable it is
            // not reported; on `this` / module state with low confidence.
            let transform = a
                .expr
                .is_some_and(|e| facts.func.span(e).contains(facts.func.span(r.expr)));
            if transform && matches!(p.kind, RootKind::Param | RootKind::Captured) {
                continue;
            }
            return Some(Hazard {
                variant: if transform {
                    Variant::Transform
                } else {
                    Variant::LostUpdate
                },
                place,
                act: Act::Write(wi),
                earlier: r.expr,
                test: None,
                yield_at: a.clone(),
                external: None,
                first_await_stmt: a.stmt,
            });
        }
    }
    None
}

fn id_like(name: &str) -> bool {
    matches!(name, "id" | "pk" | "uuid" | "_id" | "key")
        || name.ends_with("_id")
        || name.ends_with("Id")
        || name.ends_with("ID")
}

/// The function writes the place itself between `from` and `to`: it claimed
/// it synchronously (a guard flag set before the await, a saved value it
/// restores).
fn claimed_between(facts: &Facts, place: usize, key: Option<ExprId>, from: Pos, to: Pos) -> bool {
    let p = &facts.places[place];
    facts.accesses.iter().any(|a| {
        a.is_write()
            && from < a.pos
            && a.pos < to
            && (facts.places[a.place].extends(p) || p.extends(&facts.places[a.place]))
            && facts.same_key(a.key, key)
    })
}

/// A stretch that is safe for this place: a guard held across it, a locked
/// record, or a record reloaded inside it.
fn safe_stretch(facts: &Facts, place: usize, from: Pos, to: Pos) -> bool {
    let p = &facts.places[place];
    if p.kind == RootKind::Record {
        if facts.scope.records.get(&p.root).is_some_and(|r| r.locked) {
            return true;
        }
        if reloaded_between(facts, &p.root, from, to) {
            return true;
        }
    }
    holds_guard_across(facts, from, to)
}

fn reloaded_between(facts: &Facts, root: &str, from: Pos, to: Pos) -> bool {
    let f = facts.func;
    let cat = &awaits::catalog().records;
    f.exprs.iter().enumerate().any(|(i, e)| {
        let pos = Pos::write(f.span(i as ExprId));
        if !(from < pos && pos < to) {
            return false;
        }
        match e {
            Expr::Call { callee, args } => {
                let Some(m) = f.callee_name(*callee) else { return false };
                if !cat.refresh_methods.iter().any(|r| r == m) {
                    return false;
                }
                let on_root = matches!(f.expr(*callee), Expr::Member { object, .. } if matches!(f.expr(*object), Expr::Ident(n) if &**n == root));
                on_root || args.iter().any(|a| matches!(f.expr(a.value), Expr::Ident(n) if &**n == root))
            }
            Expr::Assign { target, .. } => matches!(f.expr(*target), Expr::Ident(n) if &**n == root),
            _ => false,
        }
    })
}

// ---------------------------------------------------------------------------
// (b) check-then-act, lazy initialisation
// ---------------------------------------------------------------------------

fn check_then_act(facts: &Facts, place: usize) -> Option<Hazard> {
    let p = &facts.places[place];
    if !shared_enough(facts, place) {
        return None;
    }
    for (wi, w) in facts.accesses.iter().enumerate() {
        if w.place != place || !w.is_write() || w.is_clear() {
            continue;
        }
        let stmt_span = facts.func.stmts[w.stmt].span;
        // `this.client ??= await connect()`: checks and initialises in one
        // expression, with the await in between.
        if let Some(g) = w.guard {
            let c = &facts.accesses[g as usize];
            if let Some(a) = facts
                .awaits_on_path(facts.site_of(c), facts.site_of(w))
                .next()
            {
                if p.kind != RootKind::Param
                    && !awaits_shared_promise(facts, w)
                    && creates_resource(facts, w)
                    && !safe_stretch(facts, place, c.pos, w.pos)
                {
                    return Some(Hazard {
                        variant: Variant::LazyInit,
                        place,
                        act: Act::Write(wi),
                        earlier: c.expr,
                        test: None,
                        yield_at: a.clone(),
                        external: None,
                        first_await_stmt: a.stmt,
                    });
                }
            }
            continue;
        }
        // Every check of the place that decides whether the write runs.
        let checks: Vec<(usize, &awaits::Access)> = facts
            .tests
            .iter()
            .enumerate()
            .filter_map(|(ti, test)| {
                let c = test.srcs.iter().find_map(|s| {
                    let r = &facts.accesses[s.read()? as usize];
                    (r.kind == AccessKind::Read
                        && facts.places[r.place].extends(p)
                        && facts.same_key(r.key, w.key)
                        && r.pos < w.pos)
                        .then_some(r)
                })?;
                // `if (user.email !== input.email) {...; user.email =
                // input.email}` detects a change; it does not claim anything.
                if compares_with_written(facts, test, w) {
                    return None;
                }
                facts.controls(test, w.ctx, stmt_span).then_some((ti, c))
            })
            .collect();
        // A check made again after the await (double-checked locking), or
        // one the function guards: the write is decided on fresh state.
        let fresh = |c: &awaits::Access| {
            facts
                .awaits_on_path(facts.site_of(c), facts.site_of(w))
                .next()
                .is_none()
                || safe_stretch(facts, place, c.pos, w.pos)
        };
        if checks.is_empty() || checks.iter().any(|(_, c)| fresh(c)) {
            continue;
        }
        let (ti, c) = checks[0];
        let a = facts
            .awaits_on_path(facts.site_of(c), facts.site_of(w))
            .next()?;
        if claimed_between(facts, place, w.key, c.pos, a.pos)
            || claimed_by_test(facts, ti, c.pos, a.pos)
        {
            continue;
        }
        let evidence = dedup_evidence(facts, w);
        // Storing a value into an empty place is lazy initialisation (or a
        // memo); storing a marker (`true`, a Set entry, the object the work
        // was done for) is check-then-act.
        let from_await = facts.from_await(w);
        let stores_value = match w.kind {
            AccessKind::Write(WriteKind::Assign) => {
                w.value.is_some_and(|v| !literal(facts.func, v))
            }
            AccessKind::Write(WriteKind::Add) if w.key.is_some() => {
                w.value != w.key && w.value.is_some_and(|v| !literal(facts.func, v))
            }
            AccessKind::Write(WriteKind::Add) => from_await,
            _ => false,
        };
        let lazy = stores_value
            && evidence.is_none()
            && (emptiness_check(facts, &facts.tests[ti], c) || w.key.is_none() && from_await);
        if lazy {
            // Filling in a field of an object passed in initialises the
            // caller's own object; awaiting a promise kept in shared state
            // (`this.raw = await this.rawPromise`) is the safe pattern; a memo
            // of plain data loaded twice costs a query, it opens nothing.
            if p.kind == RootKind::Param
                || awaits_shared_promise(facts, w)
                || !creates_resource(facts, w)
            {
                continue;
            }
        }
        return Some(Hazard {
            variant: if lazy {
                Variant::LazyInit
            } else {
                Variant::CheckThenAct
            },
            place,
            act: Act::Write(wi),
            earlier: c.expr,
            test: Some(ti),
            yield_at: a.clone(),
            external: None,
            first_await_stmt: a.stmt,
        });
    }
    None
}

/// Whether the value stored is a resource made for it: a `new` of anything
/// but a plain collection, or a call whose name says it connects, creates,
/// opens or starts something (directly, or in the awaited call it comes from).
fn creates_resource(facts: &Facts, w: &awaits::Access) -> bool {
    let f = facts.func;
    let cat = &awaits::catalog().lazy;
    let mut roots: Vec<ExprId> = w.value.into_iter().collect();
    roots.extend(w.deps.iter().filter_map(|s| match *s {
        Src::Await(a) => Some(a),
        _ => None,
    }));
    roots
        .into_iter()
        .flat_map(|r| f.descendants(r))
        .any(|d| match f.expr(d) {
            Expr::New { callee, .. } => f
                .callee_name(*callee)
                .is_some_and(|n| !cat.data_constructors.iter().any(|c| c == n)),
            // The method's own name: `connect`, `createConnection`,
            // `get_async_client` (not the receiver: `client.v1.accounts.retrieve`).
            Expr::Call { callee, .. } => f
                .callee_name(*callee)
                .is_some_and(|n| awaits::has_token(n, &cat.resource_words)),
            _ => false,
        })
}

/// Whether a test asks only whether the place (or its entry) is empty:
/// `!p`, `p == null`, `p is None`, `not p`, `!p.has(k)`, `k not in p`,
/// `p.get(k)` (directly or through a local holding it).
fn emptiness_check(facts: &Facts, test: &Test, c: &awaits::Access) -> bool {
    let f = facts.func;
    let c_id = facts
        .accesses
        .iter()
        .position(|a| std::ptr::eq(a, c))
        .map(|i| i as u32);
    let nodes = f.descendants(test.expr);
    let start = nodes.iter().copied().find(|&d| {
        d == c.expr
            || (matches!(f.expr(d), Expr::Ident(_))
                && facts.taint[d as usize].iter().any(|s| s.read() == c_id))
    });
    let Some(mut cur) = start else { return false };
    let nullish = |e: ExprId| {
        matches!(f.expr(e), Expr::Null)
            || matches!(f.expr(e), Expr::Ident(n) if &**n == "undefined")
    };
    for _ in 0..16 {
        if cur == test.expr {
            return true;
        }
        let Some(p) = facts.parents[cur as usize] else {
            return true;
        };
        match f.expr(p) {
            Expr::Unary { op, .. } if matches!(&**op, "!" | "not") => {}
            Expr::Binary { op, left, right } => match &**op {
                "&&" | "||" | "and" | "or" | "??" => {}
                "==" | "===" | "!=" | "!==" | "is" | "is not" => {
                    let other = if *left == cur { *right } else { *left };
                    if !nullish(other) {
                        return false;
                    }
                }
                "in" | "not in" if *right == cur => {}
                _ => return false,
            },
            // `p.has(k)`, `p.get(k)`: a method on the collection.
            Expr::Member { object, .. } | Expr::Index { object, .. } if *object == cur => {}
            Expr::Call { callee, .. } if *callee == cur => {}
            Expr::Await(_) => {}
            _ => return false,
        }
        cur = p;
    }
    false
}

/// Whether the test compares the place with the very value the write stores.
fn compares_with_written(facts: &Facts, test: &Test, w: &awaits::Access) -> bool {
    let f = facts.func;
    let Some(value) = w.value else { return false };
    let written = facts
        .expr_text(value)
        .split_whitespace()
        .collect::<String>();
    f.descendants(test.expr)
        .into_iter()
        .any(|d| match f.expr(d) {
            Expr::Binary { op, left, right } if matches!(&**op, "===" | "==" | "!==" | "!=") => {
                [*left, *right]
                    .iter()
                    .any(|e| facts.expr_text(*e).split_whitespace().collect::<String>() == written)
            }
            _ => false,
        })
}

/// The test reads another place that the function writes right after it,
/// before the await: `if (this.destroying || this.status === 'end') return;
/// this.destroying = true;` claims the whole check with its own flag.
fn claimed_by_test(facts: &Facts, test: usize, from: Pos, to: Pos) -> bool {
    facts.tests[test].srcs.iter().any(|s| match s.read() {
        Some(r) => {
            let r = &facts.accesses[r as usize];
            facts.accesses.iter().any(|a| {
                a.is_write() && !a.is_clear() && a.place == r.place && from < a.pos && a.pos < to
            })
        }
        None => false,
    })
}

/// Whether the value written comes from awaiting a promise kept in shared
/// state (`await this.connecting`).
fn awaits_shared_promise(facts: &Facts, w: &awaits::Access) -> bool {
    let f = facts.func;
    w.deps.iter().any(|s| match *s {
        Src::Await(a) => match f.expr(a) {
            Expr::Await(inner) => {
                facts.taint[*inner as usize]
                    .iter()
                    .any(|t| t.read().is_some())
                    && matches!(f.expr(*inner), Expr::Member { .. } | Expr::Ident(_))
            }
            _ => false,
        },
        _ => false,
    })
}

/// Properties of an object passed in count as shared when the object is a
/// stored record (written back here) or a collection; any other parameter
/// is the caller's own object (ESLint #11899, #17312).
fn shared_enough(facts: &Facts, place: usize) -> bool {
    let p = &facts.places[place];
    p.kind != RootKind::Param || record_like(facts, &p.root, p.kind) || facts.is_collection(p)
}

fn literal(f: &Function, v: ExprId) -> bool {
    matches!(
        f.expr(v),
        Expr::Str(_) | Expr::Num(_) | Expr::Bool(_) | Expr::Null
    )
}

/// A Map/Set/dict written like a dedup store (RA005's evidence).
fn dedup_evidence(facts: &Facts, w: &awaits::Access) -> Option<cache::Evidence> {
    let p = &facts.places[w.place];
    if !matches!(w.kind, AccessKind::Write(WriteKind::Add)) {
        return None;
    }
    let f = facts.func;
    let method = match f.expr(w.expr) {
        Expr::Call { callee, .. } => f.callee_name(*callee).unwrap_or("").to_string(),
        _ => "[]=".to_string(),
    };
    let op = cache::CacheOp {
        func: facts.id,
        expr: w.expr,
        kind: cache::OpKind::Store,
        backend: cache::Backend::Memory,
        receiver: p.key(),
        method,
        key: w.key,
        key_text: w
            .key
            .map(|k| facts.expr_text(k).to_string())
            .unwrap_or_default(),
        value: if w.key == w.value { None } else { w.value },
        span: f.span(w.expr),
        ctx: w.ctx,
        stmt_span: f.stmts[w.stmt].span,
    };
    cache::dedup_evidence(facts.file, facts.src, None, &op)
}

// ---------------------------------------------------------------------------
// (c) non-atomic status transition
// ---------------------------------------------------------------------------

/// A database update that sets a status field.
struct StatusUpdate {
    call: ExprId,
    pos: Pos,
    field: String,
    /// The status value written, as the code writes it.
    value: Option<String>,
    /// The update's filter checks the status too: a conditional transition.
    conditional: bool,
}

fn is_status_name(name: &str) -> bool {
    let name = name.split("__").next().unwrap_or(name);
    let place = awaits::Place {
        root: "x".into(),
        kind: RootKind::Module,
        path: vec![name.into()],
    };
    place.is_status()
}

/// Status UPDATEs in the function: ORM update calls that set a status field
/// (Prisma `data`, TypeORM/Mongo update documents, Django/SQLAlchemy keyword
/// values) and SQL `UPDATE ... SET status`.
fn status_updates(facts: &Facts) -> Vec<StatusUpdate> {
    let f = facts.func;
    let cat = &awaits::catalog().records;
    let mut out = Vec::new();
    for (i, e) in f.exprs.iter().enumerate() {
        let i = i as ExprId;
        let pos = Pos::write(f.span(i));
        match e {
            Expr::Call { callee, args } => {
                let Some(m) = f.callee_name(*callee) else {
                    continue;
                };
                if !cat.update_methods.iter().any(|u| u == m) {
                    continue;
                }
                let mut sets = None;
                let mut value = None;
                let mut conditional = false;
                // Which argument filters and which sets.
                let with_where = args.iter().position(|a| object_has(f, a.value, "where"));
                for (ai, a) in args.iter().enumerate() {
                    if let Some(name) = &a.name {
                        if is_status_name(name) {
                            sets = Some(name.to_string());
                            value = Some(facts.expr_text(a.value).to_string());
                        }
                        continue;
                    }
                    let Expr::Object(props) = f.expr(a.value) else {
                        continue;
                    };
                    let is_filter = match with_where {
                        Some(_) => false,
                        None => args.len() >= 2 && ai == 0,
                    };
                    for prop in props {
                        let PropKey::Name(k) = &prop.key else {
                            continue;
                        };
                        if &**k == "where" {
                            if status_key_in(f, prop.value) {
                                conditional = true;
                            }
                        } else if matches!(&**k, "data" | "$set" | "set" | "values") {
                            if let Some((name, v)) = status_key(f, prop.value) {
                                sets = Some(name);
                                value = Some(facts.expr_text(v).to_string());
                            }
                        } else if is_status_name(k) {
                            if is_filter {
                                conditional = true;
                            } else {
                                sets = Some(k.to_string());
                                value = Some(facts.expr_text(prop.value).to_string());
                            }
                        }
                    }
                }
                // `Order.objects.filter(status=...).update(...)`,
                // `update(Order).where(Order.status == ...).values(...)`.
                if chain_filters_status(f, facts, *callee) {
                    conditional = true;
                }
                if let Some(field) = sets {
                    out.push(StatusUpdate {
                        call: i,
                        pos,
                        field,
                        value,
                        conditional,
                    });
                }
            }
            Expr::Str(orig) | Expr::Template { text: orig, .. } => {
                let text = orig.to_ascii_lowercase();
                let Some(set_at) = text.find(" set ") else {
                    continue;
                };
                if !text
                    .trim_start()
                    .trim_start_matches(['`', '"', '\''])
                    .starts_with("update")
                {
                    continue;
                }
                let where_at = text.find(" where ").unwrap_or(text.len());
                let assigns = &text[set_at..where_at.max(set_at)];
                let field = assigns.split([',', ' ', '=']).find(|w| {
                    !w.is_empty()
                        && w.trim_matches('"') != "set"
                        && is_status_name(w.trim_matches('"'))
                });
                if let Some(field) = field {
                    let conditional = text[where_at..]
                        .split(|c: char| !c.is_alphanumeric() && c != '_')
                        .any(is_status_name);
                    // `SET status = 'paid'`: the value as written (the
                    // lower-cased copy has the same byte offsets).
                    let field_at = set_at + assigns.find(field).unwrap_or(0);
                    let value = orig
                        .get(field_at + field.len()..where_at)
                        .and_then(|rest| rest.trim_start().strip_prefix('='))
                        .map(|rest| rest.split(',').next().unwrap_or(rest).trim().to_string())
                        .filter(|v| !v.is_empty());
                    out.push(StatusUpdate {
                        call: i,
                        pos,
                        field: field.trim_matches('"').to_string(),
                        value,
                        conditional,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

fn object_has(f: &Function, obj: ExprId, key: &str) -> bool {
    matches!(f.expr(obj), Expr::Object(props) if props.iter().any(|p| matches!(&p.key, PropKey::Name(k) if &**k == key)))
}

fn status_key(f: &Function, obj: ExprId) -> Option<(String, ExprId)> {
    let Expr::Object(props) = f.expr(obj) else {
        return None;
    };
    props.iter().find_map(|p| match &p.key {
        PropKey::Name(k) if is_status_name(k) => Some((k.to_string(), p.value)),
        _ => None,
    })
}

fn status_key_in(f: &Function, obj: ExprId) -> bool {
    f.descendants(obj).into_iter().any(|d| match f.expr(d) {
        Expr::Object(props) => props
            .iter()
            .any(|p| matches!(&p.key, PropKey::Name(k) if is_status_name(k))),
        _ => false,
    })
}

/// A `filter(...)` / `where(...)` call on the callee chain whose arguments
/// mention a status.
fn chain_filters_status(f: &Function, facts: &Facts, callee: ExprId) -> bool {
    let cat = &awaits::catalog().records;
    let mut cur = callee;
    for _ in 0..16 {
        let next = match f.expr(cur) {
            Expr::Member { object, .. } => *object,
            Expr::Call { callee, args } => {
                if let Some(m) = f.callee_name(*callee) {
                    if cat.filter_methods.iter().any(|x| x == m)
                        && args.iter().any(|a| {
                            a.name.as_deref().is_some_and(is_status_name)
                                || facts
                                    .expr_text(a.value)
                                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                                    .any(is_status_name)
                        })
                    {
                        return true;
                    }
                }
                // `update(Order)` is the start of the chain.
                *callee
            }
            Expr::Await(inner) => *inner,
            _ => return false,
        };
        cur = next;
    }
    false
}

/// Whether a root is a stored record: loaded here, or written back with a
/// persist call (`repo.save(payout)`, `order.save()`).
fn record_like(facts: &Facts, root: &str, kind: RootKind) -> bool {
    if kind == RootKind::Record {
        return true;
    }
    if !matches!(kind, RootKind::Param | RootKind::Captured) {
        return false;
    }
    let f = facts.func;
    let cat = &awaits::catalog().records;
    f.exprs.iter().any(|e| {
        let Expr::Call { callee, args } = e else { return false };
        let Some(m) = f.callee_name(*callee) else { return false };
        if !cat.persist_methods.iter().any(|p| p == m) {
            return false;
        }
        let on_root = matches!(f.expr(*callee), Expr::Member { object, .. } if matches!(f.expr(*object), Expr::Ident(n) if &**n == root));
        on_root || args.iter().any(|a| matches!(f.expr(a.value), Expr::Ident(n) if &**n == root))
    })
}

fn status_transition(facts: &Facts, place: usize, updates: &[StatusUpdate]) -> Option<Hazard> {
    let p = &facts.places[place];
    if !p.is_status() {
        return None;
    }
    let stored = record_like(facts, &p.root, p.kind);
    // A conditional update anywhere before the act claims the transition.
    let conditional_before = |at: Pos| updates.iter().any(|u| u.conditional && u.pos < at);
    // The halves before the await: checks of the status, and (on a stored
    // record, whose in-memory copy each request loads for itself) writes.
    let mut claims: Vec<(Site, ExprId, Option<usize>)> = Vec::new();
    for (ti, t) in facts.tests.iter().enumerate() {
        for s in &t.srcs {
            if let Some(r) = s.read() {
                let r = &facts.accesses[r as usize];
                if r.place == place && r.kind == AccessKind::Read {
                    claims.push((facts.site_of(r), r.expr, Some(ti)));
                }
            }
        }
    }
    if stored {
        for a in &facts.accesses {
            if a.place == place && a.is_write() && !a.is_clear() {
                claims.push((facts.site_of(a), a.expr, None));
            }
        }
    }
    claims.sort_by_key(|c| c.0.pos);
    // The acts after it: in-memory writes, and UPDATEs of the same field on
    // a stored record.
    let mut acts: Vec<Act> = facts
        .accesses
        .iter()
        .enumerate()
        .filter(|(_, a)| a.place == place && a.is_write() && !a.is_clear())
        .map(|(i, _)| Act::Write(i))
        .collect();
    if stored {
        acts.extend(
            updates
                .iter()
                .enumerate()
                .filter(|(_, u)| {
                    !u.conditional && u.field == p.last() && update_targets(facts, &p.root, u.call)
                })
                .map(|(i, _)| Act::Update(i)),
        );
    }
    acts.sort_by_key(|a| a.pos(facts, updates));
    for act in acts {
        let at = act.pos(facts, updates);
        let (act_ctx, act_span) = match act {
            Act::Write(w) => {
                let w = &facts.accesses[w];
                (w.ctx, facts.func.stmts[w.stmt].span)
            }
            Act::Update(u) => match stmt_of(facts.func, updates[u].call) {
                Some((ctx, span)) => (ctx, span),
                None => continue,
            },
        };
        let act_value = match act {
            Act::Write(w) => facts.accesses[w]
                .value
                .map(|v| facts.expr_text(v).to_string()),
            Act::Update(u) => updates[u].value.clone(),
        };
        let act_site = Site {
            pos: at,
            ctx: act_ctx,
            span: facts.func.span(act.expr(facts, updates)),
        };
        for &(claim, earlier, test) in &claims {
            let from = claim.pos;
            if from >= at || !facts.reaches(claim, act_site) {
                continue;
            }
            // Setting the status it was checked to have is no transition.
            if let (Some(ti), Some(v)) = (test, &act_value) {
                if checked_status(facts, &facts.tests[ti], earlier).as_deref() == Some(v.as_str()) {
                    continue;
                }
            }
            let Some(a) = facts.awaits_on_path(claim, act_site).next() else {
                continue;
            };
            // `if not await repo.start_finalization(order.id): raise`: the
            // code claims the record through a call it checks.
            if claimed_by_checked_call(facts, &p.root, claim, act_site) {
                continue;
            }
            if let Some(ti) = test {
                if !facts.controls(&facts.tests[ti], act_ctx, act_span) {
                    continue;
                }
                // In memory a synchronous write after the check is the claim.
                if !stored
                    && (claimed_between(facts, place, None, from, a.pos)
                        || claimed_by_test(facts, ti, from, a.pos))
                {
                    continue;
                }
            }
            if conditional_before(at) || safe_stretch(facts, place, from, at) {
                continue;
            }
            let external = external_calls_between(facts, from, at).into_iter().next();
            return Some(Hazard {
                variant: Variant::Status,
                place,
                act,
                earlier,
                test,
                yield_at: a.clone(),
                external,
                first_await_stmt: a.stmt,
            });
        }
    }
    None
}

/// Whether an UPDATE is about this record: it names the record
/// (`pk=invoice.pk`, `{ _id: order._id }`) or the key it was loaded by
/// (`where: { id: orderId }` after `findUnique({ where: { id: orderId } })`).
fn update_targets(facts: &Facts, root: &str, call: ExprId) -> bool {
    let f = facts.func;
    let names = |e: ExprId| -> Vec<String> {
        f.descendants(e)
            .into_iter()
            .filter_map(|d| match f.expr(d) {
                Expr::Ident(n) => Some(n.to_string()),
                _ => None,
            })
            .collect()
    };
    let used = names(call);
    if used.iter().any(|n| n == root) {
        return true;
    }
    let Some(record) = facts.scope.records.get(root) else {
        return false;
    };
    let Expr::Call { args, .. } = f.expr(record.load) else {
        return false;
    };
    // Names that say which row, not a session or options passed along.
    const CONTEXT: &[&str] = &[
        "session",
        "transaction",
        "tx",
        "trx",
        "t",
        "manager",
        "em",
        "conn",
        "connection",
        "client",
        "db",
        "options",
        "opts",
        "ctx",
        "req",
        "context",
        "request",
        "locale",
    ];
    args.iter()
        .flat_map(|a| names(a.value))
        .filter(|n| n.chars().next().is_some_and(char::is_lowercase))
        .filter(|n| !CONTEXT.contains(&n.as_str()))
        .any(|n| used.contains(&n))
}

/// A test on an awaited call that takes the record (or its id) and leaves
/// when the call says no: an atomic claim made by a repository method.
fn claimed_by_checked_call(facts: &Facts, root: &str, from: Site, to: Site) -> bool {
    let f = facts.func;
    facts.tests.iter().any(|t| {
        let tpos = Pos::read(f.stmts[t.stmt].span);
        if !(from.pos < tpos && tpos < to.pos) {
            return false;
        }
        let exits = f.ctxs.iter().enumerate().any(|(i, c)| {
            c.test == Some(t.expr)
                && c.kind == crate::model::CtxKind::Then
                && facts.exits(i as crate::model::CtxId)
        });
        exits
            && t.srcs.iter().any(|s| match *s {
                Src::Await(a) => {
                    let inner = f.unwrap_await(a);
                    matches!(f.expr(inner), Expr::Call { args, .. } if args.iter().any(|arg| {
                        let text = facts.expr_text(arg.value);
                        text == root || text.starts_with(&format!("{root}."))
                    }))
                }
                _ => false,
            })
    })
}

/// The statement context and span holding an expression.
fn stmt_of(f: &Function, e: ExprId) -> Option<(crate::model::CtxId, Span)> {
    let span = f.span(e);
    f.stmts
        .iter()
        .filter(|s| s.span.contains(span) && f.stmt_expr(s).is_some())
        .min_by_key(|s| s.span.end - s.span.start)
        .map(|s| (s.ctx, s.span))
}

// ---------------------------------------------------------------------------
// Message and rewrite
// ---------------------------------------------------------------------------

fn short(text: &str) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 60 {
        format!("{}…", one.chars().take(59).collect::<String>())
    } else {
        one
    }
}

fn report(cx: &Context, facts: &Facts, h: &Hazard, updates: &[StatusUpdate]) -> RawFinding {
    let f = facts.func;
    let place = &facts.places[h.place];
    let act_expr = h.act.expr(facts, updates);
    let act_span = f.span(act_expr);
    let place_text = place_text(facts, h);
    let yield_text = yield_text(facts, h);
    let earlier_text = short(facts.expr_text(h.earlier));
    let act_text = short(facts.expr_text(act_expr));
    let (message, related, risk, confidence) = match h.variant {
        Variant::LostUpdate => (
            format!(
                "`{place_text}` is read before `{yield_text}` and written after it from that read: an update another call makes during the await is lost"
            ),
            format!("`{place_text}` is read here, before the await"),
            Risk::Medium,
            if place.kind == RootKind::Param { Confidence::Medium } else { Confidence::High },
        ),
        Variant::Transform => (
            format!(
                "`{place_text}` is handed to `{yield_text}` and replaced by its result: an update another call makes during the await is overwritten"
            ),
            format!("`{place_text}` is read here, before the await"),
            Risk::Medium,
            Confidence::Low,
        ),
        Variant::CheckThenAct => (
            format!(
                "`{earlier_text}` is checked before `{yield_text}` but `{act_text}` only records it after the await: concurrent calls all pass the check"
            ),
            format!("`{place_text}` is checked here"),
            Risk::Medium,
            if place.kind == RootKind::Param { Confidence::Medium } else { Confidence::High },
        ),
        Variant::LazyInit => (
            format!(
                "`{place_text}` is initialised only after `{yield_text}`: concurrent callers that find it empty each run the initialisation, and the last one wins"
            ),
            format!("`{place_text}` is found empty here"),
            Risk::Low,
            if place.kind == RootKind::Param { Confidence::Medium } else { Confidence::High },
        ),
        Variant::Status => {
            let via = match h.act {
                Act::Update(_) => " with an UPDATE that does not re-check it",
                Act::Write(_) => "",
            };
            let between = match h.external {
                Some((e, k)) => format!(
                    " around the {} `{}`",
                    k.label(),
                    short(&facts.expr_text(e).replace('\n', " "))
                ),
                None => format!(" across `{yield_text}`"),
            };
            (
                format!(
                    "`{place_text}` is moved on{via}{between} with no conditional update claiming the transition: two concurrent calls both pass from the old status and both do the work"
                ),
                if h.test.is_some() {
                    format!("`{place_text}` is checked here")
                } else {
                    format!("`{place_text}` is set here, in this request's own copy")
                },
                if h.external.is_some() { Risk::High } else { Risk::Medium },
                Confidence::High,
            )
        }
    };
    let suggestion = match h.variant {
        Variant::LostUpdate => rewrite_lost_update(cx, facts, h),
        Variant::Transform => rewrite_serialize(cx, facts, h),
        Variant::CheckThenAct => rewrite_claim(cx, facts, h),
        Variant::LazyInit => rewrite_lazy(cx, facts, h),
        Variant::Status => rewrite_status(cx, facts, h, updates),
    };
    RawFinding {
        code: META.code,
        risk,
        confidence,
        message,
        span: act_span,
        related: vec![(f.span(h.earlier), related)],
        suggestion,
    }
}

/// The place as the code writes it (`this.balanceCents`, `order.status`,
/// `self._seen`).
fn place_text(facts: &Facts, h: &Hazard) -> String {
    let f = facts.func;
    let mut e = h.earlier;
    // A method's receiver or an index's collection: name the collection.
    if let Expr::Call { callee, .. } = f.expr(e) {
        if let Expr::Member { object, .. } = f.expr(*callee) {
            e = *object;
        }
    }
    if let Expr::Assign { target, .. } = f.expr(e) {
        e = *target;
    }
    if let Expr::Index { object, .. } = f.expr(e) {
        e = *object;
    }
    let text = facts.expr_text(e);
    if text.contains('\n') || text.len() > 60 {
        facts.places[h.place].key()
    } else {
        text.to_string()
    }
}

fn yield_text(facts: &Facts, h: &Hazard) -> String {
    match h.yield_at.expr {
        Some(e) => short(facts.expr_text(e)),
        None => short(&await_point_label(facts, h.yield_at.span)),
    }
}

/// `for await (...)`, `async for ...:`, `async with ...:` for a yield point
/// without an `await` expression (the model gives the loop or the `with`
/// body; the header is on the line that opens it).
fn await_point_label(facts: &Facts, span: Span) -> String {
    let before = facts.src.get(..span.start as usize).unwrap_or("");
    let from = before.len().saturating_sub(400);
    let window = &facts.src[from..(span.start as usize + 40)
        .min(span.end as usize)
        .min(facts.src.len())];
    for key in ["for await", "async for", "async with"] {
        if let Some(i) = window.rfind(key) {
            let line = window[i..].lines().next().unwrap_or(key);
            return line.trim_end_matches([':', '{', ' ']).to_string();
        }
    }
    facts.text(span).lines().next().unwrap_or("").to_string()
}

fn stmt_text(cx: &Context, facts: &Facts, stmt: usize) -> String {
    let span = facts.func.stmts[stmt].span;
    suggest::rewrite(cx.src, span, &[])
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{by}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ORM a record came from, read off its load call and the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Orm {
    Prisma,
    Typeorm,
    Mongoose,
    Sequelize,
    Django,
    SqlAlchemy,
    Sql,
}

struct RecordApi {
    orm: Orm,
    /// The model, repository or table the record belongs to.
    model: String,
}

fn record_api(cx: &Context, facts: &Facts, root: &str) -> Option<RecordApi> {
    let f = facts.func;
    let family = cx.family();
    let record = facts.scope.records.get(root);
    // A record passed in and saved through a repository: that repository.
    let (callee, load) = match record {
        Some(r) => (r.callee.clone(), Some(r.load)),
        None => {
            let repo = persist_receiver(facts, root)?;
            return Some(RecordApi {
                orm: if family == Family::Python {
                    Orm::SqlAlchemy
                } else {
                    Orm::Typeorm
                },
                model: repo,
            });
        }
    };
    let path: Vec<&str> = callee.split('.').collect();
    let method = *path.last()?;
    let receiver = path[..path.len() - 1].join(".");
    let src = cx.src;
    let api = |orm, model: &str| {
        Some(RecordApi {
            orm,
            model: model.to_string(),
        })
    };
    match family {
        Family::Js => {
            // The load call says most; the file's imports break ties.
            let repo = receiver.to_lowercase().contains("repo") || callee.contains("manager.");
            if callee.starts_with("prisma.") || callee.contains(".prisma.") {
                return api(Orm::Prisma, &receiver);
            }
            if repo {
                return api(Orm::Typeorm, &receiver);
            }
            if method == "findByPk" {
                return api(Orm::Sequelize, &receiver);
            }
            if method == "findById" {
                return api(Orm::Mongoose, &receiver);
            }
            if src.contains("@prisma/client") {
                return api(Orm::Prisma, &receiver);
            }
            if src.contains("sequelize") {
                return api(Orm::Sequelize, &receiver);
            }
            if src.contains("mongoose") {
                return api(Orm::Mongoose, &receiver);
            }
            if src.contains("typeorm") {
                return api(Orm::Typeorm, &receiver);
            }
            api(Orm::Sql, &table_name(root))
        }
        Family::Python => {
            if path.contains(&"objects") {
                let model =
                    path[..path.iter().position(|p| *p == "objects").unwrap_or(0)].join(".");
                return api(Orm::Django, &model);
            }
            // `session.get(Order, id)` / `session.scalar(select(Order)...)`.
            if let Some(load) = load {
                if let Expr::Call { args, .. } = f.expr(load) {
                    if let Some(first) = args.first() {
                        let t = facts.expr_text(first.value);
                        if t.chars().next().is_some_and(char::is_uppercase)
                            && !t.contains(['(', ' '])
                        {
                            return api(Orm::SqlAlchemy, t);
                        }
                    }
                }
                let text = facts.expr_text(load);
                if let Some(i) = text.find("select(") {
                    let model: String = text[i + 7..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                        .collect();
                    if !model.is_empty() {
                        return api(Orm::SqlAlchemy, &model);
                    }
                }
            }
            api(Orm::Sql, &table_name(root))
        }
    }
}

/// The receiver of a persist call taking `root` (`payouts` in
/// `payouts.save(payout)`).
fn persist_receiver(facts: &Facts, root: &str) -> Option<String> {
    let f = facts.func;
    let cat = &awaits::catalog().records;
    f.exprs.iter().find_map(|e| {
        let Expr::Call { callee, args } = e else {
            return None;
        };
        let m = f.callee_name(*callee)?;
        if !cat.persist_methods.iter().any(|p| p == m) {
            return None;
        }
        if !args
            .iter()
            .any(|a| matches!(f.expr(a.value), Expr::Ident(n) if &**n == root))
        {
            return None;
        }
        let Expr::Member { object, .. } = f.expr(*callee) else {
            return None;
        };
        Some(facts.expr_text(*object).to_string())
    })
}

/// `order` -> `orders`, `category` -> `categories`: the conventional table.
fn table_name(root: &str) -> String {
    let snake: String = awaits::tokens(root).join("_");
    if snake.ends_with('y') && !snake.ends_with("ay") && !snake.ends_with("ey") {
        format!("{}ies", &snake[..snake.len() - 1])
    } else if snake.ends_with('s') {
        snake
    } else {
        format!("{snake}s")
    }
}

/// `op` and operand of an update made from the stale value: `+ points` for
/// `new_total = user.points + points`, `- amountCents` for
/// `this.balanceCents = current - amountCents`.
fn delta(facts: &Facts, h: &Hazard) -> Option<(String, String)> {
    let f = facts.func;
    let Act::Write(w) = h.act else { return None };
    let w = &facts.accesses[w];
    if let Expr::Assign { op, value, .. } = f.expr(w.expr) {
        if matches!(&**op, "+=" | "-=") {
            return Some((op[..1].to_string(), facts.expr_text(*value).to_string()));
        }
        if &**op == "++" {
            return Some(("+".into(), "1".into()));
        }
        let mut v = *value;
        // Through one local: `new_total = user.points + points`.
        if let Expr::Ident(name) = f.expr(v) {
            v = local_definition(f, name, f.span(w.expr).start)?;
        }
        if let Expr::Binary { op, left, right } = f.expr(v) {
            if matches!(&**op, "+" | "-") && !facts.taint[*left as usize].is_empty() {
                return Some((op.to_string(), facts.expr_text(*right).to_string()));
            }
            if &**op == "+" && !facts.taint[*right as usize].is_empty() {
                return Some(("+".into(), facts.expr_text(*left).to_string()));
            }
        }
    }
    None
}

/// The value a local was last given before `before`.
fn local_definition(f: &Function, name: &str, before: u32) -> Option<ExprId> {
    f.exprs.iter().enumerate().rev().find_map(|(i, e)| match e {
        Expr::Assign {
            target, value, op, ..
        } if &**op == "="
            && matches!(f.expr(*target), Expr::Ident(n) if &**n == name)
            && f.span(i as ExprId).end <= before =>
        {
            Some(*value)
        }
        _ => None,
    })
}

fn rewrite_lost_update(cx: &Context, facts: &Facts, h: &Hazard) -> Suggestion {
    let f = facts.func;
    let family = cx.family();
    let hash = suggest::comment(family);
    let place = &facts.places[h.place];
    let p_text = place_text(facts, h);
    let Act::Write(wi) = h.act else {
        unreachable!("a lost update is a write")
    };
    let w = &facts.accesses[wi];
    let field = place.last().to_string();
    // A stored record: let the database apply the change.
    if place.kind == RootKind::Record {
        if let (Some(api), Some((op, d))) = (record_api(cx, facts, &place.root), delta(facts, h)) {
            let r = &place.root;
            let neg = op == "-";
            let code = match api.orm {
                Orm::Prisma => format!(
                    "await {}.update({{ where: {{ id: {r}.id }}, data: {{ {field}: {{ {}: {d} }} }} }});",
                    api.model,
                    if neg { "decrement" } else { "increment" }
                ),
                Orm::Typeorm => format!(
                    "await {}.{}({{ id: {r}.id }}, '{field}', {d});",
                    api.model,
                    if neg { "decrement" } else { "increment" }
                ),
                Orm::Sequelize => format!(
                    "await {r}.{}('{field}', {{ by: {d} }});",
                    if neg { "decrement" } else { "increment" }
                ),
                Orm::Mongoose => format!(
                    "await {}.updateOne({{ _id: {r}._id }}, {{ $inc: {{ {field}: {}{d} }} }});",
                    api.model,
                    if neg { "-" } else { "" }
                ),
                Orm::Django => format!(
                    "await {}.objects.filter(pk={r}.pk).aupdate({field}=F(\"{field}\") {op} {d})",
                    api.model
                ),
                Orm::SqlAlchemy => format!(
                    "await session.execute(\n    update({m}).where({m}.id == {r}.id).values({field}={m}.{field} {op} {d})\n)",
                    m = api.model
                ),
                Orm::Sql => match family {
                    Family::Js => format!(
                        "await db.query('UPDATE {t} SET {field} = {field} {op} $1 WHERE id = $2', [{d}, {r}.id]);",
                        t = api.model
                    ),
                    Family::Python => format!(
                        "await conn.execute(\"UPDATE {t} SET {field} = {field} {op} $1 WHERE id = $2\", {d}, {r}.id)",
                        t = api.model
                    ),
                },
            };
            return Suggestion {
                title: format!("Let the database apply the change to `{p_text}` atomically"),
                code: format!(
                    "{hash} one statement reads and writes `{field}`: no update made during the await is lost\n{code}"
                ),
            };
        }
    }
    // The await inside the write: take the awaited value first, then update
    // from the current state in one synchronous step.
    let stmt_span = f.stmts[w.stmt].span;
    if let Some(a) = h.yield_at.expr.filter(|a| stmt_span.contains(f.span(*a))) {
        let name = awaited_name(f, a, family);
        let decl = match family {
            Family::Js => format!("const {name} = {};", facts.expr_text(a)),
            Family::Python => format!("{name} = {}", facts.expr_text(a)),
        };
        let rest = suggest::rewrite(cx.src, stmt_span, &[(f.span(a), name.clone())]);
        return Suggestion {
            title: format!("Await first, then update `{p_text}` in one step from its current value"),
            code: format!(
                "{hash} `{p_text}` is read after the await, so an update made meanwhile is kept\n{decl}\n{rest}"
            ),
        };
    }
    // The stale value came through a local: read the place again.
    let mut edits = Vec::new();
    if let Some(r) = w.deps.iter().filter_map(|s| s.read()).find(|r| {
        facts.accesses[*r as usize].place == h.place
            || facts.places[facts.accesses[*r as usize].place].extends(place)
    }) {
        let r = &facts.accesses[r as usize];
        let stale_text = facts.expr_text(r.expr).to_string();
        // Replace each local that carried the stale read by the place itself.
        if let Some(value) = w.value {
            for d in f.descendants(value) {
                if let Expr::Ident(n) = f.expr(d) {
                    if facts.taint[d as usize].iter().any(|s| {
                        s.read()
                            .is_some_and(|x| facts.accesses[x as usize].expr == r.expr)
                    }) {
                        if let Some(def) = local_definition(f, n, f.span(d).start) {
                            let def_text = facts.expr_text(def);
                            let text = if def_text.contains(&*stale_text) && def_text != stale_text
                            {
                                match f.expr(def) {
                                    Expr::Binary { .. } | Expr::Cond { .. } => {
                                        format!("({def_text})")
                                    }
                                    _ => def_text.to_string(),
                                }
                            } else {
                                stale_text.clone()
                            };
                            edits.push((f.span(d), text));
                        }
                    }
                }
            }
        }
    }
    let rewritten = suggest::rewrite(cx.src, stmt_span, &edits);
    // `self.seen = seen` after `seen = self.seen; ...; seen += n`: count this
    // call's change instead of copying the state, and apply it in one step.
    if let (Expr::Assign { target, .. }, Some(Expr::Ident(local))) =
        (f.expr(w.expr), w.value.map(|v| f.expr(v)))
    {
        if edits.len() == 1 && edits[0].1 == facts.expr_text(*target) {
            let semi = if family == Family::Js { ";" } else { "" };
            return Suggestion {
                title: format!(
                    "Count this call's change in `{local}` and add it to `{p_text}` in one step"
                ),
                code: format!(
                    "{hash} start from zero, not from a copy of `{p_text}` taken before `{}`\n{local} = 0{semi}\n{hash} accumulate into `{local}` as before, then, after the awaits:\n{p_text} += {local}{semi}",
                    yield_text(facts, h)
                ),
            };
        }
    }
    Suggestion {
        title: format!("Read `{p_text}` again after the await, in the same step as the write"),
        code: format!(
            "{hash} computed from the current `{p_text}`, after `{}`: nothing is lost\n{rewritten}",
            yield_text(facts, h)
        ),
    }
}

/// The stale value feeds the awaited call itself: run the updates one at a
/// time, each from the previous one's result.
fn rewrite_serialize(cx: &Context, facts: &Facts, h: &Hazard) -> Suggestion {
    let family = cx.family();
    let hash = suggest::comment(family);
    let Act::Write(wi) = h.act else {
        unreachable!("a transformation ends in a write")
    };
    let w = &facts.accesses[wi];
    let p_text = place_text(facts, h);
    let place = &facts.places[h.place];
    let field = awaits::tokens(place.last()).join("_");
    let stmt = stmt_text(cx, facts, w.stmt);
    let on_self = place.kind == RootKind::This;
    let code = match family {
        Family::Js => {
            let camel: String = awaits::tokens(place.last())
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if i == 0 {
                        t.clone()
                    } else {
                        let mut c = t.chars();
                        c.next()
                            .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
                    }
                })
                .collect();
            let chain = if on_self {
                format!("this.{camel}Updates")
            } else {
                format!("{camel}Updates")
            };
            format!(
                "{hash} run the updates of `{p_text}` one at a time: each starts from the previous result\n{chain} = ({chain} ?? Promise.resolve()).then(async () => {{\n{}\n}});\nawait {chain};",
                indent(&stmt, "  ")
            )
        }
        Family::Python => {
            let lock = if on_self {
                format!("self._{field}_lock")
            } else {
                format!("_{field}_lock")
            };
            format!(
                "{hash} run the updates of `{p_text}` one at a time (create `{lock} = asyncio.Lock()` once)\nasync with {lock}:\n{}",
                indent(&stmt, "    ")
            )
        }
    };
    Suggestion {
        title: format!("Serialise the updates of `{p_text}`"),
        code,
    }
}

/// A local name for an awaited value: `quote` for `await pricing.quote(x)`.
fn awaited_name(f: &Function, a: ExprId, family: Family) -> String {
    let inner = f.unwrap_await(a);
    let base = match f.expr(inner) {
        Expr::Call { callee, .. } => f.callee_name(*callee).unwrap_or("value").to_string(),
        Expr::Member { property, .. } => property.to_string(),
        Expr::Ident(n) => n.to_string(),
        _ => "value".to_string(),
    };
    let base = base.trim_start_matches(['_', '#']);
    match family {
        Family::Js => format!("{base}Result"),
        Family::Python => format!("{}_result", awaits::tokens(base).join("_")),
    }
}

/// The inverse of a claim, run when the guarded work fails.
fn undo(facts: &Facts, w: &awaits::Access, family: Family) -> String {
    let f = facts.func;
    let p = place_of_write(facts, w);
    let key = w.key.map(|k| facts.expr_text(k).to_string());
    if let Expr::Assign { op, value, .. } = f.expr(w.expr) {
        let semi = if family == Family::Js { ";" } else { "" };
        match &**op {
            "++" => return format!("{p} -= 1{semi}"),
            "+=" => return format!("{p} -= {}{semi}", facts.expr_text(*value)),
            "-=" => return format!("{p} += {}{semi}", facts.expr_text(*value)),
            _ => {}
        }
    }
    match f.expr(w.expr) {
        Expr::Call { callee, .. } => {
            let m = f.callee_name(*callee).unwrap_or("");
            let k = key.unwrap_or_default();
            match (family, m) {
                (Family::Js, "push") => format!("{p}.splice({p}.indexOf({k}), 1);"),
                (Family::Js, _) => format!("{p}.delete({k});"),
                (Family::Python, "add") => format!("{p}.discard({k})"),
                (Family::Python, "append") => format!("{p}.remove({k})"),
                (Family::Python, _) => format!("{p}.pop({k}, None)"),
            }
        }
        _ => match (family, key) {
            (Family::Js, Some(k)) => format!("delete {p}[{k}];"),
            (Family::Python, Some(k)) => format!("{p}.pop({k}, None)"),
            (Family::Js, None) => {
                let back = match w.value.map(|v| f.expr(v)) {
                    Some(Expr::Bool(true)) => "false",
                    _ => "undefined",
                };
                format!("{p} = {back};")
            }
            (Family::Python, None) => {
                let back = match w.value.map(|v| f.expr(v)) {
                    Some(Expr::Bool(true)) => "False",
                    _ => "None",
                };
                format!("{p} = {back}")
            }
        },
    }
}

fn place_of_write(facts: &Facts, w: &awaits::Access) -> String {
    let f = facts.func;
    let e = match f.expr(w.expr) {
        Expr::Call { callee, .. } => match f.expr(*callee) {
            Expr::Member { object, .. } => *object,
            _ => *callee,
        },
        Expr::Assign { target, .. } => match f.expr(*target) {
            Expr::Index { object, .. } if w.key.is_some() => *object,
            _ => *target,
        },
        _ => w.expr,
    };
    facts.expr_text(e).to_string()
}

/// (b): take the claim before the first await, undo it if the work fails.
fn rewrite_claim(cx: &Context, facts: &Facts, h: &Hazard) -> Suggestion {
    let family = cx.family();
    let hash = suggest::comment(family);
    let Act::Write(wi) = h.act else {
        unreachable!("a check-then-act ends in a write")
    };
    let w = &facts.accesses[wi];
    if facts.from_await(w) {
        return rewrite_lazy(cx, facts, h);
    }
    let p_text = place_text(facts, h);
    let write = stmt_text(cx, facts, w.stmt);
    let work = stmt_text(cx, facts, h.first_await_stmt);
    let undo = undo(facts, w, family);
    let code = match family {
        Family::Js => format!(
            "{write} {hash} before `{}`, right after the check\ntry {{\n{}\n}} catch (err) {{\n  {undo} {hash} a failed attempt can be retried\n  throw err;\n}}",
            yield_text(facts, h),
            indent(&work, "  ")
        ),
        Family::Python => format!(
            "{write}  {hash} before the first await, right after the check\ntry:\n{}\nexcept BaseException:\n    {undo}  {hash} a failed or cancelled attempt can be retried\n    raise",
            indent(&work, "    ")
        ),
    };
    Suggestion {
        title: format!(
            "Record `{p_text}` before the first await, inside try/catch that undoes it on failure"
        ),
        code,
    }
}

/// (b) lazy initialisation: cache the promise (task), not its result.
fn rewrite_lazy(cx: &Context, facts: &Facts, h: &Hazard) -> Suggestion {
    let f = facts.func;
    let family = cx.family();
    let hash = suggest::comment(family);
    let Act::Write(wi) = h.act else {
        unreachable!("lazy initialisation is a write")
    };
    let w = &facts.accesses[wi];
    let p_text = place_of_write(facts, w);
    // The awaited call the value comes from.
    let awaited = w
        .deps
        .iter()
        .find_map(|s| match s {
            Src::Await(a) => Some(*a),
            _ => None,
        })
        .map(|a| match f.expr(a) {
            Expr::Await(inner) => facts.expr_text(*inner).to_string(),
            _ => facts.expr_text(a).to_string(),
        })
        .unwrap_or_else(|| "…".to_string());
    let code = match (family, w.key) {
        (Family::Js, None) => format!(
            "{hash} keep the promise, not its result: concurrent callers share one `{}`\n{p}Promise ??= {awaited};\n{p} = await {p}Promise;",
            short(&awaited),
            p = p_text
        ),
        (Family::Js, Some(k)) => {
            let k = facts.expr_text(k);
            format!(
                "{hash} store the pending promise before awaiting it: concurrent callers share it\nlet pending = {p}.get({k});\nif (!pending) {{\n  pending = {awaited};\n  {p}.set({k}, pending);\n  pending.catch(() => {p}.delete({k})); {hash} a failure is not cached\n}}\nconst value = await pending;",
                p = p_text
            )
        }
        (Family::Python, None) => format!(
            "{hash} keep the task, not its result: concurrent callers share one `{}`\nif {p}_task is None:\n    {p}_task = asyncio.ensure_future({awaited})\n{p} = await {p}_task",
            short(&awaited),
            p = p_text
        ),
        (Family::Python, Some(k)) => {
            let k = facts.expr_text(k);
            format!(
                "{hash} store the pending task before awaiting it: concurrent callers share it\ntask = {p}_tasks.get({k})\nif task is None:\n    task = asyncio.ensure_future({awaited})\n    {p}_tasks[{k}] = task\n    task.add_done_callback(lambda t: t.exception() and {p}_tasks.pop({k}, None))\nvalue = await task",
                p = p_text
            )
        }
    };
    Suggestion {
        title: format!("Cache the pending promise for `{p_text}`, not its result"),
        code,
    }
}

/// The status value a check compares against (`'pending'` in
/// `order.status !== 'pending'`).
fn checked_status(facts: &Facts, test: &Test, earlier: ExprId) -> Option<String> {
    let f = facts.func;
    f.descendants(test.expr)
        .into_iter()
        .find_map(|d| match f.expr(d) {
            Expr::Binary { op, left, right }
                if matches!(&**op, "===" | "==" | "!==" | "!=" | "is" | "is not")
                    && (*left == earlier || *right == earlier) =>
            {
                let other = if *left == earlier { *right } else { *left };
                Some(facts.expr_text(other).to_string())
            }
            _ => None,
        })
}

/// (c): claim the transition with a conditional update in the code's ORM.
fn rewrite_status(cx: &Context, facts: &Facts, h: &Hazard, updates: &[StatusUpdate]) -> Suggestion {
    let family = cx.family();
    let hash = suggest::comment(family);
    let place = &facts.places[h.place];
    let p_text = place_text(facts, h);
    let field = place.last().to_string();
    let from = h
        .test
        .and_then(|t| checked_status(facts, &facts.tests[t], h.earlier))
        .unwrap_or_else(|| p_text.clone());
    // The status claimed: the first write before the await, else the act's.
    let claim_value = facts
        .accesses
        .iter()
        .filter(|a| a.place == h.place && a.is_write() && a.pos < h.yield_at.pos)
        .chain(
            facts
                .accesses
                .iter()
                .filter(|a| a.place == h.place && a.is_write()),
        )
        .find_map(|a| a.value)
        .map(|v| facts.expr_text(v).to_string())
        .or_else(|| match h.act {
            Act::Update(u) => updates[u].value.clone(),
            Act::Write(_) => None,
        })
        .unwrap_or_else(|| from.clone());
    let to = claim_value;
    let r = &place.root;
    let stored = record_like(facts, r, place.kind);
    let claim = if !stored {
        // In memory: the synchronous check and set is the claim.
        match family {
            Family::Js => format!(
                "if ({p_text} !== {from}) return;\n{p_text} = {to}; {hash} claimed synchronously, before the first await"
            ),
            Family::Python => format!(
                "if {p_text} != {from}:\n    return\n{p_text} = {to}  {hash} claimed synchronously, before the first await"
            ),
        }
    } else {
        let api = record_api(cx, facts, r).unwrap_or(RecordApi {
            orm: Orm::Sql,
            model: table_name(r),
        });
        let m = &api.model;
        match api.orm {
            Orm::Prisma => format!(
                "const claimed = await {m}.updateMany({{\n  where: {{ id: {r}.id, {field}: {from} }},\n  data: {{ {field}: {to} }},\n}});\nif (claimed.count !== 1) return; {hash} another request holds it"
            ),
            Orm::Typeorm => format!(
                "const claimed = await {m}.update({{ id: {r}.id, {field}: {from} }}, {{ {field}: {to} }});\nif (claimed.affected !== 1) return; {hash} another request holds it"
            ),
            Orm::Mongoose => format!(
                "const claimed = await {m}.findOneAndUpdate(\n  {{ _id: {r}._id, {field}: {from} }},\n  {{ $set: {{ {field}: {to} }} }},\n  {{ new: true }},\n);\nif (!claimed) return; {hash} another request holds it"
            ),
            Orm::Sequelize => format!(
                "const [claimed] = await {m}.update({{ {field}: {to} }}, {{ where: {{ id: {r}.id, {field}: {from} }} }});\nif (claimed !== 1) return; {hash} another request holds it"
            ),
            Orm::Django => format!(
                "claimed = await {m}.objects.filter(pk={r}.pk, {field}={from}).aupdate({field}={to})\nif claimed != 1:\n    return  {hash} another request holds it"
            ),
            Orm::SqlAlchemy => format!(
                "result = await session.execute(\n    update({m})\n    .where({m}.id == {r}.id, {m}.{field} == {from})\n    .values({field}={to})\n    .returning({m}.id)\n)\nif result.scalar_one_or_none() is None:\n    return  {hash} another request holds it"
            ),
            Orm::Sql => match family {
                Family::Js => format!(
                    "const claimed = await db.query(\n  'UPDATE {m} SET {field} = $2 WHERE id = $1 AND {field} = $3 RETURNING *',\n  [{r}.id, {to}, {from}],\n);\nif (claimed.rowCount !== 1) return; {hash} another request holds it"
                ),
                Family::Python => format!(
                    "claimed = await conn.fetchrow(\n    \"UPDATE {m} SET {field} = $2 WHERE id = $1 AND {field} = $3 RETURNING *\",\n    {r}.id, {to}, {from},\n)\nif claimed is None:\n    return  {hash} another request holds it"
                ),
            },
        }
    };
    Suggestion {
        title: format!("Claim the `{field}` transition with a conditional update before the work"),
        code: format!("{hash} only the request whose update still sees {from} goes on\n{claim}"),
    }
}
