//! Tree-sitter front-ends. The walk is shared; each language module supplies
//! only what differs (which node kinds are functions, contexts and expressions).
//!
//! The walk is iterative (explicit stack of enter/exit frames) so that deeply
//! nested or minified input cannot overflow the call stack. Each nested
//! function is queued and lowered as a unit of its own.

pub mod js;
pub mod python;

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::OnceLock;

use tree_sitter::{Node, Parser, Tree};

use crate::model::{
    Ctx, CtxId, CtxKind, Expr, ExprId, FileModel, FuncId, Function, FunctionKind, Language, Param,
    Span, Stmt, StmtKind,
};

/// One parser per language, reused for every file a thread handles.
#[derive(Default)]
pub struct Parsers {
    js: Option<Parser>,
    ts: Option<Parser>,
    tsx: Option<Parser>,
    py: Option<Parser>,
}

impl Parsers {
    pub fn parser(&mut self, language: Language) -> &mut Parser {
        let (slot, grammar): (_, tree_sitter::Language) = match language {
            Language::JavaScript => (&mut self.js, tree_sitter_javascript::LANGUAGE.into()),
            Language::TypeScript => (
                &mut self.ts,
                tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            ),
            Language::Tsx => (&mut self.tsx, tree_sitter_typescript::LANGUAGE_TSX.into()),
            Language::Python => (&mut self.py, tree_sitter_python::LANGUAGE.into()),
        };
        slot.get_or_insert_with(|| {
            let mut parser = Parser::new();
            parser
                .set_language(&grammar)
                .expect("bundled grammar matches the tree-sitter ABI");
            parser
        })
    }
}

/// Node kind and field names by id, per grammar. `Node::kind` converts a C
/// string on every call (strlen + UTF-8 check); the walk asks many times per node.
struct Names {
    kinds: Vec<&'static str>,
    /// Whether a kind is named (what `Node::is_named` answers, without
    /// resolving the node's alias a second time).
    named: Vec<bool>,
    fields: Vec<Option<&'static str>>,
    field_ids: rustc_hash::FxHashMap<&'static str, u16>,
}

fn names(language: Language) -> &'static Names {
    static TABLES: [OnceLock<Names>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let (slot, grammar): (usize, tree_sitter::Language) = match language {
        Language::JavaScript => (0, tree_sitter_javascript::LANGUAGE.into()),
        Language::TypeScript => (1, tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into()),
        Language::Tsx => (2, tree_sitter_typescript::LANGUAGE_TSX.into()),
        Language::Python => (3, tree_sitter_python::LANGUAGE.into()),
    };
    TABLES[slot].get_or_init(|| Names {
        kinds: (0..grammar.node_kind_count())
            .map(|id| grammar.node_kind_for_id(id as u16).unwrap_or(""))
            .collect(),
        named: (0..grammar.node_kind_count())
            .map(|id| grammar.node_kind_is_named(id as u16))
            .collect(),
        fields: (0..=grammar.field_count())
            .map(|id| grammar.field_name_for_id(id as u16))
            .collect(),
        field_ids: (1..=grammar.field_count())
            .filter_map(|id| Some((grammar.field_name_for_id(id as u16)?, id as u16)))
            .collect(),
    })
}

/// `node.child_by_field_name(name)` without the linear search over the
/// grammar's field names that tree-sitter does on every call.
pub(crate) fn field<'t>(node: Node<'t>, name: &str) -> Option<Node<'t>> {
    match CURRENT.with(Cell::get) {
        Some(names) => node.child_by_field_id(*names.field_ids.get(name)?),
        None => node.child_by_field_name(name),
    }
}

thread_local! {
    static CURRENT: Cell<Option<&'static Names>> = const { Cell::new(None) };
}

/// The kind of `node` and whether it is named, from the grammar's tables:
/// one symbol lookup for both. ERROR nodes (outside the tables) ask the node.
fn kind_and_named(node: Node) -> (&'static str, bool) {
    let Some(names) = CURRENT.with(Cell::get) else {
        return (node.kind(), node.is_named());
    };
    let id = node.kind_id() as usize;
    match (names.kinds.get(id), names.named.get(id)) {
        (Some(kind), Some(named)) => {
            debug_assert_eq!(*named, node.is_named(), "{kind}");
            (kind, *named)
        }
        _ => (node.kind(), node.is_named()),
    }
}

