//! RA001 check-then-insert: a read that checks whether a row exists, then an
//! insert of the same entity in the same function, with nothing atomic in
//! between. Two concurrent requests both see "no row" and both insert.
//!
//! How: the function's database operations come from `analysis::db` (SQL
//! text anywhere it is passed, ORM and query-builder chains). A read or count
//! is a *check* for a later insert of the same entity when its result decides
//! whether the insert runs: the insert sits in the branch taken when the row
//! is absent, follows an early exit taken when it exists, sits on the right
//! of `??` / `||`, or in the `except DoesNotExist` handler of the read. A
//! count compared with a limit is a quota check. Then the "not a hazard"
//! clauses of RULES.md are applied (conflict-safe insert, unique-violation
//! handler, catch-all that re-reads, a parent row locked in a transaction
//! before the check, SERIALIZABLE), and the "still a hazard" ones annotate
//! the message (lock only on the checked rows, lock in autocommit, plain
//! transaction, catch-all that only logs). Risk is high when an external
//! side effect (`analysis::external`) runs after the check.

use rustc_hash::FxHashSet as HashSet;

use crate::analysis::db::{self, entity_key, DbOp, Lib, OpKind};
use crate::analysis::external::{self, External};
use crate::analysis::sql::Dialect;
use crate::finding::{Confidence, RawFinding, Risk, Suggestion};
use crate::model::{CtxId, CtxKind, Expr, ExprId, Family, Function, PropKey, Span, StmtKind};
use crate::rules::{Context, RuleMeta};
use crate::suggest;

pub struct Rule;

static META: RuleMeta = RuleMeta {
    code: "RA001",
    name: "check-then-insert",
    risk: Risk::Medium,
    confidence: Confidence::High,
    doc: include_str!("../../rules/ra001_check_then_insert.md"),
};

impl super::Rule for Rule {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    /// Every finding is at an insert: an ORM insert verb or SQL `INSERT`
    /// (the prefilter matches case-insensitively).
    fn triggers(&self, catalog: &crate::catalog::Catalog) -> Option<Vec<String>> {
        let mut words = crate::analysis::db::catalog().orm.inserts.clone();
        words.push("insert".to_string());
        words.extend(crate::catalog::literal_segments(&catalog.ext.db_insert));
        Some(words)
    }

    fn check(&self, cx: &Context, out: &mut Vec<RawFinding>) {
        let f = cx.func;
        // Test code runs one request at a time: its check-then-insert is setup.
        if !may_insert(cx) || runs_once(f) || crate::analysis::guards::in_test_code(cx.file, f) {
            return;
        }
        let family = cx.family();
        let mut ops = db::ops(f, family);
        ops.extend(in_house_ops(cx));
        ops.sort_by_key(|o| o.span.start);
        if !ops.iter().any(|o| o.kind == OpKind::Insert) {
            return;
        }
        let an = Analysis::new(cx, &ops);
        let mut reported: HashSet<ExprId> = HashSet::default();
        for check in ops
            .iter()
            .filter(|o| matches!(o.kind, OpKind::Read | OpKind::Count))
        {
            for insert in ops
                .iter()
                .filter(|o| o.kind == OpKind::Insert && o.span.start >= check.span.end)
            {
                if reported.contains(&insert.expr) {
                    continue;
                }
                let Some(confidence) = same_entity(check, insert) else {
                    continue;
                };
                let Some(shape) = an.is_check(check, insert) else {
                    continue;
                };
                reported.insert(insert.expr);
                if let Some(finding) = an.judge(check, insert, shape, confidence) {
                    out.push(finding);
                }
                break;
            }
        }
    }
}

/// Data migrations run once, serially: Django `RunPython(fn)` functions
/// (`apps, schema_editor`) and Alembic `upgrade()` / `downgrade()`.
fn runs_once(f: &Function) -> bool {
    // Seed scripts (`seed`, `seedDatabase`, `seed_users`) run once, serially.
    f.name.to_ascii_lowercase().contains("seed")
        || f.params.iter().any(|p| &*p.name == "schema_editor")
        || (f.params.is_empty() && matches!(&*f.name, "upgrade" | "downgrade"))
        // Helpers of a data migration load historical models: `apps.get_model(...)`.
        || f.exprs.iter().any(|e| {
            matches!(e, Expr::Call { callee, .. } if f.callee_text(*callee) == "apps.get_model")
        })
}

/// Cheap test before building the operations: a call that can insert, or
/// text that mentions INSERT.
/// The team's own DB helpers from the config (`db-read`, `db-insert`,
/// `db-upsert`), each naming its entity: `findUserByEmail` reads `user`.
fn in_house_ops(cx: &Context) -> Vec<db::DbOp> {
    let ext = &cx.catalog.ext;
    if ext.db_read.is_empty() && ext.db_insert.is_empty() && ext.db_upsert.is_empty() {
        return Vec::new();
    }
    let f = cx.func;
    let mut out = Vec::new();
    for (i, e) in f.exprs.iter().enumerate() {
        let Expr::Call { callee, args } = e else {
            continue;
        };
        let path = f.path(*callee);
        let kind = if crate::catalog::matches_any(&ext.db_upsert, &path) {
            OpKind::SafeInsert
        } else if crate::catalog::matches_any(&ext.db_insert, &path) {
            OpKind::Insert
        } else if crate::catalog::matches_any(&ext.db_read, &path) {
            OpKind::Read
        } else {
            continue;
        };
        let id = i as ExprId;
        out.push(db::DbOp {
            kind,
            expr: id,
            span: f.span(id),
            entity: path.last().and_then(|name| helper_entity(name)),
            lib: db::Lib::Unknown,
            lock: false,
            keys: Vec::new(),
            sql: None,
            in_tx: false,
            serializable: false,
            label: f.callee_text(*callee),
            data: args.first().map(|a| a.value),
        });
    }
    out
}

/// The entity a helper's name mentions: `findUserByEmail` and
/// `insert_user` give `user`; `saveOrder` gives `order`.
fn helper_entity(name: &str) -> Option<String> {
    const VERBS: &[&str] = &[
        "find", "get", "fetch", "load", "lookup", "read", "check", "exists", "count", "insert",
        "create", "add", "save", "new", "upsert", "put", "write", "store", "make", "register",
        "ensure", "a",
    ];
    let words = crate::catalog::name_tokens(name);
    let mut rest = words
        .into_iter()
        .filter(|w| !w.is_empty())
        .skip_while(|w| VERBS.contains(&w.as_str()));
    let entity: Vec<String> = rest
        .by_ref()
        .take_while(|w| !matches!(w.as_str(), "by" | "for" | "with" | "from" | "if" | "or"))
        .collect();
    (!entity.is_empty()).then(|| entity.join("_"))
}

