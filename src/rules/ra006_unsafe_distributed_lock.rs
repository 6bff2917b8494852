//! RA006 unsafe-distributed-lock: a redis lock taken without an expiry, or
//! released with a plain DEL that does not check who holds it.
//!
//! How: [`redis_ops`] lists the function's redis commands (SET with its NX /
//! expiry options in ioredis, node-redis and redis-py shapes, SETNX, Django
//! `cache.add`, DEL/UNLINK/delete, EXPIRE, GET, WATCH, generic command calls).
//! A key is a lock when it is taken with NX here, when its name says lock or
//! mutex (directly or through the local it is built in), or when the function
//! is a release-lock helper (`releaseLock`, `unlock`). Then:
//! - (a) NX without an expiry in the same command is reported at the SET
//!   (risk medium); an EXPIRE of the key in a separate command is reported at
//!   the EXPIRE with the SETNX as related location (risk low), unless both
//!   run in one MULTI/pipeline.
//! - (b) a plain DEL of a lock is reported at the DEL (risk high); when the
//!   DEL sits under a condition on a GET of the same key (compare in
//!   application code) the risk is medium. A WATCHed key is left alone.
//!
//! Deleting a session, cart or cache key is not a lock release: no finding.

use crate::analysis::guards::{in_test_code, locks, redis_ops, RedisOp, RedisOpKind};
use crate::finding::{Confidence, RawFinding, Risk, Suggestion};
use crate::model::{Expr, ExprId, Family, StmtKind};
use crate::rules::{Context, RuleMeta};
use crate::suggest;

pub struct Rule;

static META: RuleMeta = RuleMeta {
    code: "RA006",
    name: "unsafe-distributed-lock",
    risk: Risk::High,
    confidence: Confidence::High,
    doc: include_str!("../../rules/ra006_unsafe_distributed_lock.md"),
};

const RELEASE_SCRIPT: &str =
    "if redis.call(\"get\", KEYS[1]) == ARGV[1] then return redis.call(\"del\", KEYS[1]) end return 0";

impl super::Rule for Rule {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    /// Every finding is an NX acquire or a delete of a lock key.
    fn triggers(&self, _catalog: &crate::catalog::Catalog) -> Option<Vec<String>> {
        let redis = &crate::analysis::guards::locks().redis;
        let mut words: Vec<String> = redis.nx_tokens.clone();
        words.extend(redis.setnx.iter().cloned());
        words.extend(redis.delete_js.iter().cloned());
        words.extend(redis.delete_py.iter().cloned());
        // Django/memcached `cache.add(key, value, timeout=None)`: NX by nature.
        words.extend(redis.add_if_absent.iter().cloned());
        words.extend(["nx", "delete", "unlink", "release"].map(String::from));
        Some(words)
    }

