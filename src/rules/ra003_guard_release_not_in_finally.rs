//! RA003 guard-release-not-in-finally: a guard is acquired and released in
//! the same function, but an exception (or an early `return`) between the
//! two skips the release, so the guard stays held forever.
//!
//! How: [`FunctionGuards`] pairs each acquire (Set/Map entry, flag, lock,
//! semaphore, helper, redis NX key) with its releases and follows every
//! statement of the region that can leave it up the try / catch / finally
//! tree. A region with a way out that passes no release is reported once, at
//! its normal-path release, with the acquire as the related location and the
//! first leaking statement as the second.
//!
//! Not reported: a release in `finally` covering the region, `with` / `async
//! with`, `runExclusive`, `using`, a catch that releases and rethrows plus a
//! normal-path release, a JS catch-all that swallows before the release.

use rustc_hash::FxHashSet as HashSet;

use crate::analysis::guards::{
    in_test_code, may_release, redis_ops, Acquire, FunctionGuards, GuardKind, Leak, LeakCause,
    RaiseKind, RedisOpKind, Region, Release,
};
use crate::finding::{Confidence, RawFinding, Risk, Suggestion};
use crate::model::{CtxKind, Expr, Family, Span, StmtKind};
use crate::rules::{Context, RuleMeta};
use crate::suggest;

pub struct Rule;

static META: RuleMeta = RuleMeta {
    code: "RA003",
    name: "guard-release-not-in-finally",
    risk: Risk::High,
    confidence: Confidence::High,
    doc: include_str!("../../rules/ra003_guard_release_not_in_finally.md"),
};

impl super::Rule for Rule {
    fn meta(&self) -> &'static RuleMeta {
        &META
    }

    /// Every finding is at a release: a container delete, a lock release, a
    /// release helper, `del`, or a flag reset to a falsy literal.
    fn triggers(&self, catalog: &crate::catalog::Catalog) -> Option<Vec<String>> {
        let cat = crate::analysis::guards::locks();
        let mut words: Vec<String> = cat.names.release_tokens.clone();
        words.extend(cat.containers.set_release_js.iter().cloned());
        words.extend(cat.containers.set_release_py.iter().cloned());
        words.extend(cat.containers.map_release_js.iter().cloned());
        words.extend(cat.containers.map_release_py.iter().cloned());
        words.extend(cat.locks.release.iter().cloned());
        words.extend(["false", "null", "none", "undefined"].map(String::from));
        words.extend(crate::catalog::literal_segments(&catalog.ext.lock_release));
        // Calling what an acquire returned releases too, whatever its name
        // (`const done = await mutex.acquire(); ...; done()`): the acquire's
        // own words stand in for it (helpers always name a lock token).
        words.extend(cat.locks.acquire.iter().cloned());
        words.extend(cat.names.lock_tokens.iter().cloned());
        words.extend(crate::catalog::literal_segments(&catalog.ext.lock_acquire));
        Some(words)
    }

    fn check(&self, cx: &Context, out: &mut Vec<RawFinding>) {
        // No release candidate, no region: skip building the facts.
        if cx.is_module() && cx.func.stmts.is_empty() || !may_release(cx.func) {
            return;
        }
        let guards = FunctionGuards::analyse(cx.file, cx.func, cx.src);
        if guards.regions.iter().all(|r| r.leaks.is_empty()) || in_test_code(cx.file, cx.func) {
            return;
        }
        let mut reported = HashSet::default();
        for region in &guards.regions {
            if region.leaks.is_empty() {
                continue;
            }
            let release = reported_release(cx, &guards, region);
            if !reported.insert(release.stmt) {
                continue;
            }
            out.push(report(cx, &guards, region, release));
        }
    }
}

/// The release to report at: the last one on the acquire's own level (the
/// normal path), else the first one.
fn reported_release<'a>(
    cx: &Context,
    guards: &'a FunctionGuards,
    region: &'a Region,
) -> &'a Release {
    let f = cx.func;
    let mut releases: Vec<&Release> = guards.region_releases(region).collect();
    releases.sort_by_key(|r| r.stmt);
    releases
        .iter()
        .rev()
        .find(|r| f.stmts[r.stmt].ctx == region.scope)
        .or_else(|| releases.first())
        .copied()
        .expect("a region has at least one release")
}

