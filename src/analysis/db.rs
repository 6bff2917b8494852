//! Database operations in one function: which calls read, count, insert,
//! upsert or lock which entity (table, model, collection), through which
//! library. The vocabulary is data (`rules/catalog/db.toml`); this module
//! decides how a call chain names its entity.
//!
//! A call chain is read from its root to its last call:
//! `await this.prisma.charge.findFirst({ where })` has the links `this`,
//! `prisma`, `charge`, `findFirst(...)`; `knex('users').where(...).first()`
//! has `knex(...)`, `where(...)`, `first()`. SQL text is classified by
//! [`super::sql`] wherever it is passed.

use rustc_hash::FxHashMap as HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::sql::{self, Dialect, SqlInfo, SqlKind};
use crate::model::{Arg, Expr, ExprId, Family, Function, PropKey, Span};

const DB_TOML: &str = include_str!("../../rules/catalog/db.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbCatalog {
    pub sql: SqlCatalog,
    pub orm: OrmCatalog,
    pub tx: TxCatalog,
    pub unique_violation: UniqueCatalog,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlCatalog {
    pub methods: Vec<String>,
    pub tags: Vec<String>,
    pub wrappers: Vec<String>,
    pub not_sinks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrmCatalog {
    pub reads: Vec<String>,
    pub counts: Vec<String>,
    pub inserts: Vec<String>,
    pub conflict_safe: Vec<String>,
    pub conflict_safe_options: Vec<String>,
    pub locks: Vec<String>,
    pub lock_options: Vec<String>,
    pub lock_values: Vec<String>,
    pub entity_args: Vec<String>,
    pub managers: Vec<String>,
    pub holder_suffixes: Vec<String>,
    pub sessions: Vec<String>,
    pub prisma_clients: Vec<String>,
    pub prisma_verbs: Vec<String>,
    pub knex_roots: Vec<String>,
    pub not_models: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxCatalog {
    pub callbacks: Vec<String>,
    pub begins: Vec<String>,
    pub contexts: Vec<String>,
    pub handles: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniqueCatalog {
    pub markers: Vec<String>,
    pub not_found: Vec<String>,
}

pub fn catalog() -> &'static DbCatalog {
    static CATALOG: OnceLock<DbCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        toml::from_str(DB_TOML).expect("rules/catalog/db.toml is valid (checked by tests)")
    })
}

fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|s| s == name)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Read,
    Count,
    Insert,
    /// An insert that cannot duplicate: upsert, ON CONFLICT, get_or_create.
    SafeInsert,
    /// A transaction starts here (`BEGIN`, `START TRANSACTION`).
    Begin,
    /// UPDATE, DELETE, COMMIT and other statements: not part of a
    /// check-then-insert.
    Other,
}

/// The library an operation goes through; rewrites are rendered in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lib {
    Sql(Option<Dialect>),
    Prisma,
    Sequelize,
    TypeOrm,
    Mongoose,
    MongoDriver,
    Knex,
    Drizzle,
    Django,
    SqlAlchemy,
    Unknown,
}

#[derive(Clone, Debug)]
pub struct DbOp {
    pub kind: OpKind,
    /// The call (or tagged template) that runs the statement.
    pub expr: ExprId,
    pub span: Span,
    /// The entity as the code names it: `charges`, `Charge`, `charge`.
    pub entity: Option<String>,
    pub lib: Lib,
    /// The read locks the rows it returns (FOR UPDATE and equivalents).
    pub lock: bool,
    /// Filter columns of a read, inserted fields of an insert.
    pub keys: Vec<String>,
    /// The SQL string expression and what it says.
    pub sql: Option<(ExprId, SqlInfo)>,
    /// The call is attached to an open transaction (`{ transaction: t }`,
    /// a `trx` / `tx` receiver).
    pub in_tx: bool,
    /// The transaction asks for SERIALIZABLE isolation.
    pub serializable: bool,
    /// The callee as written: `prisma.charge.findFirst`.
    pub label: String,
    /// The data argument of an insert (object literal / call), for rewrites.
    pub data: Option<ExprId>,
}

/// Entities compare lower-cased, without separators, suffixes such as
/// `Repository` or `Table`, and a plural `s`: `charges`, `Charge`,
/// `chargeRepository` and `charges_table` all give `charge`.
pub fn entity_key(name: &str) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    let mut n: String = last
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    for suffix in [
        "repository",
        "repo",
        "model",
        "table",
        "collection",
        "entity",
        "schema",
    ] {
        if n.len() > suffix.len() + 1 && n.ends_with(suffix) {
            n.truncate(n.len() - suffix.len());
            break;
        }
    }
    if n.ends_with("ies") && n.len() > 4 {
        n.truncate(n.len() - 3);
        n.push('y');
    } else if n.ends_with("sses")
        || n.ends_with("xes")
        || n.ends_with("ches")
        || n.ends_with("shes")
    {
        n.truncate(n.len() - 2);
    } else if n.ends_with('s')
        && !n.ends_with("ss")
        && !n.ends_with("us")
        && !n.ends_with("is")
        && n.len() > 3
    {
        n.truncate(n.len() - 1);
    }
    n
}

/// One link of a call chain.
#[derive(Clone, Copy, Debug)]
pub struct Link<'f> {
    pub name: &'f str,
    pub args: Option<&'f [Arg]>,
    pub id: ExprId,
}