fn may_insert(cx: &Context) -> bool {
    let ext = &cx.catalog.ext;
    if !ext.db_insert.is_empty()
        && cx.func.exprs.iter().any(|e| {
            matches!(e, Expr::Call { callee, .. }
                if crate::catalog::matches_any(&ext.db_insert, &cx.func.path(*callee)))
        })
    {
        return true;
    }
    let cat = db::catalog();
    cx.func.exprs.iter().any(|e| match e {
        Expr::Call { callee, .. } => cx
            .func
            .callee_name(*callee)
            .is_some_and(|n| cat.orm.inserts.iter().any(|i| i == n)),
        Expr::Str(s) | Expr::Template { text: s, .. } => {
            s.len() > 10
                && s.as_bytes()
                    .windows(6)
                    .any(|w| w.eq_ignore_ascii_case(b"insert"))
        }
        _ => false,
    })
}

/// Confidence from entity matching: both known and equal is high, one side
/// unknown is medium, different or both unknown is no finding.
fn same_entity(check: &DbOp, insert: &DbOp) -> Option<Confidence> {
    match (&check.entity, &insert.entity) {
        (Some(a), Some(b)) => (entity_key(a) == entity_key(b)).then_some(Confidence::High),
        (None, None) => None,
        _ => Some(Confidence::Medium),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    Exists,
    Quota,
}

/// Whether a test is true when the row exists (`Found`) or when it does not.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pol {
    Found,
    Absent,
}

impl Pol {
    fn not(self) -> Pol {
        match self {
            Pol::Found => Pol::Absent,
            Pol::Absent => Pol::Found,
        }
    }
}

struct Analysis<'a> {
    cx: &'a Context<'a>,
    f: &'a Function,
    ops: &'a [DbOp],
    parents: Vec<Option<ExprId>>,
    /// The statement context of every expression.
    ctx_of: Vec<CtxId>,
    /// The span of the statement holding every expression.
    stmt_of: Vec<Span>,
    /// The call that runs this function as a transaction callback, if any,
    /// and whether it asks for SERIALIZABLE.
    tx_callback: Option<bool>,
    externals: Vec<(u32, External, ExprId)>,
}

impl<'a> Analysis<'a> {
    fn new(cx: &'a Context<'a>, ops: &'a [DbOp]) -> Self {
        let f = cx.func;
        let mut ctx_of = vec![0; f.exprs.len()];
        let mut stmt_of = vec![Span::default(); f.exprs.len()];
        for stmt in &f.stmts {
            if let Some(root) = f.stmt_expr(stmt) {
                for d in f.descendants(root) {
                    ctx_of[d as usize] = stmt.ctx;
                    stmt_of[d as usize] = stmt.span;
                }
            }
        }
        let externals = (0..f.exprs.len() as ExprId)
            .filter_map(|id| {
                external::classify(f, id, cx.family()).map(|e| (f.span(id).start, e, id))
            })
            .collect();
        Analysis {
            cx,
            f,
            ops,
            parents: f.parents(),
            ctx_of,
            stmt_of,
            tx_callback: tx_callback(cx),
            externals,
        }
    }

    fn ctx(&self, id: ExprId) -> CtxId {
        self.ctx_of[id as usize]
    }

    /// Names bound to the check's result, and the expressions that carry it
    /// directly (the call, its `await`, `.rows`, `.exists()`).
    fn subjects(&self, check: &DbOp) -> (HashSet<String>, HashSet<ExprId>) {
        let f = self.f;
        let mut direct = HashSet::default();
        let mut cur = check.expr;
        direct.insert(cur);
        while let Some(p) = self.parents[cur as usize] {
            let carries = match f.expr(p) {
                Expr::Await(_) | Expr::Other(_) => true,
                Expr::Member { object, .. } | Expr::Index { object, .. } => *object == cur,
                Expr::Call { callee, args } => {
                    matches!(f.expr(*callee), Expr::Member { object, .. } if *object == cur)
                        || (args.len() == 1
                            && args[0].value == cur
                            && matches!(
                                f.callee_name(*callee),
                                Some("len" | "bool" | "Boolean" | "list")
                            ))
                }
                _ => false,
            };
            if !carries {
                break;
            }
            cur = p;
            direct.insert(cur);
        }
        let mut names = HashSet::default();
        let mut bound = false;
        if let Some(p) = self.parents[cur as usize] {
            if let Expr::Assign { target, value, .. } = f.expr(p) {
                if *value == cur {
                    bind_names(f, *target, &mut names);
                    bound = true;
                }
            }
        }
        // DB-API: `cur.execute("SELECT ...")` then `cur.fetchone()`: the
        // cursor carries the result.
        if !bound && check.sql.is_some() && self.cx.family() == Family::Python {
            if let Expr::Call { callee, .. } = f.expr(check.expr) {
                if let Expr::Member { object, .. } = f.expr(*callee) {
                    if let Expr::Ident(n) = f.expr(*object) {
                        names.insert(n.to_string());
                    }
                }
            }
        }
        // Values derived from the result: `user = result.scalar_one_or_none()`,
        // `const exists = rows.length > 0`.
        for _ in 0..3 {
            let before = names.len();
            for e in &f.exprs {
                if let Expr::Assign {
                    target, value, op, ..
                } = e
                {
                    if &**op != "=" || f.span(*value).start < check.span.end {
                        continue;
                    }
                    let uses = f
                        .descendants(*value)
                        .iter()
                        .any(|d| matches!(f.expr(*d), Expr::Ident(n) if names.contains(&**n)));
                    if uses {
                        bind_names(f, *target, &mut names);
                    }
                }
            }
            if names.len() == before {
                break;
            }
        }
        (names, direct)
    }

