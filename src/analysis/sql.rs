//! Classifies SQL text found in string literals, template literals, tagged
//! `sql\`...\`` templates and f-strings: which statement it is, which table it
//! touches, whether an INSERT is conflict-safe, whether a SELECT locks rows.
//!
//! Tokens come from `sqlparser`'s tokenizer (comments, quoted identifiers,
//! dollar-quoted strings, case); fragments it rejects (an unterminated quote
//! around a template hole) fall back to a small hand-written tokenizer. The
//! classification then reads the token stream at parenthesis depth 0, so a
//! CTE (`WITH x AS (...) INSERT ...`) or a subquery does not hide the main verb.

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlKind {
    Select,
    Insert,
    Update,
    Delete,
    /// `BEGIN`, `START TRANSACTION`, `SET TRANSACTION ...`.
    Begin,
    Commit,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlInfo {
    pub kind: SqlKind,
    /// The main table: `INSERT INTO t`, the first `FROM t` of a SELECT,
    /// `UPDATE t`; unquoted, without its schema.
    pub table: Option<String>,
    /// `ON CONFLICT`, `INSERT IGNORE`, `INSERT OR IGNORE/REPLACE`,
    /// `ON DUPLICATE KEY UPDATE`, `REPLACE INTO`, `MERGE`.
    pub conflict_safe: bool,
    /// `FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`.
    pub for_update: bool,
    /// `SELECT COUNT(...)` at the top level.
    pub count: bool,
    /// `SERIALIZABLE` isolation requested.
    pub serializable: bool,
    /// Columns compared with `=` in the WHERE clause (`email = $1`).
    pub where_cols: Vec<String>,
    /// The column list of an INSERT.
    pub insert_cols: Vec<String>,
    pub returning: bool,
    /// `$1` placeholders or `ON CONFLICT` (PostgreSQL / SQLite style) versus
    /// `?` with backticks (MySQL style); `None` when nothing tells.
    pub dialect: Option<Dialect>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An unquoted word, upper-cased, or a quoted identifier as written.
    Word {
        text: String,
        quoted: bool,
    },
    Punct(char),
    /// A `$1` / `?` / `%s` / `:name` placeholder or a template hole.
    Placeholder,
    Str,
    Num,
}

impl Tok {
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word { text, quoted: false } if text == kw)
    }
    fn ident(&self) -> Option<&str> {
        match self {
            Tok::Word { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// Statement verbs a SQL text may start with (after comments and `(`).
const VERBS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "START", "COMMIT", "ROLLBACK", "SET",
    "REPLACE", "MERGE", "UPSERT",
];

/// Classifies `text` if it reads as a SQL statement; `None` for anything else
/// (prose, a fragment that does not start with a statement verb).
pub fn classify(text: &str) -> Option<SqlInfo> {
    // A quick filter before tokenizing: SQL text starts with a verb.
    let head = text.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
    let head = skip_comments(head);
    let first: String = head
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    if !VERBS.contains(&first.as_str()) {
        return None;
    }
    let toks = tokenize(text);
    analyse(&toks)
}

fn skip_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.find('\n').map_or("", |i| &rest[i..]);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else {
            return s.trim_start_matches('(');
        }
    }
}

fn tokenize(text: &str) -> Vec<Tok> {
    // Template holes (`${}`) are placeholders; the tokenizer would read `$`
    // as the start of a dollar-quoted string.
    let text = text.replace("${}", " ? ");
    let dialect = GenericDialect {};
    match Tokenizer::new(&dialect, &text).tokenize() {
        Ok(tokens) => convert(tokens),
        Err(_) => fallback_tokenize(&text),
    }
}

fn convert(tokens: Vec<Token>) -> Vec<Tok> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut prev_colon = false;
    for t in tokens {
        let tok = match t {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::Word(w) => {
                if prev_colon {
                    // `:name` bind parameter.
                    out.pop();
                    prev_colon = false;
                    out.push(Tok::Placeholder);
                    continue;
                }
                if w.quote_style.is_some() {
                    Tok::Word {
                        text: w.value,
                        quoted: true,
                    }
                } else {
                    Tok::Word {
                        text: w.value.to_ascii_uppercase(),
                        quoted: false,
                    }
                }
            }
            Token::Placeholder(_) => Tok::Placeholder,
            Token::Number(..) => Tok::Num,
            Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_) => Tok::Str,
            Token::Comma => Tok::Punct(','),
            Token::Eq | Token::DoubleEq => Tok::Punct('='),
            Token::LParen => Tok::Punct('('),
            Token::RParen => Tok::Punct(')'),
            Token::SemiColon => Tok::Punct(';'),
            Token::Period => Tok::Punct('.'),
            Token::Colon => {
                prev_colon = true;
                out.push(Tok::Punct(':'));
                continue;
            }
            Token::Mod => Tok::Placeholder,
            Token::Char(c) => Tok::Punct(c),
            _ => Tok::Punct('~'),
        };
        prev_colon = false;
        out.push(tok);
    }
    out
}

