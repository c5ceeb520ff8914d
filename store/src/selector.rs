//! Calico label selectors: `role == 'db' && has(tier)`, `k in {'a','b'}`,
//! `!has(x) || env != "prod"`, `all()`, with parentheses and `!`. Shared by
//! BGPPeer node/peer selectors, IP pool node selectors and policies.
//!
//! Semantics as Calico documents them: `k == v` and `k in {…}` need the
//! label; `k != v` and `k not in {…}` also match when it is absent.

use std::collections::BTreeMap;
use std::fmt;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `all()` (also the empty selector).
    All,
    /// `global()`: in a `namespaceSelector`, what lives in no namespace
    /// (global network sets, host endpoints).
    Global,
    /// `has(k)`.
    Has(String),
    /// `k == 'v'`.
    Eq(String, String),
    /// `k != 'v'`.
    Ne(String, String),
    /// `k in {'a', 'b'}`.
    In(String, Vec<String>),
    /// `k not in {'a', 'b'}`.
    NotIn(String, Vec<String>),
    /// `k contains 's'`.
    Contains(String, String),
    /// `k starts with 's'`.
    StartsWith(String, String),
    /// `k ends with 's'`.
    EndsWith(String, String),
    /// `!e`.
    Not(Box<Selector>),
    /// `a && b`.
    And(Box<Selector>, Box<Selector>),
    /// `a || b`.
    Or(Box<Selector>, Box<Selector>),
}

/// A selector that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector `{selector}` at character {position}: {why}")]
pub struct SelectorError {
    /// The selector text.
    pub selector: String,
    /// 0-based character offset of the problem.
    pub position: usize,
    /// What was expected.
    pub why: String,
}