    /// Whether the check's result decides that the insert runs when the row
    /// is absent (or the count is under a limit).
    fn is_check(&self, check: &DbOp, insert: &DbOp) -> Option<Shape> {
        let f = self.f;
        let (names, direct) = self.subjects(check);
        let subject = |e: ExprId| subject_value(f, e, &names, &direct);
        let insert_ctx = self.ctx(insert.expr);

        // `try { get } except DoesNotExist: create`.
        if let Some(try_id) = f
            .ctx_chain(self.ctx(check.expr))
            .find_map(|(_, c)| match c.kind {
                CtxKind::Try { try_id } => Some(try_id),
                _ => None,
            })
        {
            let in_handler = f
                .ctx_chain(insert_ctx)
                .any(|(_, c)| matches!(&c.kind, CtxKind::Catch { try_id: t, .. } if *t == try_id));
            if in_handler
                && !f
                    .ctx_chain(insert_ctx)
                    .any(|(_, c)| matches!(c.kind, CtxKind::Try { try_id: t } if t == try_id))
            {
                return Some(Shape::Exists);
            }
        }

        // Expression-level guards: `existing ?? await create()`, ternaries.
        let mut cur = insert.expr;
        while let Some(p) = self.parents[cur as usize] {
            match f.expr(p) {
                Expr::Binary { op, left, right } if *right == cur => {
                    if let Some((pol, shape)) = existence(f, *left, &subject) {
                        let runs = match &**op {
                            "||" | "??" | "or" => pol.not(),
                            "&&" | "and" => pol,
                            _ => break,
                        };
                        if shape == Shape::Quota || runs == Pol::Absent {
                            return Some(shape);
                        }
                    }
                }
                Expr::Cond {
                    test,
                    then,
                    otherwise,
                } => {
                    if let Some((pol, shape)) = existence(f, *test, &subject) {
                        let runs = if *then == cur {
                            pol
                        } else if *otherwise == cur {
                            pol.not()
                        } else {
                            break;
                        };
                        if shape == Shape::Quota || runs == Pol::Absent {
                            return Some(shape);
                        }
                    }
                }
                _ => {}
            }
            cur = p;
        }

        // Statement-level guards between the check and the insert.
        for stmt in &f.stmts {
            let StmtKind::Test(te) = stmt.kind else {
                continue;
            };
            let te_span = f.span(te);
            if te_span.end < check.span.start || te_span.start > insert.span.start {
                continue;
            }
            let Some((pol, shape)) = existence(f, te, &subject) else {
                continue;
            };
            let branches: Vec<(CtxId, &CtxKind)> = f
                .ctxs
                .iter()
                .enumerate()
                .filter(|(_, c)| c.test == Some(te))
                .map(|(i, c)| (i as CtxId, &c.kind))
                .collect();
            let mut runs = None;
            for (id, kind) in &branches {
                let branch_pol = match kind {
                    CtxKind::Then => pol,
                    CtxKind::Else => pol.not(),
                    _ => continue,
                };
                // Span containment: a branch without braces holds its single
                // statement without a context of its own.
                if f.in_ctx(insert_ctx, *id) || f.ctxs[*id as usize].span.contains(insert.span) {
                    runs = Some(branch_pol);
                    break;
                }
                if self.exits(*id) {
                    runs = Some(branch_pol.not());
                }
            }
            // An `assert` (no branch) states an invariant or a test's
            // expectation; it does not guard the insert.
            match runs {
                Some(_) if shape == Shape::Quota => return Some(Shape::Quota),
                Some(Pol::Absent) => return Some(Shape::Exists),
                _ => {}
            }
        }
        None
    }

    /// Whether a branch leaves the function (return / throw / raise).
    fn exits(&self, branch: CtxId) -> bool {
        let span = self.f.ctxs[branch as usize].span;
        self.f.stmts.iter().any(|s| {
            matches!(s.kind, StmtKind::Return(_) | StmtKind::Throw(_))
                && (self.f.in_ctx(s.ctx, branch) || span.contains(s.span))
        })
    }

    /// Applies the "not a hazard" / "still a hazard" clauses and builds the
    /// finding.
    fn judge(
        &self,
        check: &DbOp,
        insert: &DbOp,
        shape: Shape,
        mut confidence: Confidence,
    ) -> Option<RawFinding> {
        let f = self.f;
        let cx = self.cx;
        let mut notes: Vec<String> = Vec::new();

        // A handler for the unique violation, or a catch-all that re-reads.
        match self.handler(insert) {
            Handler::Unique | Handler::ReRead => return None,
            Handler::LogsOnly => notes.push(
                "the `catch` around the insert swallows every error without re-reading the row"
                    .to_string(),
            ),
            Handler::None => {}
        }
        // SERIALIZABLE: the database aborts one of the two transactions.
        if self.serializable() {
            return None;
        }
        let in_tx_at = |op: &DbOp| self.in_transaction(op);
        // A lock taken before the check.
        let check_key = check.entity.as_deref().map(entity_key);
        let insert_key = insert.entity.as_deref().map(entity_key);
        let mut own_lock = check.lock;
        for lock in self
            .ops
            .iter()
            .filter(|o| o.lock && o.span.start < check.span.start)
        {
            let lk = lock.entity.as_deref().map(entity_key);
            let same = lk.is_some() && (lk == check_key || lk == insert_key);
            if same {
                own_lock = true;
                continue;
            }
            if in_tx_at(lock) {
                // A parent row every competing request must also lock.
                return None;
            }
            notes.push(format!(
                "`{}` takes its `FOR UPDATE` lock outside a transaction (autocommit), so the lock ends with that statement",
                lock.label
            ));
        }
        if own_lock {
            confidence = Confidence::Medium;
            if in_tx_at(check) {
                notes.push("`FOR UPDATE` locks only rows that exist: when no row matches (in PostgreSQL a lock on zero rows locks nothing), concurrent requests pass the check together".to_string());
            } else {
                notes.push("`FOR UPDATE` locks only rows that exist (in PostgreSQL a lock on zero rows locks nothing), and here it runs outside a transaction (autocommit), so the lock ends with the statement".to_string());
            }
        } else if in_tx_at(insert) && notes.is_empty() {
            notes.push("the transaction alone does not prevent this: nothing locks a parent row and the isolation level is not SERIALIZABLE".to_string());
        }

        // Risk: an external side effect after the check.
        let ext = self
            .externals
            .iter()
            .find(|(at, _, id)| *at > check.span.start && !self.is_db_op(*id))
            .map(|(at, e, _)| (*at, e.clone()));
        let risk = match (&ext, shape) {
            (_, Shape::Quota) => Risk::Medium,
            (Some(_), _) => Risk::High,
            _ => Risk::Medium,
        };

        let entity = insert
            .entity
            .clone()
            .or_else(|| check.entity.clone())
            .unwrap_or_else(|| "row".to_string());
        let mut message = match shape {
            Shape::Exists => format!(
                "`{}` checks whether the `{entity}` row exists and `{}` inserts it afterwards with nothing atomic in between: two concurrent requests both see no row and both insert",
                check.label, insert.label
            ),
            Shape::Quota => format!(
                "`{}` counts `{entity}` rows against a limit and `{}` inserts another with nothing atomic in between: concurrent requests all see the count under the limit (quota overrun)",
                check.label, insert.label
            ),
        };
        if confidence == Confidence::Medium && (check.entity.is_none() || insert.entity.is_none()) {
            message.push_str(&format!(
                " (the {} side's table is not known here)",
                if check.entity.is_none() {
                    "check"
                } else {
                    "insert"
                }
            ));
        }
        for n in &notes {
            message.push_str("; ");
            message.push_str(n);
        }
        if let Some((at, e)) = &ext {
            if shape == Shape::Exists {
                let when = if *at < insert.span.start {
                    "between the check and the insert"
                } else {
                    "after the insert"
                };
                message.push_str(&format!(
                    "; `{}` ({}) runs {when}, so both requests perform it",
                    e.label,
                    e.kind.noun()
                ));
            }
        }
        let related = vec![(
            check.span,
            match shape {
                Shape::Exists => {
                    format!("`{}` checks for an existing `{entity}` here", check.label)
                }
                Shape::Quota => format!("`{}` counts existing `{entity}` rows here", check.label),
            },
        )];
        let suggestion = Rewrite {
            cx,
            an: self,
            check,
            insert,
            external: ext,
            shape,
        }
        .build();
        let _ = f;
        Some(RawFinding {
            code: META.code,
            risk,
            confidence,
            message,
            span: insert.span,
            related,
            suggestion,
        })
    }

