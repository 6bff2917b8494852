//! The language-neutral function model that every rule reads.
//!
//! Each front-end in `lang/` lowers one source file into a [`FileModel`]: one
//! [`Function`] per function, method, arrow function or lambda (nested ones are
//! their own unit, plus a `<module>` unit for top-level code). A function holds
//! an arena of [`Expr`]s, its statements in source order, and a tree of
//! structural contexts (try / catch / finally / with / loop / branch) so rules
//! can ask "is this release inside a `finally`?" without touching tree-sitter.

use std::ops::Range;

/// A byte range into the file's source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
    pub fn contains(self, other: Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

pub type ExprId = u32;
pub type CtxId = u32;
pub type FuncId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    JavaScript,
    TypeScript,
    Tsx,
    Python,
}

impl Language {
    pub fn from_path(path: &std::path::Path) -> Option<Language> {
        let name = path.file_name()?.to_str()?;
        if name.ends_with(".d.ts") || name.ends_with(".min.js") {
            return None;
        }
        match path.extension()?.to_str()? {
            "js" | "mjs" | "cjs" | "jsx" => Some(Language::JavaScript),
            "ts" | "mts" | "cts" => Some(Language::TypeScript),
            "tsx" => Some(Language::Tsx),
            "py" => Some(Language::Python),
            _ => None,
        }
    }

    pub fn family(self) -> Family {
        match self {
            Language::Python => Family::Python,
            _ => Family::Js,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::JavaScript => "javascript",
            Language::TypeScript | Language::Tsx => "typescript",
            Language::Python => "python",
        }
    }
}

/// Rewrites are rendered per family: JS, JSX, TS and TSX share one syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Js,
    Python,
}

/// An identifier, property, operator or literal text in the model. Most are
/// short: stored inline, without a heap allocation per node.
pub type Name = compact_str::CompactString;

#[derive(Clone, Debug)]
pub enum Expr {
    Ident(Name),
    /// `this` in JS, `self` / `cls` in Python.
    This,
    Member {
        object: ExprId,
        property: Name,
    },
    Index {
        object: ExprId,
        index: ExprId,
    },
    Call {
        callee: ExprId,
        args: Vec<Arg>,
    },
    New {
        callee: ExprId,
        args: Vec<Arg>,
    },
    Str(Name),
    /// Template literal or f-string; `tag` for tagged templates (`sql\`...\``).
    /// `text` is the literal text with each hole replaced by `${}`.
    Template {
        tag: Option<ExprId>,
        text: Name,
        holes: Vec<ExprId>,
    },
    Num(Name),
    Bool(bool),
    Null,
    Object(Vec<Prop>),
    Array(Vec<ExprId>),
    /// Arithmetic, comparison and logical operators (`??`, `||`, `and`, `or`).
    Binary {
        op: Name,
        left: ExprId,
        right: ExprId,
    },
    Unary {
        op: Name,
        arg: ExprId,
    },
    Await(ExprId),
    /// Assignment or declaration; `op` is `=` or a compound operator.
    Assign {
        target: ExprId,
        op: Name,
        value: ExprId,
        decl: bool,
    },
    Cond {
        test: ExprId,
        then: ExprId,
        otherwise: ExprId,
    },
    /// A nested function definition: its body is a unit of its own.
    Function(FuncId),
    /// Anything else; the children keep data flowing through it.
    Other(Vec<ExprId>),
}

#[derive(Clone, Debug)]
pub struct Arg {
    /// Python keyword argument name.
    pub name: Option<Name>,
    pub value: ExprId,
    pub spread: bool,
}

#[derive(Clone, Debug)]
pub struct Prop {
    pub key: PropKey,
    pub key_span: Span,
    pub value: ExprId,
}

#[derive(Clone, Debug)]
pub enum PropKey {
    Name(Name),
    Computed(ExprId),
    Spread,
}

#[derive(Clone, Debug)]
pub enum StmtKind {
    Expr(ExprId),
    Return(Option<ExprId>),
    Throw(Option<ExprId>),
    /// The condition of an `if`, `while`, `elif` or `switch`.
    Test(ExprId),
    /// A yield point without an `await` expression: `for await`, `async for`,
    /// `async with`.
    AwaitPoint,
}

#[derive(Clone, Debug)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
    pub ctx: CtxId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtxKind {
    Body,
    Then,
    Else,
    Loop,
    Try {
        try_id: u32,
    },
    /// `catch (e)` / `except A, B as e`; `types` lists the exception names the
    /// clause names (empty: catches everything).
    Catch {
        try_id: u32,
        types: Vec<Name>,
    },
    Finally {
        try_id: u32,
    },
    /// `with` / `async with` body; `items` are the context manager expressions.
    With {
        items: Vec<ExprId>,
        is_async: bool,
    },
    Switch,
}

#[derive(Clone, Debug)]
pub struct Ctx {
    pub parent: Option<CtxId>,
    pub kind: CtxKind,
    pub span: Span,
    /// For `Then`/`Else`/`Loop`: the statement holding the condition, if any.
    pub test: Option<ExprId>,
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: Name,
    pub span: Span,
    pub default: Option<ExprId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    Module,
    Function,
    Method,
    Arrow,
    Lambda,
}