/// For text the real tokenizer rejects: words, quoted identifiers, strings
/// skipped, comments dropped.
fn fallback_tokenize(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push(Tok::Str);
        } else if c == '"' || c == '`' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            out.push(Tok::Word {
                text: chars[start..i.min(chars.len())].iter().collect(),
                quoted: true,
            });
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Word {
                text: chars[start..i]
                    .iter()
                    .collect::<String>()
                    .to_ascii_uppercase(),
                quoted: false,
            });
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if c == '$' || c == '?' || c == '%' || c == ':' {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Placeholder);
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// Reads a possibly schema-qualified table name at `i`: `public.users`,
/// `"Users"`, `` `app`.`users` ``. Returns the last part and the next index.
fn table_at(toks: &[Tok], mut i: usize) -> Option<(String, usize)> {
    let mut name = toks.get(i)?.ident()?.to_string();
    i += 1;
    while toks.get(i) == Some(&Tok::Punct('.')) {
        match toks.get(i + 1).and_then(Tok::ident) {
            Some(part) => {
                name = part.to_string();
                i += 2;
            }
            None => break,
        }
    }
    Some((name, i))
}

fn lower_ident(t: &Tok) -> Option<String> {
    match t {
        Tok::Word {
            text,
            quoted: false,
        } => Some(text.to_ascii_lowercase()),
        Tok::Word { text, quoted: true } => Some(text.clone()),
        _ => None,
    }
}