    fn is_db_op(&self, id: ExprId) -> bool {
        self.ops.iter().any(|o| o.expr == id)
    }

    fn serializable(&self) -> bool {
        if self.tx_callback == Some(true) || self.ops.iter().any(|o| o.serializable) {
            return true;
        }
        self.f.exprs.iter().enumerate().any(|(i, e)| match e {
            Expr::Str(s) => {
                s.eq_ignore_ascii_case("serializable")
                    || s.to_ascii_uppercase()
                        .contains("ISOLATION LEVEL SERIALIZABLE")
            }
            Expr::Member { property, .. } => property.eq_ignore_ascii_case("serializable"),
            Expr::Call { args, .. } => {
                args.iter().any(|a| {
                    a.name.as_deref().is_some_and(|n| n.contains("isolation"))
                        && self
                            .cx
                            .expr_text(a.value)
                            .to_ascii_lowercase()
                            .contains("serializable")
                }) && i < usize::MAX
            }
            _ => false,
        })
    }

    /// Whether `op` runs inside an open transaction.
    fn in_transaction(&self, op: &DbOp) -> bool {
        let f = self.f;
        let cat = db::catalog();
        if op.in_tx || self.tx_callback.is_some() {
            return true;
        }
        // Libraries whose locks only exist inside a transaction: Django
        // raises outside one, SQLAlchemy sessions always run in one, TypeORM
        // refuses a pessimistic lock without one; DB-API drivers (psycopg,
        // PyMySQL, sqlite3) open a transaction implicitly.
        if op.lock && matches!(op.lib, Lib::Django | Lib::SqlAlchemy | Lib::TypeOrm) {
            return true;
        }
        if let (Lib::Sql(_), Family::Python) = (op.lib, self.cx.family()) {
            let asyncpg = op.label.ends_with("fetchrow")
                || op.label.ends_with("fetch")
                || op.label.ends_with("fetchval")
                || op.label.contains("conn") && !op.label.contains("cur");
            if !asyncpg {
                return true;
            }
        }
        // `with transaction.atomic():`, `async with conn.transaction():`.
        let ctx = self.ctx(op.expr);
        for (_, c) in f.ctx_chain(ctx) {
            if let CtxKind::With { items, .. } = &c.kind {
                if items.iter().any(|i| {
                    let path = f.path(match f.expr(*i) {
                        Expr::Call { callee, .. } => *callee,
                        _ => *i,
                    });
                    path.last()
                        .is_some_and(|n| cat.tx.contexts.iter().any(|t| t == n))
                }) {
                    return true;
                }
            }
        }
        // A BEGIN / startTransaction() / sequelize.transaction() earlier.
        if self
            .ops
            .iter()
            .any(|o| o.kind == OpKind::Begin && o.span.start < op.span.start)
        {
            return true;
        }
        let begun = f.exprs.iter().enumerate().any(|(i, e)| {
            let Expr::Call { callee, args } = e else {
                return false;
            };
            let Some(name) = f.callee_name(*callee) else {
                return false;
            };
            f.span(i as ExprId).start < op.span.start
                && cat.tx.begins.iter().any(|b| b == name)
                && !args
                    .iter()
                    .any(|a| matches!(f.expr(a.value), Expr::Function(_)))
                && f.path(*callee).len() > 1
        });
        if begun {
            return true;
        }
        // The caller passed a transaction in.
        f.params
            .iter()
            .any(|p| cat.tx.handles.iter().any(|h| *h == *p.name))
    }

    /// What guards the insert against a unique violation.
    fn handler(&self, insert: &DbOp) -> Handler {
        let f = self.f;
        let cx = self.cx;
        let markers = &db::catalog().unique_violation.markers;
        let mentions = |text: &str| {
            markers.iter().any(|m| text.contains(m.as_str()))
                || text.to_ascii_lowercase().contains("unique")
                || text.to_ascii_lowercase().contains("duplicate")
        };
        // `.catch((e) => ...)` on the insert's promise.
        for l in db::chain(f, insert.expr) {
            if l.name == "catch" {
                if let Some(args) = l.args {
                    if args.iter().any(|a| mentions(cx.expr_text(a.value))) {
                        return Handler::Unique;
                    }
                }
            }
        }
        let ctx = self.ctx(insert.expr);
        let mut result = Handler::None;
        for (_, c) in f.ctx_chain(ctx) {
            match &c.kind {
                CtxKind::With { items, .. } if items.iter().any(|i| mentions(cx.expr_text(*i))) => {
                    return Handler::Unique;
                }
                CtxKind::Try { try_id } => {
                    for (ci, cc) in f.ctxs.iter().enumerate() {
                        let CtxKind::Catch { try_id: t, types } = &cc.kind else {
                            continue;
                        };
                        if t != try_id {
                            continue;
                        }
                        if mentions(cx.text(cc.span)) {
                            return Handler::Unique;
                        }
                        let catch_all = types.is_empty()
                            || types
                                .iter()
                                .any(|t| matches!(&**t, "Exception" | "BaseException" | "Error"));
                        if !catch_all {
                            continue;
                        }
                        let ci = ci as CtxId;
                        let rereads = self.ops.iter().any(|o| {
                            matches!(o.kind, OpKind::Read | OpKind::Count)
                                && f.in_ctx(self.ctx(o.expr), ci)
                                && (o.entity.is_none()
                                    || insert.entity.is_none()
                                    || o.entity.as_deref().map(entity_key)
                                        == insert.entity.as_deref().map(entity_key))
                        });
                        if rereads {
                            return Handler::ReRead;
                        }
                        let rethrows = f
                            .stmts
                            .iter()
                            .any(|s| matches!(s.kind, StmtKind::Throw(_)) && f.in_ctx(s.ctx, ci));
                        if !rethrows {
                            result = Handler::LogsOnly;
                        }
                    }
                }
                _ => {}
            }
        }
        result
    }
}