/// The links of the chain ending at `top`, root first.
pub fn chain(f: &Function, top: ExprId) -> Vec<Link<'_>> {
    let mut links = Vec::new();
    let mut cur = top;
    for _ in 0..64 {
        match f.expr(cur) {
            Expr::Call { callee, args } => match f.expr(*callee) {
                Expr::Member { object, property } => {
                    links.push(Link {
                        name: property,
                        args: Some(args),
                        id: cur,
                    });
                    cur = *object;
                }
                Expr::Ident(n) => {
                    links.push(Link {
                        name: n,
                        args: Some(args),
                        id: cur,
                    });
                    break;
                }
                _ => break,
            },
            Expr::Member { object, property } => {
                links.push(Link {
                    name: property,
                    args: None,
                    id: cur,
                });
                cur = *object;
            }
            Expr::Await(inner) => cur = *inner,
            Expr::Ident(n) => {
                links.push(Link {
                    name: n,
                    args: None,
                    id: cur,
                });
                break;
            }
            Expr::This => {
                links.push(Link {
                    name: "this",
                    args: None,
                    id: cur,
                });
                break;
            }
            Expr::Index { object, .. } => cur = *object,
            _ => break,
        }
    }
    links.reverse();
    links
}

/// Local bindings: each name to the values assigned to it, in order.
pub struct Bindings {
    map: HashMap<String, Vec<ExprId>>,
}

impl Bindings {
    pub fn new(f: &Function) -> Bindings {
        let mut map: HashMap<String, Vec<ExprId>> = HashMap::default();
        for e in &f.exprs {
            if let Expr::Assign {
                target, value, op, ..
            } = e
            {
                if &**op != "=" {
                    continue;
                }
                if let Expr::Ident(n) = f.expr(*target) {
                    map.entry(n.to_string()).or_default().push(*value);
                }
            }
        }
        Bindings { map }
    }

    /// The last value bound to `name` before `at` (or the first one).
    pub fn value(&self, f: &Function, name: &str, at: u32) -> Option<ExprId> {
        let vals = self.map.get(name)?;
        vals.iter()
            .rev()
            .find(|v| f.span(**v).start < at)
            .or_else(|| vals.first())
            .copied()
    }
}

/// SQL text of an argument: a string, a template, a tagged template, a
/// concatenation, a `text("...")` wrapper, or a local bound to one of them.
fn sql_text(f: &Function, b: &Bindings, id: ExprId, hops: u8) -> Option<(ExprId, String)> {
    let cat = &catalog().sql;
    match f.expr(id) {
        Expr::Str(s) => Some((id, s.to_string())),
        Expr::Template { text, .. } => Some((id, text.to_string())),
        Expr::Binary { op, .. } if &**op == "+" => {
            // 'SELECT ... ' + table + ' WHERE ...'
            let mut out = String::new();
            let mut stack = vec![id];
            let mut guard = 0;
            while let Some(e) = stack.pop() {
                guard += 1;
                if guard > 64 {
                    break;
                }
                match f.expr(e) {
                    Expr::Binary { op, left, right } if &**op == "+" => {
                        stack.push(*right);
                        stack.push(*left);
                    }
                    Expr::Str(s) => out.push_str(s),
                    Expr::Template { text, .. } => out.push_str(text),
                    _ => out.push_str("${}"),
                }
            }
            Some((id, out))
        }
        Expr::Call { callee, args } => {
            let path = f.callee_text(*callee);
            if has(&cat.wrappers, &path) || has(&cat.wrappers, f.callee_name(*callee).unwrap_or(""))
            {
                let first = args.first()?;
                sql_text(f, b, first.value, hops)
            } else {
                None
            }
        }
        Expr::Await(inner) => sql_text(f, b, *inner, hops),
        Expr::Ident(n) if hops > 0 => {
            let v = b.value(f, n, f.span(id).start)?;
            sql_text(f, b, v, hops - 1)
        }
        _ => None,
    }
}

fn is_tx_handle(name: &str) -> bool {
    has(&catalog().tx.handles, name)
}

/// Collects the database operations of `f`, in source order.
pub fn ops(f: &Function, family: Family) -> Vec<DbOp> {
    let b = Bindings::new(f);
    let parents = f.parents();
    let mut out = Vec::new();
    let mut sql_in_calls: Vec<ExprId> = Vec::new();
    for id in 0..f.exprs.len() as ExprId {
        match f.expr(id) {
            Expr::Call { callee, args } => {
                if let Some(op) = sql_call(f, &b, id, *callee, args) {
                    if let Some((s, _)) = &op.sql {
                        sql_in_calls.push(*s);
                    }
                    out.push(op);
                    continue;
                }
                // Only the top of a chain: `a.b().c()` is analysed at `c()`.
                if let Some(p) = parents[id as usize] {
                    if let Expr::Member { object, .. } = f.expr(p) {
                        if *object == id {
                            if let Some(pp) = parents[p as usize] {
                                if matches!(f.expr(pp), Expr::Call { callee, .. } if *callee == p) {
                                    continue;
                                }
                            }
                        }
                    }
                }
                let awaited =
                    parents[id as usize].is_some_and(|p| matches!(f.expr(p), Expr::Await(_)));
                if let Some(op) = orm_call(f, &b, id, family, awaited) {
                    out.push(op);
                }
            }
            Expr::Template {
                tag: Some(tag),
                text,
                ..
            } => {
                let tag_text = f.callee_text(*tag);
                if has(&catalog().sql.tags, &tag_text)
                    || has(&catalog().sql.tags, f.callee_name(*tag).unwrap_or(""))
                {
                    // Passed to a call (`db.execute(sql\`...\`)`): the call is the op.
                    let inside_call = parents[id as usize].is_some_and(|p| {
                        matches!(f.expr(p), Expr::Call { args, .. } if args.iter().any(|a| a.value == id))
                    });
                    if inside_call {
                        continue;
                    }
                    if let Some(info) = sql::classify(text) {
                        out.push(sql_op(f, id, id, info, text, &f.callee_text(*tag), false));
                    }
                }
            }
            _ => {}
        }
    }
    out.retain(|o| !sql_in_calls.contains(&o.expr) || o.sql.is_some());
    out.sort_by_key(|o| (o.span.start, o.span.end));
    out.dedup_by_key(|o| o.expr);
    out
}

