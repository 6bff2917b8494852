//! JavaScript, JSX, TypeScript and TSX: one front-end, the grammars share
//! their node kinds for everything the model needs.

use tree_sitter::Node;

use super::{field, kind, span_of, text, Exit, Frontend, FunctionInfo, Lowerer, Role};
use crate::model::{Arg, Expr, FunctionKind, Prop, PropKey, Span, StmtKind};

pub(crate) struct Js;

const FUNCTION_KINDS: &[&str] = &[
    "function_declaration",
    "function_expression",
    "function",
    "generator_function_declaration",
    "generator_function",
    "arrow_function",
    "method_definition",
];

impl Frontend for Js {
    fn skip(&self, kind: &str) -> bool {
        matches!(
            kind,
            "comment"
                | "html_comment"
                | "type_annotation"
                | "type_arguments"
                | "type_parameters"
                | "interface_declaration"
                | "type_alias_declaration"
                | "enum_declaration"
                | "ambient_declaration"
                | "abstract_method_signature"
                | "method_signature"
                | "index_signature"
                | "function_signature"
                | "import_statement"
                | "decorator"
                | "regex"
                | "hash_bang_line"
                | "accessibility_modifier"
                | "asserts_annotation"
                | "predicate_type"
                | "omitting_type_annotation"
                | "opting_type_annotation"
        )
    }

    fn is_function(&self, kind: &str) -> bool {
        FUNCTION_KINDS.contains(&kind)
    }

    fn class_name(&self, node: Node, node_kind: &str, src: &str) -> Option<crate::model::Name> {
        match node_kind {
            "class_declaration" | "class" | "abstract_class_declaration" => Some(
                field(node, "name")
                    .map_or("<class>", |n| text(n, src))
                    .into(),
            ),
            _ => None,
        }
    }