#[derive(Clone, Debug)]
pub struct Function {
    pub name: Name,
    pub kind: FunctionKind,
    pub is_async: bool,
    pub span: Span,
    pub parent: Option<FuncId>,
    pub params: Vec<Param>,
    pub exprs: Vec<Expr>,
    pub expr_spans: Vec<Span>,
    pub stmts: Vec<Stmt>,
    pub ctxs: Vec<Ctx>,
}

impl Function {
    pub fn new(name: &str, kind: FunctionKind, span: Span, parent: Option<FuncId>) -> Self {
        Function {
            name: name.into(),
            kind,
            is_async: false,
            span,
            parent,
            params: Vec::new(),
            exprs: Vec::new(),
            expr_spans: Vec::new(),
            stmts: Vec::new(),
            ctxs: vec![Ctx {
                parent: None,
                kind: CtxKind::Body,
                span,
                test: None,
            }],
        }
    }

    pub fn expr(&self, id: ExprId) -> &Expr {
        &self.exprs[id as usize]
    }

    pub fn span(&self, id: ExprId) -> Span {
        self.expr_spans[id as usize]
    }

    pub fn push_expr(&mut self, expr: Expr, span: Span) -> ExprId {
        self.exprs.push(expr);
        self.expr_spans.push(span);
        (self.exprs.len() - 1) as ExprId
    }

    /// The contexts enclosing `ctx`, innermost first (including `ctx`).
    pub fn ctx_chain(&self, ctx: CtxId) -> impl Iterator<Item = (CtxId, &Ctx)> {
        let mut next = Some(ctx);
        std::iter::from_fn(move || {
            let id = next?;
            let c = &self.ctxs[id as usize];
            next = c.parent;
            Some((id, c))
        })
    }

    pub fn in_ctx(&self, ctx: CtxId, ancestor: CtxId) -> bool {
        self.ctx_chain(ctx).any(|(id, _)| id == ancestor)
    }

    /// The innermost loop around `ctx`, if any.
    pub fn enclosing_loop(&self, ctx: CtxId) -> Option<CtxId> {
        self.ctx_chain(ctx)
            .find(|(_, c)| c.kind == CtxKind::Loop)
            .map(|(id, _)| id)
    }

    /// The dotted path of a callee or member chain: `this.stripe.charges.create`
    /// gives `["this", "stripe", "charges", "create"]`; a call in the chain is
    /// written `name()` (`createHash().update`).
    pub fn path(&self, id: ExprId) -> Vec<&str> {
        let mut parts = Vec::new();
        let mut cur = id;
        // Bounded by the chain length; never recursive.
        loop {
            match self.expr(cur) {
                Expr::Ident(n) => {
                    parts.push(&**n);
                    break;
                }
                Expr::This => {
                    parts.push("this");
                    break;
                }
                Expr::Member { object, property } => {
                    parts.push(property);
                    cur = *object;
                }
                Expr::Call { callee, .. } | Expr::New { callee, .. } => {
                    parts.push("()");
                    cur = *callee;
                }
                Expr::Await(inner) => cur = *inner,
                _ => {
                    parts.push("?");
                    break;
                }
            }
        }
        parts.reverse();
        parts
    }

    /// The callee path of a call as a dotted string, `()` marking calls inside
    /// the chain: `crypto.createHash().update`.
    pub fn callee_text(&self, callee: ExprId) -> String {
        let mut out = String::new();
        for part in self.path(callee) {
            if part == "()" {
                out.push_str("()");
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(part);
            }
        }
        out
    }

    /// The last name of a callee: `create` for `stripe.charges.create`.
    pub fn callee_name(&self, callee: ExprId) -> Option<&str> {
        match self.expr(callee) {
            Expr::Ident(n) => Some(n),
            Expr::Member { property, .. } => Some(property),
            _ => None,
        }
    }

    /// Direct children of an expression, in source order.
    pub fn children(&self, id: ExprId, out: &mut Vec<ExprId>) {
        match self.expr(id) {
            Expr::Ident(_)
            | Expr::This
            | Expr::Str(_)
            | Expr::Num(_)
            | Expr::Bool(_)
            | Expr::Null
            | Expr::Function(_) => {}
            Expr::Member { object, .. } => out.push(*object),
            Expr::Index { object, index } => out.extend([*object, *index]),
            Expr::Call { callee, args } | Expr::New { callee, args } => {
                out.push(*callee);
                out.extend(args.iter().map(|a| a.value));
            }
            Expr::Template { tag, holes, .. } => {
                out.extend(tag.iter().copied());
                out.extend(holes.iter().copied());
            }
            Expr::Object(props) => {
                for p in props {
                    if let PropKey::Computed(k) = p.key {
                        out.push(k);
                    }
                    out.push(p.value);
                }
            }
            Expr::Array(items) | Expr::Other(items) => out.extend(items.iter().copied()),
            Expr::Binary { left, right, .. } => out.extend([*left, *right]),
            Expr::Unary { arg, .. } => out.push(*arg),
            Expr::Await(inner) => out.push(*inner),
            Expr::Assign { target, value, .. } => out.extend([*target, *value]),
            Expr::Cond {
                test,
                then,
                otherwise,
            } => out.extend([*test, *then, *otherwise]),
        }
    }