/// The leak that best explains the hazard: an early return, then the
/// strongest raise, in source order.
fn main_leak(region: &Region) -> &Leak {
    let rank = |l: &Leak| match l.cause {
        LeakCause::EarlyReturn | LeakCause::CatchReturn => 5,
        LeakCause::Raise(RaiseKind::Await) => 4,
        LeakCause::Raise(RaiseKind::Throw) => 3,
        LeakCause::Raise(RaiseKind::Call) => 3,
        LeakCause::Cancellation => 2,
        LeakCause::Raise(RaiseKind::Weak) => 1,
    };
    let best = region.leaks.iter().map(rank).max().unwrap_or(0);
    region
        .leaks
        .iter()
        .find(|l| rank(l) == best)
        .expect("a reported region has a leak")
}

fn short(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let one_line = one_line.trim_end_matches(';').to_string();
    if one_line.chars().count() > 60 {
        format!("{}…", one_line.chars().take(59).collect::<String>())
    } else {
        one_line
    }
}

/// Code in a message, in backticks (double backticks when the code holds
/// one, as in a template literal).
fn code(text: &str) -> String {
    let t = short(text);
    if t.contains('`') {
        format!("`` {t} ``")
    } else {
        format!("`{t}`")
    }
}

fn line_of(src: &str, offset: u32) -> usize {
    src[..offset as usize]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// What stays held, in the code's own names.
fn held_state(cx: &Context, a: &Acquire, release: &Release) -> String {
    let g = &a.guard;
    let key = code(g.key.as_deref().unwrap_or(""));
    let place = code(&g.place);
    let t = match cx.family() {
        Family::Js => "true",
        Family::Python => "True",
    };
    match g.kind {
        GuardKind::SetEntry => {
            format!("{key} stays in {place} and every later request for it is refused")
        }
        GuardKind::MapEntry => {
            format!("{place} keeps its {key} entry and later callers see the work as still running")
        }
        GuardKind::Flag if g.key.is_some() => format!(
            "{} stays set and the guard never reopens",
            code(&format!("{}[{}]", g.place, g.key.as_deref().unwrap_or("")))
        ),
        GuardKind::Flag => format!("{place} stays `{t}` and the guard never reopens"),
        GuardKind::Lock => {
            let f = cx.func;
            // Released through the object the acquire returned (`lock.release()`).
            let through = a.bound.iter().find(|b| {
                release.via.contains(b)
                    && !matches!(f.expr(release.expr), Expr::Call { callee, .. } if matches!(f.expr(*callee), Expr::Ident(_)))
            });
            if let Some(obj) = through {
                format!(
                    "`{obj}` (from {}) is never released and every later caller waits on it",
                    code(cx.expr_text(f.unwrap_await(a.expr)))
                )
            } else if g.place.is_empty() || a.helper {
                format!(
                    "the lock from {} is never released and every later caller waits on it",
                    code(cx.expr_text(f.unwrap_await(a.expr)))
                )
            } else if g.key.is_some() {
                format!("{place} keeps {key} locked and every later caller for it waits")
            } else {
                format!("{place} is never released and every later caller waits on it")
            }
        }
        GuardKind::RedisKey => {
            let ttl = redis_ops(cx.file, cx.func, cx.src)
                .into_iter()
                .find(|o| o.call == a.expr)
                .map(|o| matches!(o.op, RedisOpKind::Set { expiry: true, .. }));
            match ttl {
                Some(false) => format!("the redis lock {key} has no expiry and stays held forever"),
                _ => format!("the redis lock {key} stays held until its TTL runs out"),
            }
        }
    }
}

fn report(cx: &Context, guards: &FunctionGuards, region: &Region, release: &Release) -> RawFinding {
    let f = cx.func;
    let a = &guards.acquires[region.acquire];
    let leak = main_leak(region);
    let rel = code(cx.text(f.stmts[release.stmt].span));
    let leak_code = code(cx.text(leak.span));
    let state = held_state(cx, a, release);
    let in_finally = release.context.in_finally.is_some();
    let message = match leak.cause {
        LeakCause::EarlyReturn => format!(
            "the `return` on line {} leaves without {rel}: {state}",
            line_of(cx.src, leak.span.start)
        ),
        LeakCause::CatchReturn => format!(
            "the handler returns on line {} without {rel}: after an error {state}",
            line_of(cx.src, leak.span.start)
        ),
        LeakCause::Cancellation => format!(
            "{rel} is protected only by `except Exception`, which does not catch `asyncio.CancelledError`: if {leak_code} is cancelled, {state}"
        ),
        LeakCause::Raise(_) if in_finally => format!(
            "{rel} is in a `finally`, but {leak_code} runs after the acquire and before the `try`: if it throws, {state}"
        ),
        LeakCause::Raise(_) => format!(
            "{rel} is not in a `finally`: if {leak_code} throws, {state}"
        ),
    };
    let strong = region.leaks.iter().any(|l| {
        matches!(
            l.cause,
            LeakCause::EarlyReturn
                | LeakCause::CatchReturn
                | LeakCause::Raise(RaiseKind::Await | RaiseKind::Call | RaiseKind::Throw)
        )
    });
    let risk = if strong { Risk::High } else { Risk::Medium };
    let confidence = if a.untested {
        Confidence::Low
    } else if a.helper || (a.guard.kind == GuardKind::Flag && !a.checked) {
        Confidence::Medium
    } else {
        Confidence::High
    };
    let acquire_span = f.stmts[a.stmt].span;
    let mut related = vec![(
        acquire_span,
        format!("acquired here: {}", code(cx.text(acquire_span))),
    )];
    let leak_note = match leak.cause {
        LeakCause::EarlyReturn | LeakCause::CatchReturn => {
            "this `return` skips the release".to_string()
        }
        LeakCause::Cancellation => "a cancellation here skips the release".to_string(),
        _ => "an exception here skips the release".to_string(),
    };
    if leak.span != acquire_span {
        related.push((leak.span, leak_note));
    }
    RawFinding {
        code: META.code,
        risk,
        confidence,
        message,
        span: f.stmts[release.stmt].span,
        related,
        suggestion: rewrite(cx, guards, region, release),
    }
}

// ---------------------------------------------------------------------------
// The rewrite: the same code with the guarded region in try/finally (or a
// Python `with` / `async with` for a plain lock), built from the source lines.

fn line_start(src: &str, off: usize) -> usize {
    src[..off].rfind('\n').map_or(0, |i| i + 1)
}

fn line_end(src: &str, off: usize) -> usize {
    src[off..].find('\n').map_or(src.len(), |i| off + i)
}

/// One indentation level of the file: the first indentation step found
/// inside the function, else 2 (JS) / 4 (Python).
fn indent_unit(cx: &Context) -> String {
    let start = line_start(cx.src, cx.func.span.start as usize);
    let body = cx.src.get(start..cx.func.span.end as usize).unwrap_or("");
    let mut prev: Option<usize> = None;
    for line in body.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let n = line.len() - line.trim_start().len();
        if let Some(p) = prev {
            if n > p {
                return " ".repeat(n - p);
            }
        }
        prev = Some(n);
    }
    match cx.family() {
        Family::Js => "  ".into(),
        Family::Python => "    ".into(),
    }
}