fn sql_op(
    f: &Function,
    call: ExprId,
    str_id: ExprId,
    info: SqlInfo,
    text: &str,
    label: &str,
    in_tx: bool,
) -> DbOp {
    let kind = match info.kind {
        SqlKind::Select if info.count => OpKind::Count,
        SqlKind::Select => OpKind::Read,
        SqlKind::Insert if info.conflict_safe => OpKind::SafeInsert,
        SqlKind::Insert => OpKind::Insert,
        SqlKind::Begin => OpKind::Begin,
        _ => OpKind::Other,
    };
    let entity = match info.kind {
        SqlKind::Update | SqlKind::Delete | SqlKind::Commit | SqlKind::Other => None,
        _ => info.table.clone(),
    };
    let keys = if kind == OpKind::Insert || kind == OpKind::SafeInsert {
        info.insert_cols.clone()
    } else {
        info.where_cols.clone()
    };
    let dialect = info.dialect.or_else(|| sql::dialect_of(text));
    let table = info.table.clone().unwrap_or_default();
    let label = match info.kind {
        SqlKind::Select => format!("{label}(\"SELECT … FROM {table}\")"),
        SqlKind::Insert => format!("{label}(\"INSERT INTO {table} …\")"),
        _ => label.to_string(),
    };
    DbOp {
        kind,
        expr: call,
        span: f.span(call),
        entity: if matches!(info.kind, SqlKind::Update | SqlKind::Delete) {
            None
        } else {
            entity
        },
        lib: Lib::Sql(dialect),
        lock: info.for_update,
        keys,
        serializable: info.serializable,
        sql: Some((str_id, info)),
        in_tx,
        label,
        data: None,
    }
}

/// A call that runs SQL text: `pool.query('SELECT ...')`,
/// `conn.fetchrow(f"...")`, `session.execute(text("..."))`.
fn sql_call(f: &Function, b: &Bindings, id: ExprId, callee: ExprId, args: &[Arg]) -> Option<DbOp> {
    let cat = &catalog().sql;
    let method = f.callee_name(callee)?;
    if has(&cat.not_sinks, method) || has(&cat.wrappers, &f.callee_text(callee)) {
        return None;
    }
    let known = has(&cat.methods, method);
    for a in args.iter().take(2) {
        let Some((sid, text)) = sql_text(f, b, a.value, 1) else {
            continue;
        };
        let Some(info) = sql::classify(&text) else {
            continue;
        };
        // Outside the known runners, only a full statement counts.
        let strong = match info.kind {
            SqlKind::Insert => {
                info.table.is_some()
                    && (!info.insert_cols.is_empty()
                        || text.to_ascii_uppercase().contains("SELECT"))
            }
            SqlKind::Select => info.table.is_some() && text.to_ascii_uppercase().contains("WHERE"),
            _ => false,
        };
        if !known && !strong {
            continue;
        }
        let path = f.path(callee);
        let in_tx = path.iter().any(|p| is_tx_handle(p));
        return Some(sql_op(
            f,
            id,
            sid,
            info,
            &text,
            &f.callee_text(callee),
            in_tx,
        ));
    }
    None
}

/// What a chain says about the entity it touches.
struct EntityInfo {
    name: Option<String>,
    lib: Lib,
    /// The receiver is clearly a database handle even if the entity is not
    /// known (`this.repo`, `session`, `manager`).
    db_receiver: bool,
    /// The receiver is a TypeORM/MikroORM repository or entity manager,
    /// where `create` only builds an object.
    builder_create: bool,
}

fn capitalised(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().any(|c| c.is_ascii_lowercase())
}