/// The kind of `node`, from the table of the grammar being lowered.
pub(crate) fn kind(node: Node) -> &'static str {
    match CURRENT.with(Cell::get) {
        Some(names) => names
            .kinds
            .get(node.kind_id() as usize)
            .copied()
            .unwrap_or(""),
        None => node.kind(),
    }
}

fn field_name(cursor: &tree_sitter::TreeCursor) -> Option<&'static str> {
    let id = cursor.field_id()?;
    match CURRENT.with(Cell::get) {
        Some(names) => names.fields.get(id.get() as usize).copied().flatten(),
        None => cursor.field_name(),
    }
}

/// Lowers a parsed file into the function model.
pub fn lower(tree: &Tree, src: &str, language: Language) -> FileModel {
    CURRENT.with(|c| c.set(Some(names(language))));
    match language.family() {
        crate::model::Family::Js => lower_file(&js::Js, tree, src, language),
        crate::model::Family::Python => lower_file(&python::Python, tree, src, language),
    }
}

/// The lowered value of one child node, as its parent sees it.
#[derive(Clone, Copy)]
pub(crate) struct Child<'t> {
    pub node: Node<'t>,
    pub field: Option<&'static str>,
    pub expr: ExprId,
}

/// Why a node is being visited: set by its parent, read when it is entered
/// (to open a context) and exited (to emit a statement).
#[derive(Clone, Debug, Default)]
pub(crate) enum Role {
    #[default]
    Plain,
    /// A name that is not a value (a member's property, a keyword's name).
    Skip,
    /// The condition of an `if`/`while`/`for`: emitted as a `Test` statement.
    Condition,
    /// The branch of an `if`; `mark` finds the condition among the siblings.
    Then {
        mark: usize,
    },
    Else {
        mark: usize,
    },
    Loop {
        mark: usize,
    },
    Try(u32),
    Catch(u32, Vec<crate::model::Name>),
    Finally(u32),
    WithBody {
        mark: usize,
        is_async: bool,
    },
    Switch,
    /// A declarator inside a declaration statement spanning `stmt`.
    Declarator(Span),
    /// A parameter's default value.
    ParamDefault(usize),
    /// The expression body of an arrow function or lambda.
    ExprBody,
}

pub(crate) enum Exit {
    /// The node's value.
    Expr(ExprId),
    /// No value (statements, blocks).
    Nothing,
    /// Leave the children's values for the parent (argument lists, clauses).
    Transparent,
}

/// What a front-end knows about one function node.
pub(crate) struct FunctionInfo<'t> {
    pub name: Option<String>,
    pub kind: FunctionKind,
    pub is_async: bool,
    pub params: Vec<Node<'t>>,
    pub body: Option<Node<'t>>,
}

pub(crate) trait Frontend {
    /// Subtrees that carry no behaviour (types, comments).
    fn skip(&self, kind: &str) -> bool;
    fn is_function(&self, kind: &str) -> bool;
    /// The class name if `node` declares a class.
    fn class_name(&self, node: Node, node_kind: &str, src: &str) -> Option<crate::model::Name>;
    fn function_info<'t>(&self, node: Node<'t>, src: &str) -> FunctionInfo<'t>;
    /// Names, spans and default-value nodes bound by one parameter node.
    fn param<'t>(
        &self,
        node: Node<'t>,
        src: &str,
    ) -> Vec<(crate::model::Name, Span, Option<Node<'t>>)>;
    /// The role of each child, decided when the parent is entered.
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
    ) -> Role;
    /// A name for an anonymous function value, from the node that binds it.
    fn name_hint(
        &self,
        lw: &Lowerer,
        parent: Node,
        child: Node,
        field: Option<&str>,
    ) -> Option<String>;
    /// `kind` is `kind(node)`, looked up once when the node was entered.
    fn exit<'t>(
        &self,
        lw: &mut Lowerer<'t>,
        node: Node<'t>,
        kind: &'static str,
        role: &Role,
        mark: usize,
    ) -> Exit;
}

struct Pending<'t> {
    node: Node<'t>,
    parent: Option<FuncId>,
    name: String,
    class: Option<crate::model::Name>,
}