/// Strips `base` columns of indentation from a line (only whitespace).
fn dedent(line: &str, base: usize) -> &str {
    let cut = line
        .char_indices()
        .take(base)
        .take_while(|(_, c)| c.is_whitespace())
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    &line[cut..]
}

/// The end of the statement, at the region's scope, that holds `release`.
fn container_end(cx: &Context, region: &Region, release: &Release) -> u32 {
    let f = cx.func;
    let stmt = &f.stmts[release.stmt];
    let mut top = None;
    for (id, c) in f.ctx_chain(stmt.ctx) {
        if c.parent == Some(region.scope) {
            top = Some(id);
            break;
        }
        if id == region.scope {
            break;
        }
    }
    let Some(top) = top else { return stmt.span.end };
    let c = &f.ctxs[top as usize];
    match c.kind {
        CtxKind::Try { try_id } | CtxKind::Catch { try_id, .. } | CtxKind::Finally { try_id } => f
            .ctxs
            .iter()
            .filter(|x| matches!(x.kind, CtxKind::Try { try_id: t } | CtxKind::Catch { try_id: t, .. } | CtxKind::Finally { try_id: t } if t == try_id))
            .map(|x| x.span.end)
            .max()
            .unwrap_or(c.span.end),
        CtxKind::Then | CtxKind::Else => f
            .ctxs
            .iter()
            .filter(|x| x.parent == c.parent && x.test == c.test && x.test.is_some())
            .map(|x| x.span.end)
            .max()
            .unwrap_or(c.span.end),
        _ => c.span.end,
    }
}