enum Handler {
    None,
    Unique,
    ReRead,
    LogsOnly,
}

/// The call that runs this function as a transaction callback
/// (`prisma.$transaction(async (tx) => ...)`): `Some(serializable)`.
fn tx_callback(cx: &Context) -> Option<bool> {
    let file = cx.file;
    let me = cx.func_id;
    let parent = &file.functions[cx.func.parent? as usize];
    let cat = db::catalog();
    for (i, e) in parent.exprs.iter().enumerate() {
        let Expr::Call { callee, args } = e else {
            continue;
        };
        if !args
            .iter()
            .any(|a| matches!(parent.expr(a.value), Expr::Function(id) if *id == me))
        {
            continue;
        }
        let name = parent.callee_name(*callee)?;
        if cat.tx.callbacks.iter().any(|c| c == name) {
            let text = cx.text(parent.span(i as ExprId)).to_ascii_lowercase();
            let head = text.split("=>").next().unwrap_or("");
            let serializable = args.iter().any(|a| {
                !matches!(parent.expr(a.value), Expr::Function(_))
                    && cx
                        .text(parent.span(a.value))
                        .to_ascii_lowercase()
                        .contains("serializable")
            }) || head.contains("serializable");
            return Some(serializable);
        }
        return None;
    }
    None
}

fn bind_names(f: &Function, target: ExprId, names: &mut HashSet<String>) {
    match f.expr(target) {
        Expr::Ident(n) => {
            names.insert(n.to_string());
        }
        Expr::Member { .. } => {
            // `this.existing = ...` is state, not a local: keep its text.
        }
        _ => {
            for d in f.descendants(target) {
                if let Expr::Ident(n) = f.expr(d) {
                    names.insert(n.to_string());
                }
            }
        }
    }
}

/// Properties of a result that say whether rows came back.
const RESULT_PROPS: &[&str] = &[
    "rows",
    "length",
    "rowCount",
    "rowcount",
    "count",
    "size",
    "id",
    "_id",
    "pk",
    "exists",
    "affectedRows",
    "docs",
    "totalDocs",
    "items",
    "results",
    "recordset",
    "data",
    "result",
    "total",
    "value",
];

/// Whether `e` is the check's result (or a size / id of it).
fn subject_value(
    f: &Function,
    mut e: ExprId,
    names: &HashSet<String>,
    direct: &HashSet<ExprId>,
) -> bool {
    for _ in 0..16 {
        if direct.contains(&e) {
            return true;
        }
        match f.expr(e) {
            Expr::Ident(n) => return names.contains(&**n),
            Expr::Member { object, property } => {
                if !RESULT_PROPS.contains(&&**property) && !names.contains(&**property) {
                    return false;
                }
                e = *object;
            }
            Expr::Index { object, .. } => e = *object,
            Expr::Await(inner) => e = *inner,
            Expr::Other(kids) if kids.len() == 1 => e = kids[0],
            Expr::Call { callee, args } => match f.expr(*callee) {
                Expr::Ident(n)
                    if matches!(
                        &**n,
                        "len" | "bool" | "Boolean" | "Number" | "int" | "parseInt"
                    ) =>
                {
                    let Some(a) = args.first() else { return false };
                    e = a.value;
                }
                Expr::Member { object, .. } => e = *object,
                _ => return false,
            },
            _ => return false,
        }
    }
    false
}

/// What a test says about the check's result: true when the row exists
/// (`Found`) or when it does not (`Absent`), or a count against a limit.
fn existence(f: &Function, test: ExprId, subject: &dyn Fn(ExprId) -> bool) -> Option<(Pol, Shape)> {
    let mut e = test;
    let mut negate = false;
    for _ in 0..16 {
        match f.expr(e) {
            Expr::Unary { op, arg } if matches!(&**op, "!" | "not") => {
                negate = !negate;
                e = *arg;
            }
            Expr::Other(kids) if kids.len() == 1 => e = kids[0],
            Expr::Binary { op, left, right } => {
                let flip = |p: Pol| if negate { p.not() } else { p };
                match &**op {
                    "&&" | "||" | "and" | "or" => {
                        for side in [*left, *right] {
                            if let Some((p, s)) = existence_leaf(f, side, subject) {
                                return Some((flip(p), s));
                            }
                        }
                        return None;
                    }
                    _ => return existence_leaf(f, e, subject).map(|(p, s)| (flip(p), s)),
                }
            }
            _ => {
                return existence_leaf(f, e, subject)
                    .map(|(p, s)| (if negate { p.not() } else { p }, s));
            }
        }
    }
    None
}

fn existence_leaf(
    f: &Function,
    e: ExprId,
    subject: &dyn Fn(ExprId) -> bool,
) -> Option<(Pol, Shape)> {
    let mut e = e;
    let mut negate = false;
    while let Expr::Unary { op, arg } = f.expr(e) {
        if !matches!(&**op, "!" | "not") {
            break;
        }
        negate = !negate;
        e = *arg;
    }
    let out = match f.expr(e) {
        Expr::Binary { op, left, right } => {
            let (subj_left, other, op) = if subject(*left) {
                (true, *right, op.to_string())
            } else if subject(*right) {
                (false, *left, flip_cmp(op).to_string())
            } else {
                return None;
            };
            let _ = subj_left;
            let lit = literal(f, other);
            match (op.as_str(), lit) {
                ("==" | "===" | "is", Some(Lit::Null)) => (Pol::Absent, Shape::Exists),
                ("!=" | "!==" | "is not", Some(Lit::Null)) => (Pol::Found, Shape::Exists),
                ("==" | "===", Some(Lit::Bool(b))) => {
                    (if b { Pol::Found } else { Pol::Absent }, Shape::Exists)
                }
                ("!=" | "!==", Some(Lit::Bool(b))) => {
                    (if b { Pol::Absent } else { Pol::Found }, Shape::Exists)
                }
                ("==" | "===", Some(Lit::Int(0))) => (Pol::Absent, Shape::Exists),
                ("!=" | "!==", Some(Lit::Int(0))) => (Pol::Found, Shape::Exists),
                (">", Some(Lit::Int(0))) => (Pol::Found, Shape::Exists),
                (">=", Some(Lit::Int(1))) => (Pol::Found, Shape::Exists),
                ("<", Some(Lit::Int(1))) => (Pol::Absent, Shape::Exists),
                ("<=", Some(Lit::Int(0))) => (Pol::Absent, Shape::Exists),
                (">=" | ">", Some(Lit::Int(_) | Lit::Other) | None) => (Pol::Found, Shape::Quota),
                ("<" | "<=", Some(Lit::Int(_) | Lit::Other) | None) => (Pol::Absent, Shape::Quota),
                _ => return None,
            }
        }
        _ if subject(e) => (Pol::Found, Shape::Exists),
        _ => return None,
    };
    Some(if negate { (out.0.not(), out.1) } else { out })
}

