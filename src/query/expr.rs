//! Band-math expressions: a small, safe language parsed into a tree and evaluated over
//! whole arrays (never `eval`-style code execution).
//!
//! Grammar, from loosest to tightest binding:
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := cmp ("and" cmp)*
//! cmp     := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/") unary)*
//! unary   := ("-" | "+" | "not") unary | power
//! power   := primary ("^" unary)?            (right-associative: 2^3^2 = 2^9)
//! primary := number | name | name "(" args ")" | "(" expr ")"
//! ```
//!
//! Functions: `where(cond, a, b)`, `abs`, `sqrt`, `exp`, `log`, `min(a, b, ...)`,
//! `max(a, b, ...)`, `clip(x, lo, hi)`. Names are band names or aliases (`nir`, `red`,
//! `B04`), matched case-insensitively by the caller. Invalid pixels are NaN and stay NaN.

use ndarray::{Array3, Zip};
use std::fmt;

/// An expression that could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid expression {expr:?} at character {position}: {message}")]
pub struct ExprError {
    /// The expression text.
    pub expr: String,
    /// 1-based character position of the problem.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

/// A unary operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `not x` (1 where x is 0, else 0)
    Not,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub enum Func {
    Where,
    Abs,
    Sqrt,
    Exp,
    Log,
    Min,
    Max,
    Clip,
}

impl Func {
    fn lookup(name: &str) -> Option<Func> {
        Some(match name.to_ascii_lowercase().as_str() {
            "where" => Func::Where,
            "abs" => Func::Abs,
            "sqrt" => Func::Sqrt,
            "exp" => Func::Exp,
            "log" => Func::Log,
            "min" => Func::Min,
            "max" => Func::Max,
            "clip" => Func::Clip,
            _ => return None,
        })
    }

    /// Allowed argument counts (min, max).
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Where | Func::Clip => (3, 3),
            Func::Abs | Func::Sqrt | Func::Exp | Func::Log => (1, 1),
            Func::Min | Func::Max => (2, usize::MAX),
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Number(f64),
    /// A band name.
    Var(String),
    /// A unary operation.
    Unary(UnaryOp, Box<Expr>),
    /// A binary operation.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// A function call.
    Call(Func, Vec<Expr>),
}

/// Named presets: spectral indices by their common band names.
pub const PRESETS: [(&str, &str); 4] = [
    ("ndvi", "(nir - red) / (nir + red)"),
    (
        "evi",
        "2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1)",
    ),
    ("ndwi", "(green - nir) / (green + nir)"),
    ("nbr", "(nir - swir22) / (nir + swir22)"),
];

/// The expression text of a preset (`ndvi`, `evi`, `ndwi`, `nbr`), case-insensitively.
pub fn preset(name: &str) -> Option<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, e)| *e)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Name(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
    End,
}

struct Lexer {
    tokens: Vec<(Token, usize)>,
}

fn lex(text: &str) -> Result<Lexer, (usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            if j < chars.len() && (chars[j] == 'e' || chars[j] == 'E') {
                let mut k = j + 1;
                if k < chars.len() && (chars[k] == '+' || chars[k] == '-') {
                    k += 1;
                }
                if k < chars.len() && chars[k].is_ascii_digit() {
                    j = k;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                }
            }
            let s: String = chars[i..j].iter().collect();
            let v: f64 = s
                .parse()
                .map_err(|_| (start, format!("{s:?} is not a number")))?;
            tokens.push((Token::Number(v), start));
            i = j;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            tokens.push((Token::Name(chars[i..j].iter().collect()), start));
            i = j;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op2 = ["<=", ">=", "==", "!=", "&&", "||"]
            .into_iter()
            .find(|o| two == *o);
        if let Some(op) = op2 {
            tokens.push((Token::Op(op), start));
            i += 2;
            continue;
        }
        let tok = match c {
            '+' => Token::Op("+"),
            '-' => Token::Op("-"),
            '*' => Token::Op("*"),
            '/' => Token::Op("/"),
            '^' => Token::Op("^"),
            '<' => Token::Op("<"),
            '>' => Token::Op(">"),
            '!' => Token::Op("!"),
            '(' => Token::LParen,
            ')' => Token::RParen,
            ',' => Token::Comma,
            other => return Err((start, format!("unexpected character {other:?}"))),
        };
        tokens.push((tok, start));
        i += 1;
    }
    tokens.push((Token::End, chars.len() + 1));
    Ok(Lexer { tokens })
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    depth: usize,
}

