//! A CQL2 text subset: what a search filter of scene properties needs, parsed here because
//! the `cql2` crate brings a C build step (`psm`/`stacker` through `sqlparser`), `jsonschema`
//! and `geo` (about 190 crates) for a few hundred lines of grammar.
//!
//! Supported: comparisons (`=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`) between a property and a
//! literal, `[NOT] LIKE` (`%`, `_`), `[NOT] IN (...)`, `[NOT] BETWEEN ... AND ...`,
//! `IS [NOT] NULL`, `AND`, `OR`, `NOT` and parentheses; literals are numbers, `'text'`
//! (`''` escapes a quote), `TRUE`/`FALSE`, `TIMESTAMP('...')` and `DATE('...')`; properties
//! are names such as `eo:cloud_cover` or `s2:processing_baseline`, or `"quoted"`. Spatial and
//! temporal functions (`S_INTERSECTS`, `T_AFTER`...) are refused with their position: search
//! by `--bbox`, `--intersects` and `--datetime` instead.
//!
//! An expression becomes cql2-json ([`Expr::to_json`]), the older `query` extension where it
//! is simple enough ([`Expr::to_query`]), or is evaluated on items ([`Expr::matches`]).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

/// An expression that cannot be parsed, with the position (1-based, in characters) at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid CQL2 filter at position {position}: {message} (in {text:?})")]
pub struct Error {
    /// Character position, from 1.
    pub position: usize,
    /// What is wrong.
    pub message: String,
    /// The whole expression.
    pub text: String,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// The operator with its operands swapped (`5 < x` is `x > 5`).
    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
    /// `TRUE` / `FALSE`.
    Bool(bool),
    /// `TIMESTAMP('...')`.
    Timestamp(DateTime<Utc>),
    /// `DATE('...')`, midnight UTC.
    Date(DateTime<Utc>),
}

/// What a comparison compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A property of the item (`id`, `collection` and `datetime` too).
    Property(String),
    /// A value.
    Literal(Literal),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All of them.
    And(Vec<Expr>),
    /// Any of them.
    Or(Vec<Expr>),
    /// The opposite.
    Not(Box<Expr>),
    /// `a op b`.
    Compare(CmpOp, Operand, Operand),
    /// `a LIKE 'pattern'`.
    Like(Operand, String),
    /// `a IN (v, ...)`.
    In(Operand, Vec<Literal>),
    /// `a BETWEEN lo AND hi`.
    Between(Operand, Operand, Operand),
    /// `a IS NULL`.
    IsNull(Operand),
    /// `TRUE` / `FALSE` alone.
    Const(bool),
}

/// Parses CQL2 text.
pub fn parse(text: &str) -> Result<Expr, Error> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        at: 0,
        text,
    };
    if p.tokens.len() == 1 {
        return Err(p.error_at(1, "the filter is empty"));
    }
    let e = p.or()?;
    match p.peek() {
        Tok::End => Ok(e),
        _ => Err(p.error("expected AND, OR or the end of the filter")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Quoted(String),
    Str(String),
    Num(f64),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    End,
}

/// Tokens with their 1-based character positions.
fn lex(text: &str) -> Result<Vec<(Tok, usize)>, Error> {
    let chars: Vec<char> = text.chars().collect();
    let err = |position: usize, message: String| Error {
        position,
        message,
        text: text.to_string(),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' => {
                i += 1;
                Tok::Op("=")
            }
            '<' | '>' | '!' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('<', Some('=')) => ("<=", 2),
                    ('<', Some('>')) => ("<>", 2),
                    ('>', Some('=')) => (">=", 2),
                    ('!', Some('=')) => ("<>", 2),
                    ('<', _) => ("<", 1),
                    ('>', _) => (">", 1),
                    _ => return Err(err(pos, "'!' must be followed by '='".into())),
                };
                i += len;
                Tok::Op(op)
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(pos, "text that is never closed with '".into())),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(pos, "a name that is never closed with \"".into())),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                if s.is_empty() {
                    return Err(err(pos, "an empty quoted name".into()));
                }
                Tok::Quoted(s)
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_ascii_digit() || *n == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || chars[i] == '.'
                        || chars[i] == 'e'
                        || chars[i] == 'E'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().collect();
                let n: f64 = s
                    .parse()
                    .map_err(|_| err(pos, format!("{s:?} is not a number")))?;
                Tok::Num(n)
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | ':' | '.'))
                {
                    i += 1;
                }
                Tok::Ident(chars[start..i].iter().collect())
            }
            other => return Err(err(pos, format!("unexpected character {other:?}"))),
        };
        out.push((tok, pos));
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser<'t> {
    tokens: Vec<(Tok, usize)>,
    at: usize,
    text: &'t str,
}