fn flip_cmp(op: &str) -> &str {
    match op {
        ">" => "<",
        "<" => ">",
        ">=" => "<=",
        "<=" => ">=",
        o => o,
    }
}

enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    /// A string or a non-integral number.
    Other,
}

fn literal(f: &Function, e: ExprId) -> Option<Lit> {
    match f.expr(e) {
        Expr::Null => Some(Lit::Null),
        Expr::Ident(n) if &**n == "undefined" || &**n == "None" => Some(Lit::Null),
        Expr::Bool(b) => Some(Lit::Bool(*b)),
        Expr::Num(n) => Some(n.parse::<i64>().map_or(Lit::Other, Lit::Int)),
        Expr::Str(_) => Some(Lit::Other),
        _ => None,
    }
}

/// The guarded rewrite, in the insert's own library and names.
struct Rewrite<'a> {
    cx: &'a Context<'a>,
    an: &'a Analysis<'a>,
    check: &'a DbOp,
    insert: &'a DbOp,
    external: Option<(u32, External)>,
    shape: Shape,
}

impl<'a> Rewrite<'a> {
    fn build(&self) -> Suggestion {
        let hash = suggest::comment(self.cx.family());
        let mut lines: Vec<String> = Vec::new();
        let (title, body) = match self.shape {
            Shape::Quota => self.quota(),
            Shape::Exists => self.exists(),
        };
        lines.extend(body);
        if let Some((at, e)) = &self.external {
            if self.shape == Shape::Exists {
                lines.push(format!(
                    "{hash} insert first (the INSERT is the lock), then call `{}` only when this request created the row{}",
                    e.label,
                    if *at < self.insert.span.start { ": move it after the insert" } else { "" }
                ));
            }
        }
        Suggestion {
            title,
            code: lines.join("\n"),
        }
    }

    fn stmt(&self, op: &DbOp) -> (Span, String) {
        let span = self.an.stmt_of[op.expr as usize];
        let span = if span == Span::default() {
            op.span
        } else {
            span
        };
        (span, suggest::rewrite(self.cx.src, span, &[]))
    }

    fn keys(&self) -> Vec<String> {
        let ck = &self.check.keys;
        let ik = &self.insert.keys;
        let norm = |s: &str| crate::catalog::normalize_name(s);
        let both: Vec<String> = ck
            .iter()
            .filter(|k| ik.iter().any(|i| norm(i) == norm(k)))
            .cloned()
            .collect();
        if !both.is_empty() {
            both
        } else if !ck.is_empty() {
            ck.clone()
        } else {
            ik.iter().take(1).cloned().collect()
        }
    }