    fn function_info<'t>(&self, node: Node<'t>, src: &str) -> FunctionInfo<'t> {
        let unit = match kind(node) {
            "arrow_function" => FunctionKind::Arrow,
            "method_definition" => FunctionKind::Method,
            _ => FunctionKind::Function,
        };
        let mut is_async = false;
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            if kind(child) == "async" {
                is_async = true;
            }
        }
        let mut params = Vec::new();
        if let Some(list) = field(node, "parameters") {
            let mut cursor = list.walk();
            params.extend(list.named_children(&mut cursor));
        } else if let Some(single) = field(node, "parameter") {
            params.push(single);
        }
        FunctionInfo {
            name: super::field(node, "name").map(|n| text(n, src).to_string()),
            kind: unit,
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
        // required_parameter / optional_parameter (TS) wrap the pattern.
        let (pattern, mut default) = match kind(node) {
            "required_parameter" | "optional_parameter" => {
                (field(node, "pattern").unwrap_or(node), field(node, "value"))
            }
            _ => (node, None),
        };
        let pattern = if kind(pattern) == "assignment_pattern" {
            default = field(pattern, "right");
            field(pattern, "left").unwrap_or(pattern)
        } else {
            pattern
        };
        let span = span_of(node);
        match kind(pattern) {
            "identifier" => vec![(text(pattern, src).into(), span, default)],
            "rest_pattern" => pattern
                .named_child(0)
                .map(|n| vec![(text(n, src).into(), span, None)])
                .unwrap_or_default(),
            "this" | "comment" => Vec::new(),
            // Destructured parameters bind each property name.
            _ => {
                let mut names = Vec::new();
                let mut stack = vec![pattern];
                while let Some(n) = stack.pop() {
                    match kind(n) {
                        "shorthand_property_identifier_pattern" | "identifier" => {
                            names.push((text(n, src).into(), span_of(n), None))
                        }
                        _ => {
                            let mut cursor = n.walk();
                            for c in n.named_children(&mut cursor) {
                                if kind(c) != "property_identifier" {
                                    stack.push(c);
                                }
                            }
                        }
                    }
                }
                names
            }
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
        if field == Some("arguments") && matches!(parent_kind, "call_expression" | "new_expression")
        {
            let callee =
                super::field(parent, "function").or_else(|| super::field(parent, "constructor"));
            if let Some(callee) = callee {
                lw.callees.push((child.id(), text(callee, lw.src)));
            }
        }
        match (parent_kind, field) {
            ("if_statement" | "while_statement" | "do_statement", Some("condition")) => {
                Role::Condition
            }
            ("switch_statement", Some("value")) => Role::Condition,
            ("for_in_statement", Some("right")) => Role::Condition,
            ("if_statement", Some("consequence")) => Role::Then { mark },
            ("if_statement", Some("alternative")) => Role::Else { mark },
            (
                "while_statement" | "do_statement" | "for_statement" | "for_in_statement",
                Some("body"),
            ) => Role::Loop { mark },
            ("try_statement", Some("body")) => Role::Try(lw.next_try_id()),
            // Roles of a try's children are decided together, body first.
            ("try_statement", Some("handler")) => Role::Catch(lw.current_try_id(), Vec::new()),
            ("try_statement", Some("finalizer")) => Role::Finally(lw.current_try_id()),
            ("switch_statement", Some("body")) => Role::Switch,
            ("member_expression", Some("property")) => Role::Skip,
            ("pair", Some("key")) if child_kind != "computed_property_name" => Role::Skip,
            ("lexical_declaration" | "variable_declaration", _)
                if child_kind == "variable_declarator" =>
            {
                Role::Declarator(span_of(parent))
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
        let name_of = |f: &str| super::field(parent, f).map(|n| text(n, src).to_string());
        match (kind(parent), field) {
            ("variable_declarator", Some("value")) => name_of("name"),
            ("pair", Some("value")) => name_of("key").map(|k| k.trim_matches(['"', '\'']).into()),
            ("assignment_expression", Some("right")) => name_of("left"),
            ("public_field_definition" | "field_definition", Some("value")) => {
                name_of("name").or_else(|| name_of("property"))
            }
            ("arguments", _) => {
                let callee = lw
                    .callees
                    .iter()
                    .rev()
                    .find(|(id, _)| *id == parent.id())?
                    .1;
                (callee.len() <= 60 && !callee.contains('\n')).then(|| format!("{callee} callback"))
            }
            _ => None,
        }
    }

    fn exit<'t>(
        &self,
        lw: &mut Lowerer<'t>,
        node: Node<'t>,
        node_kind: &'static str,
        role: &Role,
        mark: usize,
    ) -> Exit {
        let expr = match node_kind {
            "identifier"
            | "property_identifier"
            | "shorthand_property_identifier"
            | "shorthand_property_identifier_pattern"
            | "private_property_identifier"
            | "super"
            | "undefined" => {
                if node_kind == "undefined" {
                    Expr::Null
                } else {
                    Expr::Ident(lw.text(node).into())
                }
            }
            "this" => Expr::This,
            "member_expression" => {
                let Some(object) = lw.child(mark, "object") else {
                    return Exit::Nothing;
                };
                let property = super::field(node, "property").map_or("", |p| lw.text(p));
                Expr::Member {
                    object,
                    property: property.into(),
                }
            }
            "subscript_expression" => match (lw.child(mark, "object"), lw.child(mark, "index")) {
                (Some(object), Some(index)) => Expr::Index { object, index },
                _ => return other(lw, node, mark),
            },
            "call_expression" => {
                let Some(callee) = lw.child(mark, "function") else {
                    return other(lw, node, mark);
                };
                // A tagged template: sql`...`.
                if let Some(Expr::Template { .. }) =
                    lw.child(mark, "arguments").map(|t| lw.func.expr(t).clone())
                {
                    let t = lw.child(mark, "arguments").expect("checked above");
                    if let Expr::Template { tag, .. } = &mut lw.func.exprs[t as usize] {
                        *tag = Some(callee);
                    }
                    lw.func.expr_spans[t as usize] = span_of(node);
                    return Exit::Expr(t);
                }
                Expr::Call {
                    callee,
                    args: args_after(lw, mark, "function"),
                }
            }
            "new_expression" => {
                let Some(callee) = lw.child(mark, "constructor") else {
                    return other(lw, node, mark);
                };
                Expr::New {
                    callee,
                    args: args_after(lw, mark, "constructor"),
                }
            }
            "arguments" | "template_substitution" | "else_clause" | "statement_block" => {
                return match node_kind {
                    "arguments" | "template_substitution" => Exit::Transparent,
                    _ => Exit::Nothing,
                }
            }
            "parenthesized_expression"
            | "as_expression"
            | "satisfies_expression"
            | "non_null_expression"
            | "type_assertion"
            | "computed_property_name" => {
                return match lw.children(mark).first() {
                    Some(c) => Exit::Expr(c.expr),
                    None => Exit::Nothing,
                }
            }
            "string" => {
                let t = lw.text(node);
                Expr::Str(t.get(1..t.len().saturating_sub(1)).unwrap_or("").into())
            }
            "template_string" => template(lw, node, mark),
            "number" => Expr::Num(lw.text(node).into()),
            "true" => Expr::Bool(true),
            "false" => Expr::Bool(false),
            "null" => Expr::Null,
            "pair" => {
                let (Some(key), Some(value)) = (field(node, "key"), lw.child(mark, "value")) else {
                    return Exit::Nothing;
                };
                let prop_key = match kind(key) {
                    "computed_property_name" => match lw.child(mark, "key") {
                        Some(k) => match lw.func.string_value(k) {
                            Some(s) => PropKey::Name(s.into()),
                            None => PropKey::Computed(k),
                        },
                        None => PropKey::Spread,
                    },
                    "string" => {
                        let t = lw.text(key);
                        PropKey::Name(t.get(1..t.len().saturating_sub(1)).unwrap_or("").into())
                    }
                    _ => PropKey::Name(lw.text(key).into()),
                };
                Expr::Object(vec![Prop {
                    key: prop_key,
                    key_span: span_of(key),
                    value,
                }])
            }
            "object" => {
                let mut props = Vec::new();
                for c in lw.children(mark).to_vec() {
                    match lw.func.expr(c.expr).clone() {
                        Expr::Object(p) if kind(c.node) == "pair" => {
                            // The pair's one-property object is folded into
                            // this one: empty it so each value has one parent.
                            lw.func.exprs[c.expr as usize] = Expr::Other(Vec::new());
                            props.extend(p)
                        }
                        Expr::Ident(name) => props.push(Prop {
                            key: PropKey::Name(name),
                            key_span: span_of(c.node),
                            value: c.expr,
                        }),
                        Expr::Unary { op, arg } if &*op == "..." => {
                            lw.func.exprs[c.expr as usize] = Expr::Other(Vec::new());
                            props.push(Prop {
                                key: PropKey::Spread,
                                key_span: span_of(c.node),
                                value: arg,
                            })
                        }
                        _ => {
                            let name = super::field(c.node, "name").map_or("", |n| lw.text(n));
                            props.push(Prop {
                                key: PropKey::Name(name.into()),
                                key_span: span_of(c.node),
                                value: c.expr,
                            })
                        }
                    }
                }
                Expr::Object(props)
            }
            "array" => Expr::Array(lw.child_exprs(mark)),
            "spread_element" => match lw.children(mark).first() {
                Some(c) => Expr::Unary {
                    op: "...".into(),
                    arg: c.expr,
                },
                None => return Exit::Nothing,
            },
            "binary_expression" => match (lw.child(mark, "left"), lw.child(mark, "right")) {
                (Some(left), Some(right)) => Expr::Binary {
                    op: operator(lw, node),
                    left,
                    right,
                },
                _ => return other(lw, node, mark),
            },
            "unary_expression" => match lw.child(mark, "argument") {
                Some(arg) => Expr::Unary {
                    op: operator(lw, node),
                    arg,
                },
                None => return other(lw, node, mark),
            },
            // `i++` / `i--`: the value is a literal of its own, so the model
            // stays a tree (sharing the target made `i------` exponential).
            "update_expression" => match lw.child(mark, "argument") {
                Some(target) => {
                    let value = lw.push(Expr::Num("1".into()), node);
                    Expr::Assign {
                        target,
                        op: "++".into(),
                        value,
                        decl: false,
                    }
                }
                None => return other(lw, node, mark),
            },
            "await_expression" | "yield_expression" => match lw.children(mark).first() {
                Some(c) if node_kind == "await_expression" || lw.func.is_async => {
                    Expr::Await(c.expr)
                }
                Some(c) => Expr::Other(vec![c.expr]),
                None => Expr::Other(Vec::new()),
            },
            "assignment_expression" | "augmented_assignment_expression" => {
                match (lw.child(mark, "left"), lw.child(mark, "right")) {
                    (Some(target), Some(value)) => Expr::Assign {
                        target,
                        op: if node_kind == "assignment_expression" {
                            "=".into()
                        } else {
                            operator(lw, node)
                        },
                        value,
                        decl: false,
                    },
                    _ => return other(lw, node, mark),
                }
            }
            "ternary_expression" => match (
                lw.child(mark, "condition"),
                lw.child(mark, "consequence"),
                lw.child(mark, "alternative"),
            ) {
                (Some(test), Some(then), Some(otherwise)) => Expr::Cond {
                    test,
                    then,
                    otherwise,
                },
                _ => return other(lw, node, mark),
            },
            "variable_declarator" => {
                let Some(target) = lw.child(mark, "name") else {
                    return Exit::Nothing;
                };
                // `let client;` still binds the name (to `undefined`): a
                // module-level `let` is shared state even before it is set.
                let value = match lw.child(mark, "value") {
                    Some(value) => value,
                    None => lw.push(Expr::Null, node),
                };
                let assign = lw.push(
                    Expr::Assign {
                        target,
                        op: "=".into(),
                        value,
                        decl: true,
                    },
                    node,
                );
                let span = match role {
                    Role::Declarator(span) => *span,
                    _ => span_of(node),
                };
                lw.stmt(StmtKind::Expr(assign), span);
                return Exit::Nothing;
            }
            "public_field_definition" | "field_definition" => {
                // A class field initialiser: `processing = new Set()` is
                // `this.processing = new Set()` at construction.
                let name = super::field(node, "name").or_else(|| field(node, "property"));
                if let (Some(name), Some(value)) = (name, lw.child(mark, "value")) {
                    let this = lw.push(Expr::This, name);
                    let target = lw.push(
                        Expr::Member {
                            object: this,
                            property: lw.text(name).into(),
                        },
                        name,
                    );
                    let assign = lw.push(
                        Expr::Assign {
                            target,
                            op: "=".into(),
                            value,
                            decl: true,
                        },
                        node,
                    );
                    lw.stmt(StmtKind::Expr(assign), span_of(node));
                }
                return Exit::Nothing;
            }
            "expression_statement" => {
                for c in lw.children(mark).to_vec() {
                    lw.stmt(StmtKind::Expr(c.expr), span_of(node));
                }
                return Exit::Nothing;
            }
            "return_statement" => {
                let value = lw.children(mark).first().map(|c| c.expr);
                lw.stmt(StmtKind::Return(value), span_of(node));
                return Exit::Nothing;
            }
            "throw_statement" => {
                let value = lw.children(mark).first().map(|c| c.expr);
                lw.stmt(StmtKind::Throw(value), span_of(node));
                return Exit::Nothing;
            }
            "for_in_statement" => {
                if has_token(node, "await") {
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
        || kind.ends_with("_declaration")
        || kind.ends_with("_clause")
        || matches!(
            kind,
            "program"
                | "statement_block"
                | "class_body"
                | "switch_body"
                | "switch_case"
                | "switch_default"
                | "class_heritage"
                | "extends_clause"
                | "implements_clause"
                | "export_clause"
                | "empty_statement"
                | "formal_parameters"
                | "decorator"
                | "jsx_text"
                | "statement_identifier"
                | "type_identifier"
        )
}

fn has_token(node: Node, token: &str) -> bool {
    let mut cursor = node.walk();
    let found = node.children(&mut cursor).any(|c| kind(c) == token);
    found
}

fn operator(lw: &Lowerer, node: Node) -> crate::model::Name {
    field(node, "operator").map_or("", |o| lw.text(o)).into()
}

/// Unknown expression-like nodes keep their children so values flow through.
fn other(lw: &mut Lowerer, node: Node, mark: usize) -> Exit {
    let kids = lw.child_exprs(mark);
    Exit::Expr(lw.push(Expr::Other(kids), node))
}

fn args_after(lw: &Lowerer, mark: usize, callee_field: &str) -> Vec<Arg> {
    lw.children(mark)
        .iter()
        .filter(|c| c.field != Some(callee_field) && c.field != Some("type_arguments"))
        .map(|c| {
            let spread = matches!(lw.func.expr(c.expr), Expr::Unary { op, .. } if &**op == "...");
            Arg {
                name: None,
                value: c.expr,
                spread,
            }
        })
        .collect()
}

fn template(lw: &Lowerer, node: Node, mark: usize) -> Expr {
    let src = lw.src;
    let start = node.start_byte() + 1;
    let end = node.end_byte().saturating_sub(1).max(start);
    let mut text = String::new();
    let mut at = start;
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        if kind(child) == "template_substitution" {
            text.push_str(src.get(at..child.start_byte()).unwrap_or(""));
            text.push_str("${}");
            at = child.end_byte();
        }
    }
    if at < end {
        text.push_str(src.get(at..end).unwrap_or(""));
    }
    Expr::Template {
        tag: None,
        text: text.into(),
        holes: lw.child_exprs(mark),
    }
}