fn rewrite(
    cx: &Context,
    guards: &FunctionGuards,
    region: &Region,
    release: &Release,
) -> Suggestion {
    let f = cx.func;
    let src = cx.src;
    let family = cx.family();
    let unit = indent_unit(cx);
    let a = &guards.acquires[region.acquire];
    let acquire_stmt = f.stmts[a.stmt].span;
    let head_start = line_start(src, acquire_stmt.start as usize);
    let base = acquire_stmt.start as usize - head_start;
    let base = src[head_start..acquire_stmt.start as usize]
        .chars()
        .take_while(|c| c.is_whitespace())
        .count()
        .min(base);
    let head_end = line_end(src, guards.acquire_check_end(f, a) as usize);
    let head: Vec<String> = src[head_start..head_end]
        .lines()
        .map(|l| dedent(l, base).to_string())
        .collect();
    let release_text = cx.text(f.stmts[release.stmt].span).trim().to_string();
    let releases: Vec<&Release> = guards.region_releases(region).collect();

    // A release already in a `finally`, with code between the acquire and
    // the `try`: move that code into the `try`.
    if let Some(try_id) = releases.iter().find_map(|r| r.context.in_finally) {
        if let Some(moved) = move_into_try(cx, region, try_id, head_end, &head, base, &unit) {
            return Suggestion {
                title: format!(
                    "Start the `try` right after the acquire so {} covers every statement",
                    code(&release_text)
                ),
                code: moved,
            };
        }
    }

    let region_end = releases
        .iter()
        .map(|r| container_end(cx, region, r))
        .max()
        .unwrap_or(acquire_stmt.end) as usize;
    let body_start = (head_end + 1).min(src.len());
    let body_end = line_end(src, region_end.max(body_start));
    // Drop the releases from the body: the finally does it now.
    let mut removed: Vec<Span> = releases
        .iter()
        .filter(|r| {
            let stmt = &f.stmts[r.stmt];
            matches!(stmt.kind, StmtKind::Expr(e) if f.unwrap_await(e) == r.expr)
        })
        .map(|r| f.stmts[r.stmt].span)
        .filter(|s| s.start as usize >= body_start && s.end as usize <= body_end)
        .collect();
    removed.sort_by_key(|s| s.start);
    let mut body = String::new();
    let mut at = body_start;
    let comment = suggest::comment(family);
    for s in &removed {
        body.push_str(&src[at..s.start as usize]);
        body.push('\u{0}');
        at = s.end as usize;
        // A comment trailing the removed release goes with it.
        let rest = &src[at..line_end(src, at)];
        if rest.trim_start().starts_with(comment) {
            at += rest.len();
        }
    }
    body.push_str(&src[at.min(body_end)..body_end]);
    let body_lines: Vec<String> = body
        .lines()
        .filter(|l| !(l.contains('\u{0}') && l.replace('\u{0}', "").trim().is_empty()))
        .map(|l| l.replace('\u{0}', ""))
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{unit}{}", dedent(&l, base))
            }
        })
        .collect();
    let hash = suggest::comment(family);
    let mut lines = head.clone();
    let (title, code) = match family {
        Family::Js => {
            lines.push("try {".into());
            lines.extend(body_lines);
            lines.push("} finally {".into());
            lines.push(format!("{unit}{release_text}"));
            lines.push("}".into());
            (
                format!("Release in a `finally`: {}", code(&release_text)),
                lines,
            )
        }
        Family::Python => {
            let plain_lock = a.guard.kind == GuardKind::Lock
                && !a.in_test
                && a.bound.is_empty()
                && !a.helper
                && matches!(f.expr(f.unwrap_await(a.expr)), Expr::Call { args, .. } if args.is_empty())
                && cx.expr_text(f.unwrap_await(a.expr)).ends_with(".acquire()");
            if plain_lock {
                let kw = if a.awaited { "async with" } else { "with" };
                let mut lines = vec![format!("{kw} {}:", a.guard.place)];
                lines.extend(body_lines);
                (format!("Hold `{}` with `{kw}`", a.guard.place), lines)
            } else {
                lines.push("try:".into());
                if body_lines.iter().all(|l| l.trim().is_empty()) {
                    lines.push(format!("{unit}pass"));
                } else {
                    lines.extend(body_lines);
                }
                lines.push("finally:".into());
                lines.push(format!("{unit}{release_text}"));
                (
                    format!("Release in a `finally`: {}", code(&release_text)),
                    lines,
                )
            }
        }
    };
    let mut out = vec![format!(
        "{hash} the release runs on every exit: normal, early return and exception"
    )];
    out.extend(code);
    Suggestion {
        title,
        code: out.join("\n"),
    }
}