/// Deepest nesting accepted (keeps hostile input from exhausting the stack).
const MAX_DEPTH: usize = 200;

type PResult<T> = Result<T, (usize, String)>;

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos].0
    }

    fn at(&self) -> usize {
        self.tokens[self.pos].1
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].0.clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn is_op(&self, ops: &[&str]) -> Option<&'static str> {
        match self.peek() {
            Token::Op(o) if ops.contains(o) => Some(o),
            Token::Name(n) if ops.contains(&n.to_ascii_lowercase().as_str()) => {
                ["and", "or", "not"]
                    .into_iter()
                    .find(|k| n.eq_ignore_ascii_case(k))
            }
            _ => None,
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((
                self.at(),
                format!("nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = self.or();
        self.depth -= 1;
        e
    }

    fn or(&mut self) -> PResult<Expr> {
        let mut lhs = self.and()?;
        while self.is_op(&["or", "||"]).is_some() {
            self.next();
            lhs = Expr::Binary(BinaryOp::Or, Box::new(lhs), Box::new(self.and()?));
        }
        Ok(lhs)
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut lhs = self.cmp()?;
        while self.is_op(&["and", "&&"]).is_some() {
            self.next();
            lhs = Expr::Binary(BinaryOp::And, Box::new(lhs), Box::new(self.cmp()?));
        }
        Ok(lhs)
    }

    fn cmp(&mut self) -> PResult<Expr> {
        let lhs = self.sum()?;
        let op = match self.is_op(&["<", "<=", ">", ">=", "==", "!="]) {
            Some("<") => BinaryOp::Lt,
            Some("<=") => BinaryOp::Le,
            Some(">") => BinaryOp::Gt,
            Some(">=") => BinaryOp::Ge,
            Some("==") => BinaryOp::Eq,
            Some("!=") => BinaryOp::Ne,
            _ => return Ok(lhs),
        };
        self.next();
        Ok(Expr::Binary(op, Box::new(lhs), Box::new(self.sum()?)))
    }

    fn sum(&mut self) -> PResult<Expr> {
        let mut lhs = self.product()?;
        while let Some(op) = self.is_op(&["+", "-"]) {
            self.next();
            let rhs = self.product()?;
            let op = if op == "+" {
                BinaryOp::Add
            } else {
                BinaryOp::Sub
            };
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn product(&mut self) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.is_op(&["*", "/"]) {
            self.next();
            let rhs = self.unary()?;
            let op = if op == "*" {
                BinaryOp::Mul
            } else {
                BinaryOp::Div
            };
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = match self.is_op(&["-", "+", "!", "not"]) {
            Some("-") => {
                self.next();
                self.unary().map(|e| Expr::Unary(UnaryOp::Neg, Box::new(e)))
            }
            Some("+") => {
                self.next();
                self.unary()
            }
            Some(_) => {
                self.next();
                self.unary().map(|e| Expr::Unary(UnaryOp::Not, Box::new(e)))
            }
            None => self.power(),
        };
        self.depth -= 1;
        e
    }

    fn power(&mut self) -> PResult<Expr> {
        let base = self.primary()?;
        if self.is_op(&["^"]).is_some() {
            self.next();
            let exp = self.unary()?;
            return Ok(Expr::Binary(BinaryOp::Pow, Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let at = self.at();
        match self.next() {
            Token::Number(v) => Ok(Expr::Number(v)),
            Token::LParen => {
                let e = self.expr()?;
                let close = self.at();
                match self.next() {
                    Token::RParen => Ok(e),
                    _ => Err((close, "expected ')'".into())),
                }
            }
            Token::Name(name) if matches!(self.peek(), Token::LParen) => {
                let func = Func::lookup(&name).ok_or((at, format!("unknown function {name:?}")))?;
                self.next();
                let mut args = Vec::new();
                if !matches!(self.peek(), Token::RParen) {
                    loop {
                        args.push(self.expr()?);
                        match self.peek() {
                            Token::Comma => {
                                self.next();
                            }
                            Token::RParen => break,
                            _ => {
                                return Err((
                                    self.at(),
                                    "expected ',' or ')' in the argument list".into(),
                                ))
                            }
                        }
                    }
                }
                self.next();
                let (lo, hi) = func.arity();
                if args.len() < lo || args.len() > hi {
                    let want = if lo == hi {
                        format!("{lo}")
                    } else {
                        format!("at least {lo}")
                    };
                    return Err((
                        at,
                        format!("{name}() takes {want} arguments, got {}", args.len()),
                    ));
                }
                Ok(Expr::Call(func, args))
            }
            Token::Name(name)
                if ["and", "or", "not"]
                    .iter()
                    .any(|k| name.eq_ignore_ascii_case(k)) =>
            {
                Err((at, format!("expected a value, found {name:?}")))
            }
            Token::Name(name) => Ok(Expr::Var(name)),
            Token::End => Err((at, "unexpected end of expression".into())),
            Token::RParen => Err((at, "unexpected ')'".into())),
            Token::Comma => Err((at, "unexpected ','".into())),
            Token::Op(o) => Err((at, format!("expected a value, found {o:?}"))),
        }
    }
}

impl Expr {
    /// Parses an expression.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let err = |(position, message): (usize, String)| ExprError {
            expr: text.to_string(),
            position,
            message,
        };
        let lexer = lex(text).map_err(err)?;
        let mut p = Parser {
            tokens: lexer.tokens,
            pos: 0,
            depth: 0,
        };
        let e = p.expr().map_err(err)?;
        match p.peek() {
            Token::End => Ok(e),
            Token::RParen => Err(err((p.at(), "unmatched ')'".into()))),
            _ => Err(err((p.at(), "expected an operator".into()))),
        }
    }

    /// Band names the expression reads, in order of first use (as written).
    pub fn variables(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut Vec<String>) {
        match self {
            Expr::Number(_) => {}
            Expr::Var(v) => {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(v)) {
                    out.push(v.clone());
                }
            }
            Expr::Unary(_, e) => e.collect(out),
            Expr::Binary(_, a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.collect(out)),
        }
    }

    /// Evaluates over whole arrays. `value(name)` gives each variable's array (all the same
    /// shape `shape`; NaN where invalid). The result is NaN where any input used was invalid
    /// or the arithmetic is undefined (division by zero, sqrt of a negative).
    pub fn evaluate<'a>(
        &self,
        shape: (usize, usize, usize),
        value: &dyn Fn(&str) -> Option<&'a Array3<f32>>,
    ) -> Result<Array3<f32>, String> {
        let out = match self {
            Expr::Number(v) => Array3::from_elem(shape, *v as f32),
            Expr::Var(name) => {
                let a = value(name).ok_or_else(|| format!("unknown band {name:?}"))?;
                if a.dim() != shape {
                    return Err(format!(
                        "band {name:?} has shape {:?}, expected {shape:?}",
                        a.dim()
                    ));
                }
                a.clone()
            }
            Expr::Unary(op, e) => {
                let mut a = e.evaluate(shape, value)?;
                match op {
                    UnaryOp::Neg => a.mapv_inplace(|v| -v),
                    UnaryOp::Not => a.mapv_inplace(|v| {
                        if v.is_nan() {
                            v
                        } else {
                            (v == 0.0) as u8 as f32
                        }
                    }),
                }
                a
            }
            Expr::Binary(op, l, r) => {
                let mut a = l.evaluate(shape, value)?;
                let b = r.evaluate(shape, value)?;
                apply_binary(*op, &mut a, &b);
                a
            }
            Expr::Call(func, args) => {
                let mut vals = args
                    .iter()
                    .map(|a| a.evaluate(shape, value))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut a = vals.remove(0);
                match func {
                    Func::Abs => a.mapv_inplace(f32::abs),
                    Func::Sqrt => a.mapv_inplace(f32::sqrt),
                    Func::Exp => a.mapv_inplace(f32::exp),
                    Func::Log => a.mapv_inplace(f32::ln),
                    Func::Min | Func::Max => {
                        let pick: fn(f32, f32) -> f32 = if *func == Func::Min {
                            f32::min
                        } else {
                            f32::max
                        };
                        for b in &vals {
                            Zip::from(&mut a).and(b).for_each(|x, &y| {
                                *x = if x.is_nan() || y.is_nan() {
                                    f32::NAN
                                } else {
                                    pick(*x, y)
                                }
                            });
                        }
                    }
                    Func::Clip => {
                        Zip::from(&mut a)
                            .and(&vals[0])
                            .and(&vals[1])
                            .for_each(|x, &lo, &hi| {
                                *x = if x.is_nan() || lo.is_nan() || hi.is_nan() {
                                    f32::NAN
                                } else {
                                    x.max(lo).min(hi)
                                }
                            });
                    }
                    Func::Where => {
                        Zip::from(&mut a)
                            .and(&vals[0])
                            .and(&vals[1])
                            .for_each(|c, &t, &e| {
                                *c = if c.is_nan() {
                                    f32::NAN
                                } else if *c != 0.0 {
                                    t
                                } else {
                                    e
                                }
                            });
                    }
                }
                a
            }
        };
        Ok(out)
    }
}

/// Applies a binary operator element-wise into `a` (one monomorphic loop per operator).
fn apply_binary(op: BinaryOp, a: &mut Array3<f32>, b: &Array3<f32>) {
    macro_rules! zip {
        ($f:expr) => {
            Zip::from(a).and(b).for_each(|x, &y| *x = $f(*x, y))
        };
    }
    macro_rules! test {
        ($f:expr) => {
            zip!(|x: f32, y: f32| if x.is_nan() || y.is_nan() {
                f32::NAN
            } else {
                $f(x, y) as u8 as f32
            })
        };
    }
    match op {
        BinaryOp::Add => zip!(|x: f32, y: f32| x + y),
        BinaryOp::Sub => zip!(|x: f32, y: f32| x - y),
        BinaryOp::Mul => zip!(|x: f32, y: f32| x * y),
        BinaryOp::Div => zip!(|x: f32, y: f32| x / y),
        BinaryOp::Pow => zip!(f32::powf),
        BinaryOp::Lt => test!(|x: f32, y: f32| x < y),
        BinaryOp::Le => test!(|x: f32, y: f32| x <= y),
        BinaryOp::Gt => test!(|x: f32, y: f32| x > y),
        BinaryOp::Ge => test!(|x: f32, y: f32| x >= y),
        BinaryOp::Eq => test!(|x: f32, y: f32| x == y),
        BinaryOp::Ne => test!(|x: f32, y: f32| x != y),
        BinaryOp::And => test!(|x: f32, y: f32| x != 0.0 && y != 0.0),
        BinaryOp::Or => test!(|x: f32, y: f32| x != 0.0 || y != 0.0),
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(v) => write!(f, "{v}"),
            Expr::Var(v) => f.write_str(v),
            Expr::Unary(UnaryOp::Neg, e) => write!(f, "(-{e})"),
            Expr::Unary(UnaryOp::Not, e) => write!(f, "(not {e})"),
            Expr::Binary(op, a, b) => {
                let s = match op {
                    BinaryOp::Add => "+",
                    BinaryOp::Sub => "-",
                    BinaryOp::Mul => "*",
                    BinaryOp::Div => "/",
                    BinaryOp::Pow => "^",
                    BinaryOp::Lt => "<",
                    BinaryOp::Le => "<=",
                    BinaryOp::Gt => ">",
                    BinaryOp::Ge => ">=",
                    BinaryOp::Eq => "==",
                    BinaryOp::Ne => "!=",
                    BinaryOp::And => "and",
                    BinaryOp::Or => "or",
                };
                write!(f, "({a} {s} {b})")
            }
            Expr::Call(func, args) => {
                let names: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                write!(
                    f,
                    "{}({})",
                    format!("{func:?}").to_lowercase(),
                    names.join(", ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval1(text: &str, vars: &[(&str, f32)]) -> f32 {
        let arrays: Vec<(String, Array3<f32>)> = vars
            .iter()
            .map(|(n, v)| (n.to_string(), Array3::from_elem((1, 1, 1), *v)))
            .collect();
        let lookup = |name: &str| {
            arrays
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, a)| a)
        };
        Expr::parse(text)
            .unwrap()
            .evaluate((1, 1, 1), &lookup)
            .unwrap()[[0, 0, 0]]
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(
            Expr::parse("1 + 2 * 3").unwrap().to_string(),
            "(1 + (2 * 3))"
        );
        assert_eq!(Expr::parse("-x^2").unwrap().to_string(), "(-(x ^ 2))");
        assert_eq!(Expr::parse("2^3^2").unwrap().to_string(), "(2 ^ (3 ^ 2))");
        assert_eq!(
            Expr::parse("a - b - c").unwrap().to_string(),
            "((a - b) - c)"
        );
        assert_eq!(eval1("2^3^2", &[]), 512.0);
        assert_eq!(eval1("2^-1", &[]), 0.5);
        assert_eq!(eval1("1e-3 * 1000 + .5", &[]), 1.5);
    }

    #[test]
    fn presets_compute_indices() {
        let ndvi = eval1(preset("NDVI").unwrap(), &[("nir", 0.5), ("red", 0.1)]);
        assert!((ndvi - 0.4 / 0.6).abs() < 1e-6);
        let evi = eval1(
            preset("evi").unwrap(),
            &[("nir", 0.5), ("red", 0.1), ("blue", 0.05)],
        );
        assert!((evi - 2.5 * 0.4 / (0.5 + 0.6 - 0.375 + 1.0)).abs() < 1e-6);
        assert_eq!(
            Expr::parse(preset("nbr").unwrap()).unwrap().variables(),
            ["nir", "swir22"]
        );
    }

    #[test]
    fn functions_comparisons_and_nan() {
        assert_eq!(eval1("where(x > 0.3, 1, 0)", &[("x", 0.5)]), 1.0);
        assert_eq!(eval1("clip(x, 0, 1)", &[("x", 1.7)]), 1.0);
        assert_eq!(eval1("max(x, 2, 3)", &[("x", 1.0)]), 3.0);
        assert_eq!(eval1("min(abs(x), sqrt(16))", &[("x", -9.0)]), 4.0);
        assert_eq!(eval1("x > 0 and not (x > 1) or 0", &[("x", 0.5)]), 1.0);
        assert!(eval1("x / 0 * 0", &[("x", 0.0)]).is_nan());
        assert!(eval1("where(x > 0, 1, 0)", &[("x", f32::NAN)]).is_nan());
        assert!(eval1("max(x, 1)", &[("x", f32::NAN)]).is_nan());
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            ("(nir - red", 11, "expected ')'"),
            ("nir -", 6, "unexpected end"),
            ("nir $ red", 5, "unexpected character"),
            ("nir red", 5, "expected an operator"),
            ("foo(nir)", 1, "unknown function"),
            ("clip(nir, 1)", 1, "takes 3 arguments"),
            ("nir)", 4, "unmatched ')'"),
            ("1..2", 1, "not a number"),
            ("", 1, "unexpected end"),
        ];
        for (text, pos, msg) in cases {
            let e = Expr::parse(text).unwrap_err();
            assert_eq!(e.position, pos, "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
            assert!(e.to_string().contains(&format!("character {pos}")));
        }
        let deep = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        assert!(Expr::parse(&deep).unwrap_err().message.contains("nested"));
    }

    #[test]
    fn unknown_band_is_an_evaluation_error() {
        let e = Expr::parse("nir + swir").unwrap();
        let nir = Array3::from_elem((1, 2, 2), 1.0);
        let lookup = |n: &str| (n == "nir").then_some(&nir);
        assert!(e.evaluate((1, 2, 2), &lookup).unwrap_err().contains("swir"));
    }
}