fn analyse(toks: &[Tok]) -> Option<SqlInfo> {
    // Top-level tokens (depth 0) with their indices.
    let mut depth = 0i32;
    let mut top: Vec<usize> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            _ if depth <= 0 => top.push(i),
            _ => {}
        }
    }
    let kw_top = |kw: &str| top.iter().any(|&i| toks[i].is_kw(kw));
    let kw_any = |kw: &str| toks.iter().any(|t| t.is_kw(kw));
    let seq = |kws: &[&str]| {
        toks.windows(kws.len())
            .any(|w| w.iter().zip(kws).all(|(t, k)| t.is_kw(k)))
    };

    // The main verb: the first top-level statement verb after any CTE.
    let mut kind = SqlKind::Other;
    let mut verb_at = None;
    for &i in &top {
        let k = match &toks[i] {
            Tok::Word {
                text,
                quoted: false,
            } => match text.as_str() {
                "SELECT" => SqlKind::Select,
                "INSERT" | "REPLACE" | "UPSERT" | "MERGE" => SqlKind::Insert,
                "UPDATE" => SqlKind::Update,
                "DELETE" => SqlKind::Delete,
                "BEGIN" | "START" => SqlKind::Begin,
                "SET"
                    if toks
                        .get(i + 1)
                        .is_some_and(|t| t.is_kw("TRANSACTION") || t.is_kw("SESSION")) =>
                {
                    SqlKind::Begin
                }
                "COMMIT" | "ROLLBACK" => SqlKind::Commit,
                _ => continue,
            },
            _ => continue,
        };
        kind = k;
        verb_at = Some(i);
        break;
    }
    let verb_at = verb_at?;
    let verb = toks[verb_at].ident().unwrap_or("").to_string();

    let mut info = SqlInfo {
        kind,
        table: None,
        conflict_safe: false,
        for_update: false,
        count: false,
        serializable: kw_any("SERIALIZABLE"),
        where_cols: Vec::new(),
        insert_cols: Vec::new(),
        returning: kw_top("RETURNING"),
        dialect: None,
    };

    match kind {
        SqlKind::Insert => {
            // INSERT [IGNORE | OR IGNORE | OR REPLACE] INTO t (cols) ...
            let mut i = verb_at + 1;
            let mut modifier_safe = verb != "INSERT";
            while let Some(t) = toks.get(i) {
                if t.is_kw("IGNORE") || t.is_kw("REPLACE") {
                    modifier_safe = true;
                    i += 1;
                } else if t.is_kw("OR")
                    || t.is_kw("LOW_PRIORITY")
                    || t.is_kw("DELAYED")
                    || t.is_kw("HIGH_PRIORITY")
                {
                    i += 1;
                } else {
                    break;
                }
            }
            if !toks.get(i).is_some_and(|t| t.is_kw("INTO")) {
                return None;
            }
            i += 1;
            if let Some((name, next)) = table_at(toks, i) {
                if !matches!(name.as_str(), "SELECT" | "VALUES" | "SET") {
                    info.table = Some(name);
                    if toks.get(next) == Some(&Tok::Punct('(')) {
                        let mut j = next + 1;
                        while let Some(t) = toks.get(j) {
                            match t {
                                Tok::Punct(')') => break,
                                t => {
                                    if let Some(c) = lower_ident(t) {
                                        info.insert_cols.push(c);
                                    }
                                }
                            }
                            j += 1;
                        }
                    }
                }
            }
            info.conflict_safe =
                modifier_safe || seq(&["ON", "CONFLICT"]) || seq(&["ON", "DUPLICATE", "KEY"]);
            if seq(&["ON", "CONFLICT"]) {
                info.dialect = Some(Dialect::Postgres);
            } else if seq(&["ON", "DUPLICATE", "KEY"]) || (modifier_safe && verb == "INSERT") {
                info.dialect = Some(Dialect::MySql);
            }
            info.table.as_ref()?;
        }
        SqlKind::Select => {
            // The first top-level FROM names the table.
            let from = top
                .iter()
                .copied()
                .find(|&i| i > verb_at && toks[i].is_kw("FROM"));
            match from {
                Some(f) => {
                    if let Some((name, _)) = table_at(toks, f + 1) {
                        info.table = Some(name);
                    }
                }
                None => {
                    // `SELECT EXISTS (SELECT 1 FROM t ...)`: the inner FROM.
                    let inner = toks.iter().position(|t| t.is_kw("FROM"));
                    match inner {
                        Some(f) => info.table = table_at(toks, f + 1).map(|(n, _)| n),
                        None => return None,
                    }
                }
            }
            info.count = toks.get(verb_at + 1).is_some_and(|t| t.is_kw("COUNT"))
                || (toks.get(verb_at + 1).is_some_and(|t| t.is_kw("CAST"))
                    && toks.get(verb_at + 3).is_some_and(|t| t.is_kw("COUNT")));
            info.for_update = seq(&["FOR", "UPDATE"])
                || seq(&["FOR", "NO", "KEY", "UPDATE"])
                || seq(&["FOR", "SHARE"])
                || seq(&["FOR", "KEY", "SHARE"])
                || seq(&["LOCK", "IN", "SHARE", "MODE"]);
        }
        SqlKind::Update => {
            info.table = table_at(toks, verb_at + 1).map(|(n, _)| n);
        }
        SqlKind::Delete => {
            let from = toks.iter().position(|t| t.is_kw("FROM"));
            info.table = from.and_then(|f| table_at(toks, f + 1)).map(|(n, _)| n);
        }
        _ => {}
    }
    if info
        .table
        .as_deref()
        .is_some_and(|t| matches!(t, "SELECT" | "WHERE" | "VALUES" | "SET" | "DUAL"))
    {
        info.table = None;
    }
    if let Some(t) = info.table.take() {
        info.table = Some(if t.chars().all(|c| !c.is_ascii_lowercase()) {
            t.to_ascii_lowercase()
        } else {
            t
        });
    }

    // WHERE col = ... pairs, at any depth after the first WHERE.
    if let Some(w) = toks.iter().position(|t| t.is_kw("WHERE")) {
        let mut j = w + 1;
        while j + 1 < toks.len() {
            if matches!(toks[j], Tok::Word { .. }) && toks[j + 1] == Tok::Punct('=') {
                // `t.col = $1`: the column is the last part.
                if let Some(c) = lower_ident(&toks[j]) {
                    let keyword =
                        matches!(&toks[j], Tok::Word { quoted: false, text } if is_reserved(text));
                    if !keyword && !info.where_cols.contains(&c) {
                        info.where_cols.push(c);
                    }
                }
            }
            if toks[j].is_kw("ORDER") || toks[j].is_kw("LIMIT") || toks[j].is_kw("GROUP") {
                break;
            }
            j += 1;
        }
    }
    Some(info)
}

