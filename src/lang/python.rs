//! Python front-end.

use tree_sitter::Node;

use super::{field, kind, span_of, text, Exit, Frontend, FunctionInfo, Lowerer, Role};
use crate::model::{Arg, Expr, FunctionKind, Prop, PropKey, Span, StmtKind};

pub(crate) struct Python;

impl Frontend for Python {
    fn skip(&self, kind: &str) -> bool {
        matches!(
            kind,
            "comment"
                | "type"
                | "string_start"
                | "string_content"
                | "string_end"
                | "escape_sequence"
                | "import_statement"
                | "import_from_statement"
                | "future_import_statement"
                | "type_alias_statement"
                | "type_parameter"
                | "format_specifier"
                | "pass_statement"
                | "line_continuation"
        )
    }

    fn is_function(&self, kind: &str) -> bool {
        matches!(kind, "function_definition" | "lambda")
    }

    fn class_name(&self, node: Node, node_kind: &str, src: &str) -> Option<crate::model::Name> {
        (node_kind == "class_definition").then(|| {
            field(node, "name")
                .map_or("<class>", |n| text(n, src))
                .into()
        })
    }

    fn function_info<'t>(&self, node: Node<'t>, src: &str) -> FunctionInfo<'t> {
        let is_lambda = kind(node) == "lambda";
        let is_async = node.child(0).is_some_and(|c| kind(c) == "async");
        let mut params = Vec::new();
        if let Some(list) = field(node, "parameters") {
            let mut cursor = list.walk();
            params.extend(list.named_children(&mut cursor));
        }
        let is_method = params
            .first()
            .is_some_and(|p| matches!(text(*p, src), "self" | "cls"));
        FunctionInfo {
            name: super::field(node, "name").map(|n| text(n, src).to_string()),
            kind: if is_lambda {
                FunctionKind::Lambda
            } else if is_method {
                FunctionKind::Method
            } else {
                FunctionKind::Function
            },
            is_async,
            params,
            body: field(node, "body"),
        }
    }

    fn param<'t>(
        &self,
        node: Node<'t>,
        src: &str,
    ) -> Vec<(crate::model::Name, Span, Option<Node<'t>>)> {
        let span = span_of(node);
        let name = match kind(node) {
            "identifier" => Some(node),
            "default_parameter" | "typed_default_parameter" => field(node, "name"),
            "typed_parameter" | "list_splat_pattern" | "dictionary_splat_pattern" => {
                let mut cursor = node.walk();
                let found = node
                    .named_children(&mut cursor)
                    .find(|c| kind(*c) == "identifier");
                found
            }
            _ => None,
        };
        match name {
            Some(n) => vec![(text(n, src).into(), span, field(node, "value"))],
            None => Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn child_role<'t>(
        &self,
        lw: &mut Lowerer<'t>,
        parent: Node<'t>,
        parent_kind: &'static str,
        child: Node<'t>,
        child_kind: &'static str,
        field: Option<&str>,
        mark: usize,
    ) -> Role {
        match (parent_kind, field, child_kind) {
            ("if_statement" | "elif_clause" | "while_statement", Some("condition"), _) => {
                Role::Condition
            }
            ("for_statement", Some("right"), _) => Role::Condition,
            ("if_statement" | "elif_clause", Some("consequence"), _) => Role::Then { mark },
            ("if_statement", Some("alternative"), _) => Role::Else { mark },
            ("while_statement" | "for_statement", Some("body"), _) => Role::Loop { mark },
            ("try_statement", Some("body"), _) => Role::Try(lw.next_try_id()),
            // Roles of a try's children are decided together, body first.
            ("try_statement", _, "except_clause" | "except_group_clause") => {
                Role::Catch(lw.current_try_id(), except_types(child, lw.src))
            }
            ("try_statement", _, "finally_clause") => Role::Finally(lw.current_try_id()),
            ("with_statement", Some("body"), _) => Role::WithBody {
                mark,
                is_async: parent.child(0).is_some_and(|c| kind(c) == "async"),
            },
            ("match_statement", Some("body"), _) => Role::Switch,
            ("attribute", Some("attribute"), _) | ("keyword_argument", Some("name"), _) => {
                Role::Skip
            }
            _ => Role::Plain,
        }
    }

    fn name_hint(
        &self,
        lw: &Lowerer,
        parent: Node,
        _child: Node,
        field: Option<&str>,
    ) -> Option<String> {
        let src = lw.src;
        match (kind(parent), field) {
            ("assignment", Some("right")) | ("keyword_argument", Some("value")) => super::field(
                parent,
                if kind(parent) == "assignment" {
                    "left"
                } else {
                    "name"
                },
            )
            .map(|n| text(n, src).to_string()),
            _ => None,
        }
    }

    fn exit<'t>(
        &self,
        lw: &mut Lowerer<'t>,
        node: Node<'t>,
        node_kind: &'static str,
        _role: &Role,
        mark: usize,
    ) -> Exit {
        let expr = match node_kind {
            "identifier" => match lw.text(node) {
                "self" | "cls" => Expr::This,
                name => Expr::Ident(name.into()),
            },
            "attribute" => {
                let Some(object) = lw.child(mark, "object") else {
                    return other(lw, node, mark);
                };
                let property = super::field(node, "attribute").map_or("", |p| lw.text(p));
                Expr::Member {
                    object,
                    property: property.into(),
                }
            }
            "subscript" => match (lw.child(mark, "value"), lw.child(mark, "subscript")) {
                (Some(object), Some(index)) => Expr::Index { object, index },
                _ => return other(lw, node, mark),
            },
            "call" => {
                let Some(callee) = lw.child(mark, "function") else {
                    return other(lw, node, mark);
                };
                let args = lw
                    .children(mark)
                    .iter()
                    .filter(|c| c.field != Some("function"))
                    .map(|c| {
                        let keyword = (kind(c.node) == "keyword_argument")
                            .then(|| field(c.node, "name"))
                            .flatten()
                            .map(|n| lw.text(n).into());
                        let spread = matches!(lw.func.expr(c.expr), Expr::Unary { op, .. } if op.starts_with('*'));
                        Arg {
                            name: keyword,
                            value: c.expr,
                            spread,
                        }
                    })
                    .collect();
                Expr::Call { callee, args }
            }
            "argument_list" | "with_clause" | "interpolation" => return Exit::Transparent,
            "keyword_argument" | "with_item" | "parenthesized_expression" | "as_pattern" => {
                let first = match node_kind {
                    "keyword_argument" => lw.child(mark, "value"),
                    _ => lw.children(mark).first().map(|c| c.expr),
                };
                return match first {
                    Some(e) => Exit::Expr(e),
                    None => Exit::Nothing,
                };
            }
            "list_splat" | "dictionary_splat" => match lw.children(mark).first() {
                Some(c) => Expr::Unary {
                    op: if node_kind == "list_splat" { "*" } else { "**" }.into(),
                    arg: c.expr,
                },
                None => return Exit::Nothing,
            },
            "string" => string(lw, node, mark),
            "concatenated_string" => {
                let mut text = String::new();
                let mut holes = Vec::new();
                for c in lw.children(mark) {
                    match lw.func.expr(c.expr) {
                        Expr::Str(s) => text.push_str(s),
                        Expr::Template {
                            text: t, holes: h, ..
                        } => {
                            text.push_str(t);
                            holes.extend(h);
                        }
                        _ => {}
                    }
                }
                if holes.is_empty() {
                    Expr::Str(text.into())
                } else {
                    Expr::Template {
                        tag: None,
                        text: text.into(),
                        holes,
                    }
                }
            }
            "integer" | "float" => Expr::Num(lw.text(node).into()),
            "true" => Expr::Bool(true),
            "false" => Expr::Bool(false),
            "none" => Expr::Null,
            "pair" => {
                let (Some(key), Some(value)) = (lw.child(mark, "key"), lw.child(mark, "value"))
                else {
                    return Exit::Nothing;
                };
                let key_span = lw.func.span(key);
                let key = match lw.func.string_value(key) {
                    Some(s) => PropKey::Name(s.into()),
                    None => PropKey::Computed(key),
                };
                Expr::Object(vec![Prop {
                    key,
                    key_span,
                    value,
                }])
            }
            "dictionary" => {
                let mut props = Vec::new();
                for c in lw.children(mark).to_vec() {
                    match lw.func.expr(c.expr).clone() {
                        Expr::Object(p) if kind(c.node) == "pair" => {
                            // Folded into this dict: one parent per value.
                            lw.func.exprs[c.expr as usize] = Expr::Other(Vec::new());
                            props.extend(p)
                        }
                        Expr::Unary { arg, .. } => {
                            lw.func.exprs[c.expr as usize] = Expr::Other(Vec::new());
                            props.push(Prop {
                                key: PropKey::Spread,
                                key_span: span_of(c.node),
                                value: arg,
                            })
                        }
                        _ => {}
                    }
                }
                Expr::Object(props)
            }
            "list" | "tuple" | "set" | "expression_list" | "pattern_list" | "tuple_pattern"
            | "list_pattern" => Expr::Array(lw.child_exprs(mark)),
            "binary_operator" | "boolean_operator" => {
                match (lw.child(mark, "left"), lw.child(mark, "right")) {
                    (Some(left), Some(right)) => Expr::Binary {
                        op: super::field(node, "operator")
                            .map_or("", |o| lw.text(o))
                            .into(),
                        left,
                        right,
                    },
                    _ => return other(lw, node, mark),
                }
            }
            "comparison_operator" => {
                let kids = lw.child_exprs(mark);
                if kids.len() < 2 {
                    return other(lw, node, mark);
                }
                Expr::Binary {
                    op: comparison_op(node, lw.src).into(),
                    left: kids[0],
                    right: kids[1],
                }
            }
            "not_operator" | "unary_operator" => match lw.children(mark).first() {
                Some(c) => Expr::Unary {
                    op: if node_kind == "not_operator" {
                        "not".into()
                    } else {
                        field(node, "operator").map_or("", |o| lw.text(o)).into()
                    },
                    arg: c.expr,
                },
                None => return other(lw, node, mark),
            },
            "await" => match lw.children(mark).first() {
                Some(c) => Expr::Await(c.expr),
                None => return other(lw, node, mark),
            },
            "conditional_expression" => {
                let kids = lw.child_exprs(mark);
                if kids.len() < 3 {
                    return other(lw, node, mark);
                }
                Expr::Cond {
                    then: kids[0],
                    test: kids[1],
                    otherwise: kids[2],
                }
            }
            "assignment" | "augmented_assignment" => {
                match (lw.child(mark, "left"), lw.child(mark, "right")) {
                    (Some(target), Some(value)) => Expr::Assign {
                        target,
                        op: super::field(node, "operator")
                            .map_or("=", |o| lw.text(o))
                            .into(),
                        value,
                        decl: false,
                    },
                    _ => return Exit::Nothing,
                }
            }
            "named_expression" => match (lw.child(mark, "name"), lw.child(mark, "value")) {
                (Some(target), Some(value)) => Expr::Assign {
                    target,
                    op: "=".into(),
                    value,
                    decl: false,
                },
                _ => return other(lw, node, mark),
            },
            "expression_statement" => {
                for c in lw.children(mark).to_vec() {
                    lw.stmt(StmtKind::Expr(c.expr), span_of(node));
                }
                return Exit::Nothing;
            }
            "return_statement" | "raise_statement" => {
                let value = lw.children(mark).first().map(|c| c.expr);
                let kind = if node_kind == "return_statement" {
                    StmtKind::Return(value)
                } else {
                    StmtKind::Throw(value)
                };
                lw.stmt(kind, span_of(node));
                return Exit::Nothing;
            }
            "delete_statement" => {
                // `del self.pending[key]` releases a dict entry like Map.delete.
                for c in lw.children(mark).to_vec() {
                    let del = lw.push(
                        Expr::Unary {
                            op: "del".into(),
                            arg: c.expr,
                        },
                        node,
                    );
                    lw.stmt(StmtKind::Expr(del), span_of(node));
                }
                return Exit::Nothing;
            }
            "assert_statement" => {
                for c in lw.children(mark).to_vec() {
                    lw.stmt(StmtKind::Test(c.expr), span_of(node));
                }
                return Exit::Nothing;
            }
            "for_statement" => {
                if node.child(0).is_some_and(|c| kind(c) == "async") {
                    lw.stmt(StmtKind::AwaitPoint, span_of(node));
                }
                return Exit::Nothing;
            }
            kind if is_statement(kind) => return Exit::Nothing,
            _ => return other(lw, node, mark),
        };
        Exit::Expr(lw.push(expr, node))
    }
}