    /// Every expression reachable from `root` (pre-order, root first), using an
    /// explicit stack so deep expressions cannot overflow. The front-ends keep
    /// the arena a tree (no expression is the child of two parents), so this
    /// is linear in the subtree.
    pub fn descendants(&self, root: ExprId) -> Vec<ExprId> {
        // The rules call this for every statement: reuse the work stacks.
        thread_local! {
            static STACKS: std::cell::RefCell<(Vec<ExprId>, Vec<ExprId>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        STACKS.with(|stacks| {
            let Ok(mut stacks) = stacks.try_borrow_mut() else {
                // Re-entered from inside a walk (never expected): fresh stacks.
                return self.descendants_with(root, &mut Vec::new(), &mut Vec::new());
            };
            let (stack, kids) = &mut *stacks;
            self.descendants_with(root, stack, kids)
        })
    }

    fn descendants_with(
        &self,
        root: ExprId,
        stack: &mut Vec<ExprId>,
        kids: &mut Vec<ExprId>,
    ) -> Vec<ExprId> {
        let mut out = Vec::new();
        stack.clear();
        stack.push(root);
        while let Some(id) = stack.pop() {
            out.push(id);
            kids.clear();
            self.children(id, kids);
            stack.extend(kids.iter().rev());
        }
        out
    }

    /// The root expression of a statement, if it has one.
    pub fn stmt_expr(&self, stmt: &Stmt) -> Option<ExprId> {
        match stmt.kind {
            StmtKind::Expr(e) | StmtKind::Test(e) => Some(e),
            StmtKind::Return(e) | StmtKind::Throw(e) => e,
            StmtKind::AwaitPoint => None,
        }
    }

    /// A string literal's value, or the literal text of a template without holes.
    pub fn string_value(&self, id: ExprId) -> Option<&str> {
        match self.expr(id) {
            Expr::Str(s) => Some(s),
            Expr::Template {
                tag: None,
                text,
                holes,
            } if holes.is_empty() => Some(text),
            _ => None,
        }
    }

    /// The parent of every expression (`None` for roots).
    pub fn parents(&self) -> Vec<Option<ExprId>> {
        let mut parents = vec![None; self.exprs.len()];
        let mut kids = Vec::new();
        for id in 0..self.exprs.len() as ExprId {
            kids.clear();
            self.children(id, &mut kids);
            for k in &kids {
                if *k != id {
                    parents[*k as usize] = Some(id);
                }
            }
        }
        parents
    }

    /// Skips `await` wrappers.
    pub fn unwrap_await(&self, mut id: ExprId) -> ExprId {
        while let Expr::Await(inner) = self.expr(id) {
            id = *inner;
        }
        id
    }
}

/// Everything the front-end learned about one file.
#[derive(Debug)]
pub struct FileModel {
    pub language: Language,
    pub functions: Vec<Function>,
    /// Names bound at module level (shared state between requests).
    pub module_vars: Vec<Name>,
    /// Byte ranges tree-sitter could not parse.
    pub syntax_errors: Vec<Span>,
    /// Facts about the whole file that analyses compute once, not once per
    /// function (which is quadratic on a file with many functions).
    pub memo: Memo,
}

impl FileModel {
    /// `f`'s index in `functions`, from its address: a search per function
    /// would make whole-file analyses quadratic.
    pub fn func_id(&self, f: &Function) -> Option<FuncId> {
        let base = self.functions.as_ptr() as usize;
        let offset = (f as *const Function as usize).checked_sub(base)?;
        let index = offset / std::mem::size_of::<Function>();
        self.functions
            .get(index)
            .filter(|g| std::ptr::eq(*g, f))
            .map(|_| index as FuncId)
    }
}

/// A per-file cache of analysis results, one slot per type and key. A file is
/// lowered and analysed on one thread, so a `RefCell` suffices.
#[derive(Default)]
pub struct Memo {
    slots: std::cell::RefCell<Vec<MemoSlot>>,
}

type MemoSlot = (std::any::TypeId, u32, std::rc::Rc<dyn std::any::Any>);

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Memo({} slots)", self.slots.borrow().len())
    }
}

impl Memo {
    /// The value cached for `(T, key)`, computing it with `init` the first
    /// time. `init` may itself use the memo.
    pub fn get<T: 'static>(&self, key: u32, init: impl FnOnce() -> T) -> std::rc::Rc<T> {
        let id = std::any::TypeId::of::<T>();
        let hit = self
            .slots
            .borrow()
            .iter()
            .find(|(t, k, _)| *t == id && *k == key)
            .map(|(_, _, v)| v.clone());
        if let Some(v) = hit {
            return v.downcast::<T>().expect("slot holds its own type");
        }
        let value = std::rc::Rc::new(init());
        self.slots.borrow_mut().push((id, key, value.clone()));
        value
    }
}