impl Selector {
    /// Parses a selector; the empty string selects everything.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser { text, pos: 0 };
        p.skip_ws();
        if p.at_end() {
            return Ok(Selector::All);
        }
        let sel = p.or()?;
        p.skip_ws();
        if !p.at_end() {
            return Err(p.error("unexpected text after the selector"));
        }
        Ok(sel)
    }

    /// Whether `labels` match (`global()` never does here: see `matches_global`).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_in(labels, false)
    }

    /// As a `namespaceSelector`, whether it takes what lives in no
    /// namespace: only when it says `global()` (and the rest allows it).
    pub fn matches_global(&self) -> bool {
        self.mentions_global() && self.matches_in(&Labels::new(), true)
    }

    fn mentions_global(&self) -> bool {
        match self {
            Selector::Global => true,
            Selector::Not(e) => e.mentions_global(),
            Selector::And(a, b) | Selector::Or(a, b) => a.mentions_global() || b.mentions_global(),
            _ => false,
        }
    }

    fn matches_in(&self, labels: &Labels, global: bool) -> bool {
        let get = |k: &String| labels.get(k);
        match self {
            Selector::All => true,
            Selector::Global => global,
            Selector::Has(k) => labels.contains_key(k),
            Selector::Eq(k, v) => get(k) == Some(v),
            Selector::Ne(k, v) => get(k) != Some(v),
            Selector::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Selector::NotIn(k, set) => get(k).is_none_or(|v| !set.contains(v)),
            Selector::Contains(k, s) => get(k).is_some_and(|v| v.contains(s.as_str())),
            Selector::StartsWith(k, s) => get(k).is_some_and(|v| v.starts_with(s.as_str())),
            Selector::EndsWith(k, s) => get(k).is_some_and(|v| v.ends_with(s.as_str())),
            Selector::Not(e) => !e.matches_in(labels, global),
            Selector::And(a, b) => a.matches_in(labels, global) && b.matches_in(labels, global),
            Selector::Or(a, b) => a.matches_in(labels, global) || b.matches_in(labels, global),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &[String]| s.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
        match self {
            Selector::All => f.write_str("all()"),
            Selector::Global => f.write_str("global()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => write!(f, "{k} == '{v}'"),
            Selector::Ne(k, v) => write!(f, "{k} != '{v}'"),
            Selector::In(k, s) => write!(f, "{k} in {{{}}}", set(s)),
            Selector::NotIn(k, s) => write!(f, "{k} not in {{{}}}", set(s)),
            Selector::Contains(k, v) => write!(f, "{k} contains '{v}'"),
            Selector::StartsWith(k, v) => write!(f, "{k} starts with '{v}'"),
            Selector::EndsWith(k, v) => write!(f, "{k} ends with '{v}'"),
            Selector::Not(e) => write!(f, "!({e})"),
            Selector::And(a, b) => write!(f, "({a} && {b})"),
            Selector::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

/// A recursive-descent parser over the selector text.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn error(&self, why: &str) -> SelectorError {
        SelectorError { selector: self.text.into(), position: self.text[..self.pos].chars().count(), why: why.into() }
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    /// Consumes `token` (after whitespace) if it is next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Consumes a keyword (a word followed by a non-label character).
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        let follows = rest[word.len().min(rest.len())..].chars().next();
        if rest.starts_with(word) && !follows.is_some_and(is_label_char) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// `name()` (a label that happens to be called `name` is left alone).
    fn call(&mut self, name: &str, sel: Selector) -> Result<Option<Selector>, SelectorError> {
        let start = self.pos;
        if !(self.eat_word(name) && self.eat("(")) {
            self.pos = start;
            return Ok(None);
        }
        if self.eat(")") { Ok(Some(sel)) } else { Err(self.error(&format!("expected `{name}()`"))) }
    }

    fn or(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Selector::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = Selector::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Selector, SelectorError> {
        self.skip_ws();
        if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.pos += 1;
            return Ok(Selector::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("expected `)`"));
            }
            return Ok(inner);
        }
        for (name, sel) in [("all", Selector::All), ("global", Selector::Global)] {
            if let Some(found) = self.call(name, sel)? {
                return Ok(found);
            }
        }
        if self.eat_word("has") {
            if !self.eat("(") {
                return Err(self.error("expected `(` after has"));
            }
            let key = self.label()?;
            if !self.eat(")") {
                return Err(self.error("expected `)` after the label in has(…)"));
            }
            return Ok(Selector::Has(key));
        }
        let key = self.label()?;
        if self.eat("==") {
            return Ok(Selector::Eq(key, self.string()?));
        }
        if self.eat("!=") {
            return Ok(Selector::Ne(key, self.string()?));
        }
        if self.eat_word("not") {
            if !self.eat_word("in") {
                return Err(self.error("expected `in` after `not`"));
            }
            return Ok(Selector::NotIn(key, self.set()?));
        }
        if self.eat_word("in") {
            return Ok(Selector::In(key, self.set()?));
        }
        if self.eat_word("contains") {
            return Ok(Selector::Contains(key, self.string()?));
        }
        if self.eat_word("starts") && self.eat_word("with") {
            return Ok(Selector::StartsWith(key, self.string()?));
        }
        if self.eat_word("ends") && self.eat_word("with") {
            return Ok(Selector::EndsWith(key, self.string()?));
        }
        Err(self.error("expected an operator (==, !=, in, not in, contains, starts with, ends with)"))
    }

    /// A label key: letters, digits, `_`, `-`, `.`, `/`.
    fn label(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let len = self.rest().find(|c: char| !is_label_char(c)).unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("expected a label name"));
        }
        let key = self.rest()[..len].to_string();
        self.pos += len;
        Ok(key)
    }

    /// A quoted string, single or double quotes.
    fn string(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let Some(quote) = self.rest().chars().next().filter(|c| *c == '\'' || *c == '"') else {
            return Err(self.error("expected a quoted value"));
        };
        let body = &self.rest()[1..];
        let Some(end) = body.find(quote) else { return Err(self.error("unterminated string")) };
        let value = body[..end].to_string();
        self.pos += end + 2;
        Ok(value)
    }

    /// `{'a', 'b'}` (possibly empty).
    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        if !self.eat("{") {
            return Err(self.error("expected `{`"));
        }
        let mut values = Vec::new();
        if self.eat("}") {
            return Ok(values);
        }
        loop {
            values.push(self.string()?);
            if self.eat("}") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("expected `,` or `}`"));
            }
        }
    }
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn global_takes_what_lives_in_no_namespace_and_a_label_may_be_called_global() {
        assert!(Selector::parse("global()").unwrap().matches_global());
        assert!(Selector::parse("global() || team == 'a'").unwrap().matches_global());
        assert!(!Selector::parse("!global()").unwrap().matches_global());
        assert!(!Selector::parse("!has(team)").unwrap().matches_global(), "only a selector that says global()");
        let g = Selector::parse("global == 'yes' && all == 'x'").unwrap();
        assert!(g.matches(&labels(&[("global", "yes"), ("all", "x")])));
        assert_eq!(Selector::parse("global()").unwrap().to_string(), "global()");
    }

    #[test]
    fn selectors_match_as_calico_documents() {
        let db = labels(&[("role", "db"), ("env", "prod"), ("projectcalico.org/namespace", "shop")]);
        let web = labels(&[("role", "web")]);
        // (selector, matches db, matches web)
        let cases = [
            ("", true, true),
            ("all()", true, true),
            ("role == 'db'", true, false),
            ("role != 'db'", false, true),
            ("env != \"prod\"", false, true),
            ("has(env)", true, false),
            ("!has(env)", false, true),
            ("role in {'db', 'cache'}", true, false),
            ("role not in {'db'}", false, true),
            ("env not in {'prod'}", false, true),
            ("env in {}", false, false),
            ("role == 'db' && env == 'prod'", true, false),
            ("role == 'web' || has(env)", true, true),
            ("!(role == 'db' || role == 'web')", false, false),
            ("global()", false, false),
            ("global() || role == 'web'", false, true),
            ("projectcalico.org/namespace == 'shop'", true, false),
            ("role starts with 'd' && env ends with 'od' && env contains 'ro'", true, false),
            ("  ( role=='db' )&&!has( missing )  ", true, false),
        ];
        for (text, want_db, want_web) in cases {
            let sel = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((sel.matches(&db), sel.matches(&web)), (want_db, want_web), "{text}");
            let again = Selector::parse(&sel.to_string()).unwrap();
            assert_eq!(again, sel, "display of {text} parses back");
        }
    }

    #[test]
    fn bad_selectors_say_where() {
        for (text, pos) in [
            ("role = 'db'", 5),
            ("role == db", 8),
            ("has(role", 8),
            ("(role == 'x'", 12),
            ("role in {'a' 'b'}", 13),
            ("role == 'x' extra", 12),
            ("&& x", 0),
            ("role == 'open", 8),
        ] {
            let e = Selector::parse(text).unwrap_err();
            assert_eq!(e.position, pos, "{text}: {e}");
            assert!(e.to_string().contains(text));
        }
    }
}