fn is_statement(kind: &str) -> bool {
    kind.ends_with("_statement")
        || kind.ends_with("_clause")
        || matches!(
            kind,
            "module"
                | "block"
                | "decorated_definition"
                | "class_definition"
                | "decorator"
                | "case_clause"
                | "parameters"
                | "global_statement"
                | "nonlocal_statement"
        )
}

fn other(lw: &mut Lowerer, node: Node, mark: usize) -> Exit {
    let kids = lw.child_exprs(mark);
    Exit::Expr(lw.push(Expr::Other(kids), node))
}

/// The operator tokens between the first two operands: `in`, `not in`, `>=`.
fn comparison_op(node: Node, src: &str) -> String {
    let mut op = String::new();
    let mut seen_operand = false;
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        if child.is_named() {
            if seen_operand {
                break;
            }
            seen_operand = true;
        } else if seen_operand {
            if !op.is_empty() {
                op.push(' ');
            }
            op.push_str(text(child, src));
        }
    }
    op
}

/// The exception names an `except` clause catches (empty: a bare `except:`).
fn except_types(clause: Node, src: &str) -> Vec<crate::model::Name> {
    let mut cursor = clause.walk();
    let Some(first) = clause
        .named_children(&mut cursor)
        .find(|c| kind(*c) != "block" && kind(*c) != "comment")
    else {
        return Vec::new();
    };
    let first = if kind(first) == "as_pattern" {
        first.named_child(0).unwrap_or(first)
    } else {
        first
    };
    match kind(first) {
        "tuple" | "parenthesized_expression" | "expression_list" => {
            let mut cursor = first.walk();
            let names = first
                .named_children(&mut cursor)
                .map(|c| text(c, src).into())
                .collect();
            names
        }
        _ => vec![text(first, src).into()],
    }
}

fn string(lw: &Lowerer, node: Node, mark: usize) -> Expr {
    let src = lw.src;
    let mut start = node.start_byte();
    let mut end = node.end_byte();
    let mut cursor = node.walk();
    let mut holes = Vec::new();
    let mut ranges = Vec::new();
    for child in node.children(&mut cursor) {
        match kind(child) {
            "string_start" => start = child.end_byte(),
            "string_end" => end = child.start_byte(),
            "interpolation" => ranges.push(child.byte_range()),
            _ => {}
        }
    }
    for c in lw.children(mark) {
        holes.push(c.expr);
    }
    let end = end.max(start);
    if ranges.is_empty() {
        return Expr::Str(src.get(start..end).unwrap_or("").into());
    }
    let mut text = String::new();
    let mut at = start;
    for r in ranges {
        text.push_str(src.get(at..r.start).unwrap_or(""));
        text.push_str("${}");
        at = r.end;
    }
    text.push_str(src.get(at..end).unwrap_or(""));
    Expr::Template {
        tag: None,
        text: text.into(),
        holes,
    }
}