    fn check(&self, cx: &Context, out: &mut Vec<RawFinding>) {
        let ops = redis_ops(cx.file, cx.func, cx.src);
        // Tests delete lock keys on purpose (to simulate a lost lock).
        if ops.is_empty() || in_test_code(cx.file, cx.func) {
            return;
        }
        let lx = Locks { cx, ops: &ops };
        for op in &ops {
            match op.op {
                RedisOpKind::Set {
                    nx: true,
                    expiry: false,
                }
                | RedisOpKind::SetNx { .. } => {
                    if let Some(f) = lx.no_expiry(op) {
                        out.push(f);
                    }
                }
                RedisOpKind::Del => {
                    for key in &op.keys {
                        if let Some(f) = lx.unsafe_release(op, *key) {
                            out.push(f);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

struct Locks<'a> {
    cx: &'a Context<'a>,
    ops: &'a [RedisOp],
}

/// Code in a message: one line, at most 60 characters, in backticks (double
/// backticks when the code holds one, as in a template literal).
fn code(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let one_line = one_line.trim_end_matches(';').to_string();
    let one_line = if one_line.chars().count() > 60 {
        format!("{}…", one_line.chars().take(59).collect::<String>())
    } else {
        one_line
    };
    if one_line.contains('`') {
        format!("`` {one_line} ``")
    } else {
        format!("`{one_line}`")
    }
}

impl Locks<'_> {
    fn norm(&self, id: ExprId) -> String {
        let f = self.cx.func;
        self.cx
            .expr_text(f.unwrap_await(id))
            .split_whitespace()
            .collect()
    }

    fn key_of(&self, op: &RedisOp) -> Option<String> {
        op.key.map(|k| self.norm(k))
    }

    /// The NX acquire of `key` in this function, if any.
    fn nx_acquire(&self, key: &str) -> Option<&RedisOp> {
        self.ops.iter().find(|o| {
            matches!(
                o.op,
                RedisOpKind::Set { nx: true, .. } | RedisOpKind::SetNx { .. }
            ) && self.key_of(o).as_deref() == Some(key)
        })
    }

    /// The key's own text, or the value of the local it was built in, names
    /// a lock.
    fn lock_named(&self, key: ExprId) -> bool {
        let cat = locks();
        let f = self.cx.func;
        let key = f.unwrap_await(key);
        if cat.is_lock_name(self.cx.expr_text(key)) {
            return true;
        }
        let Expr::Ident(name) = f.expr(key) else {
            return false;
        };
        f.exprs.iter().any(|e| match e {
            Expr::Assign { target, value, .. } => {
                matches!(f.expr(*target), Expr::Ident(n) if n == name)
                    && cat.is_lock_name(self.cx.expr_text(*value))
            }
            _ => false,
        })
    }

    /// The function itself releases a lock by name: `releaseLock(key)`,
    /// `unlock(name)`, `release_job_lock`.
    fn release_helper(&self) -> bool {
        let cat = locks();
        let mut segments = self.cx.func.name.rsplit('.');
        let name = segments.next().unwrap_or("");
        if cat.is_release_helper(name) {
            return true;
        }
        // `release()` / `unlock()` / `free()` of a lock class (`RedisLock`,
        // `MutexService`).
        let verb = crate::analysis::guards::name_tokens(name);
        verb.first()
            .is_some_and(|v| cat.names.release_tokens.contains(v))
            && segments.any(|class| cat.is_lock_name(class))
    }

    /// The key is passed to an acquire helper in this function
    /// (`await acquireLock(key)` ... `await redis.del(key)`).
    fn helper_acquired(&self, key_text: &str) -> bool {
        let f = self.cx.func;
        let cat = locks();
        f.exprs.iter().any(|e| match e {
            Expr::Call { callee, args } => {
                let name = f.callee_name(*callee).unwrap_or("");
                (cat.is_acquire_helper(name) || cat.locks.acquire.iter().any(|a| a == name))
                    && args.iter().any(|a| self.norm(a.value) == key_text)
            }
            _ => false,
        })
    }

    fn awaited(&self, call: ExprId) -> bool {
        self.cx
            .func
            .exprs
            .iter()
            .any(|e| matches!(e, Expr::Await(inner) if *inner == call))
    }

    /// node-redis (v4+) rather than ioredis: option objects, camelCase or
    /// upper-case command methods.
    fn node_redis(&self) -> bool {
        let f = self.cx.func;
        self.ops.iter().any(|o| {
            o.object_options
                || matches!(f.expr(o.call), Expr::Call { callee, .. }
                    if f.callee_name(*callee).is_some_and(|n| matches!(n, "setNX" | "sendCommand" | "SET" | "DEL" | "pExpire")))
        })
    }

    /// A value that identifies nobody: a constant, the process id.
    fn constant_value(&self, value: Option<ExprId>) -> bool {
        let Some(v) = value else { return true };
        let f = self.cx.func;
        let text = self.cx.expr_text(v);
        matches!(
            f.expr(v),
            Expr::Str(_) | Expr::Num(_) | Expr::Bool(_) | Expr::Null
        ) || text.contains("process.pid")
            || text.contains("getpid")
            || text.contains("hostname")
    }

    fn confidence(&self, key: ExprId, key_text: &str) -> Confidence {
        let f = self.cx.func;
        let deleted = self
            .ops
            .iter()
            .any(|o| o.op == RedisOpKind::Del && o.keys.iter().any(|k| self.norm(*k) == key_text));
        // Released by a script (`eval(RELEASE_LOCK, 1, key, token)`).
        let scripted = f.exprs.iter().any(|e| match e {
            Expr::Call { callee, args } => {
                matches!(
                    f.callee_name(*callee),
                    Some("eval" | "evalsha" | "evalSha" | "fcall")
                ) && args.iter().any(|a| {
                    f.descendants(a.value)
                        .iter()
                        .any(|d| self.norm(*d) == key_text)
                })
            }
            _ => false,
        });
        if self.lock_named(key) || deleted || scripted || self.release_helper() {
            Confidence::High
        } else {
            Confidence::Medium
        }
    }

    /// (a): NX without an expiry in the same command.
    fn no_expiry(&self, op: &RedisOp) -> Option<RawFinding> {
        let cx = self.cx;
        let f = cx.func;
        let key = op.key?;
        let key_text = self.norm(key);
        let set_text = code(cx.expr_text(op.call));
        let key_code = code(&key_text);
        let expire = self.ops.iter().find(|o| {
            o.op == RedisOpKind::Expire
                && o.stmt >= op.stmt
                && o.call != op.call
                && self.key_of(o).as_deref() == Some(&key_text)
        });
        let confidence = self.confidence(key, &key_text);
        let suggestion = self.acquire_rewrite(op);
        if let Some(exp) = expire {
            let same_batch =
                exp.receiver.starts_with(&op.receiver) || op.receiver.starts_with(&exp.receiver);
            if op.in_transaction && exp.in_transaction && same_batch {
                return None; // one MULTI/pipeline: no crash window
            }
            return Some(RawFinding {
                code: META.code,
                risk: Risk::Low,
                confidence,
                message: format!(
                    "{} gives {key_code} its expiry in a separate command after {set_text}: a crash between the two leaves the lock without an expiry, held forever",
                    code(cx.expr_text(exp.call))
                ),
                span: f.span(exp.call),
                related: vec![(f.span(op.call), format!("{key_code} taken with NX here, without an expiry"))],
                suggestion,
            });
        }
        Some(RawFinding {
            code: META.code,
            risk: Risk::Medium,
            confidence,
            message: format!(
                "{set_text} takes the lock {key_code} with NX but no expiry: if this process dies before releasing it, {key_code} stays locked forever"
            ),
            span: f.span(op.call),
            related: Vec::new(),
            suggestion,
        })
    }

    /// (b): a plain DEL of a lock without an atomic owner check.
    fn unsafe_release(&self, op: &RedisOp, key: ExprId) -> Option<RawFinding> {
        let cx = self.cx;
        let f = cx.func;
        let key_text = self.norm(key);
        let acquire = self.nx_acquire(&key_text).filter(|a| a.stmt <= op.stmt);
        let compared = self.compared_get(op, &key_text);
        // Comparing the stored value with this caller's token before the DEL
        // is an ownership check: the key is used as a lock.
        let evidence = acquire.is_some()
            || self.lock_named(key)
            || self.release_helper()
            || self.helper_acquired(&key_text)
            || compared.is_some_and(|(_, owner)| owner);
        if !evidence {
            return None;
        }
        // WATCH + GET + MULTI/DEL is redis's optimistic check-and-delete.
        if self
            .ops
            .iter()
            .any(|o| o.op == RedisOpKind::Watch && o.keys.iter().any(|k| self.norm(*k) == key_text))
        {
            return None;
        }
        let del_text = code(cx.expr_text(op.call));
        let key_code = code(&key_text);
        let compared = compared.map(|(get, _)| get);
        let (risk, message) = match compared {
            Some(get) => (
                Risk::Medium,
                format!(
                    "{del_text} deletes the lock {key_code} after comparing {} in application code: the lock can expire and pass to another worker between the GET and the DEL, and this deletes their lock",
                    code(cx.expr_text(get.call))
                ),
            ),
            None => (
                Risk::High,
                format!(
                    "{del_text} deletes the lock {key_code} without checking that this caller still owns it: if the lock expired and another worker took it, this deletes their lock and a third can enter"
                ),
            ),
        };
        let related = match (compared, acquire) {
            (Some(get), _) => vec![(
                f.span(get.call),
                format!("{key_code} read here; the compare and the DEL are separate commands"),
            )],
            (None, Some(a)) => vec![(f.span(a.call), format!("{key_code} taken here"))],
            (None, None) => Vec::new(),
        };
        let confidence = if acquire.is_some() || self.lock_named(key) {
            Confidence::High
        } else {
            Confidence::Medium
        };
        Some(RawFinding {
            code: META.code,
            risk,
            confidence,
            message,
            span: f.span(op.call),
            related,
            suggestion: self.release_rewrite(op, key, acquire),
        })
    }

    /// A GET of the same key earlier in the function whose result (or call)
    /// is tested by a condition around the DEL; `true` when it is compared
    /// with an owner-like value (`token`, `owner`, `lockValue`, `workerId`).
    fn compared_get(&self, del: &RedisOp, key_text: &str) -> Option<(&RedisOp, bool)> {
        let f = self.cx.func;
        let get = self.ops.iter().find(|o| {
            o.op == RedisOpKind::Get
                && o.stmt <= del.stmt
                && self.key_of(o).as_deref() == Some(key_text)
        })?;
        let bound: Vec<&str> = f
            .exprs
            .iter()
            .filter_map(|e| match e {
                Expr::Assign { target, value, .. } if f.unwrap_await(*value) == get.call => {
                    match f.expr(*target) {
                        Expr::Ident(n) => Some(&**n),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect();
        let del_ctx = f.stmts[del.stmt].ctx;
        let mentions = |d: &ExprId| {
            f.unwrap_await(*d) == get.call
                || matches!(f.expr(*d), Expr::Ident(n) if bound.contains(&&**n))
        };
        // A condition on the path to the DEL: around it, or an early exit
        // (`if (current !== token) return`) before it.
        let test = f.stmts[get.stmt..=del.stmt]
            .iter()
            .find_map(|s| match s.kind {
                StmtKind::Test(t)
                    if f.in_ctx(del_ctx, s.ctx) && f.descendants(t).iter().any(mentions) =>
                {
                    Some(t)
                }
                _ => None,
            })?;
        let owner = f.descendants(test).iter().any(|d| match f.expr(*d) {
            Expr::Binary { op, left, right } if matches!(&**op, "==" | "===" | "!=" | "!==") => {
                let other = if f.descendants(*left).iter().any(mentions) {
                    *right
                } else {
                    *left
                };
                let text = self.cx.expr_text(other);
                crate::analysis::guards::name_tokens(text).iter().any(|t| {
                    matches!(
                        t.as_str(),
                        "token"
                            | "owner"
                            | "holder"
                            | "lock"
                            | "nonce"
                            | "uuid"
                            | "worker"
                            | "instance"
                            | "value"
                            | "id"
                    )
                })
            }
            _ => false,
        });
        Some((get, owner))
    }

    // -----------------------------------------------------------------------
    // Rewrites, in the client's own API

    fn acquire_rewrite(&self, op: &RedisOp) -> Suggestion {
        let cx = self.cx;
        let family = cx.family();
        let hash = suggest::comment(family);
        let recv = &op.receiver;
        let key = op
            .key
            .map_or("key".to_string(), |k| cx.expr_text(k).to_string());
        let aw = if self.awaited(op.call) { "await " } else { "" };
        let (token, token_line) = self.token(op.value);
        let ttl = op.ttl.map(|t| cx.expr_text(t).to_string());
        let mut lines = vec![format!(
            "{hash} one command: a random owner token, NX and the expiry together"
        )];
        lines.extend(token_line);
        match family {
            Family::Js => {
                let ttl = ttl.unwrap_or_else(|| "30_000".into());
                if self.node_redis() {
                    lines.push(format!("const acquired = {aw}{recv}.set({key}, {token}, {{ NX: true, PX: {ttl} }});"));
                } else {
                    lines.push(format!(
                        "const acquired = {aw}{recv}.set({key}, {token}, 'PX', {ttl}, 'NX');"
                    ));
                }
            }
            Family::Python => {
                let ttl = ttl.unwrap_or_else(|| "30_000".into());
                lines.push(format!(
                    "acquired = {aw}{recv}.set({key}, {token}, nx=True, px={ttl})"
                ));
                lines.push(format!(
                    "{hash} or let redis-py do it: lock = {recv}.lock({key}, timeout=30); lock.acquire(blocking=False)"
                ));
            }
        }
        lines.push(format!(
            "{hash} work that can outlive the TTL must extend the lock (compare the token, then PEXPIRE, in one script)"
        ));
        Suggestion {
            title: format!("Take {} with NX and an expiry in one command", code(&key)),
            code: lines.join("\n"),
        }
    }

    /// The owner token: the acquire's own value when it identifies this
    /// holder, else a new random token.
    fn token(&self, value: Option<ExprId>) -> (String, Option<String>) {
        let cx = self.cx;
        if !self.constant_value(value) {
            return (cx.expr_text(value.expect("non-constant")).to_string(), None);
        }
        match cx.family() {
            Family::Js => (
                "token".into(),
                Some("const token = crypto.randomUUID();".into()),
            ),
            Family::Python => ("token".into(), Some("token = secrets.token_hex(16)".into())),
        }
    }

    fn release_rewrite(&self, op: &RedisOp, key: ExprId, acquire: Option<&RedisOp>) -> Suggestion {
        let cx = self.cx;
        let f = cx.func;
        let family = cx.family();
        let hash = suggest::comment(family);
        let recv = &op.receiver;
        let key_src = cx.expr_text(key).to_string();
        let aw = if self.awaited(op.call) { "await " } else { "" };
        let (token, token_line) = self.token(acquire.and_then(|a| a.value));
        let mut lines = vec![format!(
            "{hash} delete the lock only while it still holds this caller's token (atomic compare-and-delete)"
        )];
        let call = match family {
            Family::Js => {
                lines.push(format!("const RELEASE_LOCK = '{RELEASE_SCRIPT}';"));
                if self.node_redis() {
                    format!(
                        "{recv}.eval(RELEASE_LOCK, {{ keys: [{key_src}], arguments: [{token}] }})"
                    )
                } else {
                    format!("{recv}.eval(RELEASE_LOCK, 1, {key_src}, {token})")
                }
            }
            Family::Python => {
                lines.push(format!("RELEASE_LOCK = '{RELEASE_SCRIPT}'"));
                format!("{recv}.eval(RELEASE_LOCK, 1, {key_src}, {token})")
            }
        };
        if let Some(t) = token_line {
            let set = match family {
                Family::Js => format!("{hash} take it with the same token: {recv}.set({key_src}, token, 'PX', ttl, 'NX')"),
                Family::Python => format!("{hash} take it with the same token: {recv}.set({key_src}, token, nx=True, px=ttl)"),
            };
            lines.push(t);
            lines.push(set);
        }
        let stmt = f.stmts[op.stmt].span;
        let replaced = if op.keys.len() == 1 {
            suggest::rewrite(cx.src, stmt, &[(f.span(op.call), call)])
        } else {
            format!("{aw}{call}")
        };
        lines.push(replaced);
        lines.push(format!(
            "{hash} long work: extend the lock before its TTL ends (the same token check, then PEXPIRE), or the lock passes to another worker mid-work"
        ));
        if family == Family::Python {
            lines.push(format!(
                "{hash} or use redis-py's lock, whose release checks the token: with {recv}.lock({key_src}, timeout=30): ..."
            ));
        }
        Suggestion {
            title: format!(
                "Release {} with a compare-and-delete script",
                code(&key_src)
            ),
            code: lines.join("\n"),
        }
    }
}