/// The state of lowering one function unit.
pub(crate) struct Lowerer<'t> {
    pub src: &'t str,
    pub func: Function,
    pub results: Vec<Child<'t>>,
    ctx_stack: Vec<CtxId>,
    try_counter: u32,
    class_stack: Vec<crate::model::Name>,
    queue: &'t mut VecDeque<Pending<'t>>,
    next_id: &'t mut FuncId,
    self_id: FuncId,
    hints: Vec<(usize, String)>,
    pub syntax_errors: &'t mut Vec<Span>,
    /// One cursor for the whole unit: creating one per node allocates.
    cursor: Option<tree_sitter::TreeCursor<'t>>,
    /// Most trees have no ERROR or MISSING node: then no node is checked.
    tree_has_errors: bool,
    /// Argument-list node id -> the callee's text, to name callbacks
    /// (`app.post callback`) without `Node::parent`, which walks from the root.
    pub callees: Vec<(usize, &'t str)>,
}

pub(crate) fn span_of(node: Node) -> Span {
    Span::new(node.start_byte(), node.end_byte())
}

pub(crate) fn text<'s>(node: Node, src: &'s str) -> &'s str {
    src.get(node.byte_range()).unwrap_or("")
}

impl<'t> Lowerer<'t> {
    pub fn ctx(&self) -> CtxId {
        *self.ctx_stack.last().expect("body context is never popped")
    }

    pub fn push(&mut self, expr: Expr, node: Node) -> ExprId {
        self.func.push_expr(expr, span_of(node))
    }

    pub fn stmt(&mut self, kind: StmtKind, span: Span) {
        let ctx = self.ctx();
        self.func.stmts.push(Stmt { kind, span, ctx });
    }

    pub fn children(&self, mark: usize) -> &[Child<'t>] {
        &self.results[mark..]
    }

    pub fn child(&self, mark: usize, field: &str) -> Option<ExprId> {
        self.results[mark..]
            .iter()
            .find(|c| c.field == Some(field))
            .map(|c| c.expr)
    }

    pub fn child_exprs(&self, mark: usize) -> Vec<ExprId> {
        self.results[mark..].iter().map(|c| c.expr).collect()
    }

    pub fn text(&self, node: Node) -> &'t str {
        text(node, self.src)
    }

    pub fn next_try_id(&mut self) -> u32 {
        self.try_counter += 1;
        self.try_counter
    }

    /// The id handed to the try block whose children are being pushed.
    pub fn current_try_id(&self) -> u32 {
        self.try_counter
    }

    fn open_ctx(&mut self, kind: CtxKind, node: Node, test: Option<ExprId>) {
        let id = self.func.ctxs.len() as CtxId;
        self.func.ctxs.push(Ctx {
            parent: Some(self.ctx()),
            kind,
            span: span_of(node),
            test,
        });
        self.ctx_stack.push(id);
    }

    /// The condition among the siblings lowered since `mark`.
    fn test_since(&self, mark: usize) -> Option<ExprId> {
        self.results
            .get(mark..)?
            .iter()
            .find(|c| matches!(c.field, Some("condition") | Some("value")))
            .map(|c| c.expr)
    }

    fn schedule(&mut self, node: Node<'t>, hint: Option<String>) -> FuncId {
        let id = *self.next_id;
        *self.next_id += 1;
        let prefix = self.class_stack.last().cloned();
        let name = match (&prefix, hint) {
            (Some(class), Some(h)) => format!("{class}.{h}"),
            (None, Some(h)) => h,
            (_, None) => match &*self.func.name {
                "<module>" => "<anonymous>".to_string(),
                outer => format!("{outer}.<anonymous>"),
            },
        };
        self.queue.push_back(Pending {
            node,
            parent: Some(self.self_id),
            name,
            class: prefix,
        });
        id
    }
}

enum Frame<'t> {
    /// A node, its kind, its field in the parent and its role.
    Enter(Node<'t>, &'static str, Option<&'static str>, Role),
    Exit {
        node: Node<'t>,
        kind: &'static str,
        field: Option<&'static str>,
        role: Role,
        mark: usize,
        opened_ctx: bool,
        opened_class: bool,
    },
}