    fn exists(&self) -> (String, Vec<String>) {
        let cx = self.cx;
        let hash = suggest::comment(cx.family());
        let keys = self.keys();
        let cols = if keys.is_empty() {
            "<unique columns>".to_string()
        } else {
            keys.join(", ")
        };
        let entity = self
            .insert
            .entity
            .clone()
            .or_else(|| self.check.entity.clone())
            .unwrap_or_else(|| "row".into());
        let (stmt_span, stmt_text) = self.stmt(self.insert);
        let indent = |text: &str, by: &str| {
            text.lines()
                .map(|l| format!("{by}{l}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let drop_check = format!(
            "{hash} drop the separate check (`{}`): the database decides atomically",
            self.check.label
        );
        // `Model.create` without options reads the same in Mongoose and
        // Sequelize: the check's `{ where }` tells.
        let lib = match (self.insert.lib, self.check.lib) {
            (Lib::Mongoose, Lib::Sequelize) => Lib::Sequelize,
            (l, _) => l,
        };
        match (lib, cx.family()) {
            (Lib::Sql(dialect), _) => {
                let Some((sid, _)) = &self.insert.sql else {
                    return self.generic(&cols, &entity);
                };
                let str_span = cx.func.span(*sid);
                let lit = cx.text(str_span);
                let edit = if dialect == Some(Dialect::MySql) {
                    let at = lit.to_ascii_uppercase().find("INSERT").map(|i| i + "INSERT".len());
                    at.map(|i| (Span::new(str_span.start as usize + i, str_span.start as usize + i), " IGNORE".to_string()))
                } else {
                    let upper = lit.to_ascii_uppercase();
                    let conflict = format!("ON CONFLICT ({cols}) DO NOTHING");
                    match upper.find("RETURNING") {
                        Some(i) => Some((Span::new(str_span.start as usize + i, str_span.start as usize + i), format!("{conflict} "))),
                        None => {
                            let quote_len = lit.chars().rev().take_while(|c| matches!(c, '\'' | '"' | '`')).count().min(3);
                            let body_end = lit.len() - quote_len;
                            let trimmed = lit[..body_end].trim_end().len();
                            Some((Span::new(str_span.start as usize + trimmed, str_span.start as usize + trimmed), format!(" {conflict} RETURNING id")))
                        }
                    }
                };
                let (target_span, edits) = if stmt_span.contains(str_span) {
                    (stmt_span, edit.into_iter().collect::<Vec<_>>())
                } else {
                    let s = self.an.stmt_of[*sid as usize];
                    (if s == Span::default() { str_span } else { s }, edit.into_iter().collect())
                };
                let mut out = vec![drop_check];
                if dialect == Some(Dialect::MySql) {
                    out.push(format!("{hash} needs a UNIQUE index on {entity} ({cols}); affectedRows is 0 when the row already existed"));
                } else {
                    out.push(format!("{hash} needs a UNIQUE constraint on {entity} ({cols}); no row comes back when it already existed"));
                }
                out.push(suggest::rewrite(cx.src, target_span, &edits));
                (
                    if dialect == Some(Dialect::MySql) {
                        format!("Insert with INSERT IGNORE into `{entity}` and drop the check")
                    } else {
                        format!("Insert with ON CONFLICT ({cols}) DO NOTHING into `{entity}` and drop the check")
                    },
                    out,
                )
            }
            (Lib::Prisma, _) => (
                format!("Create the `{entity}` and catch Prisma's P2002 unique violation"),
                vec![
                    format!("{hash} needs @@unique([{cols}]) on the {entity} model; drop the findFirst/findUnique check"),
                    "try {".to_string(),
                    indent(&stmt_text, "  "),
                    "} catch (e) {".to_string(),
                    "  if (e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002') {".to_string(),
                    format!("    // a concurrent request created this {entity} first: answer as the check did"),
                    "  }".to_string(),
                    "  throw e;".to_string(),
                    "}".to_string(),
                ],
            ),
            (Lib::Sequelize, _) => (
                format!("Create the `{entity}` and catch Sequelize's UniqueConstraintError"),
                vec![
                    format!("{hash} needs a unique index on {entity} ({cols}); drop the findOne check"),
                    "try {".to_string(),
                    indent(&stmt_text, "  "),
                    "} catch (e) {".to_string(),
                    "  if (e instanceof UniqueConstraintError) {".to_string(),
                    format!("    // a concurrent request created this {entity} first: answer as the check did"),
                    "  }".to_string(),
                    "  throw e;".to_string(),
                    "}".to_string(),
                ],
            ),
            (Lib::TypeOrm, _) => (
                format!("Insert the `{entity}` and catch the unique violation (23505 / ER_DUP_ENTRY)"),
                vec![
                    format!("{hash} needs @Unique([{}]) on the {entity} entity; drop the findOne check", keys.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")),
                    "try {".to_string(),
                    indent(&stmt_text, "  "),
                    "} catch (e) {".to_string(),
                    "  if (e instanceof QueryFailedError && ['23505', 'ER_DUP_ENTRY'].includes(e.driverError?.code)) {".to_string(),
                    format!("    // a concurrent request created this {entity} first: answer as the check did"),
                    "  }".to_string(),
                    "  throw e;".to_string(),
                    "}".to_string(),
                ],
            ),
            (Lib::Mongoose | Lib::MongoDriver, _) => {
                let filter = self.check_filter().unwrap_or_else(|| format!("{{ {} }}", keys.join(", ")));
                // `new Follow({ ... })`: the document is the constructor's object.
                let doc = self.insert.data.map(|d| match cx.func.expr(d) {
                    Expr::New { args, .. } | Expr::Call { args, .. } if !args.is_empty() => cx.expr_text(args[args.len() - 1].value).to_string(),
                    _ => cx.expr_text(d).to_string(),
                }).unwrap_or_else(|| "doc".into());
                let recv = match self.insert.label.rsplit_once('.') {
                    Some((r, _)) if !self.insert.label.ends_with(".save") => r.to_string(),
                    _ => entity.clone(),
                };
                (
                    format!("Upsert the `{entity}` with $setOnInsert instead of find-then-insert"),
                    vec![
                        format!("{hash} needs a unique index on {{ {} }}; the filter matches at most one document", keys.iter().map(|k| format!("{k}: 1")).collect::<Vec<_>>().join(", ")),
                        format!("const result = await {recv}.updateOne({filter}, {{ $setOnInsert: {doc} }}, {{ upsert: true }});"),
                        "// result.upsertedCount === 0: it already existed".to_string(),
                    ],
                )
            }
            (Lib::Knex, _) => {
                let edit = self.after_link(self.insert, "insert", &format!(".onConflict([{}]).ignore()", keys.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")));
                (
                    format!("Insert into `{entity}` with onConflict().ignore() and drop the check"),
                    vec![drop_check, format!("{hash} needs a unique index on {entity} ({cols})"), suggest::rewrite(cx.src, stmt_span, &edit)],
                )
            }
            (Lib::Drizzle, _) => {
                let table = entity.clone();
                let target = keys.iter().map(|k| format!("{table}.{k}")).collect::<Vec<_>>().join(", ");
                let edit = self.after_link(self.insert, "values", &format!(".onConflictDoNothing({{ target: [{target}] }})"));
                (
                    format!("Insert into `{entity}` with onConflictDoNothing() and drop the check"),
                    vec![drop_check, format!("{hash} needs a unique index on {entity} ({cols})"), suggest::rewrite(cx.src, stmt_span, &edit)],
                )
            }
            (Lib::Django, _) | (Lib::Unknown, Family::Python) if self.insert.label.contains("objects") || lib == Lib::Django => {
                let fields = keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
                let name = format!("unique_{}_{}", entity_key(&entity), keys.join("_"));
                (
                    format!("Create the `{entity}` inside `except IntegrityError` with a unique constraint"),
                    vec![
                        format!("# add to {entity}.Meta: constraints = [models.UniqueConstraint(fields=[{fields}], name=\"{name}\")]"),
                        format!("# drop the separate check (`{}`)", self.check.label),
                        "try:".to_string(),
                        "    with transaction.atomic():".to_string(),
                        indent(&stmt_text, "        "),
                        "except IntegrityError:".to_string(),
                        format!("    # a concurrent request created this {entity} first: answer as the check did"),
                        "    ...".to_string(),
                    ],
                )
            }
            (Lib::SqlAlchemy, _) => {
                if self.insert.label.ends_with("add") || self.insert.label.ends_with("add_all") {
                    let w = if cx.func.is_async { "async with" } else { "with" };
                    let session = self.insert.label.rsplit_once('.').map(|(r, _)| r.to_string()).unwrap_or_else(|| "session".into());
                    let cols_list = keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
                    (
                        format!("Add the `{entity}` in a savepoint and catch IntegrityError"),
                        vec![
                            format!("# needs UniqueConstraint({cols_list}) on {entity}; drop the separate check (`{}`)", self.check.label),
                            "try:".to_string(),
                            format!("    {w} {session}.begin_nested():"),
                            indent(&stmt_text, "        "),
                            "except IntegrityError:".to_string(),
                            format!("    # a concurrent request created this {entity} first: answer as the check did"),
                            "    ...".to_string(),
                        ],
                    )
                } else {
                    let elems = keys.iter().map(|k| format!("{entity}.{k}")).collect::<Vec<_>>().join(", ");
                    let edit = self.after_link_any(self.insert, "values", &format!(".on_conflict_do_nothing(index_elements=[{elems}])"));
                    (
                        format!("Insert into `{entity}` with on_conflict_do_nothing() and drop the check"),
                        vec![
                            "# from sqlalchemy.dialects.postgresql import insert".to_string(),
                            drop_check,
                            suggest::rewrite(cx.src, stmt_span, &edit),
                        ],
                    )
                }
            }
            _ => self.generic(&cols, &entity),
        }
    }

    fn generic(&self, cols: &str, entity: &str) -> (String, Vec<String>) {
        let cx = self.cx;
        let (_, stmt_text) = self.stmt(self.insert);
        let indent = |text: &str, by: &str| {
            text.lines()
                .map(|l| format!("{by}{l}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        match cx.family() {
            Family::Js => (
                format!("Insert the `{entity}` and catch the unique violation"),
                vec![
                    format!("// needs a unique constraint on {entity} ({cols}); drop the separate check (`{}`)", self.check.label),
                    "try {".to_string(),
                    indent(&stmt_text, "  "),
                    "} catch (e) {".to_string(),
                    "  if (e.code === '23505' || e.code === 'ER_DUP_ENTRY' || e.code === 11000) {".to_string(),
                    format!("    // a concurrent request created this {entity} first: answer as the check did"),
                    "  }".to_string(),
                    "  throw e;".to_string(),
                    "}".to_string(),
                ],
            ),
            Family::Python => (
                format!("Insert the `{entity}` and catch IntegrityError"),
                vec![
                    format!("# needs a unique constraint on {entity} ({cols}); drop the separate check (`{}`)", self.check.label),
                    "try:".to_string(),
                    indent(&stmt_text, "    "),
                    "except IntegrityError:".to_string(),
                    format!("    # a concurrent request created this {entity} first: answer as the check did"),
                    "    ...".to_string(),
                ],
            ),
        }
    }

    /// The check's filter object as written (`{ email }`, `{ orgId, email }`).
    fn check_filter(&self) -> Option<String> {
        let f = self.cx.func;
        for l in db::chain(f, self.check.expr) {
            if let Some(args) = l.args {
                if let Some(a) = args.first() {
                    if let Expr::Object(props) = f.expr(a.value) {
                        let inner = props
                            .iter()
                            .find(|p| matches!(&p.key, PropKey::Name(k) if &**k == "where"));
                        return Some(
                            self.cx
                                .expr_text(inner.map_or(a.value, |p| p.value))
                                .to_string(),
                        );
                    }
                }
            }
        }
        None
    }

    /// An edit appending `text` after the call link `name` of the insert's
    /// chain (or after the whole call when the link is not there).
    fn after_link(&self, op: &DbOp, name: &str, text: &str) -> Vec<(Span, String)> {
        let f = self.cx.func;
        let links = db::chain(f, op.expr);
        let at = links
            .iter()
            .find(|l| l.name == name && l.args.is_some())
            .map_or(op.span.end, |l| f.span(l.id).end);
        vec![(Span::new(at as usize, at as usize), text.to_string())]
    }

    /// Like `after_link`, looking inside the executed construct too.
    fn after_link_any(&self, op: &DbOp, name: &str, text: &str) -> Vec<(Span, String)> {
        if let Some(d) = op.data {
            let end = self.cx.func.span(d).end;
            if self.cx.text(self.cx.func.span(d)).starts_with(name)
                || matches!(self.cx.func.expr(d), Expr::Call { .. })
            {
                return vec![(Span::new(end as usize, end as usize), text.to_string())];
            }
        }
        self.after_link(op, name, text)
    }

    fn quota(&self) -> (String, Vec<String>) {
        let cx = self.cx;
        let hash = suggest::comment(cx.family());
        let entity = self
            .insert
            .entity
            .clone()
            .or_else(|| self.check.entity.clone())
            .unwrap_or_else(|| "row".into());
        let owner_key = self
            .check
            .keys
            .iter()
            .find(|k| {
                let l = k.to_ascii_lowercase();
                l.ends_with("_id") || l.ends_with("id") && k.len() > 2
            })
            .cloned()
            .or_else(|| self.check.keys.first().cloned())
            .unwrap_or_else(|| "owner_id".into());
        let owner = owner_key
            .trim_end_matches("_id")
            .trim_end_matches("Id")
            .trim_end_matches("ID")
            .to_string();
        let owner = if owner.is_empty() {
            "owner".to_string()
        } else {
            owner
        };
        let lib = match (self.insert.lib, self.check.lib) {
            (Lib::Mongoose, Lib::Sequelize) => Lib::Sequelize,
            (l, _) => l,
        };
        let lock = match (lib, cx.family()) {
            (Lib::Django, _) => format!("{}.objects.select_for_update().get(pk={owner_key})", capitalise(&owner)),
            (Lib::SqlAlchemy, _) => {
                let m = capitalise(&owner);
                let aw = if cx.func.is_async { "await " } else { "" };
                format!("{aw}session.execute(select({m}).where({m}.id == {owner_key}).with_for_update())")
            }
            (Lib::Prisma, _) => format!("await tx.$queryRaw`SELECT id FROM \"{}\" WHERE id = ${{{owner_key}}} FOR UPDATE`", capitalise(&owner)),
            (Lib::TypeOrm, _) => format!("await manager.findOne({}, {{ where: {{ id: {owner_key} }}, lock: {{ mode: 'pessimistic_write' }} }})", capitalise(&owner)),
            (Lib::Sequelize, _) => format!("await {}.findByPk({owner_key}, {{ transaction: t, lock: t.LOCK.UPDATE }})", capitalise(&owner)),
            (Lib::Knex, _) => format!("await trx('{owner}s').where({{ id: {owner_key} }}).forUpdate().first()"),
            (Lib::Mongoose | Lib::MongoDriver, _) => format!(
                "await {}.updateOne({{ _id: {owner_key}, {entity}Count: {{ $lt: LIMIT }} }}, {{ $inc: {{ {entity}Count: 1 }} }}) // reserve a slot atomically; modifiedCount 0 means over the limit",
                capitalise(&owner)
            ),
            (_, Family::Python) => format!("cur.execute(\"SELECT id FROM {owner}s WHERE id = %s FOR UPDATE\", ({owner_key},))"),
            (_, Family::Js) => format!("await client.query('SELECT id FROM {owner}s WHERE id = $1 FOR UPDATE', [{owner_key}])"),
        };
        let (_, check_text) = self.stmt(self.check);
        let (_, insert_text) = self.stmt(self.insert);
        (
            format!("Lock the owning `{owner}` row before counting `{entity}`"),
            vec![
                format!("{hash} in one transaction: lock the {owner} row every competing request must also lock, then count and insert"),
                lock,
                check_text,
                format!("{hash} ... the limit check as before"),
                insert_text,
            ],
        )
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