/// `acquire; gap; try { body } finally { release }` becomes
/// `acquire; try { gap; body } finally { release }`.
fn move_into_try(
    cx: &Context,
    region: &Region,
    try_id: u32,
    head_end: usize,
    head: &[String],
    base: usize,
    unit: &str,
) -> Option<String> {
    let f = cx.func;
    let src = cx.src;
    let try_ctx = f.ctxs.iter().find(|c| c.kind == CtxKind::Try { try_id })?;
    let try_end = f
        .ctxs
        .iter()
        .filter(|x| matches!(x.kind, CtxKind::Try { try_id: t } | CtxKind::Catch { try_id: t, .. } | CtxKind::Finally { try_id: t } if t == try_id))
        .map(|x| x.span.end)
        .max()? as usize;
    // The `try` keyword: the last one before the body.
    let kw = src[..try_ctx.span.start as usize].rfind("try")?;
    let try_line = line_start(src, kw);
    if try_line <= head_end
        || region
            .leaks
            .iter()
            .all(|l| (l.span.start as usize) >= try_line)
    {
        return None;
    }
    let mut gap: Vec<String> = src[(head_end + 1).min(try_line)..try_line]
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{unit}{}", dedent(l, base))
            }
        })
        .collect();
    while gap.first().is_some_and(|l| l.is_empty()) {
        gap.remove(0);
    }
    while gap.last().is_some_and(|l| l.is_empty()) {
        gap.pop();
    }
    let declares = gap.iter().any(|l| {
        let l = l.trim_start();
        ["const ", "let ", "var "].iter().any(|k| l.starts_with(k))
    });
    let try_text = &src[try_line..line_end(src, try_end)];
    let mut try_lines = try_text.lines();
    let first = try_lines.next()?;
    // Only a `try {` / `try:` line of its own can take the moved lines.
    if !matches!(first.trim(), "try {" | "try:") {
        return None;
    }
    let mut lines: Vec<String> = head.to_vec();
    lines.push(dedent(first, base).to_string());
    lines.extend(gap);
    lines.extend(try_lines.map(|l| dedent(l, base).to_string()));
    let hash = suggest::comment(cx.family());
    let mut out = vec![format!(
        "{hash} nothing may run between the acquire and the `try` that releases it"
    )];
    if declares {
        out.push(format!(
            "{hash} (declare above the `try` with `let` any variable its catch/finally reads)"
        ));
    }
    out.extend(lines);
    Some(out.join("\n"))
}