/// The name an argument gives an entity: `User`, `'users'`, `schema.users`.
fn arg_entity(f: &Function, id: ExprId, allow_str: bool) -> Option<String> {
    match f.expr(id) {
        Expr::Ident(n) => Some(n.to_string()),
        Expr::Str(s) if allow_str && !s.is_empty() && !s.contains(' ') => {
            Some(s.split(" as ").next().unwrap_or(s).trim().to_string())
        }
        Expr::Member { object, property } => match f.expr(*object) {
            Expr::Ident(o) if capitalised(o) => Some(o.to_string()),
            _ => Some(property.to_string()),
        },
        // `select(func.count(Customer.id))`: the column's model.
        Expr::Call { args, .. } => match args.first().map(|a| f.expr(a.value)) {
            Some(Expr::Member { object, .. }) => match f.expr(*object) {
                Expr::Ident(o) if capitalised(o) => Some(o.to_string()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn holder_prefix(name: &str) -> Option<Option<String>> {
    let orm = &catalog().orm;
    for s in &orm.holder_suffixes {
        if name == s.as_str() {
            return Some(None);
        }
        if let Some(prefix) = name.strip_suffix(s.as_str()) {
            let prefix = prefix.trim_end_matches('_');
            if !prefix.is_empty() {
                return Some(Some(prefix.to_string()));
            }
        }
    }
    None
}

fn entity_of(
    f: &Function,
    b: &Bindings,
    links: &[Link],
    verb: usize,
    family: Family,
) -> EntityInfo {
    let orm = &catalog().orm;
    let mut info = EntityInfo {
        name: None,
        lib: Lib::Unknown,
        db_receiver: false,
        builder_create: false,
    };
    let names: Vec<&str> = links.iter().map(|l| l.name).collect();
    // Django / Flask-SQLAlchemy managers: `User.objects`, `User.query`.
    for i in 1..verb.min(links.len()) {
        if has(&orm.managers, names[i])
            && links[i].args.is_none()
            && links[i - 1].args.is_none()
            && capitalised(names[i - 1])
        {
            info.name = Some(names[i - 1].to_string());
            info.lib = if names[i] == "query" {
                Lib::SqlAlchemy
            } else {
                Lib::Django
            };
            info.db_receiver = true;
            return info;
        }
    }
    // A link whose argument names the entity (anywhere in the chain:
    // `insert().into(Coupon)`).
    for l in links {
        let Some(args) = l.args else { continue };
        let Some(first) = args.first() else { continue };
        let allow_str = matches!(l.name, "collection" | "table" | "from" | "into" | "model");
        if has(&orm.entity_args, l.name)
            || (l.name == "createQueryBuilder"
                && matches!(f.expr(first.value), Expr::Ident(n) if capitalised(n)))
        {
            if let Some(n) = arg_entity(f, first.value, allow_str) {
                if matches!(f.expr(first.value), Expr::Str(_)) && !allow_str {
                    continue;
                }
                info.name = Some(n);
                info.db_receiver = true;
                info.lib = match l.name {
                    "collection" => Lib::MongoDriver,
                    "getRepository"
                    | "getCustomRepository"
                    | "getMongoRepository"
                    | "getTreeRepository"
                    | "withRepository"
                    | "createQueryBuilder" => {
                        info.builder_create = true;
                        Lib::TypeOrm
                    }
                    "model" => Lib::Mongoose,
                    "query" | "select" | "insert" if family == Family::Python => Lib::SqlAlchemy,
                    "from" | "into" | "table" if matches!(f.expr(first.value), Expr::Str(_)) => {
                        Lib::Knex
                    }
                    // Drizzle `db.insert(table)`; TypeORM `manager.insert(Entity, values)`.
                    "from" | "insert" if family == Family::Js && args.len() == 1 => Lib::Drizzle,
                    "insert" | "update" | "delete" if family == Family::Js => Lib::TypeOrm,
                    "into" => Lib::TypeOrm,
                    _ => Lib::Unknown,
                };
                return info;
            }
        }
    }
    // Knex roots: `knex('users')`, `trx('users')`.
    if let Some(root) = links.first() {
        if let Some(args) = root.args {
            if has(&orm.knex_roots, root.name) || root.name.to_ascii_lowercase().contains("knex") {
                if let Some(Expr::Str(s)) = args.first().map(|a| f.expr(a.value)) {
                    info.name = Some(s.split(" as ").next().unwrap_or(s).trim().to_string());
                    info.lib = Lib::Knex;
                    info.db_receiver = true;
                    return info;
                }
            }
        }
    }
    // Payload CMS local API: `payload.find({ collection: 'users', where })`,
    // `req.payload.create({ collection, data })`.
    if verb >= 1 && names[verb - 1] == "payload" {
        if let Some(Expr::Object(props)) = links[verb]
            .args
            .and_then(|a| a.first())
            .map(|a| f.expr(a.value))
        {
            let collection = props.iter().find_map(|p| match &p.key {
                PropKey::Name(k) if &**k == "collection" => {
                    f.string_value(p.value).map(str::to_string)
                }
                _ => None,
            });
            info.name = collection;
            info.db_receiver = true;
            return info;
        }
    }
    // Prisma `client.model.verb`, Drizzle `db.query.table.findFirst`.
    if verb >= 2 && links[verb - 1].args.is_none() {
        let model = names[verb - 1];
        let client = names[verb - 2];
        let client_lc = client.to_ascii_lowercase();
        if client == "query" && family == Family::Js {
            info.name = Some(model.to_string());
            info.lib = Lib::Drizzle;
            info.db_receiver = true;
            return info;
        }
        let prisma_client = client_lc.contains("prisma") || has(&orm.prisma_clients, client);
        if (prisma_client || has(&orm.prisma_verbs, names[verb]))
            && model.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && holder_prefix(model).is_none()
            && family == Family::Js
        {
            info.name = Some(model.to_string());
            info.lib = Lib::Prisma;
            info.db_receiver = true;
            return info;
        }
    }
    // Repositories and models held in a variable or field.
    for l in links[..verb].iter().rev() {
        if l.args.is_some() {
            continue;
        }
        if let Some(prefix) = holder_prefix(l.name) {
            let lower = l.name.to_ascii_lowercase();
            let is_model = lower.ends_with("model");
            info.name = prefix;
            info.db_receiver = true;
            info.lib = if is_model {
                Lib::Mongoose
            } else if lower.contains("repo") {
                Lib::TypeOrm
            } else {
                Lib::Unknown
            };
            info.builder_create = lower.contains("repo");
            return info;
        }
    }
    // A model class: `User.findOne`, `db.User.create`, `models.Order.count`.
    if verb >= 1 {
        let prev = &links[verb - 1];
        if prev.args.is_none() && capitalised(prev.name) && !has(&orm.not_models, prev.name) {
            info.name = Some(prev.name.to_string());
            info.db_receiver = true;
            info.lib = if family == Family::Python {
                Lib::Unknown
            } else {
                Lib::Mongoose
            };
            return info;
        }
    }
    // Entity managers and sessions: `manager.findOne(User, ...)`,
    // `session.get(User, id)`, `session.add(obj)`.
    if verb >= 1 {
        let recv = names[verb - 1];
        let recv_lc = recv.to_ascii_lowercase();
        let session_like = has(&orm.sessions, recv)
            || recv_lc.ends_with("session")
            || recv_lc.ends_with("manager")
            || is_tx_handle(recv);
        if session_like {
            info.db_receiver = true;
            info.builder_create = recv_lc.contains("manager") || recv == "em";
            info.lib = if family == Family::Python {
                Lib::SqlAlchemy
            } else {
                Lib::TypeOrm
            };
            if let Some(first) = links[verb].args.and_then(|a| a.first()) {
                if let Expr::Ident(n) = f.expr(first.value) {
                    if capitalised(n) {
                        info.name = Some(n.to_string());
                    }
                }
            }
        }
    }
    let _ = b;
    info
}

/// Keys of a filter or of inserted data: object properties (inside `where` /
/// `data` when present), keyword arguments, `Model.col == value` comparisons,
/// `eq(table.col, value)` and knex `where('col', value)`.
pub fn keys_of(f: &Function, args: &[Arg]) -> Vec<String> {
    const OPTION_KEYS: &[&str] = &[
        "select",
        "include",
        "orderBy",
        "order",
        "take",
        "skip",
        "limit",
        "offset",
        "lock",
        "transaction",
        "attributes",
        "relations",
        "defaults",
        "using",
        "raw",
        "lean",
        "session",
        "projection",
        "sort",
        "paranoid",
        "returning",
        "omit",
        "distinct",
        "cursor",
        "withDeleted",
        "cache",
        "loadEagerRelations",
        "new",
        "upsert",
    ];
    let mut out: Vec<String> = Vec::new();
    let push = |out: &mut Vec<String>, k: &str| {
        let k = k.split("__").next().unwrap_or(k).to_string();
        if !k.is_empty() && !OPTION_KEYS.contains(&k.as_str()) && !out.contains(&k) {
            out.push(k);
        }
    };
    for a in args {
        if let Some(name) = &a.name {
            push(&mut out, name);
            continue;
        }
        match f.expr(a.value) {
            Expr::Object(props) => {
                let inner = props.iter().find(|p| matches!(&p.key, PropKey::Name(k) if matches!(&**k, "where" | "data" | "create" | "filter" | "values")));
                let props = match inner.map(|p| (p.value, f.expr(p.value))) {
                    Some((_, Expr::Object(inner))) => inner,
                    // `where: eq(referrals.refereeId, id)` (Drizzle).
                    Some((v, Expr::Call { .. })) => {
                        let nested = keys_of(
                            f,
                            &[Arg {
                                name: None,
                                value: v,
                                spread: false,
                            }],
                        );
                        for k in nested {
                            push(&mut out, &k);
                        }
                        continue;
                    }
                    _ => props,
                };
                for p in props {
                    if let PropKey::Name(k) = &p.key {
                        // Prisma compound keys: `orgId_email: { orgId, email }`.
                        if let Expr::Object(nested) = f.expr(p.value) {
                            if k.contains('_')
                                && nested.iter().all(|n| matches!(&n.key, PropKey::Name(_)))
                            {
                                for n in nested {
                                    if let PropKey::Name(nk) = &n.key {
                                        push(&mut out, nk);
                                    }
                                }
                                continue;
                            }
                        }
                        if !k.starts_with('$') {
                            push(&mut out, k);
                        }
                    }
                }
            }
            Expr::Binary { op, left, .. } if matches!(&**op, "==" | "===") => {
                if let Expr::Member { property, .. } = f.expr(*left) {
                    push(&mut out, property);
                }
            }
            Expr::Call {
                callee,
                args: inner,
            } if matches!(f.callee_name(*callee), Some("eq" | "and" | "and_")) => {
                for ia in inner {
                    match f.expr(ia.value) {
                        Expr::Member { property, .. } => {
                            push(&mut out, property);
                            break;
                        }
                        Expr::Binary { left, .. } => {
                            if let Expr::Member { property, .. } = f.expr(*left) {
                                push(&mut out, property);
                            }
                        }
                        Expr::Call { args: deeper, .. } => {
                            if let Some(Expr::Member { property, .. }) =
                                deeper.first().map(|d| f.expr(d.value))
                            {
                                push(&mut out, property);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // knex / TypeORM builder `where('email', value)` / `where('u.email = :email')`.
    if out.is_empty() && args.len() >= 2 {
        if let Some(s) = f.string_value(args[0].value) {
            if !s.contains(' ') {
                push(&mut out, s.rsplit('.').next().unwrap_or(s));
            }
        }
    }
    out
}

/// A value that is a new object: `new User(...)`, `User(...)` (Python),
/// `repo.create(...)`, `User.build(...)`, or an object literal.
fn new_object(f: &Function, id: ExprId, family: Family) -> Option<(Option<String>, ExprId)> {
    let id = f.unwrap_await(id);
    match f.expr(id) {
        Expr::New { callee, .. } => {
            let n = f.callee_name(*callee)?;
            (capitalised(n) && !has(&catalog().orm.not_models, n))
                .then(|| (Some(n.to_string()), id))
        }
        Expr::Call { callee, args } => {
            let n = f.callee_name(*callee)?;
            if family == Family::Python
                && matches!(f.expr(*callee), Expr::Ident(_) | Expr::Member { .. })
                && capitalised(n)
                && n.chars().any(|c| c.is_ascii_lowercase())
            {
                return Some((Some(n.to_string()), id));
            }
            if matches!(n, "create" | "build") {
                let path = f.path(*callee);
                // `repo.create({...})`, `manager.create(User, {...})`, `User.build({...})`.
                if let Some(first) = args.first() {
                    if let Expr::Ident(m) = f.expr(first.value) {
                        if capitalised(m) {
                            return Some((Some(m.to_string()), id));
                        }
                    }
                }
                let holder = path.iter().rev().skip(1).find_map(|p| holder_prefix(p));
                if let Some(h) = holder {
                    return Some((h, id));
                }
                if n == "build" {
                    let recv = path
                        .get(path.len().saturating_sub(2))
                        .copied()
                        .unwrap_or("");
                    if capitalised(recv) {
                        return Some((Some(recv.to_string()), id));
                    }
                }
            }
            None
        }
        Expr::Object(props) => {
            let has_id = props
                .iter()
                .any(|p| matches!(&p.key, PropKey::Name(k) if matches!(&**k, "id" | "_id")));
            (!has_id).then_some((None, id))
        }
        _ => None,
    }
}

/// An ORM / builder / driver call chain ending at `top`.
fn orm_call(
    f: &Function,
    b: &Bindings,
    top: ExprId,
    family: Family,
    awaited: bool,
) -> Option<DbOp> {
    let orm = &catalog().orm;
    let mut links = chain(f, top);
    if links.is_empty() {
        return None;
    }
    // `const users = db.collection('users'); users.insertOne(...)`: the
    // receiver is a local bound to the start of the chain.
    if links.len() > 1 && links[0].args.is_none() {
        if let Expr::Ident(n) = f.expr(links[0].id) {
            // `PageType = apps.get_model(...)` keeps the model's own name.
            let alias = capitalised(n);
            if let Some(v) = b.value(f, n, f.span(top).start).filter(|_| !alias) {
                let v = f.unwrap_await(v);
                if matches!(f.expr(v), Expr::Call { .. }) && v != top {
                    let mut head = chain(f, v);
                    if !head.is_empty() && head.iter().all(|l| l.id != top) {
                        head.extend(links.drain(1..));
                        links = head;
                    }
                }
            }
        }
    }
    if crate::analysis::external::classify(f, top, family).is_some() {
        return None;
    }
    // The verb: the last call link that reads, counts or inserts.
    let verb = links.iter().rposition(|l| {
        l.args.is_some()
            && (has(&orm.reads, l.name)
                || has(&orm.counts, l.name)
                || has(&orm.inserts, l.name)
                || has(&orm.conflict_safe, l.name))
    });
    // SQLAlchemy Core through a session: `session.execute(insert(User)...)`,
    // `session.scalar(select(User)...)`.
    if let Some(op) = executed_construct(f, b, &links, family) {
        return Some(op);
    }
    // Builder reads without a terminal verb: Drizzle / knex
    // `select(...).from(t).where(...)`, knex `knex('users').where({...})`.
    let verb = verb.or_else(|| {
        let has_link = |n: &str| links.iter().any(|l| l.name == n && l.args.is_some());
        let mutates = [
            "update",
            "del",
            "delete",
            "increment",
            "decrement",
            "truncate",
            "set",
        ]
        .iter()
        .any(|m| has_link(m));
        let knex_root = links.first().is_some_and(|r| {
            r.args.is_some_and(|a| {
                a.first()
                    .is_some_and(|x| matches!(f.expr(x.value), Expr::Str(_)))
            }) && (has(&orm.knex_roots, r.name) || r.name.to_ascii_lowercase().contains("knex"))
        });
        let select_from = has_link("select") && has_link("from");
        (family == Family::Js
            && !mutates
            && (select_from || (knex_root && (has_link("where") || has_link("whereIn")))))
        .then(|| links.len() - 1)
    });
    let verb = verb?;
    let name = links[verb].name;
    // A bare construct (`insert(User).values(...)`) runs only when executed.
    if family == Family::Python && verb == 0 {
        return None;
    }
    let ent = entity_of(f, b, &links, verb, family);
    let args = links[verb].args.unwrap_or(&[]);
    let names: Vec<&str> = links.iter().map(|l| l.name).collect();
    let label = f.callee_text(match f.expr(links[verb].id) {
        Expr::Call { callee, .. } => *callee,
        _ => links[verb].id,
    });

    let safe_in_chain = links.iter().enumerate().any(|(i, l)| {
        l.args.is_some()
            && has(&orm.conflict_safe, l.name)
            && (l.name != "prefix_with"
                || l.args.is_some_and(|a| {
                    a.iter().any(|x| {
                        f.string_value(x.value)
                            .is_some_and(|s| s.to_ascii_uppercase().contains("IGNORE"))
                    })
                }))
            && (!matches!(l.name, "merge" | "ignore") || names[..i].contains(&"onConflict"))
    });
    let safe_option = links
        .iter()
        .any(|l| l.args.is_some_and(|a| a.iter().any(|x| safe_opt(f, x))));
    let lock = links.iter().any(|l| {
        l.args.is_some()
            && (has(&orm.locks, l.name)
                && (l.name != "setLock"
                    || l.args.is_some_and(|a| {
                        a.iter().any(|x| {
                            f.string_value(x.value)
                                .is_some_and(|s| s.starts_with("pessimistic"))
                        })
                    })))
            || (l.name == "for"
                && l.args.is_some_and(|a| {
                    a.first()
                        .and_then(|x| f.string_value(x.value))
                        .is_some_and(|s| s.contains("update") || s.contains("share"))
                }))
    }) || args.iter().any(|a| lock_opt(f, a));
    let in_tx = links
        .iter()
        .any(|l| is_tx_handle(l.name) || l.name == "transacting")
        || links
            .iter()
            .any(|l| l.args.is_some_and(|a| a.iter().any(|x| tx_opt(f, x))));

    let builder_read = !has(&orm.reads, name)
        && !has(&orm.counts, name)
        && !has(&orm.inserts, name)
        && !has(&orm.conflict_safe, name);
    let mut kind = if has(&orm.counts, name) {
        OpKind::Count
    } else if has(&orm.reads, name) || builder_read {
        OpKind::Read
    } else if has(&orm.conflict_safe, name) {
        OpKind::SafeInsert
    } else {
        OpKind::Insert
    };
    let mut entity = ent.name.clone();
    let mut lib = ent.lib;
    let mut data = args.first().map(|a| a.value);
    let mut keys = keys_of(f, args);

    if kind == OpKind::Insert {
        match name {
            "create" | "acreate" => {
                // TypeORM's `repository.create()` is synchronous and only
                // builds the entity; an awaited `create` on a repository is a
                // repository class of the application's own that inserts
                // (a Mongoose-backed base repository, say).
                if ent.builder_create && !(awaited && family == Family::Js) {
                    return None;
                }
                if ent.builder_create {
                    lib = Lib::Unknown;
                }
                if !ent.db_receiver {
                    return None;
                }
                // Python `Model.create(...)` is an ORM insert only through a
                // manager (Django) or a known model helper.
                if family == Family::Python && lib == Lib::Unknown && !names.contains(&"objects") {
                    return None;
                }
            }
            "add" | "add_all" => {
                let recv = names.get(verb.wrapping_sub(1)).copied().unwrap_or("");
                let recv_lc = recv.to_ascii_lowercase();
                if !(recv_lc.contains("session") || has(&orm.sessions, recv))
                    || family != Family::Python && !recv_lc.contains("session")
                {
                    return None;
                }
                lib = Lib::SqlAlchemy;
                let obj = args.first()?.value;
                let obj = match f.expr(obj) {
                    Expr::Array(items) => *items.first()?,
                    _ => obj,
                };
                let (ent_name, data_id) = resolve_new(f, b, obj, family)?;
                entity = ent_name.or(entity);
                data = Some(data_id);
                keys = new_keys(f, b, obj, data_id);
            }
            "save" | "asave" => {
                // `repo.save(obj)`, `manager.save(obj)`, `obj.save()`.
                let (obj, receiver_obj) = match args.first() {
                    Some(a)
                        if !(matches!(f.expr(a.value), Expr::Ident(n) if capitalised(n))
                            && args.len() > 1) =>
                    {
                        (a.value, false)
                    }
                    Some(_) => (args[1].value, false),
                    None => {
                        let recv = links.get(verb.wrapping_sub(1))?;
                        (recv.id, true)
                    }
                };
                if !receiver_obj && !ent.db_receiver {
                    return None;
                }
                let (ent_name, data_id) = resolve_new(f, b, obj, family)?;
                if let Some(n) = ent_name {
                    entity = Some(n);
                } else if let Some(Expr::Ident(n)) = args.first().map(|a| f.expr(a.value)) {
                    if capitalised(n) {
                        entity = Some(n.to_string());
                    }
                }
                if receiver_obj {
                    lib = if family == Family::Python {
                        Lib::Django
                    } else {
                        Lib::Mongoose
                    };
                }
                data = Some(data_id);
                keys = new_keys(f, b, obj, data_id);
            }
            "insert"
            | "insertOne"
            | "insertMany"
            | "insert_one"
            | "insert_many"
            | "createMany"
            | "createManyAndReturn"
            | "bulkCreate"
            | "bulk_create"
            | "abulk_create" => {
                if !ent.db_receiver {
                    return None;
                }
                if ent.builder_create && lib == Lib::TypeOrm && name == "insert" && args.is_empty()
                {
                    // `createQueryBuilder().insert().into(User).values(...)`.
                    if let Some(v) = links.iter().find(|l| l.name == "values") {
                        let va = v.args.unwrap_or(&[]);
                        data = va.first().map(|a| a.value);
                        keys = keys_of(f, va);
                    }
                }
                if matches!(lib, Lib::Drizzle | Lib::Knex) {
                    if let Some(v) = links.iter().find(|l| l.name == "values") {
                        let va = v.args.unwrap_or(&[]);
                        data = va.first().map(|a| a.value);
                        keys = keys_of(f, va);
                    }
                }
            }
            _ => {
                if !ent.db_receiver {
                    return None;
                }
            }
        }
        if safe_in_chain || safe_option {
            kind = OpKind::SafeInsert;
        }
    } else {
        if !ent.db_receiver {
            return None;
        }
        // Generic reads count only on a manager, session, repository or a
        // chain that names its entity; `get` never on a cache.
        if matches!(name, "get" | "aget") && entity.is_none() {
            return None;
        }
        if ent.name.is_none()
            && matches!(
                name,
                "find" | "first" | "one" | "last" | "scalar" | "scalars"
            )
        {
            return None;
        }
        // Builder reads: keys from `where(...)` links.
        if keys.is_empty() {
            for l in &links {
                if matches!(
                    l.name,
                    "where"
                        | "filter"
                        | "filter_by"
                        | "andWhere"
                        | "findOneBy"
                        | "get"
                        | "aget"
                        | "exclude"
                ) {
                    keys.extend(keys_of(f, l.args.unwrap_or(&[])));
                }
            }
        }
    }
    if lib == Lib::Mongoose && family == Family::Js {
        // Sequelize and TypeORM take `{ where: ... }` and `{ transaction }`;
        // Mongoose takes the filter itself.
        let uses_where = args.iter().any(|a| matches!(f.expr(a.value), Expr::Object(p) if p.iter().any(|x| matches!(&x.key, PropKey::Name(k) if &**k == "where" || &**k == "transaction"))));
        if uses_where || matches!(name, "findByPk" | "findAll" | "bulkCreate" | "findOrCreate") {
            lib = Lib::Sequelize;
        }
    }
    if has(&orm.prisma_verbs, name) && lib == Lib::Unknown {
        lib = Lib::Prisma;
    }
    Some(DbOp {
        kind,
        expr: top,
        span: f.span(top),
        entity,
        lib,
        lock,
        keys,
        sql: None,
        in_tx,
        serializable: false,
        label,
        data,
    })
}

/// Resolves an object passed to `save`/`add`: a new object built here.
fn resolve_new(
    f: &Function,
    b: &Bindings,
    obj: ExprId,
    family: Family,
) -> Option<(Option<String>, ExprId)> {
    if let Some(r) = new_object(f, obj, family) {
        return Some(r);
    }
    match f.expr(f.unwrap_await(obj)) {
        Expr::Ident(n) => {
            let v = b.value(f, n, f.span(obj).start)?;
            new_object(f, v, family)
        }
        Expr::This => None,
        _ => None,
    }
}

/// Fields set on a new object: constructor arguments plus `obj.field = ...`.
fn new_keys(f: &Function, _b: &Bindings, obj: ExprId, data: ExprId) -> Vec<String> {
    let mut keys = match f.expr(data) {
        Expr::New { args, .. } | Expr::Call { args, .. } => {
            let real: Vec<Arg> = args
                .iter()
                .filter(|a| !matches!(f.expr(a.value), Expr::Ident(n) if capitalised(n)))
                .cloned()
                .collect();
            keys_of(f, &real)
        }
        Expr::Object(_) => keys_of(
            f,
            &[Arg {
                name: None,
                value: data,
                spread: false,
            }],
        ),
        _ => Vec::new(),
    };
    if let Expr::Ident(var) = f.expr(obj) {
        for e in &f.exprs {
            if let Expr::Assign { target, .. } = e {
                if let Expr::Member { object, property } = f.expr(*target) {
                    if matches!(f.expr(*object), Expr::Ident(o) if o == var)
                        && !keys.iter().any(|k| k == &**property)
                    {
                        keys.push(property.to_string());
                    }
                }
            }
        }
    }
    keys
}

fn truthy(f: &Function, id: ExprId) -> bool {
    !matches!(f.expr(id), Expr::Bool(false) | Expr::Null)
}

/// `upsert: true`, `ignoreDuplicates: true`, `ignore_conflicts=True`.
fn safe_opt(f: &Function, a: &Arg) -> bool {
    let opts = &catalog().orm.conflict_safe_options;
    if let Some(n) = &a.name {
        return has(opts, n) && truthy(f, a.value);
    }
    match f.expr(a.value) {
        Expr::Object(props) => props
            .iter()
            .any(|p| matches!(&p.key, PropKey::Name(k) if has(opts, k)) && truthy(f, p.value)),
        _ => false,
    }
}

/// `lock: { mode: 'pessimistic_write' }`, `lock: t.LOCK.UPDATE`, `lock: true`.
fn lock_opt(f: &Function, a: &Arg) -> bool {
    let orm = &catalog().orm;
    let Expr::Object(props) = f.expr(a.value) else {
        return false;
    };
    props.iter().any(|p| {
        let PropKey::Name(k) = &p.key else { return false };
        if !has(&orm.lock_options, k) {
            return false;
        }
        let v = p.value;
        match f.expr(v) {
            Expr::Bool(true) => true,
            Expr::Str(s) => has(&orm.lock_values, s),
            Expr::Member { property, .. } => has(&orm.lock_values, property),
            Expr::Object(inner) => inner.iter().any(|ip| {
                matches!(f.string_value(ip.value), Some(s) if has(&orm.lock_values, s))
                    || matches!(f.expr(ip.value), Expr::Member { property, .. } if has(&orm.lock_values, property))
            }),
            _ => false,
        }
    })
}

/// `{ transaction: t }`, `transaction=t`.
fn tx_opt(f: &Function, a: &Arg) -> bool {
    let opts = &catalog().tx.options;
    if let Some(n) = &a.name {
        return has(opts, n);
    }
    matches!(f.expr(a.value), Expr::Object(props) if props.iter().any(|p| matches!(&p.key, PropKey::Name(k) if has(opts, k)) && !matches!(f.expr(p.value), Expr::Null)))
}

/// `session.execute(insert(User).values(...))`, `session.scalar(select(User)
/// .where(...))`, `conn.execute(stmt)` with `stmt = select(...)`.
fn executed_construct(f: &Function, b: &Bindings, links: &[Link], family: Family) -> Option<DbOp> {
    if family != Family::Python {
        return None;
    }
    let exec = links.iter().position(|l| {
        matches!(
            l.name,
            "execute" | "scalar" | "scalars" | "exec" | "aexecute"
        ) && l.args.is_some_and(|a| !a.is_empty())
    })?;
    let arg = links[exec].args?.first()?.value;
    let arg = match f.expr(arg) {
        Expr::Ident(n) => b.value(f, n, f.span(arg).start)?,
        _ => arg,
    };
    let inner = chain(f, arg);
    let root = inner.first()?;
    let kind = match root.name {
        "select" => {
            let count = inner.iter().any(|l| l.name == "count")
                || root.args.is_some_and(|a| a.iter().any(|x| {
                    matches!(f.expr(x.value), Expr::Call { callee, .. } if f.callee_text(*callee).ends_with("count"))
                }));
            if count {
                OpKind::Count
            } else {
                OpKind::Read
            }
        }
        "insert" => OpKind::Insert,
        "exists" => OpKind::Read,
        _ => return None,
    };
    let mut entity = root
        .args
        .and_then(|a| a.first())
        .and_then(|x| arg_entity(f, x.value, false));
    if entity.is_none() {
        // `select(func.count()).select_from(User)`.
        entity = inner
            .iter()
            .find(|l| l.name == "select_from")
            .and_then(|l| l.args?.first())
            .and_then(|x| arg_entity(f, x.value, false));
    }
    let safe = inner.iter().any(|l| {
        has(&catalog().orm.conflict_safe, l.name)
            && (l.name != "prefix_with"
                || l.args.is_some_and(|a| {
                    a.iter().any(|x| {
                        f.string_value(x.value)
                            .is_some_and(|s| s.to_ascii_uppercase().contains("IGNORE"))
                    })
                }))
    });
    let lock = inner.iter().any(|l| has(&catalog().orm.locks, l.name));
    let mut keys = Vec::new();
    let mut data = None;
    for l in &inner {
        if matches!(l.name, "where" | "filter" | "filter_by" | "values") {
            let a = l.args.unwrap_or(&[]);
            keys.extend(keys_of(f, a));
            if l.name == "values" {
                data = Some(l.id);
            }
        }
    }
    let top = links.last()?.id;
    Some(DbOp {
        kind: if kind == OpKind::Insert && safe {
            OpKind::SafeInsert
        } else {
            kind
        },
        expr: top,
        span: f.span(top),
        entity,
        lib: Lib::SqlAlchemy,
        lock,
        keys,
        sql: None,
        in_tx: false,
        serializable: false,
        label: f.callee_text(match f.expr(links[exec].id) {
            Expr::Call { callee, .. } => *callee,
            _ => links[exec].id,
        }),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_parses() {
        assert!(!catalog().orm.reads.is_empty());
    }

    #[test]
    fn entity_keys() {
        assert_eq!(entity_key("charges"), "charge");
        assert_eq!(entity_key("Charge"), "charge");
        assert_eq!(entity_key("chargeRepository"), "charge");
        assert_eq!(entity_key("public.charges"), "charge");
        assert_eq!(entity_key("org_members"), "orgmember");
        assert_eq!(entity_key("OrgMember"), "orgmember");
        assert_eq!(entity_key("companies"), "company");
        assert_eq!(entity_key("status"), "status");
        assert_eq!(entity_key("addresses"), "address");
        assert_eq!(entity_key("usersTable"), "user");
    }
}
