//! Guards and locks: what a function acquires and releases, on which exit
//! paths each release runs, and whether a guard is held at a statement.
//!
//! Shared by RA003 (release not protected on the exceptional path), RA006
//! (unsafe redis locks) and any rule that asks "is a guard held across this
//! await?" ([`FunctionGuards::held_at`]).
//!
//! How: one pass over the function's statements in source order recognises
//! guard effects from the model (never tree-sitter): Set/Map entries keyed by
//! their key expression, boolean flags on `this`/`self`/module/closure places,
//! lock and semaphore objects, acquire/release helpers, and redis keys taken
//! with NX. Each acquire is paired with the later releases of the same guard;
//! the statements between them are the guarded region. Every statement in
//! the region that can leave it (an `await`, a call, a `throw`, a `return`)
//! is followed up the context tree (try / catch / finally) to see whether the
//! guard is released on that path. Which API call means which effect is data:
//! `rules/catalog/locks.toml`, loaded by [`LockCatalog`].
//!
//! Use from a rule:
//! ```ignore
//! let guards = FunctionGuards::analyse(cx.file, cx.func, cx.src);
//! // RA003: regions whose leaks are not empty.
//! for region in &guards.regions { /* region.leaks, guards.region_releases(region) */ }
//! // RA004: is a guard held at the statement holding this await?
//! if guards.held_at(cx.func, stmt_index).is_some() { /* not a hazard */ }
//! // RA006: the redis commands of the function.
//! let ops = redis_ops(cx.file, cx.func, cx.src);
//! ```

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::catalog::CallPattern;
use crate::model::{
    CtxId, CtxKind, Expr, ExprId, Family, FileModel, FuncId, Function, PropKey, Span, StmtKind,
};

// ---------------------------------------------------------------------------
// Catalogue

const LOCKS_TOML: &str = include_str!("../../rules/catalog/locks.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockCatalog {
    pub names: Names,
    pub containers: Containers,
    pub locks: Locks,
    pub redis: Redis,
    pub throwing: Throwing,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Names {
    pub lock_tokens: Vec<String>,
    pub release_tokens: Vec<String>,
    pub acquire_tokens: Vec<String>,
    pub flag_tokens: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Containers {
    pub set_add: Vec<String>,
    pub set_release_js: Vec<String>,
    pub set_release_py: Vec<String>,
    pub map_set_js: Vec<String>,
    pub map_release_js: Vec<String>,
    pub map_release_py: Vec<String>,
    pub not_guards: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locks {
    pub acquire: Vec<String>,
    pub release: Vec<String>,
    pub scoped: Vec<String>,
    pub limiters: Vec<String>,
    pub limiter_calls: Vec<String>,
    pub constructors: Vec<String>,
    pub with_factories: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub set: Vec<String>,
    pub setnx: Vec<String>,
    pub add_if_absent: Vec<String>,
    pub add_if_absent_receivers: Vec<String>,
    pub nx_tokens: Vec<String>,
    pub expiry_tokens: Vec<String>,
    pub expiry_keywords: Vec<String>,
    pub delete_js: Vec<String>,
    pub delete_py: Vec<String>,
    pub expire: Vec<String>,
    pub get: Vec<String>,
    pub watch: Vec<String>,
    pub command: Vec<String>,
    pub transaction: Vec<String>,
    pub not_redis: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throwing {
    pub safe_calls: Vec<CallPattern>,
    pub safe_methods: Vec<String>,
}

/// The lock catalogue, parsed once.
pub fn locks() -> &'static LockCatalog {
    static CATALOG: OnceLock<LockCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        toml::from_str(LOCKS_TOML).expect("rules/catalog/locks.toml is valid (checked by tests)")
    })
}

fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|s| s == name)
}

pub use crate::catalog::name_tokens;

impl LockCatalog {
    /// A name (key text, variable, callee) that is about a lock.
    pub fn is_lock_name(&self, text: &str) -> bool {
        name_tokens(text)
            .iter()
            .any(|t| has(&self.names.lock_tokens, t))
    }

    /// A function or method name that releases a lock: `releaseLock`,
    /// `unlock`, `release_job_lock`, `freeLock`.
    pub fn is_release_helper(&self, name: &str) -> bool {
        if crate::catalog::with_extensions(|e| crate::catalog::names_any(&e.lock_release, name)) {
            return true;
        }
        if !self.mentions_lock_token(name) {
            return false;
        }
        let t = name_tokens(name);
        let Some(first) = t.first() else { return false };
        if first == "unlock" {
            return !stop_noun(t.last());
        }
        has(&self.names.release_tokens, first)
            && t.iter().any(|w| has(&self.names.lock_tokens, w))
            && !stop_noun(t.last())
    }

    /// Every helper name has a lock token among its words, so a name without
    /// one as a substring is rejected before it is split (most calls).
    fn mentions_lock_token(&self, name: &str) -> bool {
        self.names
            .lock_tokens
            .iter()
            .any(|w| crate::catalog::contains_ignore_ascii_case(name, w))
    }

    /// A function or method name that takes a lock: `acquireLock`, `lockJob`,
    /// `tryLock`, `take_lock`.
    pub fn is_acquire_helper(&self, name: &str) -> bool {
        if crate::catalog::with_extensions(|e| crate::catalog::names_any(&e.lock_acquire, name)) {
            return true;
        }
        if !self.mentions_lock_token(name) {
            return false;
        }
        let t = name_tokens(name);
        let Some(first) = t.first() else { return false };
        has(&self.names.acquire_tokens, first)
            && t.iter().any(|w| has(&self.names.lock_tokens, w))
            && !stop_noun(t.last())
            && t.len() > 1
    }

    /// A boolean flag name that reads as "an operation is in progress".
    pub fn is_flag_name(&self, name: &str) -> bool {
        name_tokens(name)
            .iter()
            .any(|t| has(&self.names.flag_tokens, t) || (t.len() > 4 && t.ends_with("ing")))
    }
}

/// Nouns that make a lock-ish name a fact about the lock, not an operation:
/// `getLockKey`, `lockTimeout`, `releaseLockStatus`.
fn stop_noun(last: Option<&String>) -> bool {
    last.is_some_and(|l| {
        matches!(
            l.as_str(),
            "key"
                | "keys"
                | "name"
                | "names"
                | "id"
                | "ttl"
                | "timeout"
                | "status"
                | "state"
                | "info"
                | "owner"
                | "value"
                | "expiry"
                | "prefix"
                | "path"
                | "options"
                | "config"
                | "manager"
                | "service"
                | "client"
                | "holder"
                | "token"
                | "duration"
                | "error"
                | "file"
                | "count"
                | "time"
                | "at"
        )
    })
}

// ---------------------------------------------------------------------------
// The effects

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardKind {
    /// `inFlight.add(id)` ... `inFlight.delete(id)`; Python `add`/`discard`.
    SetEntry,
    /// `pending.set(key, p)` ... `pending.delete(key)`; `d[k] = v` ... `del d[k]`.
    MapEntry,
    /// `this.busy = true` ... `this.busy = false`.
    Flag,
    /// Mutex, semaphore or lock object, or an acquire/release helper.
    Lock,
    /// A redis key taken with NX (or named as a lock) and deleted.
    RedisKey,
}

impl GuardKind {
    pub fn describe(self) -> &'static str {
        match self {
            GuardKind::SetEntry => "set entry",
            GuardKind::MapEntry => "map entry",
            GuardKind::Flag => "flag",
            GuardKind::Lock => "lock",
            GuardKind::RedisKey => "redis lock",
        }
    }
}

/// What is guarded: the place (normalised text of the set, map, flag, lock
/// object or helper receiver) and, for keyed guards, the key expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GuardId {
    pub kind: GuardKind,
    pub place: String,
    pub key: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Acquire {
    pub stmt: usize,
    /// The call or assignment that takes the guard.
    pub expr: ExprId,
    pub guard: GuardId,
    /// Variables bound to the acquire's result (`release`, `lock`, `acquired`).
    pub bound: Vec<String>,
    /// The acquire is evaluated in an `if`/`while` condition.
    pub in_test: bool,
    /// Taken through an in-house helper (`acquireLock(key)`), not a known API.
    pub helper: bool,
    /// The acquire expression is awaited.
    pub awaited: bool,
    /// A condition before the acquire reads the guarded place (`if
    /// (inFlight.has(id)) return`, `if self._running: return`).
    pub checked: bool,
    /// A flag nothing in the file tests: it may be a status, not a guard.
    pub untested: bool,
}

#[derive(Clone, Debug)]
pub struct Release {
    pub stmt: usize,
    pub expr: ExprId,
    pub guard: GuardId,
    /// Names the release goes through (`release()`, `lock.release()`,
    /// `redlock.release(lock)`): matched against [`Acquire::bound`].
    pub via: Vec<String>,
    pub context: ReleaseContext,
}

/// Where a release runs, structurally.
#[derive(Clone, Debug, Default)]
pub struct ReleaseContext {
    /// Inside the `finally` of this try (runs on every exit of the try).
    pub in_finally: Option<u32>,
    /// Inside a `catch`/`except` of this try.
    pub in_catch: Option<u32>,
    /// That handler catches everything (JS `catch`, bare `except`,
    /// `except BaseException`).
    pub catch_all: bool,
    /// The handler rethrows (a `throw`/`raise` in it).
    pub rethrows: bool,
    /// Inside a `with` / `async with` body.
    pub in_with: bool,
    /// Followed in its own block by a `return` (an early-exit release).
    pub before_return: bool,
}

/// Why a statement between acquire and release can leave the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RaiseKind {
    /// Property reads, arithmetic, calls that cannot throw in practice.
    Weak,
    Call,
    Throw,
    Await,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakCause {
    /// An exception at this point skips every release.
    Raise(RaiseKind),
    /// This `return` leaves the function with the guard held.
    EarlyReturn,
    /// A catch handles the exception and returns without releasing.
    CatchReturn,
    /// Python `async def`: only `except Exception` protects the release, and
    /// `asyncio.CancelledError` (a `BaseException`) skips it.
    Cancellation,
}

#[derive(Clone, Copy, Debug)]
pub struct Leak {
    pub stmt: usize,
    /// The expression that raises (or the `return` statement).
    pub span: Span,
    pub cause: LeakCause,
}

/// An acquire with the releases that pair with it.
#[derive(Clone, Debug)]
pub struct Region {
    pub acquire: usize,
    pub releases: Vec<usize>,
    /// The innermost context holding the acquire and every release.
    pub scope: CtxId,
    /// The last statement holding a release.
    pub end: usize,
    /// Ways out of the region that skip every release; empty when protected.
    pub leaks: Vec<Leak>,
}