const FUNCTIONS: [&str; 4] = ["S_", "T_", "A_", "CASEI"];

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at].0
    }

    fn position(&self) -> usize {
        self.tokens[self.at].1
    }

    fn error_at(&self, position: usize, message: &str) -> Error {
        Error {
            position,
            message: message.to_string(),
            text: self.text.to_string(),
        }
    }

    fn error(&self, message: &str) -> Error {
        self.error_at(self.position(), message)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let yes = self.keyword(word);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), Error> {
        if *self.peek() == tok {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {what}")))
        }
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let mut parts = vec![self.and()?];
        while self.eat_keyword("OR") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, Error> {
        let mut parts = vec![self.not()?];
        while self.eat_keyword("AND") {
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn not(&mut self) -> Result<Expr, Error> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        if *self.peek() == Tok::LParen {
            self.at += 1;
            let e = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(e);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, Error> {
        let start = self.position();
        let left = self.operand()?;
        if let (Operand::Literal(Literal::Bool(b)), false) = (&left, self.at_predicate_operator()) {
            return Ok(Expr::Const(*b));
        }
        let negated = self.eat_keyword("NOT");
        let e = if self.eat_keyword("LIKE") {
            match self.peek().clone() {
                Tok::Str(s) => {
                    self.at += 1;
                    Expr::Like(left, s)
                }
                _ => return Err(self.error("expected a 'pattern' after LIKE")),
            }
        } else if self.eat_keyword("IN") {
            self.expect(Tok::LParen, "'(' after IN")?;
            let mut list = Vec::new();
            loop {
                match self.operand()? {
                    Operand::Literal(l) => list.push(l),
                    Operand::Property(_) => {
                        return Err(self.error_at(
                            self.tokens[self.at - 1].1,
                            "IN lists values, not properties",
                        ))
                    }
                }
                if *self.peek() == Tok::Comma {
                    self.at += 1;
                    continue;
                }
                self.expect(Tok::RParen, "',' or ')' in the IN list")?;
                break;
            }
            Expr::In(left, list)
        } else if self.eat_keyword("BETWEEN") {
            let low = self.operand()?;
            if !self.eat_keyword("AND") {
                return Err(self.error("expected AND in BETWEEN ... AND ..."));
            }
            let high = self.operand()?;
            Expr::Between(left, low, high)
        } else if !negated && self.eat_keyword("IS") {
            let not_null = self.eat_keyword("NOT");
            if !self.eat_keyword("NULL") {
                return Err(self.error("expected NULL after IS"));
            }
            let e = Expr::IsNull(left);
            return Ok(if not_null { Expr::Not(Box::new(e)) } else { e });
        } else if negated {
            return Err(self.error("expected LIKE, IN or BETWEEN after NOT"));
        } else {
            let op =
                match self.peek() {
                    Tok::Op(o) => *o,
                    Tok::End => return Err(self.error(
                        "expected a comparison (=, <>, <, <=, >, >=, LIKE, IN, BETWEEN, IS NULL)",
                    )),
                    _ => return Err(self.error("expected a comparison operator")),
                };
            self.at += 1;
            let op = match op {
                "=" => CmpOp::Eq,
                "<>" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            if *self.peek() == Tok::End {
                return Err(self.error(&format!("expected a value after {}", op.symbol())));
            }
            let right = self.operand()?;
            if let (Operand::Literal(_), Operand::Literal(_)) = (&left, &right) {
                return Err(self.error_at(start, "a comparison needs a property on one side"));
            }
            Expr::Compare(op, left, right)
        };
        Ok(if negated { Expr::Not(Box::new(e)) } else { e })
    }

    fn at_predicate_operator(&self) -> bool {
        matches!(self.peek(), Tok::Op(_))
            || ["NOT", "LIKE", "IN", "BETWEEN", "IS"]
                .iter()
                .any(|k| self.keyword(k))
    }

    fn operand(&mut self) -> Result<Operand, Error> {
        let pos = self.position();
        let tok = self.peek().clone();
        self.at += 1;
        Ok(match tok {
            Tok::Num(n) => Operand::Literal(Literal::Number(n)),
            Tok::Str(s) => Operand::Literal(Literal::Text(s)),
            Tok::Quoted(name) => Operand::Property(name),
            Tok::Ident(w) if w.eq_ignore_ascii_case("TRUE") => {
                Operand::Literal(Literal::Bool(true))
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("FALSE") => {
                Operand::Literal(Literal::Bool(false))
            }
            Tok::Ident(w)
                if (w.eq_ignore_ascii_case("TIMESTAMP") || w.eq_ignore_ascii_case("DATE"))
                    && *self.peek() == Tok::LParen =>
            {
                self.at += 1;
                let Tok::Str(s) = self.peek().clone() else {
                    return Err(self.error(&format!("expected '...' in {}(", w.to_uppercase())));
                };
                let at = self.position();
                self.at += 1;
                self.expect(Tok::RParen, "')'")?;
                let t = crate::time::parse_datetime(&s)
                    .ok_or_else(|| self.error_at(at, &format!("{s:?} is not a date or time")))?;
                Operand::Literal(if w.eq_ignore_ascii_case("DATE") {
                    Literal::Date(t)
                } else {
                    Literal::Timestamp(t)
                })
            }
            Tok::Ident(w) if *self.peek() == Tok::LParen => {
                let upper = w.to_ascii_uppercase();
                let hint = if FUNCTIONS.iter().any(|f| upper.starts_with(f)) {
                    "; search by place and time with --bbox, --intersects and --datetime"
                } else {
                    ""
                };
                return Err(self.error_at(pos, &format!("function {w} is not supported{hint}")));
            }
            Tok::Ident(w)
                if ["AND", "OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "NULL"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                return Err(
                    self.error_at(pos, &format!("expected a property or a value, found {w}"))
                )
            }
            Tok::Ident(w) => Operand::Property(w),
            Tok::End => return Err(self.error_at(pos, "the filter ends too early")),
            _ => return Err(self.error_at(pos, "expected a property or a value")),
        })
    }
}

impl Literal {
    fn to_json(&self) -> Value {
        match self {
            Literal::Number(n) => json!(n),
            Literal::Text(s) => json!(s),
            Literal::Bool(b) => json!(b),
            Literal::Timestamp(t) => {
                json!({"timestamp": t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)})
            }
            Literal::Date(t) => json!({"date": t.format("%Y-%m-%d").to_string()}),
        }
    }

    /// The plain JSON value of the `query` extension (times as RFC 3339 text).
    fn to_query_value(&self) -> Value {
        match self {
            Literal::Timestamp(t) | Literal::Date(t) => {
                json!(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
            other => other.to_json(),
        }
    }
}

impl Operand {
    fn to_json(&self) -> Value {
        match self {
            Operand::Property(p) => json!({ "property": p }),
            Operand::Literal(l) => l.to_json(),
        }
    }
}

/// A value as found on an item, for comparisons.
#[derive(Debug, Clone, PartialEq)]
enum Found {
    Number(f64),
    Text(String),
    Bool(bool),
}

fn compare(a: &Found, b: &Literal) -> Option<Ordering> {
    match (a, b) {
        (Found::Number(x), Literal::Number(y)) => x.partial_cmp(y),
        (Found::Text(x), Literal::Text(y)) => Some(x.as_str().cmp(y)),
        (Found::Bool(x), Literal::Bool(y)) => Some(x.cmp(y)),
        (Found::Text(x), Literal::Timestamp(y) | Literal::Date(y)) => {
            crate::time::parse_datetime(x).map(|t| t.cmp(y))
        }
        // Numbers in text (`"05.11"`) compare as numbers with numbers.
        (Found::Text(x), Literal::Number(y)) => x.trim().parse::<f64>().ok()?.partial_cmp(y),
        _ => None,
    }
}

fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|k| go(&t[k..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Patterns are short; bound the backtracking anyway.
    if p.iter().filter(|c| **c == '%').count() > 8 {
        return false;
    }
    go(&t, &p)
}

/// The value of a property of an item: `id`, `collection`, or one of its properties.
pub fn lookup(item: &Value, name: &str) -> Option<Value> {
    match name {
        "id" | "collection" => item.get(name).cloned(),
        _ => item
            .get("properties")
            .and_then(|p| p.get(name))
            .cloned()
            .or_else(|| item.get(name).filter(|v| !v.is_object()).cloned()),
    }
}

fn found(v: Value) -> Option<Found> {
    match v {
        Value::Number(n) => n.as_f64().map(Found::Number),
        Value::String(s) => Some(Found::Text(s)),
        Value::Bool(b) => Some(Found::Bool(b)),
        _ => None,
    }
}

impl Expr {
    /// The expression as cql2-json (the Filter extension's `filter` with
    /// `filter-lang: cql2-json`).
    pub fn to_json(&self) -> Value {
        let op = |name: &str, args: Vec<Value>| json!({"op": name, "args": args});
        match self {
            Expr::And(parts) => op("and", parts.iter().map(Expr::to_json).collect()),
            Expr::Or(parts) => op("or", parts.iter().map(Expr::to_json).collect()),
            Expr::Not(e) => op("not", vec![e.to_json()]),
            Expr::Compare(o, a, b) => op(o.symbol(), vec![a.to_json(), b.to_json()]),
            Expr::Like(a, p) => op("like", vec![a.to_json(), json!(p)]),
            Expr::In(a, list) => op(
                "in",
                vec![
                    a.to_json(),
                    Value::Array(list.iter().map(Literal::to_json).collect()),
                ],
            ),
            Expr::Between(a, lo, hi) => {
                op("between", vec![a.to_json(), lo.to_json(), hi.to_json()])
            }
            Expr::IsNull(a) => op("isNull", vec![a.to_json()]),
            Expr::Const(b) => json!(b),
        }
    }

    /// The parts of a top-level `AND`.
    fn conjuncts(&self) -> Vec<&Expr> {
        match self {
            Expr::And(parts) => parts.iter().flat_map(Expr::conjuncts).collect(),
            other => vec![other],
        }
    }

    /// The expression as the older `query` extension (Earth Search): the comparisons of its
    /// top-level `AND` that the extension can say, and the rest, which must be applied to the
    /// items returned. `None` when nothing can be said that way.
    pub fn to_query(&self) -> (Option<Value>, Vec<Expr>) {
        let mut query: Map<String, Value> = Map::new();
        let mut rest = Vec::new();
        for part in self.conjuncts() {
            let mut put = |prop: &str, key: &str, v: Value| -> bool {
                let entry = query
                    .entry(prop.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                let Some(ops) = entry.as_object_mut() else {
                    return false;
                };
                if ops.contains_key(key) {
                    return false;
                }
                ops.insert(key.to_string(), v);
                true
            };
            let said = match part {
                Expr::Compare(op, Operand::Property(p), Operand::Literal(l))
                | Expr::Compare(op, Operand::Literal(l), Operand::Property(p)) => {
                    let op = if matches!(part, Expr::Compare(_, Operand::Literal(_), _)) {
                        op.flipped()
                    } else {
                        *op
                    };
                    let key = match op {
                        CmpOp::Eq => "eq",
                        CmpOp::Ne => "neq",
                        CmpOp::Lt => "lt",
                        CmpOp::Le => "lte",
                        CmpOp::Gt => "gt",
                        CmpOp::Ge => "gte",
                    };
                    put(p, key, l.to_query_value())
                }
                Expr::In(Operand::Property(p), list) => put(
                    p,
                    "in",
                    Value::Array(list.iter().map(Literal::to_query_value).collect()),
                ),
                Expr::Between(Operand::Property(p), Operand::Literal(lo), Operand::Literal(hi)) => {
                    put(p, "gte", lo.to_query_value()) && put(p, "lte", hi.to_query_value())
                }
                Expr::Like(Operand::Property(p), pattern) if !pattern.contains('_') => {
                    let inner = pattern.trim_matches('%');
                    if inner.contains('%') {
                        false
                    } else {
                        let key = match (
                            pattern.starts_with('%'),
                            pattern.ends_with('%') && !inner.is_empty(),
                        ) {
                            (false, false) => "eq",
                            (false, true) => "startsWith",
                            (true, false) => "endsWith",
                            (true, true) => "contains",
                        };
                        put(p, key, json!(inner))
                    }
                }
                _ => false,
            };
            if !said {
                rest.push(part.clone());
            }
        }
        let query = (!query.is_empty()).then_some(Value::Object(query));
        (query, rest)
    }

    /// True when an item (a STAC Item as JSON) passes. A missing or incomparable property
    /// makes a comparison unknown, as in SQL: unknown never passes, and `NOT` of unknown is
    /// unknown.
    pub fn matches(&self, item: &Value) -> bool {
        self.eval(item) == Some(true)
    }

    fn eval(&self, item: &Value) -> Option<bool> {
        let value = |o: &Operand| -> Option<Found> {
            match o {
                Operand::Property(p) => found(lookup(item, p)?),
                Operand::Literal(l) => match l {
                    Literal::Number(n) => Some(Found::Number(*n)),
                    Literal::Text(s) => Some(Found::Text(s.clone())),
                    Literal::Bool(b) => Some(Found::Bool(*b)),
                    Literal::Timestamp(t) | Literal::Date(t) => Some(Found::Text(t.to_rfc3339())),
                },
            }
        };
        let literal = |o: &Operand| -> Option<Literal> {
            match o {
                Operand::Literal(l) => Some(l.clone()),
                Operand::Property(p) => match found(lookup(item, p)?)? {
                    Found::Number(n) => Some(Literal::Number(n)),
                    Found::Text(s) => Some(Literal::Text(s)),
                    Found::Bool(b) => Some(Literal::Bool(b)),
                },
            }
        };
        match self {
            Expr::And(parts) => {
                let mut unknown = false;
                for p in parts {
                    match p.eval(item) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                (!unknown).then_some(true)
            }
            Expr::Or(parts) => {
                let mut unknown = false;
                for p in parts {
                    match p.eval(item) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                (!unknown).then_some(false)
            }
            Expr::Not(e) => e.eval(item).map(|b| !b),
            Expr::Compare(op, a, b) => {
                let (left, right, op) = match (a, b) {
                    (_, Operand::Literal(_)) => (value(a)?, literal(b)?, *op),
                    _ => (value(b)?, literal(a)?, op.flipped()),
                };
                compare(&left, &right).map(|o| op.holds(o))
            }
            Expr::Like(a, pattern) => match value(a)? {
                Found::Text(t) => Some(like(&t, pattern)),
                _ => None,
            },
            Expr::In(a, list) => {
                let v = value(a)?;
                Some(list.iter().any(|l| compare(&v, l) == Some(Ordering::Equal)))
            }
            Expr::Between(a, lo, hi) => {
                let v = value(a)?;
                let lo = compare(&v, &literal(lo)?)?;
                let hi = compare(&v, &literal(hi)?)?;
                Some(lo != Ordering::Less && hi != Ordering::Greater)
            }
            Expr::IsNull(a) => match a {
                Operand::Property(p) => Some(lookup(item, p).is_none_or(|v| v.is_null())),
                Operand::Literal(_) => Some(false),
            },
            Expr::Const(b) => Some(*b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(props: Value) -> Value {
        json!({"id": "S2B_1", "collection": "sentinel-2-l2a", "properties": props})
    }

    #[test]
    fn parses_to_cql2_json() {
        let e = parse("eo:cloud_cover < 20 AND (platform = 'sentinel-2a' OR NOT s2:processing_baseline >= '05.00')").unwrap();
        assert_eq!(
            e.to_json(),
            json!({"op": "and", "args": [
                {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20.0]},
                {"op": "or", "args": [
                    {"op": "=", "args": [{"property": "platform"}, "sentinel-2a"]},
                    {"op": "not", "args": [{"op": ">=", "args": [{"property": "s2:processing_baseline"}, "05.00"]}]}
                ]}
            ]})
        );
        let e = parse("\"grid:code\" IN ('MGRS-52SDG', 'MGRS-52SCG') and datetime > TIMESTAMP('2023-06-01T00:00:00Z') AND id LIKE 'S2B%' and x IS NOT NULL and y NOT BETWEEN -1.5 AND 2e1").unwrap();
        assert_eq!(
            e.to_json()["args"][0],
            json!({"op": "in", "args": [{"property": "grid:code"}, ["MGRS-52SDG", "MGRS-52SCG"]]})
        );
        assert_eq!(
            e.to_json()["args"][1]["args"][1],
            json!({"timestamp": "2023-06-01T00:00:00Z"})
        );
        assert_eq!(
            e.to_json()["args"][3],
            json!({"op": "not", "args": [{"op": "isNull", "args": [{"property": "x"}]}]})
        );
        assert_eq!(
            e.to_json()["args"][4],
            json!({"op": "not", "args": [{"op": "between", "args": [{"property": "y"}, -1.5, 20.0]}]})
        );
        assert_eq!(
            parse("'it''s' = name").unwrap(),
            Expr::Compare(
                CmpOp::Eq,
                Operand::Literal(Literal::Text("it's".into())),
                Operand::Property("name".into())
            )
        );
    }

    #[test]
    fn errors_name_the_position() {
        for (text, position, words) in [
            ("eo:cloud_cover <", 17, "after <"),
            ("eo:cloud_cover < 10 AND", 24, "too early"),
            ("eo:cloud_cover ~ 10", 16, "unexpected character"),
            ("eo:cloud_cover < 10 platform = 'a'", 21, "AND, OR"),
            ("S_INTERSECTS(geometry, x)", 1, "--bbox"),
            ("(a = 1", 7, "')'"),
            ("a = 'open", 5, "never closed"),
            ("1 = 2", 1, "property"),
            ("a IN (1, b)", 10, "values"),
            ("datetime > TIMESTAMP('soon')", 22, "not a date"),
            ("", 1, "empty"),
            ("a NOT = 1", 7, "after NOT"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.position, position, "{text}: {e}");
            assert!(e.to_string().contains(words), "{text}: {e}");
            assert!(
                e.to_string().contains(&format!("position {position}")),
                "{e}"
            );
        }
    }

    #[test]
    fn translates_what_the_query_extension_can_say() {
        let e = parse("eo:cloud_cover < 20 AND 5 <= eo:cloud_cover AND platform IN ('sentinel-2a') AND id LIKE 'S2B%' AND (a = 1 OR b = 2)").unwrap();
        let (query, rest) = e.to_query();
        assert_eq!(
            query.unwrap(),
            json!({
                "eo:cloud_cover": {"lt": 20.0, "gte": 5.0},
                "platform": {"in": ["sentinel-2a"]},
                "id": {"startsWith": "S2B"}
            })
        );
        assert_eq!(rest, vec![parse("a = 1 OR b = 2").unwrap()]);
        let (query, rest) = parse("NOT a = 1").unwrap().to_query();
        assert!(query.is_none() && rest.len() == 1);
        // Two conditions of one kind on one property cannot both be said.
        let (query, rest) = parse("a > 1 AND a > 2").unwrap().to_query();
        assert_eq!(query.unwrap(), json!({"a": {"gt": 1.0}}));
        assert_eq!(rest.len(), 1);
    }

    #[test]
    fn evaluates_on_items_with_sql_nulls() {
        let i = item(
            json!({"eo:cloud_cover": 12.5, "platform": "sentinel-2b", "s2:processing_baseline": "05.11", "datetime": "2025-07-31T13:19:22Z"}),
        );
        let yes = |t: &str| parse(t).unwrap().matches(&i);
        assert!(yes("eo:cloud_cover < 20"));
        assert!(!yes("eo:cloud_cover >= 20"));
        assert!(yes("20 > eo:cloud_cover"));
        assert!(yes("platform LIKE 'sentinel-2_'"));
        assert!(yes("s2:processing_baseline >= 4"));
        assert!(yes("s2:processing_baseline >= '04.00'"));
        assert!(yes(
            "id = 'S2B_1' AND collection IN ('sentinel-2-l2a', 'x')"
        ));
        assert!(yes(
            "datetime BETWEEN TIMESTAMP('2025-07-01T00:00:00Z') AND DATE('2025-08-01')"
        ));
        assert!(yes("missing IS NULL AND NOT platform IS NULL"));
        // A missing property is unknown: neither it nor its negation passes.
        assert!(!yes("missing < 5"));
        assert!(!yes("NOT missing < 5"));
        assert!(yes("missing < 5 OR eo:cloud_cover < 20"));
        assert!(!yes("platform = 5"));
        assert!(yes("TRUE"));
    }
}
