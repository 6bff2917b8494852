//! API knowledge (`rules/catalog.toml`), loaded once and shared by every rule.

use std::sync::OnceLock;

use serde::Deserialize;

const CATALOG_TOML: &str = include_str!("../rules/catalog.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub nondeterministic: Nondeterministic,
    pub idempotency_sinks: IdempotencySinks,
    /// The team's own helpers, from the config's `[catalog]` table.
    #[serde(skip)]
    pub ext: Extensions,
}

/// Config-supplied call patterns per effect kind (see `filter::config`).
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    pub db_read: Vec<CallPattern>,
    pub db_insert: Vec<CallPattern>,
    pub db_upsert: Vec<CallPattern>,
    pub payment: Vec<CallPattern>,
    pub external: Vec<CallPattern>,
    pub lock_acquire: Vec<CallPattern>,
    pub lock_release: Vec<CallPattern>,
}

impl Catalog {
    /// The built-in catalogue plus a config's extensions.
    pub fn extended(ext: &crate::filter::config::CatalogExtensions) -> Catalog {
        let mut c = catalog().clone();
        let compile = |v: &[String]| v.iter().map(|p| CallPattern::new(p)).collect::<Vec<_>>();
        c.nondeterministic
            .calls
            .extend(compile(&ext.nondeterministic));
        c.ext = Extensions {
            db_read: compile(&ext.db_read),
            db_insert: compile(&ext.db_insert),
            db_upsert: compile(&ext.db_upsert),
            payment: compile(&ext.payment),
            external: compile(&ext.external),
            lock_acquire: compile(&ext.lock_acquire),
            lock_release: compile(&ext.lock_release),
        };
        c
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nondeterministic {
    pub calls: Vec<CallPattern>,
    pub constructors: Vec<String>,
    pub coarse_methods: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySinks {
    pub words: Vec<String>,
    pub key_suffixes: Vec<String>,
    pub queue_options: Vec<String>,
    pub queue_methods: Vec<String>,
    pub header_setters: Vec<String>,
}

/// A dotted callee pattern: `*` matches one segment, a leading `**` any prefix.
#[derive(Debug, Clone)]
pub struct CallPattern {
    any_prefix: bool,
    segments: Vec<String>,
}

impl<'de> Deserialize<'de> for CallPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(CallPattern::new(&text))
    }
}

impl CallPattern {
    pub fn new(text: &str) -> Self {
        let mut segments: Vec<String> = text.split('.').map(str::to_string).collect();
        let any_prefix = segments.first().is_some_and(|s| s == "**");
        if any_prefix {
            segments.remove(0);
        }
        CallPattern {
            any_prefix,
            segments,
        }
    }

    /// The last segment that is a literal name (not `*`): a call matching
    /// the pattern always has it in its text.
    pub fn literal_segment(&self) -> Option<&str> {
        self.segments
            .iter()
            .rev()
            .find(|s| *s != "*")
            .map(String::as_str)
    }