/// A guard held by construction for part or all of the function.
#[derive(Clone, Debug)]
pub enum Scoped {
    /// `with lock:` / `async with lock:` (the ctx of the body).
    With { ctx: CtxId, item: ExprId },
    /// `using x = ...` / `await using x = ...`: held to the end of the block.
    Using { stmt: usize },
    /// This function is the callback of `runExclusive`, `lock.acquire(key, fn)`,
    /// redlock `using`, or a concurrency-1 limiter.
    Callback { call: String },
}

/// What holds the guard at a statement (see [`FunctionGuards::held_at`]).
#[derive(Clone, Debug)]
pub enum Held<'a> {
    Region(&'a Region),
    /// An acquire with no release in this function (released elsewhere).
    Open(&'a Acquire),
    Scoped(&'a Scoped),
}

#[derive(Debug, Default)]
pub struct FunctionGuards {
    pub acquires: Vec<Acquire>,
    pub releases: Vec<Release>,
    pub regions: Vec<Region>,
    pub scoped: Vec<Scoped>,
}

// ---------------------------------------------------------------------------
// Per-function facts used while recognising effects

struct Facts<'a> {
    file: &'a FileModel,
    f: &'a Function,
    src: &'a str,
    cat: &'static LockCatalog,
    family: Family,
    /// Names declared (JS) or assigned (Python) in the function, and params.
    locals: HashSet<&'a str>,
    /// Python `global`/`nonlocal` names.
    globals: HashSet<String>,
    tries: HashMap<u32, TryInfo>,
    /// React `useState`/`useReducer` setters of the file (`setLoading`): they
    /// schedule a render and do not throw.
    /// Computed on first use: it reads the whole file.
    setters: std::cell::OnceCell<HashSet<String>>,
}

#[derive(Debug, Default)]
struct TryInfo {
    catches: Vec<CtxId>,
    finally: Option<CtxId>,
    start: u32,
    end: u32,
}

impl<'a> Facts<'a> {
    fn new(file: &'a FileModel, f: &'a Function, src: &'a str) -> Self {
        let family = file.language.family();
        let mut locals: HashSet<&'a str> = f.params.iter().map(|p| p.name.as_str()).collect();
        for e in &f.exprs {
            if let Expr::Assign { target, decl, .. } = e {
                if *decl || family == Family::Python {
                    for d in f.descendants(*target) {
                        if let Expr::Ident(n) = f.expr(d) {
                            locals.insert(n.as_str());
                        }
                    }
                }
            }
        }
        let mut globals = HashSet::default();
        if family == Family::Python {
            globals.extend(super::awaits::python_outer_names(f, src, family));
            for g in &globals {
                locals.remove(g.as_str());
            }
        }
        let mut tries: HashMap<u32, TryInfo> = HashMap::default();
        for (id, c) in f.ctxs.iter().enumerate() {
            let (t, role) = match c.kind {
                CtxKind::Try { try_id } => (try_id, 0),
                CtxKind::Catch { try_id, .. } => (try_id, 1),
                CtxKind::Finally { try_id } => (try_id, 2),
                _ => continue,
            };
            let info = tries.entry(t).or_insert_with(|| TryInfo {
                start: u32::MAX,
                ..TryInfo::default()
            });
            info.start = info.start.min(c.span.start);
            info.end = info.end.max(c.span.end);
            match role {
                1 => info.catches.push(id as CtxId),
                2 => info.finally = Some(id as CtxId),
                _ => {}
            }
        }
        Facts {
            file,
            f,
            setters: std::cell::OnceCell::new(),
            src,
            cat: locks(),
            family,
            locals,
            globals,
            tries,
        }
    }

    fn is_setter(&self, name: &str) -> bool {
        self.setters
            .get_or_init(|| {
                let file = self.file;
                let all = file.memo.get(0, || Setters(state_setters(file, self.src)));
                all.0.clone()
            })
            .contains(name)
    }

    fn text(&self, id: ExprId) -> &'a str {
        self.src.get(self.f.span(id).range()).unwrap_or("")
    }

    /// Normalised text of an expression: no whitespace, no `await`, no
    /// TypeScript non-null `!`.
    fn norm(&self, id: ExprId) -> String {
        let id = self.f.unwrap_await(id);
        let t: String = self.text(id).split_whitespace().collect();
        t.trim_end_matches('!').to_string()
    }

    /// Whether a place lives beyond one call of this function: `this.x` /
    /// `self.x`, a module or closure variable (or a member of one).
    /// `rebinding` asks about assigning the bare name itself (a flag): in
    /// Python that needs `global`/`nonlocal`.
    fn shared_place(&self, id: ExprId, rebinding: bool) -> bool {
        let f = self.f;
        let mut cur = f.unwrap_await(id);
        let mut depth = 0;
        loop {
            match f.expr(cur) {
                Expr::This => return depth > 0,
                Expr::Ident(n) => {
                    if depth == 0 && rebinding && self.family == Family::Python {
                        return self.globals.contains(&**n);
                    }
                    if self.family == Family::Python && depth > 0 && &**n == "cls" {
                        return true;
                    }
                    return !self.locals.contains(&**n)
                        && !matches!(&**n, "window" | "document" | "globalThis" | "process");
                }
                Expr::Member { object, .. } | Expr::Index { object, .. } => {
                    cur = *object;
                    depth += 1;
                }
                _ => return false,
            }
        }
    }

    /// The receiver's last name is one whose add/set/delete is not a guard.
    fn not_guard_receiver(&self, object: ExprId) -> bool {
        let last = match self.f.expr(object) {
            Expr::Ident(n) => n.to_string(),
            Expr::Member { property, .. } => property.to_string(),
            _ => return false,
        };
        has(
            &self.cat.containers.not_guards,
            last.trim_start_matches('_'),
        )
    }

    fn ctx_kind(&self, c: CtxId) -> &'a CtxKind {
        &self.f.ctxs[c as usize].kind
    }

    fn parent(&self, c: CtxId) -> Option<CtxId> {
        self.f.ctxs[c as usize].parent
    }

    fn stmt_ctx(&self, k: usize) -> CtxId {
        self.f.stmts[k].ctx
    }
}

/// Functions a React hook hands out, anywhere in the file: the setters of
/// `const [x, setX] = useState(...)`, `const { clearErrors } = useForm()`.
/// Calling one schedules a UI update; it does not throw.
/// The file's React-style state setters (computed once per file).
struct Setters(HashSet<String>);