fn is_reserved(word: &str) -> bool {
    matches!(
        word,
        "AND" | "OR" | "NOT" | "WHERE" | "SET" | "ON" | "IS" | "NULL" | "TRUE" | "FALSE" | "IN"
    )
}

/// Detects the placeholder style of the raw text: `$1` means PostgreSQL,
/// backtick identifiers mean MySQL.
pub fn dialect_of(text: &str) -> Option<Dialect> {
    let bytes = text.as_bytes();
    if bytes
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
    {
        return Some(Dialect::Postgres);
    }
    if text.contains('`') {
        return Some(Dialect::MySql);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> SqlInfo {
        classify(s).unwrap_or_else(|| panic!("not SQL: {s}"))
    }

    #[test]
    fn verbs_and_tables() {
        let s = c("select id from users where email = $1");
        assert_eq!(s.kind, SqlKind::Select);
        assert_eq!(s.table.as_deref(), Some("users"));
        assert_eq!(s.where_cols, vec!["email"]);
        let i = c("INSERT INTO public.\"Charges\" (order_id, idempotency_key) VALUES ($1, $2)");
        assert_eq!(i.kind, SqlKind::Insert);
        assert_eq!(i.table.as_deref(), Some("Charges"));
        assert_eq!(i.insert_cols, vec!["order_id", "idempotency_key"]);
        assert!(!i.conflict_safe);
        let q = c("insert into `app`.`users` (`email`) values (?)");
        assert_eq!(q.table.as_deref(), Some("users"));
        assert_eq!(q.insert_cols, vec!["email"]);
    }

    #[test]
    fn comments_case_and_ctes() {
        let s = c("-- find the user\n  /* by email */ SeLeCt 1 FROM users u WHERE u.email = ${}");
        assert_eq!(s.kind, SqlKind::Select);
        assert_eq!(s.table.as_deref(), Some("users"));
        let w = c("WITH src AS (SELECT id FROM carts WHERE id = $1) INSERT INTO orders (cart_id) SELECT id FROM src");
        assert_eq!(w.kind, SqlKind::Insert);
        assert_eq!(w.table.as_deref(), Some("orders"));
        let is = c("INSERT INTO audit_log (user_id) SELECT id FROM users WHERE id = $1");
        assert_eq!(is.kind, SqlKind::Insert);
        assert_eq!(is.table.as_deref(), Some("audit_log"));
    }

    #[test]
    fn conflict_safety() {
        for s in [
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT (a) DO NOTHING",
            "insert into t (a) values (?) on duplicate key update a = a",
            "INSERT IGNORE INTO t (a) VALUES (?)",
            "INSERT OR IGNORE INTO t (a) VALUES (?)",
            "REPLACE INTO t (a) VALUES (?)",
            "WITH x AS (SELECT 1) INSERT INTO t (a) SELECT 1 ON CONFLICT DO NOTHING",
        ] {
            assert!(c(s).conflict_safe, "{s}");
        }
    }

    #[test]
    fn locks_counts_and_transactions() {
        assert!(c("SELECT * FROM seats WHERE show_id = $1 FOR UPDATE").for_update);
        assert!(c("select id from orgs where id = %s for no key update").for_update);
        assert!(c("SELECT COUNT(*) FROM api_keys WHERE org_id = $1").count);
        assert_eq!(c("BEGIN").kind, SqlKind::Begin);
        assert!(c("BEGIN ISOLATION LEVEL SERIALIZABLE").serializable);
        assert_eq!(
            c("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").kind,
            SqlKind::Begin
        );
        assert_eq!(c("COMMIT").kind, SqlKind::Commit);
        assert_eq!(
            c("SELECT EXISTS (SELECT 1 FROM follows WHERE a = $1)")
                .table
                .as_deref(),
            Some("follows")
        );
    }

    #[test]
    fn prose_and_fragments() {
        assert!(classify("Select a plan to continue").is_none());
        assert!(classify("Insert coin").is_none());
        assert!(classify("hello").is_none());
        // An unterminated quote around a hole falls back to the simple tokenizer.
        let s = c("SELECT id FROM users WHERE name = '${}");
        assert_eq!(s.table.as_deref(), Some("users"));
        let p = c("SELECT id FROM users WHERE email = :email");
        assert_eq!(p.where_cols, vec!["email"]);
    }
}