fn lower_file<F: Frontend>(fe: &F, tree: &Tree, src: &str, language: Language) -> FileModel {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut syntax_errors = Vec::new();
    let mut next_id: FuncId = 1;
    queue.push_back(Pending {
        node: tree.root_node(),
        parent: None,
        name: "<module>".to_string(),
        class: None,
    });
    let mut functions = Vec::new();
    let tree_has_errors = tree.root_node().has_error();
    while let Some(pending) = queue.pop_front() {
        let id = functions.len() as FuncId;
        let func = lower_unit(
            fe,
            pending,
            id,
            src,
            &mut queue,
            &mut next_id,
            &mut syntax_errors,
            tree_has_errors,
        );
        functions.push(func);
    }
    let module_vars = module_bindings(&functions[0]);
    syntax_errors.sort();
    FileModel {
        language,
        functions,
        module_vars,
        syntax_errors,
        memo: Default::default(),
    }
}

/// Names assigned at the top level of the module (not inside a function).
fn module_bindings(module: &Function) -> Vec<crate::model::Name> {
    let mut names: Vec<crate::model::Name> = module
        .stmts
        .iter()
        .filter_map(|s| match s.kind {
            StmtKind::Expr(e) => match module.expr(e) {
                Expr::Assign { target, .. } => match module.expr(*target) {
                    Expr::Ident(n) => Some(n.clone()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[allow(clippy::too_many_arguments)]
fn lower_unit<'t, F: Frontend>(
    fe: &F,
    pending: Pending<'t>,
    self_id: FuncId,
    src: &'t str,
    queue: &mut VecDeque<Pending<'t>>,
    next_id: &mut FuncId,
    syntax_errors: &mut Vec<Span>,
    tree_has_errors: bool,
) -> Function {
    let root = pending.node;
    let is_module = pending.parent.is_none();
    let info = if is_module {
        FunctionInfo {
            name: None,
            kind: FunctionKind::Module,
            is_async: false,
            params: Vec::new(),
            body: Some(root),
        }
    } else {
        fe.function_info(root, src)
    };
    let name = info
        .name
        .clone()
        .map_or(pending.name.clone(), |n| match &pending.class {
            Some(class) => format!("{class}.{n}"),
            None => n,
        });
    let mut func = Function::new(&name, info.kind, span_of(root), pending.parent);
    func.is_async = info.is_async;

    // Safety of the lifetimes: `queue` and `next_id` outlive the lowerer, which
    // is dropped at the end of this function.
    let queue: &'t mut VecDeque<Pending<'t>> = unsafe { &mut *(queue as *mut _) };
    let next_id: &'t mut FuncId = unsafe { &mut *(next_id as *mut _) };
    let syntax_errors: &'t mut Vec<Span> = unsafe { &mut *(syntax_errors as *mut _) };
    let mut lw = Lowerer {
        src,
        func,
        results: Vec::new(),
        ctx_stack: vec![0],
        try_counter: 0,
        class_stack: pending.class.into_iter().collect(),
        queue,
        next_id,
        self_id,
        hints: Vec::new(),
        syntax_errors,
        cursor: None,
        tree_has_errors,
        callees: Vec::new(),
    };

    let mut stack: Vec<Frame<'t>> = Vec::new();
    if let Some(body) = info.body {
        let role = if is_module || is_block(kind(body)) {
            Role::Plain
        } else {
            Role::ExprBody
        };
        if is_module {
            // The module root is walked through its children so that the root
            // node itself is not mistaken for a nested unit.
            push_children(fe, &mut lw, &mut stack, body, kind(body), 0);
        } else {
            stack.push(Frame::Enter(body, kind(body), None, role));
        }
    }
    let mut defaults = Vec::new();
    for param in &info.params {
        for (name, span, default) in fe.param(*param, src) {
            let index = lw.func.params.len();
            lw.func.params.push(Param {
                name,
                span,
                default: None,
            });
            if let Some(d) = default {
                defaults.push((d, index));
            }
        }
    }
    for (node, index) in defaults.into_iter().rev() {
        stack.push(Frame::Enter(
            node,
            kind(node),
            None,
            Role::ParamDefault(index),
        ));
    }

    while let Some(frame) = stack.pop() {
        match frame {
            Frame::Enter(node, kind, field, role) => {
                if lw.tree_has_errors && (node.is_error() || node.is_missing()) {
                    lw.syntax_errors.push(span_of(node));
                }
                if fe.skip(kind) || matches!(role, Role::Skip) {
                    continue;
                }
                if fe.is_function(kind) {
                    let hint = lw
                        .hints
                        .iter()
                        .rposition(|(id, _)| *id == node.id())
                        .map(|i| lw.hints.swap_remove(i).1);
                    let id = lw.schedule(node, hint);
                    let expr = lw.push(Expr::Function(id), node);
                    lw.results.push(Child { node, field, expr });
                    continue;
                }
                let opened_ctx = open_role_ctx(&mut lw, &role, node);
                let opened_class = match fe.class_name(node, kind, src) {
                    Some(name) => {
                        lw.class_stack.push(name);
                        true
                    }
                    None => false,
                };
                let mark = lw.results.len();
                stack.push(Frame::Exit {
                    node,
                    kind,
                    field,
                    role,
                    mark,
                    opened_ctx,
                    opened_class,
                });
                push_children(fe, &mut lw, &mut stack, node, kind, mark);
            }
            Frame::Exit {
                node,
                kind,
                field,
                role,
                mark,
                opened_ctx,
                opened_class,
            } => {
                if opened_class {
                    lw.class_stack.pop();
                }
                // A branch body that is a single statement (`if (!ok) return;`,
                // `while (x) step();`) emits that statement in its exit: it
                // belongs inside the branch, so the context closes after it.
                let exit = fe.exit(&mut lw, node, kind, &role, mark);
                if opened_ctx {
                    lw.ctx_stack.pop();
                }
                match exit {
                    Exit::Expr(expr) => {
                        lw.results.truncate(mark);
                        lw.results.push(Child { node, field, expr });
                        match role {
                            Role::Condition => lw.stmt(StmtKind::Test(expr), span_of(node)),
                            Role::ParamDefault(i) => lw.func.params[i].default = Some(expr),
                            Role::ExprBody => lw.stmt(StmtKind::Return(Some(expr)), span_of(node)),
                            _ => {}
                        }
                    }
                    Exit::Nothing => lw.results.truncate(mark),
                    Exit::Transparent => {}
                }
            }
        }
    }
    lw.func
}

fn is_block(kind: &str) -> bool {
    matches!(kind, "statement_block" | "block")
}

fn open_role_ctx(lw: &mut Lowerer, role: &Role, node: Node) -> bool {
    let (kind, test) = match role {
        Role::Then { mark } => (CtxKind::Then, lw.test_since(*mark)),
        Role::Else { mark } => (CtxKind::Else, lw.test_since(*mark)),
        Role::Loop { mark } => (CtxKind::Loop, lw.test_since(*mark)),
        Role::Try(id) => (CtxKind::Try { try_id: *id }, None),
        Role::Catch(id, types) => (
            CtxKind::Catch {
                try_id: *id,
                types: types.clone(),
            },
            None,
        ),
        Role::Finally(id) => (CtxKind::Finally { try_id: *id }, None),
        Role::WithBody { mark, is_async } => {
            let items = lw.child_exprs(*mark);
            if *is_async {
                lw.stmt(StmtKind::AwaitPoint, span_of(node));
            }
            (
                CtxKind::With {
                    items,
                    is_async: *is_async,
                },
                None,
            )
        }
        Role::Switch => (CtxKind::Switch, None),
        _ => return false,
    };
    lw.open_ctx(kind, node, test);
    true
}

fn push_children<'t, F: Frontend>(
    fe: &F,
    lw: &mut Lowerer<'t>,
    stack: &mut Vec<Frame<'t>>,
    node: Node<'t>,
    node_kind: &'static str,
    mark: usize,
) {
    let first = stack.len();
    let mut cursor = match lw.cursor.take() {
        Some(mut c) => {
            c.reset(node);
            c
        }
        None => node.walk(),
    };
    if cursor.goto_first_child() {
        loop {
            let child = cursor.node();
            let (child_kind, named) = kind_and_named(child);
            // A subtree the front-end skips (comments, types, imports, string
            // parts) is not pushed at all; in a tree with errors it is still
            // entered, to report a MISSING node among its parts.
            let skipped = !lw.tree_has_errors && fe.skip(child_kind);
            if !skipped && (named || (lw.tree_has_errors && child.is_missing())) {
                let field = field_name(&cursor);
                if fe.is_function(child_kind) {
                    if let Some(hint) = fe.name_hint(lw, node, child, field) {
                        lw.hints.push((child.id(), hint));
                    }
                }
                let role = fe.child_role(lw, node, node_kind, child, child_kind, field, mark);
                stack.push(Frame::Enter(child, child_kind, field, role));
            }
            if !cursor.goto_next_sibling() {
                break;
            }
        }
    }
    lw.cursor = Some(cursor);
    stack[first..].reverse();
}