fn state_setters(file: &FileModel, src: &str) -> HashSet<String> {
    let mut out = HashSet::default();
    if file.language.family() != Family::Js {
        return out;
    }
    let is_hook = |g: &Function, value: ExprId| -> bool {
        let Expr::Call { callee, .. } = g.expr(g.unwrap_await(value)) else {
            return false;
        };
        let hook = g.callee_name(*callee).unwrap_or("");
        hook.len() > 3
            && hook.starts_with("use")
            && hook[3..].starts_with(|c: char| c.is_ascii_uppercase())
    };
    for g in &file.functions {
        // `const form = useForm(); const { setError } = form`: one hop.
        let hook_objects: HashSet<&str> = g
            .exprs
            .iter()
            .filter_map(|e| match e {
                Expr::Assign { target, value, .. } if is_hook(g, *value) => match g.expr(*target) {
                    Expr::Ident(n) => Some(&**n),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for e in &g.exprs {
            let Expr::Assign { target, value, .. } = e else {
                continue;
            };
            let from_hook = is_hook(g, *value)
                || matches!(g.expr(*value), Expr::Ident(n) if hook_objects.contains(&**n));
            if !from_hook || matches!(g.expr(*target), Expr::Ident(_)) {
                continue;
            }
            let array = src
                .get(g.span(*target).range())
                .is_some_and(|t| t.starts_with('['));
            match g.expr(*target) {
                // `const [value, setValue] = useState()`: the setter.
                Expr::Array(items) | Expr::Other(items) if array => {
                    for item in items.iter().skip(1) {
                        if let Expr::Ident(n) = g.expr(*item) {
                            out.insert(n.to_string());
                        }
                    }
                }
                // `const { setError, clearErrors } = useForm()`.
                _ => {
                    for d in g.descendants(*target) {
                        if let Expr::Ident(n) = g.expr(d) {
                            out.insert(n.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// Whether the function is test code: inside an `it`/`test`/`describe`/hook
/// callback, in a file whose top level calls `describe`/`it`/`test`, or a
/// Python `test_*` function / `Test*` class. A guard leaked by a failing
/// test ends with the test; no request ever waits on it.
pub fn in_test_code(file: &FileModel, f: &Function) -> bool {
    const HOOKS: &[&str] = &[
        "it callback",
        "test callback",
        "describe callback",
        "beforeEach callback",
        "afterEach callback",
        "beforeAll callback",
        "afterAll callback",
        "before callback",
        "after callback",
        "suite callback",
    ];
    struct TestFile(bool);
    let test_file = file.memo.get(0, || {
        let module = &file.functions[0];
        TestFile(module.stmts.iter().any(|s| {
            matches!(s.kind, StmtKind::Expr(e) if matches!(module.expr(e), Expr::Call { callee, .. }
                if matches!(module.path(*callee).first().copied(), Some("describe" | "it" | "test" | "suite"))))
        }))
    });
    if test_file.0 {
        return true;
    }
    let mut cur = Some(f);
    while let Some(g) = cur {
        for seg in g.name.split('.') {
            if HOOKS.contains(&seg)
                || (file.language.family() == Family::Python
                    && (seg.starts_with("test_") || (seg.starts_with("Test") && seg.len() > 4)))
            {
                return true;
            }
        }
        cur = g.parent.map(|p| &file.functions[p as usize]);
    }
    false
}

/// Positional (non-keyword) arguments of a call.
fn positional(f: &Function, id: ExprId) -> Vec<ExprId> {
    match f.expr(id) {
        Expr::Call { args, .. } | Expr::New { args, .. } => args
            .iter()
            .filter(|a| a.name.is_none() && !a.spread)
            .map(|a| a.value)
            .collect(),
        _ => Vec::new(),
    }
}

fn keyword(f: &Function, id: ExprId, name: &str) -> Option<ExprId> {
    match f.expr(id) {
        Expr::Call { args, .. } => args
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .map(|a| a.value),
        _ => None,
    }
}

fn has_function_arg(f: &Function, id: ExprId) -> bool {
    match f.expr(id) {
        Expr::Call { args, .. } => args
            .iter()
            .any(|a| matches!(f.expr(a.value), Expr::Function(_))),
        _ => false,
    }
}

/// The method name and receiver of a call `recv.method(...)`.
fn method_call(f: &Function, id: ExprId) -> Option<(&str, ExprId)> {
    match f.expr(id) {
        Expr::Call { callee, .. } => match f.expr(*callee) {
            Expr::Member { object, property } => Some((property, *object)),
            _ => None,
        },
        _ => None,
    }
}

/// The name of a bare-function call `name(...)`.
fn bare_call(f: &Function, id: ExprId) -> Option<&str> {
    match f.expr(id) {
        Expr::Call { callee, .. } => match f.expr(*callee) {
            Expr::Ident(n) => Some(n),
            _ => None,
        },
        _ => None,
    }
}

fn truthy_literal(f: &Function, id: ExprId) -> Option<bool> {
    match f.expr(id) {
        Expr::Bool(b) => Some(*b),
        Expr::Null => Some(false),
        _ => None,
    }
}

/// Whether `f` holds an expression `collect` could record as a release. A
/// region needs one, so without it the function has no leak to report and
/// its facts need not be built (most functions). Mirrors every release site
/// of `collect`; `tests/prefilter.rs` checks it on the fixtures.
pub fn may_release(f: &Function) -> bool {
    let cat = locks();
    let r = &cat.redis;
    let c = &cat.containers;
    let release_method = |m: &str| {
        [
            &r.delete_js,
            &r.delete_py,
            &r.command,
            &c.set_release_js,
            &c.set_release_py,
            &c.map_release_js,
            &c.map_release_py,
            &cat.locks.release,
        ]
        .iter()
        .any(|list| has(list, m))
            || cat.is_release_helper(m)
    };
    // A bare call can release what an acquire returned, whatever its name
    // (`const done = await mutex.acquire(); ... done()`): a function with a
    // bare call and any call that can acquire keeps the full analysis.
    let acquire_method = |m: &str| {
        [
            &cat.locks.acquire,
            &c.set_add,
            &c.map_set_js,
            &r.set,
            &r.setnx,
            &r.add_if_absent,
            &r.command,
        ]
        .iter()
        .any(|list| has(list, m))
            || cat.is_acquire_helper(m)
    };
    let (mut bare_call, mut acquire_call) = (false, false);
    for e in &f.exprs {
        let releases = match e {
            Expr::Unary { op, .. } => matches!(&**op, "del" | "delete"),
            Expr::Assign { value, .. } => truthy_literal(f, *value) == Some(false),
            Expr::Call { callee, .. } => {
                let name = match f.expr(*callee) {
                    Expr::Member { property, .. } => Some(&**property),
                    Expr::Ident(name) => {
                        bare_call = true;
                        Some(&**name)
                    }
                    _ => None,
                };
                acquire_call |= name.is_some_and(acquire_method);
                name.is_some_and(release_method)
            }
            _ => false,
        };
        if releases || (bare_call && acquire_call) {
            return true;
        }
    }
    false
}

// ---------------------------------------------------------------------------
// Recognising effects

impl FunctionGuards {
    /// Analyses one function of a lowered file.
    pub fn analyse(file: &FileModel, f: &Function, src: &str) -> FunctionGuards {
        let mut out = FunctionGuards::default();
        let facts = Facts::new(file, f, src);
        out.scoped_with(&facts);
        out.scoped_callback(file, f, src);
        if may_have_guards(f) {
            out.collect(&facts);
            out.pair(&facts);
        }
        out
    }

    fn collect(&mut self, fx: &Facts) {
        let f = fx.f;
        let cat = fx.cat;
        let mut bound: HashMap<ExprId, Vec<String>> = HashMap::default();
        let mut awaited: HashSet<ExprId> = HashSet::default();
        // Python `lock = r.lock(...)` makes a lock object; `lock.acquire()`
        // takes it. Such factory calls are not acquires.
        let mut acquired_objects: HashSet<String> = HashSet::default();
        for e in f.exprs.iter() {
            if let Some((m, recv)) = match e {
                Expr::Call { callee, .. } => match f.expr(*callee) {
                    Expr::Member { object, property } => Some((&**property, *object)),
                    _ => None,
                },
                _ => None,
            } {
                if has(&cat.locks.acquire, m) {
                    if let Expr::Ident(n) = f.expr(recv) {
                        acquired_objects.insert(n.to_string());
                    }
                }
            }
        }
        for (k, stmt) in f.stmts.iter().enumerate() {
            let Some(root) = f.stmt_expr(stmt) else {
                continue;
            };
            let in_test = matches!(stmt.kind, StmtKind::Test(_));
            if self.using_stmt(fx, k) {
                continue;
            }
            for id in f.descendants(root) {
                match f.expr(id) {
                    Expr::Await(inner) => {
                        awaited.insert(*inner);
                    }
                    Expr::Assign { target, value, .. } => {
                        let v = f.unwrap_await(*value);
                        // Only a call's result can be an acquire's handle.
                        if matches!(f.expr(v), Expr::Call { .. }) {
                            let names = f.descendants(*target).into_iter().filter_map(|d| match f
                                .expr(d)
                            {
                                Expr::Ident(n) => Some(n.to_string()),
                                _ => None,
                            });
                            bound.entry(v).or_default().extend(names);
                        }
                        self.assign_effect(fx, k, id, *target, *value);
                    }
                    Expr::Unary { op, arg } if matches!(&**op, "del" | "delete") => {
                        if let Expr::Index { object, index } = f.expr(*arg) {
                            if fx.shared_place(*object, false) {
                                self.release(
                                    fx,
                                    k,
                                    id,
                                    GuardKind::MapEntry,
                                    fx.norm(*object),
                                    Some(fx.norm(*index)),
                                    vec![],
                                );
                            }
                        }
                    }
                    Expr::Call { .. } => {
                        let b = bound.get(&id).cloned().unwrap_or_default();
                        self.call_effect(
                            fx,
                            k,
                            id,
                            in_test,
                            b,
                            awaited.contains(&id),
                            &acquired_objects,
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    /// `using lock = ...` / `await using lock = ...` (TS 5.2 / ES2025): the
    /// resource is disposed at the end of the block.
    fn using_stmt(&mut self, fx: &Facts, k: usize) -> bool {
        if fx.family != Family::Js {
            return false;
        }
        let span = fx.f.stmts[k].span;
        let text = fx.src.get(span.range()).unwrap_or("");
        let before = fx.src.get(..span.start as usize).unwrap_or("");
        let before = before.trim_end();
        let is_using = text.starts_with("using ")
            || text.starts_with("await using ")
            || (matches!(fx.f.stmts[k].kind, StmtKind::Expr(_))
                && (before.ends_with(" using")
                    || before.ends_with("\nusing")
                    || before.ends_with("\tusing")
                    || before == "using")
                && text.contains('='));
        if is_using {
            self.scoped.push(Scoped::Using { stmt: k });
        }
        is_using
    }

    fn assign_effect(&mut self, fx: &Facts, k: usize, id: ExprId, target: ExprId, value: ExprId) {
        let f = fx.f;
        let lit = truthy_literal(f, value);
        match f.expr(target) {
            Expr::Member { .. } | Expr::Ident(_) => {
                let Some(on) = lit else { return };
                if matches!(f.expr(target), Expr::Ident(_)) && matches!(f.expr(value), Expr::Null) {
                    return;
                }
                let rebinding = matches!(f.expr(target), Expr::Ident(_));
                if !fx.shared_place(target, rebinding) {
                    return;
                }
                let guard = GuardId {
                    kind: GuardKind::Flag,
                    place: fx.norm(target),
                    key: None,
                };
                if on {
                    self.acquires.push(Acquire {
                        stmt: k,
                        expr: id,
                        guard,
                        bound: vec![],
                        in_test: false,
                        helper: false,
                        awaited: false,
                        checked: false,
                        untested: false,
                    });
                } else {
                    self.push_release(fx, k, id, guard, vec![]);
                }
            }
            Expr::Index { object, index } => {
                if !fx.shared_place(*object, false) || fx.not_guard_receiver(*object) {
                    return;
                }
                let place = fx.norm(*object);
                let key = Some(fx.norm(*index));
                match lit {
                    Some(false) => {
                        let guard = GuardId {
                            kind: GuardKind::Flag,
                            place,
                            key,
                        };
                        self.push_release(fx, k, id, guard, vec![]);
                    }
                    Some(true) => {
                        for kind in [GuardKind::Flag, GuardKind::MapEntry] {
                            self.acquires.push(Acquire {
                                stmt: k,
                                expr: id,
                                guard: GuardId {
                                    kind,
                                    place: place.clone(),
                                    key: key.clone(),
                                },
                                bound: vec![],
                                in_test: false,
                                helper: false,
                                awaited: false,
                                checked: false,
                                untested: false,
                            });
                        }
                    }
                    None => self.acquires.push(Acquire {
                        stmt: k,
                        expr: id,
                        guard: GuardId {
                            kind: GuardKind::MapEntry,
                            place,
                            key,
                        },
                        bound: vec![],
                        in_test: false,
                        helper: false,
                        awaited: false,
                        checked: false,
                        untested: false,
                    }),
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn release(
        &mut self,
        fx: &Facts,
        k: usize,
        id: ExprId,
        kind: GuardKind,
        place: String,
        key: Option<String>,
        via: Vec<String>,
    ) {
        self.push_release(fx, k, id, GuardId { kind, place, key }, via);
    }

    fn push_release(&mut self, fx: &Facts, k: usize, id: ExprId, guard: GuardId, via: Vec<String>) {
        let context = release_context(fx, k);
        self.releases.push(Release {
            stmt: k,
            expr: id,
            guard,
            via,
            context,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn call_effect(
        &mut self,
        fx: &Facts,
        k: usize,
        id: ExprId,
        in_test: bool,
        bound: Vec<String>,
        awaited: bool,
        acquired_objects: &HashSet<String>,
    ) {
        let f = fx.f;
        let cat = fx.cat;
        let pos = positional(f, id);
        let acquire = |kind: GuardKind, place: String, key: Option<String>, helper: bool| Acquire {
            stmt: k,
            expr: id,
            guard: GuardId { kind, place, key },
            bound: bound.clone(),
            in_test,
            helper,
            awaited,
            checked: false,
            untested: false,
        };
        // A bare call of a bound release function, or of a helper.
        if let Some(name) = bare_call(f, id) {
            if cat.is_acquire_helper(name) && !has_function_arg(f, id) {
                let key = pos.first().map(|a| fx.norm(*a));
                self.acquires
                    .push(acquire(GuardKind::Lock, String::new(), key, true));
            } else if cat.is_release_helper(name) || has(&cat.locks.release, name) {
                let key = pos.first().map(|a| fx.norm(*a));
                let mut via = vec![name.to_string()];
                via.extend(pos.first().and_then(|a| ident(f, *a)));
                self.release(fx, k, id, GuardKind::Lock, String::new(), key, via);
            } else if self
                .acquires
                .iter()
                .any(|a| a.bound.iter().any(|b| b == name))
            {
                // `release()` where `release` was returned by an acquire.
                self.release(
                    fx,
                    k,
                    id,
                    GuardKind::Lock,
                    format!("{name}()"),
                    None,
                    vec![name.to_string()],
                );
            }
            return;
        }
        let Some((method, recv)) = method_call(f, id) else {
            return;
        };
        // Normalised text, built only for the calls that turn out to matter.
        let place = || fx.norm(recv);
        let first_key = || {
            pos.iter()
                .find(|a| !matches!(f.expr(**a), Expr::Bool(_) | Expr::Num(_) | Expr::Object(_)))
                .map(|a| fx.norm(*a))
        };

        // Redis keys: SET NX / SETNX / lock-named SET, and DEL.
        if let Some(op) = redis_op(fx, id) {
            match op.op {
                RedisOpKind::Set { nx, .. } | RedisOpKind::SetNx { nx } if op.key.is_some() => {
                    let key = op.key.expect("checked");
                    let lockish = nx || cat.is_lock_name(fx.text(key)) || alias_is_lock(fx, key);
                    if lockish {
                        self.acquires.push(acquire(
                            GuardKind::RedisKey,
                            String::new(),
                            Some(fx.norm(key)),
                            false,
                        ));
                    }
                    // `map.set(k, v)` and `redis.set(k, v)` look alike: a
                    // two-argument set may still be a Map entry (below).
                    if nx || pos.len() != 2 {
                        return;
                    }
                }
                RedisOpKind::Del => {
                    for key in op.keys {
                        self.release(
                            fx,
                            k,
                            id,
                            GuardKind::RedisKey,
                            String::new(),
                            Some(fx.norm(key)),
                            vec![],
                        );
                    }
                    return;
                }
                _ => {}
            }
        }

        let set_release = match fx.family {
            Family::Js => &cat.containers.set_release_js,
            Family::Python => &cat.containers.set_release_py,
        };
        // Only container methods need the receiver's sharing facts.
        let container_method = has(&cat.containers.set_add, method)
            || has(&cat.containers.map_set_js, method)
            || has(set_release, method)
            || has(&cat.containers.map_release_py, method);
        let shared = container_method && fx.shared_place(recv, false);
        let not_guard = container_method && fx.not_guard_receiver(recv);
        // Set and Map entries.
        if shared && !not_guard && pos.len() == 1 && has(&cat.containers.set_add, method) {
            self.acquires.push(acquire(
                GuardKind::SetEntry,
                place(),
                first_key_exact(fx, &pos),
                false,
            ));
            return;
        }
        if shared
            && !not_guard
            && fx.family == Family::Js
            && pos.len() == 2
            && has(&cat.containers.map_set_js, method)
        {
            self.acquires.push(acquire(
                GuardKind::MapEntry,
                place(),
                first_key_exact(fx, &pos),
                false,
            ));
            return;
        }
        if shared && !not_guard && !pos.is_empty() && has(set_release, method) {
            let key = first_key_exact(fx, &pos);
            self.release(fx, k, id, GuardKind::SetEntry, place(), key.clone(), vec![]);
            if fx.family == Family::Js && has(&cat.containers.map_release_js, method) {
                self.release(fx, k, id, GuardKind::MapEntry, place(), key, vec![]);
            }
            return;
        }
        if shared
            && !not_guard
            && fx.family == Family::Python
            && !pos.is_empty()
            && has(&cat.containers.map_release_py, method)
        {
            self.release(
                fx,
                k,
                id,
                GuardKind::MapEntry,
                place(),
                first_key_exact(fx, &pos),
                vec![],
            );
            return;
        }

        // Locks, semaphores, helpers.
        if has(&cat.locks.acquire, method) || cat.is_acquire_helper(method) {
            if has_function_arg(f, id) {
                return; // async-lock `lock.acquire(key, fn)`: scoped
            }
            // `lock = r.lock(...)` later `lock.acquire()`: a factory.
            if method == "lock" && bound.iter().any(|b| acquired_objects.contains(b)) {
                return;
            }
            let helper = !has(&cat.locks.acquire, method);
            self.acquires
                .push(acquire(GuardKind::Lock, place(), first_key(), helper));
            return;
        }
        if has(&cat.locks.release, method) || cat.is_release_helper(method) {
            let mut via = Vec::new();
            via.extend(ident(f, recv));
            via.extend(pos.first().and_then(|a| ident(f, *a)));
            self.release(fx, k, id, GuardKind::Lock, place(), first_key(), via);
        }
    }

    /// `with lock:` / `async with self._lock:` / `async with locker.lock(name):`.
    fn scoped_with(&mut self, fx: &Facts) {
        for (i, c) in fx.f.ctxs.iter().enumerate() {
            if let CtxKind::With { items, .. } = &c.kind {
                for item in items {
                    if is_lock_expr(fx, *item) {
                        self.scoped.push(Scoped::With {
                            ctx: i as CtxId,
                            item: *item,
                        });
                    }
                }
            }
        }
    }

    /// Whether this function is a callback run under a lock by its caller:
    /// `mutex.runExclusive(async () => ...)`, `lock.acquire(key, async () =>
    /// ...)`, `redlock.using([key], ttl, async () => ...)`, `limit(fn)` on a
    /// `pLimit(1)`.
    fn scoped_callback(&mut self, file: &FileModel, f: &Function, src: &str) {
        let Some(parent_id) = f.parent else { return };
        let Some(self_id) = file.func_id(f) else {
            return;
        };
        let parent = &file.functions[parent_id as usize];
        let cat = locks();
        let sites = file.memo.get(0, || CallbackSites::new(file));
        for &call in sites.0.get(&self_id).map_or(&[][..], Vec::as_slice) {
            let Expr::Call { callee, .. } = parent.expr(call) else {
                continue;
            };
            let name = parent.callee_name(*callee).unwrap_or("");
            let text = src
                .get(parent.span(*callee).range())
                .unwrap_or("")
                .to_string();
            let scoped = has(&cat.locks.scoped, name)
                || has(&cat.locks.acquire, name)
                || cat.is_acquire_helper(name)
                || limiter_call(file, parent, *callee, src);
            if scoped {
                self.scoped.push(Scoped::Callback { call: text });
            }
        }
    }
}

/// For each function passed directly as a call argument, the calls (in its
/// parent) that receive it: computed once per file.
struct CallbackSites(HashMap<FuncId, Vec<ExprId>>);

impl CallbackSites {
    fn new(file: &FileModel) -> CallbackSites {
        let mut map: HashMap<FuncId, Vec<ExprId>> = Default::default();
        for g in &file.functions {
            for (i, e) in g.exprs.iter().enumerate() {
                let Expr::Call { args, .. } = e else { continue };
                for a in args {
                    if let Expr::Function(id) = g.expr(a.value) {
                        map.entry(*id).or_default().push(i as ExprId);
                    }
                }
            }
        }
        CallbackSites(map)
    }
}

fn ident(f: &Function, id: ExprId) -> Option<String> {
    match f.expr(f.unwrap_await(id)) {
        Expr::Ident(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The key of a container operation: its first positional argument.
fn first_key_exact(fx: &Facts, pos: &[ExprId]) -> Option<String> {
    pos.first().map(|a| fx.norm(*a))
}

/// Whether a local bound to `key` (`const lockKey = ...`) has a lock name or
/// a lock-named value.
fn alias_is_lock(fx: &Facts, key: ExprId) -> bool {
    let Some(name) = ident(fx.f, key) else {
        return false;
    };
    fx.f.exprs.iter().any(|e| match e {
        Expr::Assign { target, value, .. } => {
            matches!(fx.f.expr(*target), Expr::Ident(n) if **n == *name)
                && fx.cat.is_lock_name(fx.text(*value))
        }
        _ => false,
    })
}

/// A `with` item that is a lock: a name with a lock token (`self._lock`,
/// `sem`), or a call of a lock factory (`r.lock(...)`, `locker.lock(...)`,
/// `redis_lock.Lock(...)`).
fn is_lock_expr(fx: &Facts, item: ExprId) -> bool {
    let f = fx.f;
    let item = f.unwrap_await(item);
    match f.expr(item) {
        Expr::Call { callee, .. } | Expr::New { callee, .. } => {
            let name = f.callee_name(*callee).unwrap_or("");
            has(&fx.cat.locks.with_factories, name)
                || has(&fx.cat.locks.constructors, name)
                || fx.cat.is_acquire_helper(name)
                || fx.cat.is_lock_name(name)
        }
        Expr::Ident(n) | Expr::Member { property: n, .. } => {
            fx.cat.is_lock_name(n) || name_tokens(n).iter().any(|t| t == "sem")
        }
        _ => false,
    }
}

/// `limit(fn)` where `limit = pLimit(1)`, or `queue.add(fn)` where `queue =
/// new PQueue({ concurrency: 1 })`, anywhere in the file.
fn limiter_call(file: &FileModel, parent: &Function, callee: ExprId, src: &str) -> bool {
    let cat = locks();
    // Searched once per file: per call it would be quadratic.
    struct MentionsLimiter(bool);
    let mentions = file.memo.get(0, || {
        MentionsLimiter(cat.locks.limiters.iter().any(|l| src.contains(l.as_str())))
    });
    if !mentions.0 {
        return false;
    }
    let name = match parent.expr(callee) {
        Expr::Ident(n) => n.to_string(),
        Expr::Member { object, property } if has(&cat.locks.limiter_calls, property) => {
            match parent.expr(*object) {
                Expr::Ident(n) | Expr::Member { property: n, .. } => n.to_string(),
                _ => return false,
            }
        }
        _ => return false,
    };
    file.functions.iter().any(|g| {
        g.exprs.iter().any(|e| {
            let Expr::Assign { target, value, .. } = e else {
                return false;
            };
            let tname = match g.expr(*target) {
                Expr::Ident(n) | Expr::Member { property: n, .. } => n,
                _ => return false,
            };
            if **tname != *name {
                return false;
            }
            let v = g.unwrap_await(*value);
            let (Expr::Call { callee, .. } | Expr::New { callee, .. }) = g.expr(v) else {
                return false;
            };
            if !has(&cat.locks.limiters, g.callee_name(*callee).unwrap_or("")) {
                return false;
            }
            let text = src.get(g.span(v).range()).unwrap_or("");
            let args: String = text.split_whitespace().collect();
            args.contains("(1)")
                || args.contains("concurrency:1}")
                || args.contains("concurrency:1,")
        })
    })
}

/// A cheap test: does the function have any call, assignment of a boolean,
/// or `del`/`delete` at all?
fn may_have_guards(f: &Function) -> bool {
    f.exprs.iter().any(|e| match e {
        Expr::Call { .. } => true,
        Expr::Assign { value, target, .. } => {
            matches!(f.expr(*value), Expr::Bool(_)) || matches!(f.expr(*target), Expr::Index { .. })
        }
        Expr::Unary { op, .. } => matches!(&**op, "del" | "delete"),
        _ => false,
    })
}

fn release_context(fx: &Facts, k: usize) -> ReleaseContext {
    let f = fx.f;
    let mut rc = ReleaseContext::default();
    for (id, c) in f.ctx_chain(fx.stmt_ctx(k)) {
        match &c.kind {
            CtxKind::Finally { try_id } if rc.in_finally.is_none() => rc.in_finally = Some(*try_id),
            CtxKind::Catch { try_id, types } if rc.in_catch.is_none() => {
                rc.in_catch = Some(*try_id);
                rc.catch_all = catch_level(fx, types) == CatchLevel::All;
                rc.rethrows = f
                    .stmts
                    .iter()
                    .any(|s| matches!(s.kind, StmtKind::Throw(_)) && f.in_ctx(s.ctx, id));
            }
            CtxKind::With { .. } => rc.in_with = true,
            _ => {}
        }
    }
    let ctx = fx.stmt_ctx(k);
    rc.before_return = f.stmts[k + 1..]
        .iter()
        .take_while(|s| f.in_ctx(s.ctx, ctx))
        .any(|s| s.ctx == ctx && matches!(s.kind, StmtKind::Return(_) | StmtKind::Throw(_)));
    rc
}

// ---------------------------------------------------------------------------
// Redis operations (also read by RA006)

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisOpKind {
    /// `SET key value [NX] [PX ttl]`; `cache.add(key, value, timeout)`.
    Set {
        nx: bool,
        expiry: bool,
    },
    /// `SETNX key value` (never with an expiry).
    SetNx {
        nx: bool,
    },
    Del,
    Expire,
    Get,
    Watch,
}

#[derive(Clone, Debug)]
pub struct RedisOp {
    pub stmt: usize,
    pub call: ExprId,
    pub op: RedisOpKind,
    /// The receiver text (`this.redis`, `r`, `pipe`).
    pub receiver: String,
    /// The (first) key argument.
    pub key: Option<ExprId>,
    /// Every key argument (DEL takes several).
    pub keys: Vec<ExprId>,
    /// The value argument of a SET.
    pub value: Option<ExprId>,
    /// The TTL argument of a SET, when given.
    pub ttl: Option<ExprId>,
    /// node-redis style options object (`{ NX: true, PX: 30000 }`).
    pub object_options: bool,
    /// The receiver batches into MULTI/EXEC or a pipeline.
    pub in_transaction: bool,
}

/// Every redis operation of the function, in statement order.
pub fn redis_ops(file: &FileModel, f: &Function, src: &str) -> Vec<RedisOp> {
    let cat = locks();
    let names_present = f.exprs.iter().any(|e| match e {
        Expr::Call { callee, .. } => match f.expr(*callee) {
            Expr::Member { property, .. } => {
                has(&cat.redis.set, property)
                    || has(&cat.redis.setnx, property)
                    || has(&cat.redis.delete_js, property)
                    || has(&cat.redis.delete_py, property)
                    || has(&cat.redis.add_if_absent, property)
                    || has(&cat.redis.command, property)
            }
            _ => false,
        },
        _ => false,
    });
    if !names_present {
        return Vec::new();
    }
    let fx = Facts::new(file, f, src);
    let mut out = Vec::new();
    for (k, stmt) in f.stmts.iter().enumerate() {
        let Some(root) = f.stmt_expr(stmt) else {
            continue;
        };
        for id in f.descendants(root) {
            if let Some(mut op) = redis_op(&fx, id) {
                op.stmt = k;
                out.push(op);
            }
        }
    }
    out
}

fn redis_op(fx: &Facts, id: ExprId) -> Option<RedisOp> {
    let f = fx.f;
    let cat = fx.cat;
    let (method, recv) = method_call(f, id)?;
    // Most calls are not redis commands: reject them before building an op.
    let r = &cat.redis;
    let known = [
        &r.command,
        &r.set,
        &r.setnx,
        &r.add_if_absent,
        &r.delete_js,
        &r.delete_py,
        &r.expire,
        &r.get,
        &r.watch,
    ];
    if !known.iter().any(|list| has(list, method)) {
        return None;
    }
    let pos = positional(f, id);
    let recv_last = match f.expr(recv) {
        Expr::Ident(n) | Expr::Member { property: n, .. } => n.to_string(),
        Expr::Call { callee, .. } => f.callee_name(*callee).unwrap_or("").to_string(),
        _ => String::new(),
    };
    let mut op = RedisOp {
        stmt: 0,
        call: id,
        op: RedisOpKind::Get,
        receiver: fx.norm(recv),
        key: pos.first().copied(),
        keys: pos.clone(),
        value: pos.get(1).copied(),
        ttl: None,
        object_options: false,
        in_transaction: in_transaction(fx, recv),
    };
    // Generic command calls: the command name is the first argument (or the
    // first element of an array argument).
    if has(&cat.redis.command, method) {
        let mut parts: Vec<ExprId> = pos.clone();
        if let Some(Expr::Array(items)) = pos.first().map(|a| f.expr(*a)) {
            parts = items.clone();
        }
        let name = f.string_value(*parts.first()?)?.to_ascii_uppercase();
        let rest = &parts[1..];
        op.key = rest.first().copied();
        op.keys = rest.to_vec();
        op.value = rest.get(1).copied();
        op.op = match name.as_str() {
            "SET" => {
                let (nx, expiry, ttl) = set_tokens(fx, rest.get(2..).unwrap_or(&[]));
                op.ttl = ttl;
                RedisOpKind::Set { nx, expiry }
            }
            "SETNX" => RedisOpKind::SetNx { nx: true },
            "DEL" | "UNLINK" => RedisOpKind::Del,
            "EXPIRE" | "PEXPIRE" => RedisOpKind::Expire,
            "GET" => RedisOpKind::Get,
            _ => return None,
        };
        return Some(op);
    }
    let redisish = !has(&cat.redis.not_redis, recv_last.trim_start_matches('_'));
    if has(&cat.redis.set, method) {
        if pos.len() < 2 {
            return None;
        }
        match fx.family {
            Family::Js => {
                let (nx, expiry, ttl) = set_tokens(fx, &pos[2..]);
                op.object_options = pos[2..]
                    .iter()
                    .any(|a| matches!(f.expr(*a), Expr::Object(_)));
                op.ttl = ttl;
                if pos.len() == 2 {
                    // `map.set(k, v)` and `redis.set(k, v)` look alike; only
                    // a lock-named key makes it a lock (checked by callers).
                }
                op.op = RedisOpKind::Set { nx, expiry };
            }
            Family::Python => {
                let nx = keyword(f, id, "nx")
                    .is_some_and(|v| !matches!(f.expr(v), Expr::Bool(false) | Expr::Null));
                let kw_ttl = ["ex", "px", "exat", "pxat"]
                    .iter()
                    .find_map(|k| keyword(f, id, k).filter(|v| !matches!(f.expr(*v), Expr::Null)));
                let pos_ttl = pos
                    .get(2)
                    .copied()
                    .filter(|v| !matches!(f.expr(*v), Expr::Null));
                op.ttl = kw_ttl.or(pos_ttl);
                op.op = RedisOpKind::Set {
                    nx,
                    expiry: op.ttl.is_some(),
                };
            }
        }
        return Some(op);
    }
    if has(&cat.redis.setnx, method) && pos.len() >= 2 && redisish {
        op.op = RedisOpKind::SetNx { nx: true };
        return Some(op);
    }
    if has(&cat.redis.add_if_absent, method)
        && has(
            &cat.redis.add_if_absent_receivers,
            recv_last.trim_start_matches('_'),
        )
        && pos.len() >= 2
    {
        // Django cache.add(key, value, timeout=DEFAULT): `None` is forever.
        let timeout = keyword(f, id, "timeout").or(pos.get(2).copied());
        let forever = timeout.is_some_and(|t| matches!(f.expr(t), Expr::Null));
        op.ttl = timeout.filter(|_| !forever);
        op.op = RedisOpKind::Set {
            nx: true,
            expiry: !forever,
        };
        return Some(op);
    }
    let deletes = match fx.family {
        Family::Js => &cat.redis.delete_js,
        Family::Python => &cat.redis.delete_py,
    };
    if has(deletes, method) && !pos.is_empty() && redisish {
        if fx.family == Family::Python && !pos.iter().all(|k| key_like(fx, *k)) {
            return None;
        }
        op.op = RedisOpKind::Del;
        return Some(op);
    }
    if has(&cat.redis.expire, method) && !pos.is_empty() && redisish {
        op.op = RedisOpKind::Expire;
        return Some(op);
    }
    if has(&cat.redis.get, method) && pos.len() == 1 && redisish {
        op.op = RedisOpKind::Get;
        return Some(op);
    }
    if has(&cat.redis.watch, method) && !pos.is_empty() {
        op.op = RedisOpKind::Watch;
        return Some(op);
    }
    None
}

/// An argument that can be a redis key: a string, or a name that says key /
/// name / lock, or a call building one. ORM objects (`session.delete(obj)`)
/// are not.
fn key_like(fx: &Facts, id: ExprId) -> bool {
    let f = fx.f;
    match f.expr(f.unwrap_await(id)) {
        Expr::Str(_) | Expr::Template { .. } | Expr::Binary { .. } => true,
        Expr::Call { callee, .. } => {
            let n = f.callee_name(*callee).unwrap_or("");
            let t = name_tokens(n);
            t.iter()
                .any(|w| matches!(w.as_str(), "key" | "name" | "format" | "join"))
                || fx.cat.is_lock_name(n)
        }
        Expr::Ident(n) | Expr::Member { property: n, .. } => {
            let t = name_tokens(n);
            t.iter()
                .any(|w| matches!(w.as_str(), "key" | "keys" | "name"))
                || fx.cat.is_lock_name(n) && t.len() > 1
        }
        _ => false,
    }
}

/// NX, expiry and TTL among SET's trailing arguments: ioredis tokens
/// (`'NX', 'PX', 30000`) or node-redis objects (`{ NX: true, PX: 30000 }`,
/// `{ condition: 'NX', expiration: { type: 'PX', value: 30000 } }`).
fn set_tokens(fx: &Facts, rest: &[ExprId]) -> (bool, bool, Option<ExprId>) {
    let f = fx.f;
    let cat = fx.cat;
    let mut nx = false;
    let mut expiry = false;
    let mut ttl = None;
    for (i, a) in rest.iter().enumerate() {
        match f.expr(*a) {
            Expr::Object(props) => {
                for p in props {
                    let PropKey::Name(name) = &p.key else {
                        continue;
                    };
                    let upper = name.to_ascii_uppercase();
                    if has(&cat.redis.nx_tokens, &upper)
                        && truthy_literal(f, p.value) != Some(false)
                    {
                        nx = true;
                    }
                    if upper == "CONDITION"
                        && f.string_value(p.value)
                            .is_some_and(|v| v.eq_ignore_ascii_case("NX"))
                    {
                        nx = true;
                    }
                    if has(&cat.redis.expiry_tokens, &upper)
                        || name.eq_ignore_ascii_case("expiration")
                    {
                        expiry = true;
                        ttl = Some(p.value);
                        if let Expr::Object(inner) = f.expr(p.value) {
                            ttl = inner
                                .iter()
                                .find(|q| matches!(&q.key, PropKey::Name(n) if &**n == "value"))
                                .map(|q| q.value)
                                .or(ttl);
                        }
                    }
                }
            }
            _ => {
                let Some(s) = f.string_value(*a) else {
                    continue;
                };
                let upper = s.to_ascii_uppercase();
                if has(&cat.redis.nx_tokens, &upper) {
                    nx = true;
                }
                if has(&cat.redis.expiry_tokens, &upper) {
                    expiry = true;
                    ttl = rest.get(i + 1).copied();
                }
            }
        }
    }
    (nx, expiry, ttl)
}

/// `redis.multi().setnx(...)`, or a receiver bound from `.multi()` /
/// `.pipeline()` in this function.
fn in_transaction(fx: &Facts, recv: ExprId) -> bool {
    let f = fx.f;
    let tx = &fx.cat.redis.transaction;
    for d in f.descendants(recv) {
        if let Expr::Call { callee, .. } = f.expr(d) {
            if has(tx, f.callee_name(*callee).unwrap_or("")) {
                return true;
            }
        }
    }
    let Some(name) = ident(f, recv) else {
        return false;
    };
    f.exprs.iter().any(|e| match e {
        Expr::Assign { target, value, .. } => {
            matches!(f.expr(*target), Expr::Ident(n) if **n == *name)
                && matches!(f.expr(f.unwrap_await(*value)), Expr::Call { callee, .. } if has(tx, f.callee_name(*callee).unwrap_or("")))
        }
        _ => false,
    })
}

// ---------------------------------------------------------------------------
// Pairing acquires with releases, and the exit paths of each region

/// How a Python `except` clause matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CatchLevel {
    /// JS `catch`, bare `except:`, `except BaseException`.
    All,
    /// `except Exception`: not `asyncio.CancelledError`.
    Exception,
    /// Only `asyncio.CancelledError` (with or without narrower types).
    Cancel,
    Narrow,
}

fn catch_level(fx: &Facts, types: &[crate::model::Name]) -> CatchLevel {
    if fx.family == Family::Js || types.is_empty() {
        return CatchLevel::All;
    }
    let last = |t: &str| t.rsplit('.').next().unwrap_or(t).to_string();
    let names: Vec<String> = types.iter().map(|t| last(t)).collect();
    let has_name = |n: &str| names.iter().any(|x| x == n);
    if has_name("BaseException") || (has_name("Exception") && has_name("CancelledError")) {
        CatchLevel::All
    } else if has_name("Exception") {
        CatchLevel::Exception
    } else if has_name("CancelledError") {
        CatchLevel::Cancel
    } else {
        CatchLevel::Narrow
    }
}

/// The exception travelling up: anything, or only a cancellation that an
/// `except Exception` let through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exc {
    Any,
    Cancel,
}

enum Outcome {
    Protected,
    Leak(LeakCause, Option<usize>),
}

impl FunctionGuards {
    fn matches(a: &Acquire, r: &Release) -> bool {
        if a.guard.kind == GuardKind::Lock
            && r.guard.kind == GuardKind::Lock
            && a.bound.iter().any(|b| r.via.contains(b))
        {
            return true;
        }
        a.guard == r.guard
    }

    fn pair(&mut self, fx: &Facts) {
        let f = fx.f;
        for i in 0..self.acquires.len() {
            let checked = checked_before(fx, &self.acquires[i]);
            self.acquires[i].checked = checked;
        }
        let mut regions = Vec::new();
        let mut untested = Vec::new();
        for (ai, a) in self.acquires.iter().enumerate() {
            // Releases up to the next acquire of the same guard.
            let next = self.acquires[ai + 1..]
                .iter()
                .find(|b| b.guard == a.guard && b.stmt > a.stmt)
                .map_or(usize::MAX, |b| b.stmt);
            let mut releases = Vec::new();
            let mut scope: Option<CtxId> = None;
            let a_ctx = fx.stmt_ctx(a.stmt);
            for (ri, r) in self.releases.iter().enumerate() {
                if r.stmt <= a.stmt || r.stmt >= next || !Self::matches(a, r) {
                    continue;
                }
                // The release must be reachable from the acquire: the acquire's
                // context (leaving only try blocks) encloses it.
                let mut c = a_ctx;
                let reach = loop {
                    if f.in_ctx(fx.stmt_ctx(r.stmt), c) {
                        break Some(c);
                    }
                    match fx.ctx_kind(c) {
                        CtxKind::Try { .. } => c = fx.parent(c).unwrap_or(0),
                        _ => break None,
                    }
                };
                let Some(c) = reach else { continue };
                // The model has one context for a whole `switch` body: an
                // acquire and a release in it may sit in different `case`s
                // (`case 'created': set.add(k)` / `case 'destroyed':
                // set.delete(k)`), so such pairs are not analysed.
                if f.ctx_chain(fx.stmt_ctx(r.stmt))
                    .take_while(|(id, _)| *id != c)
                    .any(|(_, x)| x.kind == CtxKind::Switch)
                    || (matches!(fx.ctx_kind(c), CtxKind::Switch))
                {
                    continue;
                }
                releases.push(ri);
                scope = Some(match scope {
                    Some(s) if f.in_ctx(s, c) => c,
                    Some(s) => s,
                    None => c,
                });
            }
            // Flags and container entries are guards only with both halves
            // here; a flag also needs a guard-like name or a check first.
            let Some(scope) = scope else { continue };
            if a.guard.kind == GuardKind::Flag && a.guard.key.is_none() && !flag_is_guard(fx, a) {
                continue;
            }
            if a.guard.kind == GuardKind::Flag
                && !a.checked
                && !tested_in_file(fx.file, a.guard.place.rsplit('.').next().unwrap_or(""))
            {
                untested.push(ai);
            }
            // A Set/Map entry removed only on some paths and never checked is
            // data being stored (`storage.set(k, v)` ... `if (done)
            // storage.delete(k)`), not an in-progress marker.
            let keyed = matches!(a.guard.kind, GuardKind::SetEntry | GuardKind::MapEntry)
                || (a.guard.kind == GuardKind::Flag && a.guard.key.is_some());
            if keyed
                && !a.checked
                && !releases.iter().any(|ri| {
                    let r = &self.releases[*ri];
                    fx.stmt_ctx(r.stmt) == scope
                        || r.context.in_finally.is_some()
                        || r.context.in_catch.is_some()
                })
            {
                continue;
            }
            // Released only by error handlers: on success the guard is meant
            // to stay held (`isTransactionActive = true` ... `catch { = false;
            // throw }`), and its normal release lives in another function.
            if releases
                .iter()
                .all(|ri| self.releases[*ri].context.in_catch.is_some())
            {
                continue;
            }
            let end = releases
                .iter()
                .map(|r| self.releases[*r].stmt)
                .max()
                .unwrap_or(a.stmt);
            let mut region = Region {
                acquire: ai,
                releases,
                scope,
                end,
                leaks: Vec::new(),
            };
            region.leaks = self.leaks(fx, &region);
            regions.push(region);
        }
        self.regions = regions;
        for ai in untested {
            self.acquires[ai].untested = true;
        }
    }

    /// Every way out of the region that does not pass a release.
    fn leaks(&self, fx: &Facts, region: &Region) -> Vec<Leak> {
        let f = fx.f;
        let a = &self.acquires[region.acquire];
        let release_stmts: HashSet<usize> = region
            .releases
            .iter()
            .map(|r| self.releases[*r].stmt)
            .collect();
        let mut leaks = Vec::new();
        let has_finally_release = region
            .releases
            .iter()
            .any(|ri| self.releases[*ri].context.in_finally.is_some());
        for k in a.stmt + 1..=region.end {
            if release_stmts.contains(&k) {
                continue;
            }
            let s = &f.stmts[k];
            if !f.in_ctx(s.ctx, region.scope) || self.failure_branch(fx, a, s.ctx, region.scope) {
                continue;
            }
            if self.released_before(fx, region, k) {
                continue;
            }
            if let StmtKind::Return(_) = s.kind {
                if !self.finally_on_path(fx, region, s.ctx) {
                    leaks.push(Leak {
                        stmt: k,
                        span: s.span,
                        cause: LeakCause::EarlyReturn,
                    });
                }
                continue;
            }
            // Any statement between counts (risk medium when it cannot
            // obviously throw), except before a `try` whose `finally` releases:
            // there only code that can throw is a gap.
            let (kind, span) = match stmt_raise(fx, k) {
                Some(r) => r,
                None if !has_finally_release => (RaiseKind::Weak, s.span),
                None => continue,
            };
            // Inside a handler the error path is already being handled: only
            // its own `throw` leaves (a failing log call there is not a leak).
            if kind != RaiseKind::Throw && in_handler(fx, s.ctx, region.scope) {
                continue;
            }
            match self.protect(fx, region, s.ctx, Exc::Any, kind == RaiseKind::Await) {
                Outcome::Protected => {}
                Outcome::Leak(cause, at) => {
                    let cause = match cause {
                        LeakCause::Raise(_) => LeakCause::Raise(kind),
                        c => c,
                    };
                    let (stmt, span) = match at {
                        Some(r) => (r, f.stmts[r].span),
                        None => (k, span),
                    };
                    leaks.push(Leak { stmt, span, cause });
                }
            }
        }
        leaks
    }

    /// The statement lies in the branch taken when a conditional acquire
    /// failed (`if (!acquired) return`, `if not lock.acquire(False): return`).
    fn failure_branch(&self, fx: &Facts, a: &Acquire, ctx: CtxId, scope: CtxId) -> bool {
        let f = fx.f;
        for (id, c) in f.ctx_chain(ctx) {
            if id == scope {
                break;
            }
            let Some(test) = c.test else { continue };
            let Some(negated) = mentions(f, test, a) else {
                continue;
            };
            let failure = match c.kind {
                CtxKind::Then | CtxKind::Loop => negated,
                CtxKind::Else => !negated,
                _ => false,
            };
            if failure {
                return true;
            }
        }
        false
    }

    /// A release of this region always ran before statement `k`.
    fn released_before(&self, fx: &Facts, region: &Region, k: usize) -> bool {
        let f = fx.f;
        let a = &self.acquires[region.acquire];
        let k_ctx = fx.stmt_ctx(k);
        region.releases.iter().any(|ri| {
            let r = &self.releases[*ri];
            if r.stmt <= a.stmt || r.stmt >= k {
                return false;
            }
            let mut c = fx.stmt_ctx(r.stmt);
            loop {
                if f.in_ctx(k_ctx, c) {
                    return true;
                }
                match fx.ctx_kind(c) {
                    CtxKind::Finally { .. } => c = fx.parent(c).unwrap_or(0),
                    _ => return false,
                }
            }
        })
    }

    fn contains_release(&self, fx: &Facts, region: &Region, ctx: CtxId) -> bool {
        region
            .releases
            .iter()
            .any(|ri| fx.f.in_ctx(fx.stmt_ctx(self.releases[*ri].stmt), ctx))
    }

    fn finally_releases(&self, fx: &Facts, region: &Region, try_id: u32) -> bool {
        fx.tries
            .get(&try_id)
            .and_then(|t| t.finally)
            .is_some_and(|fin| self.contains_release(fx, region, fin))
    }

    /// A `finally` that releases encloses `ctx` below the region's scope.
    fn finally_on_path(&self, fx: &Facts, region: &Region, ctx: CtxId) -> bool {
        for (id, c) in fx.f.ctx_chain(ctx) {
            if id == region.scope {
                break;
            }
            let released = match c.kind {
                CtxKind::Try { try_id } | CtxKind::Catch { try_id, .. } => {
                    self.finally_releases(fx, region, try_id)
                }
                CtxKind::Finally { .. } => self.contains_release(fx, region, id),
                _ => false,
            };
            if released {
                return true;
            }
        }
        false
    }

    /// Follows an exception raised in `start` up to the region's scope.
    fn protect(
        &self,
        fx: &Facts,
        region: &Region,
        start: CtxId,
        exc: Exc,
        at_await: bool,
    ) -> Outcome {
        let f = fx.f;
        let cancellable = at_await && fx.family == Family::Python && f.is_async;
        let mut c = start;
        while c != region.scope {
            match fx.ctx_kind(c).clone() {
                CtxKind::Try { try_id } => {
                    if self.finally_releases(fx, region, try_id) {
                        return Outcome::Protected;
                    }
                    let info = &fx.tries[&try_id];
                    // The broadest handler decides.
                    let handler = info
                        .catches
                        .iter()
                        .map(|h| {
                            let CtxKind::Catch { types, .. } = fx.ctx_kind(*h) else {
                                unreachable!("catches hold catch contexts")
                            };
                            (*h, catch_level(fx, types))
                        })
                        .filter(|(_, lvl)| match exc {
                            Exc::Any => matches!(lvl, CatchLevel::All | CatchLevel::Exception),
                            Exc::Cancel => matches!(lvl, CatchLevel::All | CatchLevel::Cancel),
                        })
                        .min_by_key(|(_, lvl)| match lvl {
                            CatchLevel::All => 0,
                            _ => 1,
                        });
                    if let Some((h, lvl)) = handler {
                        let parent = fx.parent(c).unwrap_or(0);
                        let handled = if self.contains_release(fx, region, h) {
                            Some(true)
                        } else if f
                            .stmts
                            .iter()
                            .any(|s| matches!(s.kind, StmtKind::Throw(_)) && f.in_ctx(s.ctx, h))
                        {
                            None // rethrows: keep walking
                        } else if let Some(ret) = f.stmts.iter().position(|s| {
                            matches!(s.kind, StmtKind::Return(_)) && f.in_ctx(s.ctx, h)
                        }) {
                            // The handler's `return` still passes an outer
                            // `finally` that releases.
                            if self.finally_on_path(fx, region, f.stmts[ret].ctx) {
                                return Outcome::Protected;
                            }
                            return Outcome::Leak(LeakCause::CatchReturn, Some(ret));
                        } else {
                            // Swallowed: execution resumes after the try, on
                            // the normal path; it is released if a release
                            // follows the try or a `finally` around it does.
                            Some(
                                self.release_after(fx, region, info.end)
                                    || self.finally_on_path(fx, region, parent),
                            )
                        };
                        match handled {
                            Some(true) => {
                                if exc == Exc::Any && lvl == CatchLevel::Exception && cancellable {
                                    return match self.protect(
                                        fx,
                                        region,
                                        parent,
                                        Exc::Cancel,
                                        at_await,
                                    ) {
                                        Outcome::Protected => Outcome::Protected,
                                        Outcome::Leak(..) => {
                                            Outcome::Leak(LeakCause::Cancellation, None)
                                        }
                                    };
                                }
                                return Outcome::Protected;
                            }
                            Some(false) => {
                                return Outcome::Leak(LeakCause::Raise(RaiseKind::Call), None)
                            }
                            None => {}
                        }
                    }
                }
                // Raised inside a handler: only that try's `finally` helps.
                CtxKind::Catch { try_id, .. } if self.finally_releases(fx, region, try_id) => {
                    return Outcome::Protected;
                }
                // Raised inside the `finally` that releases: the contract
                // counts a release in `finally` as protected.
                CtxKind::Finally { .. } if self.contains_release(fx, region, c) => {
                    return Outcome::Protected;
                }
                _ => {}
            }
            c = fx.parent(c).unwrap_or(0);
        }
        match exc {
            Exc::Any => Outcome::Leak(LeakCause::Raise(RaiseKind::Call), None),
            Exc::Cancel => Outcome::Leak(LeakCause::Cancellation, None),
        }
    }

    /// A release at `level` (or above) after byte offset `end`.
    fn release_after(&self, fx: &Facts, region: &Region, end: u32) -> bool {
        region
            .releases
            .iter()
            .any(|ri| fx.f.stmts[self.releases[*ri].stmt].span.start >= end)
    }
}

/// `ctx` is inside a `catch`/`except` below `scope`.
fn in_handler(fx: &Facts, ctx: CtxId, scope: CtxId) -> bool {
    for (id, c) in fx.f.ctx_chain(ctx) {
        if id == scope {
            return false;
        }
        if matches!(c.kind, CtxKind::Catch { .. }) {
            return true;
        }
    }
    false
}

/// Whether a flag works as a guard: the function reads it in a condition
/// before setting it, or its name says "in progress".
fn flag_is_guard(fx: &Facts, a: &Acquire) -> bool {
    let name = a.guard.place.rsplit('.').next().unwrap_or(&a.guard.place);
    a.checked || fx.cat.is_flag_name(name)
}

/// Some condition in the file reads a property or variable called `name`:
/// a flag nobody tests guards nothing.
fn tested_in_file(file: &FileModel, name: &str) -> bool {
    file.memo
        .get(0, || TestedNames(tested_names(file)))
        .0
        .contains(name)
}

/// Every property or variable name some condition in the file reads.
struct TestedNames(HashSet<String>);

fn tested_names(file: &FileModel) -> HashSet<String> {
    let mut names = HashSet::default();
    let name_of = |g: &Function, id: ExprId| match g.expr(id) {
        Expr::Member { property, .. } | Expr::Ident(property) => Some(property.to_string()),
        _ => None,
    };
    for g in &file.functions {
        for s in &g.stmts {
            let Some(root) = g.stmt_expr(s) else { continue };
            let condition = matches!(s.kind, StmtKind::Test(_) | StmtKind::Return(_));
            for d in g.descendants(root) {
                let tested = match g.expr(d) {
                    Expr::Member { .. } | Expr::Ident(_) if condition => name_of(g, d),
                    Expr::Cond { test, .. } | Expr::Binary { left: test, .. } => name_of(g, *test),
                    Expr::Unary { op, arg } if matches!(&**op, "!" | "not") => name_of(g, *arg),
                    _ => None,
                };
                names.extend(tested);
            }
        }
    }
    names
}

/// A condition before the acquire reads the guarded place.
fn checked_before(fx: &Facts, a: &Acquire) -> bool {
    let f = fx.f;
    if a.guard.place.is_empty() {
        return false;
    }
    f.stmts[..a.stmt].iter().any(|s| {
        matches!(s.kind, StmtKind::Test(_))
            && f.stmt_expr(s).is_some_and(|e| {
                f.descendants(e).iter().any(|d| {
                    matches!(f.expr(*d), Expr::Member { .. } | Expr::Ident(_))
                        && fx.norm(*d) == a.guard.place
                })
            })
    })
}

/// Whether a condition mentions the acquire (its call, or a variable bound
/// to its result); `Some(true)` when it tests the failure (`!acquired`,
/// `not lock.acquire(False)`, `ok !== 'OK'`, `res is None`).
pub fn mentions(f: &Function, test: ExprId, a: &Acquire) -> Option<bool> {
    let hit = |id: ExprId| -> bool {
        let id = f.unwrap_await(id);
        id == a.expr
            || matches!(f.expr(id), Expr::Ident(n) if a.bound.iter().any(|b| **b == **n))
            || matches!(f.expr(id), Expr::Assign { value, .. } if f.unwrap_await(*value) == a.expr)
            || matches!(f.expr(id), Expr::Member { object, .. } if matches!(f.expr(*object), Expr::Ident(n) if a.bound.iter().any(|b| **b == **n)))
    };
    let contains = |id: ExprId| f.descendants(id).into_iter().any(hit);
    if !contains(test) {
        return None;
    }
    let mut negated = false;
    let mut cur = test;
    // Bounded by the expression's depth; a loop, not recursion.
    for _ in 0..64 {
        if hit(cur) {
            return Some(negated);
        }
        match f.expr(cur) {
            Expr::Unary { op, arg } if matches!(&**op, "!" | "not") => {
                negated = !negated;
                cur = *arg;
            }
            Expr::Await(inner) => cur = *inner,
            Expr::Binary { op, left, right } => {
                let (side, other) = if contains(*left) {
                    (*left, *right)
                } else {
                    (*right, *left)
                };
                let falsy = matches!(f.expr(other), Expr::Null | Expr::Bool(false))
                    || matches!(f.expr(other), Expr::Num(n) if &**n == "0");
                let ok = matches!(f.expr(other), Expr::Bool(true))
                    || f.string_value(other)
                        .is_some_and(|s| s.eq_ignore_ascii_case("OK"))
                    || matches!(f.expr(other), Expr::Num(n) if &**n == "1");
                match &**op {
                    "==" | "===" | "is" if falsy => negated = !negated,
                    "!=" | "!==" | "is not" if ok => negated = !negated,
                    _ => {}
                }
                cur = side;
            }
            Expr::Assign { value, .. } => cur = *value,
            _ => return Some(negated),
        }
    }
    Some(negated)
}

/// The strongest way statement `k` can raise, and where.
fn stmt_raise(fx: &Facts, k: usize) -> Option<(RaiseKind, Span)> {
    let f = fx.f;
    let s = &f.stmts[k];
    match s.kind {
        StmtKind::Throw(_) => return Some((RaiseKind::Throw, s.span)),
        StmtKind::AwaitPoint => return Some((RaiseKind::Await, s.span)),
        _ => {}
    }
    let root = f.stmt_expr(s)?;
    // The place an assignment writes is not a read that can throw.
    let written: HashSet<ExprId> = match f.expr(root) {
        Expr::Assign { target, .. }
            if matches!(f.expr(*target), Expr::Member { .. } | Expr::Ident(_)) =>
        {
            [*target].into_iter().collect()
        }
        _ => HashSet::default(),
    };
    let mut best: Option<(RaiseKind, Span)> = None;
    let mut consider = |kind: RaiseKind, span: Span| {
        if best.is_none_or(|(b, _)| kind > b) {
            best = Some((kind, span));
        }
    };
    for id in f.descendants(root) {
        match f.expr(id) {
            Expr::Await(_) => consider(RaiseKind::Await, f.span(id)),
            Expr::Call { callee, .. } if matches!(f.expr(*callee), Expr::Ident(n) if fx.is_setter(n)) =>
                {}
            Expr::Call { callee, .. } | Expr::New { callee, .. } => {
                let path = f.path(*callee);
                let method = f.callee_name(*callee).unwrap_or("");
                let safe = fx.cat.throwing.safe_calls.iter().any(|p| p.matches(&path))
                    || (path.len() > 1 && has(&fx.cat.throwing.safe_methods, method));
                consider(
                    if safe {
                        RaiseKind::Weak
                    } else {
                        RaiseKind::Call
                    },
                    f.span(id),
                );
            }
            Expr::Member { .. } | Expr::Index { .. } if !written.contains(&id) => {
                consider(RaiseKind::Weak, f.span(id))
            }
            _ => {}
        }
    }
    best
}

// ---------------------------------------------------------------------------
// Queries

impl FunctionGuards {
    /// What holds a guard at statement `stmt` (an index into
    /// `Function::stmts`), if anything: a `with`/`async with` lock around it,
    /// a `using` declaration before it in an enclosing block, the function
    /// being a callback run under a lock, or an acquire (with its releases
    /// later, or released elsewhere) that came before it.
    pub fn held_at(&self, f: &Function, stmt: usize) -> Option<Held<'_>> {
        let ctx = f.stmts.get(stmt)?.ctx;
        for s in &self.scoped {
            let held = match s {
                Scoped::With { ctx: w, .. } => f.in_ctx(ctx, *w),
                Scoped::Using { stmt: u } => *u < stmt && f.in_ctx(ctx, f.stmts[*u].ctx),
                Scoped::Callback { .. } => true,
            };
            if held {
                return Some(Held::Scoped(s));
            }
        }
        for r in &self.regions {
            let a = &self.acquires[r.acquire];
            if a.stmt < stmt && stmt <= r.end && f.in_ctx(ctx, r.scope) {
                let released = r.releases.iter().any(|ri| {
                    let rel = &self.releases[*ri];
                    rel.stmt < stmt && f.in_ctx(ctx, f.stmts[rel.stmt].ctx)
                });
                if !released {
                    return Some(Held::Region(r));
                }
            }
        }
        for (i, a) in self.acquires.iter().enumerate() {
            let paired = self.regions.iter().any(|r| r.acquire == i);
            if !paired
                && matches!(a.guard.kind, GuardKind::Lock | GuardKind::RedisKey)
                && a.stmt < stmt
                && f.in_ctx(ctx, f.stmts[a.stmt].ctx)
            {
                return Some(Held::Open(a));
            }
        }
        None
    }

    /// The byte offset where the acquire's own success check ends: the end of
    /// `if (!acquired) return;` / `if not lock.acquire(False): return` right
    /// after (or around) the acquire, else the end of the acquire statement.
    pub fn acquire_check_end(&self, f: &Function, a: &Acquire) -> u32 {
        let stmt = &f.stmts[a.stmt];
        let mut end = stmt.span.end;
        for c in &f.ctxs {
            let Some(test) = c.test else { continue };
            if c.parent != Some(stmt.ctx) || c.span.start < stmt.span.start {
                continue;
            }
            let failure = match (mentions(f, test, a), &c.kind) {
                (Some(negated), CtxKind::Then) => negated,
                (Some(negated), CtxKind::Else) => !negated,
                _ => false,
            };
            if failure {
                end = end.max(c.span.end);
            }
        }
        end
    }

    /// The releases paired with a region, in statement order.
    pub fn region_releases<'a>(
        &'a self,
        region: &'a Region,
    ) -> impl Iterator<Item = &'a Release> + 'a {
        region.releases.iter().map(move |ri| &self.releases[*ri])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::{lower, Parsers};
    use crate::model::Language;

    fn model(src: &str, language: Language) -> FileModel {
        let mut parsers = Parsers::default();
        let tree = parsers.parser(language).parse(src, None).expect("parses");
        lower(&tree, src, language)
    }

    /// Whether the statement whose text starts with `stmt` holds a guard.
    fn held(src: &str, language: Language, func: &str, stmt: &str) -> bool {
        let file = model(src, language);
        let f = file
            .functions
            .iter()
            .find(|f| &*f.name == func)
            .expect("function exists");
        let guards = FunctionGuards::analyse(&file, f, src);
        let k = f
            .stmts
            .iter()
            .rposition(|s| src[s.span.range()].trim_start().starts_with(stmt))
            .expect("statement exists");
        guards.held_at(f, k).is_some()
    }

    #[test]
    fn held_across_awaits() {
        let js = r#"
const inFlight = new Set();
async function sync(id) {
  await before(id);
  inFlight.add(id);
  await during(id);
  inFlight.delete(id);
  await after(id);
}
class Ledger {
  async append(x) {
    const release = await this.mutex.acquire();
    try { await write(x); } finally { release(); }
    await notify(x);
  }
  async exclusive(x) {
    await this.mutex.runExclusive(async () => { await inside(x); });
  }
  async open(x) {
    await this.mutex.acquire();
    await heldElsewhere(x);
  }
}
"#;
        let l = Language::JavaScript;
        assert!(!held(js, l, "sync", "await before"));
        assert!(held(js, l, "sync", "await during"));
        assert!(!held(js, l, "sync", "await after"));
        assert!(held(js, l, "Ledger.append", "await write"));
        assert!(!held(js, l, "Ledger.append", "await notify"));
        assert!(held(
            js,
            l,
            "Ledger.this.mutex.runExclusive callback",
            "await inside"
        ));
        assert!(held(js, l, "Ledger.open", "await heldElsewhere"));

        let limited = r#"
const limit = pLimit(1);
async function enqueue(x) {
  await limit(async () => { await underLimit(x); });
}
"#;
        assert!(held(limited, l, "limit callback", "await underLimit"));

        let ts = r#"
async function importBatch(locks, id) {
  await before(id);
  await using lock = await locks.acquire(`import:${id}`);
  await inside(id);
}
"#;
        let t = Language::TypeScript;
        assert!(!held(ts, t, "importBatch", "await before"));
        assert!(held(ts, t, "importBatch", "await inside"));

        let py = r#"
class Worker:
    async def run(self, x):
        async with self._lock:
            await inside(x)
        await outside(x)
"#;
        assert!(held(py, Language::Python, "Worker.run", "await inside"));
        assert!(!held(py, Language::Python, "Worker.run", "await outside"));
    }

    #[test]
    fn catalog_parses() {
        let c = locks();
        assert!(!c.locks.acquire.is_empty());
        assert!(!c.throwing.safe_calls.is_empty());
    }

    #[test]
    fn tokens_split_names() {
        assert_eq!(name_tokens("acquireLock"), ["acquire", "lock"]);
        assert_eq!(name_tokens("RELEASE_LOCK"), ["release", "lock"]);
        assert_eq!(name_tokens("`lock:${id}`"), ["lock", "id"]);
        assert_eq!(name_tokens("HTTPLockKey"), ["http", "lock", "key"]);
    }

    #[test]
    fn lock_names() {
        let c = locks();
        for yes in [
            "lock:settlement",
            "digest_lock:{user_id}",
            "lockKey",
            "this.jobLock",
            "MUTEX_KEY",
        ] {
            assert!(c.is_lock_name(yes), "{yes}");
        }
        for no in [
            "session:abc",
            "blockedUsers",
            "clock",
            "cart:1",
            "unlockedAt",
        ] {
            assert!(!c.is_lock_name(no), "{no}");
        }
        assert!(c.is_release_helper("releaseLock"));
        assert!(c.is_release_helper("unlock"));
        assert!(c.is_release_helper("release_job_lock"));
        assert!(!c.is_release_helper("releaseLockKey"));
        assert!(c.is_acquire_helper("acquireLock"));
        assert!(c.is_acquire_helper("lockJob"));
        assert!(!c.is_acquire_helper("getLockKey"));
        assert!(!c.is_acquire_helper("isLocked"));
        assert!(c.is_flag_name("isProcessing"));
        assert!(c.is_flag_name("_running"));
        assert!(!c.is_flag_name("dirty"));
        assert!(!c.is_flag_name("initialized"));
    }
}
