//! Building blocks for suggested rewrites, rendered in the function's own
//! language from the names found in its model.

use crate::model::{Expr, Family, Span};
use crate::rules::Context;

/// Where the caller's id for this logical request can be read.
pub struct CallerKey {
    /// A line binding `name`, when it comes from a request object.
    pub setup: Option<String>,
    /// The expression that holds the caller's key.
    pub name: String,
    /// Whether the function must gain a parameter for it.
    pub needs_param: bool,
}

pub fn comment(family: Family) -> &'static str {
    match family {
        Family::Js => "//",
        Family::Python => "#",
    }
}

/// Finds the request object among the parameters, or a parameter that already
/// carries a request id.
pub fn caller_key(cx: &Context) -> CallerKey {
    let family = cx.family();
    let params: Vec<&str> = cx.func.params.iter().map(|p| &*p.name).collect();
    let local = match family {
        Family::Js => "requestKey",
        Family::Python => "request_key",
    };
    let from_request = params.iter().find_map(|p| {
        let read = match (family, *p) {
            (Family::Js, "req") => "req.get('Idempotency-Key')".to_string(),
            (Family::Js, "ctx") => "ctx.get('Idempotency-Key')".to_string(),
            (Family::Js, "request") => "request.headers.get('Idempotency-Key')".to_string(),
            (Family::Python, "request") => "request.headers[\"Idempotency-Key\"]".to_string(),
            _ => return None,
        };
        Some(read)
    });
    if let Some(read) = from_request {
        let setup = match family {
            Family::Js => format!("const {local} = {read};"),
            Family::Python => format!("{local} = {read}"),
        };
        return CallerKey {
            setup: Some(setup),
            name: local.to_string(),
            needs_param: false,
        };
    }
    if let Some(p) = params.iter().find(|p| {
        let n = crate::catalog::normalize_name(p);
        n.contains("requestid") || n.contains("idempotency") || n == "key"
    }) {
        return CallerKey {
            setup: None,
            name: p.to_string(),
            needs_param: false,
        };
    }
    CallerKey {
        setup: None,
        name: match family {
            Family::Js => "requestId",
            Family::Python => "request_id",
        }
        .to_string(),
        needs_param: true,
    }
}

/// Stable business identifiers the function already uses (`order.id`,
/// `customerId`), in order of appearance, at most `limit`.
pub fn business_ids(cx: &Context, limit: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, e) in cx.func.exprs.iter().enumerate() {
        let is_id = match e {
            Expr::Member { property, object } => {
                is_id_name(property)
                    && matches!(cx.func.expr(*object), Expr::Ident(_) | Expr::Member { .. })
            }
            Expr::Ident(n) => is_id_name(n),
            _ => false,
        };
        if !is_id {
            continue;
        }
        let text = cx.expr_text(i as u32).to_string();
        let norm = crate::catalog::normalize_name(&text);
        if norm.contains("request")
            || norm.contains("uuid")
            || norm.contains("random")
            || crate::catalog::catalog()
                .idempotency_sinks
                .is_key_name(&text)
            || norm.contains("idempotency")
            || norm.contains("trace")
            || text.contains(['(', '\n', '['])
            || out
                .iter()
                .any(|o| o == &text || text.starts_with(&format!("{o}.")))
        {
            continue;
        }
        // Prefer `order.id` over the bare `order` prefix already listed.
        out.retain(|o| !text.starts_with(&format!("{o}.")));
        out.push(text);
        if out.len() == limit {
            break;
        }
    }
    out
}

fn is_id_name(name: &str) -> bool {
    name == "id"
        || (name.len() > 2
            && (name.ends_with("Id") || name.ends_with("_id") || name.ends_with("ID")))
}

/// The text of `stmt` with `edits` (absolute spans, non-overlapping) applied,
/// dedented to its first line.
pub fn rewrite(src: &str, stmt: Span, edits: &[(Span, String)]) -> String {
    let mut edits: Vec<&(Span, String)> = edits.iter().filter(|(s, _)| stmt.contains(*s)).collect();
    edits.sort_by_key(|(s, _)| s.start);
    let mut out = String::new();
    let mut at = stmt.start as usize;
    for (span, text) in edits {
        if (span.start as usize) < at {
            continue;
        }
        out.push_str(&src[at..span.start as usize]);
        out.push_str(text);
        at = span.end as usize;
    }
    out.push_str(&src[at..stmt.end as usize]);
    dedent(&out, indent_of(src, stmt.start as usize))
}

/// The indentation of the line that holds `offset`.
pub fn indent_of(src: &str, offset: usize) -> usize {
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    src[line_start..offset]
        .chars()
        .take_while(|c| c.is_whitespace())
        .count()
}

fn dedent(text: &str, indent: usize) -> String {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                line.to_string()
            } else {
                let strip = line
                    .chars()
                    .take(indent)
                    .take_while(|c| c.is_whitespace())
                    .count();
                line.chars().skip(strip).collect()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