    /// Matches a callee path as given by `Function::path` (calls in the chain
    /// appear as `()` segments and never match a name).
    pub fn matches(&self, path: &[&str]) -> bool {
        let n = self.segments.len();
        if path.len() < n || (!self.any_prefix && path.len() != n) {
            return false;
        }
        let tail = &path[path.len() - n..];
        self.segments
            .iter()
            .zip(tail)
            .all(|(p, s)| *s != "()" && (p == "*" || p == s))
    }
}

thread_local! {
    /// The catalogue of the scan running on this thread, for analyses that
    /// have no `Context` at hand (set per file by the scanner).
    static ACTIVE: std::cell::RefCell<Option<std::sync::Arc<Catalog>>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes `catalog` (with its config extensions) the one analyses on this
/// thread see through [`with_extensions`].
pub fn set_active(catalog: Option<std::sync::Arc<Catalog>>) {
    ACTIVE.with(|a| *a.borrow_mut() = catalog);
}

/// Runs `f` on the active scan's config extensions (empty without a config).
pub fn with_extensions<R>(f: impl FnOnce(&Extensions) -> R) -> R {
    ACTIVE.with(|a| match a.borrow().as_ref() {
        Some(c) => f(&c.ext),
        None => f(&Extensions::default()),
    })
}

/// What the config says a call to one of the team's own helpers does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InHouse {
    Payment,
    External,
}

/// Whether the active config names `path` as a payment or external helper.
pub fn in_house_effect(path: &[&str]) -> Option<InHouse> {
    with_extensions(|ext| {
        if matches_any(&ext.payment, path) {
            Some(InHouse::Payment)
        } else if matches_any(&ext.external, path) {
            Some(InHouse::External)
        } else {
            None
        }
    })
}

/// Whether a callee path matches one of the patterns.
pub fn matches_any(patterns: &[CallPattern], path: &[&str]) -> bool {
    patterns.iter().any(|p| p.matches(path))
}

/// Whether a bare function name is the last segment of one of the patterns
/// (for analyses that see a helper's name, not its path).
pub fn names_any(patterns: &[CallPattern], name: &str) -> bool {
    patterns.iter().any(|p| p.literal_segment() == Some(name))
}

/// The literal last segments of the patterns: prefilter trigger words.
pub fn literal_segments(patterns: &[CallPattern]) -> impl Iterator<Item = String> + '_ {
    patterns
        .iter()
        .filter_map(|p| p.literal_segment().map(str::to_string))
}

/// `needle` occurs in `haystack`, ASCII letters compared without case.
pub fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// The words of a name, lower-cased, split at non-alphanumerics and camelCase
/// humps: `acquireLock` -> [acquire, lock], `HTTPClient` -> [http, client],
/// `` `lock:${id}` `` -> [lock, id], `RELEASE_LOCK` -> [release, lock].
pub fn name_tokens(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        toml::from_str(CATALOG_TOML).expect("rules/catalog.toml is valid (checked by tests)")
    })
}

/// Lower-cases and drops separators: `Idempotency-Key` -> `idempotencykey`.
pub fn normalize_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

impl IdempotencySinks {
    /// Whether a name denotes an idempotency/dedup key itself, not a fact
    /// about it (`idempotencyKeyExpiresAt`, `dedupWindowStart` do not).
    pub fn is_key_name(&self, name: &str) -> bool {
        let n = normalize_name(name);
        self.words.iter().any(|w| n.contains(w.as_str()))
            && (self.words.contains(&n)
                || self.key_suffixes.iter().any(|s| n.ends_with(s.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses() {
        assert!(!catalog().nondeterministic.calls.is_empty());
    }

    #[test]
    fn patterns_match_paths() {
        let exact = CallPattern::new("Date.now");
        assert!(exact.matches(&["Date", "now"]));
        assert!(!exact.matches(&["x", "Date", "now"]));
        let suffix = CallPattern::new("**.randomUUID");
        assert!(suffix.matches(&["randomUUID"]));
        assert!(suffix.matches(&["this", "crypto", "randomUUID"]));
        let wild = CallPattern::new("random.*");
        assert!(wild.matches(&["random", "choice"]));
        assert!(!wild.matches(&["random"]));
        assert!(!CallPattern::new("uuid").matches(&["uuid", "()"]));
    }

    #[test]
    fn key_names() {
        let s = &catalog().idempotency_sinks;
        for yes in [
            "idempotencyKey",
            "idempotency_key",
            "Idempotency-Key",
            "dedupKey",
            "dedupeId",
            "MessageDeduplicationId",
            "dedup",
        ] {
            assert!(s.is_key_name(yes), "{yes}");
        }
        for no in [
            "idempotencyKeyExpiresAt",
            "dedupWindowStart",
            "isIdempotent",
            "requestId",
            "key",
        ] {
            assert!(!s.is_key_name(no), "{no}");
        }
    }
}
