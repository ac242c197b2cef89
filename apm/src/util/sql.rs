//! SQL statements to span names, as the Elastic spec has them (`specs/agents/
//! tracing-instrumentation-db.md`, "SQL-based databases"): a low-cardinality signature such
//! as `SELECT FROM orders` or `INSERT INTO shop.carts`, never the statement's values.
//!
//! A small scanner splits the statement into tokens (keywords, identifiers, literals,
//! comments, punctuation) the way the cross-agent fixtures `sql_token_examples.json` expect;
//! [`signature`] reads as few of them as it needs
//! (`sql_signature_examples.json`).
//!
//! ```
//! use apm::sql::signature;
//!
//! assert_eq!(signature("SELECT * FROM shop.orders WHERE id = $1"), "SELECT FROM shop.orders");
//! assert_eq!(signature("UPDATE ONLY carts SET total = 0"), "UPDATE carts");
//! assert_eq!(signature("CREATE TABLE t (id int)"), "CREATE");
//! ```

use std::iter::Peekable;

/// How much of a statement [`signature`] reads.
const MAX_SCANNED: usize = 32 * 1024;

/// What a token is. Keywords the signature looks for have kinds of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Other,
    Comment,
    Ident,
    Number,
    String,
    Period,
    Comma,
    LParen,
    RParen,
    As,
    Call,
    Delete,
    From,
    Insert,
    Into,
    Merge,
    Or,
    Replace,
    Select,
    Set,
    Table,
    Truncate,
    Update,
    Using,
}

const KEYWORDS: [(&str, Kind); 15] = [
    ("AS", Kind::As),
    ("CALL", Kind::Call),
    ("DELETE", Kind::Delete),
    ("FROM", Kind::From),
    ("INSERT", Kind::Insert),
    ("INTO", Kind::Into),
    ("MERGE", Kind::Merge),
    ("OR", Kind::Or),
    ("REPLACE", Kind::Replace),
    ("SELECT", Kind::Select),
    ("SET", Kind::Set),
    ("TABLE", Kind::Table),
    ("TRUNCATE", Kind::Truncate),
    ("UPDATE", Kind::Update),
    ("USING", Kind::Using),
];

impl Kind {
    /// The name the cross-agent fixtures use.
    #[cfg(all(test, feature = "enable"))]
    fn name(self) -> &'static str {
        match self {
            Kind::Other => "OTHER",
            Kind::Comment => "COMMENT",
            Kind::Ident => "IDENT",
            Kind::Number => "NUMBER",
            Kind::String => "STRING",
            Kind::Period => "PERIOD",
            Kind::Comma => "COMMA",
            Kind::LParen => "LPAREN",
            Kind::RParen => "RPAREN",
            keyword => KEYWORDS
                .iter()
                .find(|(_, k)| *k == keyword)
                .map_or("?", |(name, _)| name),
        }
    }
}

/// A token and its text (a quoted identifier's text is what is between the quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: Kind,
    pub(crate) text: &'a str,
}

/// The tokens of a statement, whitespace left out.
pub(crate) struct Scanner<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(src: &'a str) -> Scanner<'a> {
        Scanner { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// A token of `kind` from here to `end` (a byte offset into the statement).
    fn token(&mut self, kind: Kind, end: usize) -> Token<'a> {
        let text = &self.src[self.pos..end];
        self.pos = end;
        Token { kind, text }
    }

    /// A quoted identifier closed by `close`; a doubled `close` stands for itself.
    fn quoted_ident(&mut self, close: char) -> Token<'a> {
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match self.src[i..].find(close) {
                Some(at) if self.src[i + at + 1..].starts_with(close) && close != ']' => {
                    i += at + 2;
                }
                Some(at) => {
                    let text = &self.src[start..i + at];
                    self.pos = i + at + close.len_utf8();
                    return Token {
                        kind: Kind::Ident,
                        text,
                    };
                }
                None => {
                    // Unterminated: probably not a quote. Up to the next whitespace, and not
                    // an identifier, so that the rest of the statement (values included)
                    // never becomes a name.
                    let rest = &self.src[self.pos..];
                    let word = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    return self.token(Kind::Other, self.pos + word);
                }
            }
        }
    }

    /// `'…'`, with `''` and backslash escapes; unterminated, the rest of the statement.
    fn string(&mut self) -> Token<'a> {
        let bytes = self.src.as_bytes();
        let mut i = self.pos + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                b'\'' => return self.token(Kind::String, i + 1),
                _ => i += 1,
            }
        }
        self.token(Kind::String, self.src.len())
    }

    /// `$tag$…$tag$` (a string), or `$1`, `$name`, `$` (something else). An unterminated
    /// `$tag$` was probably not a quote: only the text up to the next whitespace is taken.
    fn dollar(&mut self) -> Token<'a> {
        let rest = self.rest();
        let tag_len = rest[1..]
            .find(|c: char| !is_ident_char(c) || c == '$')
            .unwrap_or(rest.len() - 1);
        if rest[1 + tag_len..].starts_with('$') {
            let open = &rest[..tag_len + 2];
            if let Some(at) = rest[open.len()..].find(open) {
                return self.token(Kind::String, self.pos + open.len() + at + open.len());
            }
            let word = rest.find(char::is_whitespace).unwrap_or(rest.len());
            return self.token(Kind::Other, self.pos + word);
        }
        self.token(Kind::Other, self.pos + 1 + tag_len)
    }

    /// `/* … */`, nested ones included; unterminated, the rest of the statement.
    fn block_comment(&mut self) -> Token<'a> {
        let mut depth = 0usize;
        let mut i = self.pos;
        let bytes = self.src.as_bytes();
        while i + 1 < bytes.len() {
            match (bytes[i], bytes[i + 1]) {
                (b'/', b'*') => {
                    depth += 1;
                    i += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        return self.token(Kind::Comment, i);
                    }
                }
                _ => i += 1,
            }
        }
        self.token(Kind::Comment, self.src.len())
    }

    fn number(&mut self) -> Token<'a> {
        let bytes = self.src.as_bytes();
        let digits = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut end = digits(self.pos);
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end = digits(end + 1);
        }
        if matches!(bytes.get(end), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
            if bytes.get(end + 1 + sign).is_some_and(u8::is_ascii_digit) {
                end = digits(end + 1 + sign);
            }
        }
        self.token(Kind::Number, end)
    }

    fn word(&mut self) -> Token<'a> {
        let rest = self.rest();
        let len = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
        let text = &rest[..len];
        let kind = KEYWORDS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(text))
            .map_or(Kind::Ident, |(_, kind)| *kind);
        self.token(kind, self.pos + len)
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let skipped = self.rest().len() - self.rest().trim_start().len();
        self.pos += skipped;
        let rest = self.rest();
        let c = rest.chars().next()?;
        let line_end = |r: &str| r.find('\n').unwrap_or(r.len());
        Some(match c {
            '/' if rest.starts_with("/*") => self.block_comment(),
            '-' if rest.starts_with("--") => self.token(Kind::Comment, self.pos + line_end(rest)),
            '/' if rest.starts_with("//") => self.token(Kind::Comment, self.pos + line_end(rest)),
            '\'' => self.string(),
            '"' => self.quoted_ident('"'),
            '`' => self.quoted_ident('`'),
            '[' => self.quoted_ident(']'),
            '$' => self.dollar(),
            '(' => self.token(Kind::LParen, self.pos + 1),
            ')' => self.token(Kind::RParen, self.pos + 1),
            '.' => self.token(Kind::Period, self.pos + 1),
            ',' => self.token(Kind::Comma, self.pos + 1),
            '0'..='9' => self.number(),
            c if c.is_alphabetic() || c == '_' => self.word(),
            c => self.token(Kind::Other, self.pos + c.len_utf8()),
        })
    }
}

/// The span name the spec gives a SQL statement: the statement's kind and, for `SELECT`,
/// `INSERT`, `UPDATE`, `DELETE`, `MERGE` and `CALL`, the first table or procedure it names
/// (`SELECT FROM a.b`, `CALL proc`); for anything else, or a statement it cannot read, its
/// first word in upper case. Values never appear in it. ODBC/JDBC escapes read as the SQL
/// they stand for (`{call proc(?)}` is `CALL proc`, `{oj …}` an outer join), a CQL `USING
/// TIMESTAMP` ends the table's name, and so does an Oracle database link (`t@link`: see
/// [`db_link`]).
///
/// ```
/// use apm::sql::signature;
///
/// assert_eq!(signature("MERGE INTO stock AS s USING delivery AS d ON s.id = d.id"), "MERGE INTO stock");
/// assert_eq!(signature("{? = call shop.total(?)}"), "CALL shop.total");
/// assert_eq!(signature("UPDATE ks.carts USING TIMESTAMP 1 SET n = 2"), "UPDATE ks.carts");
/// ```
pub fn signature(statement: &str) -> String {
    parse(statement).0
}

/// The Oracle database link a statement's table is reached through (`orders@remote`, or
/// `orders@"remote.example.com@user"` quoted), for `context.db.link`.
///
/// ```
/// assert_eq!(apm::sql::db_link("SELECT * FROM orders@remote").as_deref(), Some("remote"));
/// assert_eq!(apm::sql::db_link("SELECT * FROM orders"), None);
/// ```
pub fn db_link(statement: &str) -> Option<String> {
    parse(statement).1
}

/// The signature and the database link.
fn parse(statement: &str) -> (String, Option<String>) {
    // The signature is found near the start; a bound keeps an odd statement (thousands of
    // unterminated `$tag$`s, each searched for to the end) from costing quadratic time.
    let mut end = statement.len().min(MAX_SCANNED);
    while !statement.is_char_boundary(end) {
        end -= 1;
    }
    let mut tokens = Escapes::new(Scanner::new(&statement[..end])).peekable();
    // A statement that starts with something other than a word (a literal, a quote) has no
    // name to give that would not be a value.
    let Some(first) = tokens
        .next()
        .filter(|t| t.kind == Kind::Ident || KEYWORDS.iter().any(|(_, k)| *k == t.kind))
    else {
        return (String::new(), None);
    };
    let upper = first.text.to_uppercase();
    let table = match first.kind {
        Kind::Call => qualified_name(&mut tokens).map(|t| ("CALL".to_owned(), t)),
        Kind::Delete => tokens
            .next_if(|t| t.kind == Kind::From)
            .and_then(|_| qualified_name(&mut tokens))
            .map(|t| ("DELETE FROM".to_owned(), t)),
        Kind::Insert | Kind::Replace => tokens
            .by_ref()
            .find(|t| t.kind == Kind::Into)
            .and_then(|_| qualified_name(&mut tokens))
            .map(|t| (format!("{upper} INTO"), t)),
        Kind::Merge => {
            let into = tokens.next_if(|t| t.kind == Kind::Into).is_some();
            qualified_name(&mut tokens).map(|t| {
                let prefix = if into { "MERGE INTO" } else { "MERGE" };
                (prefix.to_owned(), t)
            })
        }
        Kind::Select => select_table(&mut tokens).map(|t| ("SELECT FROM".to_owned(), t)),
        Kind::Update => update_table(&mut tokens).map(|t| ("UPDATE".to_owned(), t)),
        _ => None,
    };
    match table {
        Some((prefix, table)) => (format!("{prefix} {table}"), link(&mut tokens)),
        None => (upper, None),
    }
}

/// The database link right after a table's name: `@name`, `@a.b`, or `@"quoted"`.
fn link<'a>(tokens: &mut Peekable<impl Iterator<Item = Token<'a>>>) -> Option<String> {
    tokens.next_if(|t| t.kind == Kind::Other && t.text == "@")?;
    qualified_name(tokens)
}

/// The tokens of a statement without its comments, and with ODBC/JDBC escapes read as the
/// SQL they stand for: `{` and `}` are left out, and so are `oj` right after `{` and the
/// `?` and `=` of `{? = call f(?)}` inside them.
struct Escapes<'a> {
    tokens: Scanner<'a>,
    /// Open escape braces.
    depth: usize,
    /// The previous token was `{`.
    after_open: bool,
}

impl<'a> Escapes<'a> {
    fn new(tokens: Scanner<'a>) -> Escapes<'a> {
        Escapes {
            tokens,
            depth: 0,
            after_open: false,
        }
    }
}

impl<'a> Iterator for Escapes<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            let t = self.tokens.next()?;
            let after_open = std::mem::replace(&mut self.after_open, false);
            match (t.kind, t.text) {
                (Kind::Comment, _) => {}
                (Kind::Other, "{") => {
                    self.depth += 1;
                    self.after_open = true;
                }
                (Kind::Other, "}") if self.depth > 0 => self.depth -= 1,
                (Kind::Ident, oj) if after_open && oj.eq_ignore_ascii_case("oj") => {}
                (Kind::Other, "?" | "=") if self.depth > 0 => {}
                _ => return Some(t),
            }
        }
    }
}

/// `a.b.c` from the next tokens, which must start with an identifier.
fn qualified_name<'a>(tokens: &mut Peekable<impl Iterator<Item = Token<'a>>>) -> Option<String> {
    let first = tokens.next_if(|t| t.kind == Kind::Ident)?;
    Some(with_qualifiers(first.text.to_owned(), tokens))
}

/// `name` followed by the `.part`s the next tokens add.
fn with_qualifiers<'a>(
    mut name: String,
    tokens: &mut Peekable<impl Iterator<Item = Token<'a>>>,
) -> String {
    while tokens.next_if(|t| t.kind == Kind::Period).is_some() {
        let Some(part) = tokens.next_if(|t| t.kind == Kind::Ident) else {
            break;
        };
        name.push('.');
        name.push_str(part.text);
    }
    name
}

/// The first table of the outermost `FROM`; `None` when it is a derived table (`FROM
/// (SELECT …)`) or there is none.
fn select_table<'a>(tokens: &mut Peekable<impl Iterator<Item = Token<'a>>>) -> Option<String> {
    let mut depth = 0usize;
    while let Some(t) = tokens.next() {
        match t.kind {
            Kind::LParen => depth += 1,
            Kind::RParen => depth = depth.saturating_sub(1),
            Kind::From if depth == 0 => return qualified_name(tokens),
            _ => {}
        }
    }
    None
}

/// The table of an `UPDATE`. Option words before it (`IGNORE`, `ONLY`, `LOW_PRIORITY`) scan
/// as identifiers too: of a run of identifiers, the last is the table.
fn update_table<'a>(tokens: &mut Peekable<impl Iterator<Item = Token<'a>>>) -> Option<String> {
    // The table comes before any keyword (`SET`, `AS`, ...).
    let mut name = loop {
        let t = tokens.next()?;
        match t.kind {
            Kind::Ident => break t.text,
            kind if KEYWORDS.iter().any(|(_, k)| *k == kind) => return None,
            _ => {}
        }
    };
    while let Some(next) = tokens.next_if(|t| t.kind == Kind::Ident) {
        name = next.text;
    }
    Some(with_qualifiers(name.to_owned(), tokens))
}

#[cfg(all(test, feature = "enable"))]
mod tests {
    use super::*;

    /// The cases of a fixture (there are at least `expected`), or `None` when it is absent.
    fn cases(name: &str, expected: usize) -> Option<Vec<serde_json::Value>> {
        let text = crate::util::spec_fixture::read(&format!("agent-json-specs/{name}"))?;
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).expect("a JSON array");
        assert!(all.len() >= expected, "{name}: {} cases", all.len());
        Some(all)
    }

    #[test]
    fn tokens_match_every_cross_agent_example() {
        let Some(cases) = cases("sql_token_examples.json", 14) else {
            return;
        };
        for case in cases {
            let input = case["input"].as_str().expect("input");
            let expected: Vec<(String, String)> = case["tokens"]
                .as_array()
                .map(|tokens| {
                    tokens
                        .iter()
                        .map(|t| {
                            (
                                t["kind"].as_str().unwrap_or("").to_owned(),
                                t["text"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let got: Vec<(String, String)> = Scanner::new(input)
                .map(|t| (t.kind.name().to_owned(), t.text.to_owned()))
                .collect();
            assert_eq!(got, expected, "{}: {input:?}", case["name"]);
        }
    }

    #[test]
    fn signatures_match_every_cross_agent_example() {
        let Some(cases) = cases("sql_signature_examples.json", 35) else {
            return;
        };
        for case in cases {
            let input = case["input"].as_str().expect("input");
            let output = case["output"].as_str().expect("output");
            assert_eq!(signature(input), output, "{input:?} ({})", case["comment"]);
        }
    }

    #[test]
    fn odd_statements_do_not_panic() {
        for sql in [
            "\"",
            "`",
            "[",
            "'",
            "$",
            "$$",
            "$a",
            "/*",
            "/* /* */",
            "--",
            "1e",
            "1.",
            "1e+",
            "é",
            "UPDATE a.",
            "UPDATE a. b",
            "SELECT FROM",
            "CALL a.",
            "\u{1F980}",
        ] {
            let _ = signature(sql);
            let _ = Scanner::new(sql).count();
        }
        assert_eq!(signature("select * from Orders"), "SELECT FROM Orders");
        // Unterminated quotes and leading literals never put values into the name.
        assert_eq!(signature("UPDATE `users SET password='hunter2'"), "UPDATE");
        assert_eq!(signature("SELECT * FROM \"t WHERE ssn='1'"), "SELECT");
        assert_eq!(signature("'secret' AS x"), "");
        assert_eq!(signature("$$body$$ SELECT"), "");
        // A bounded cost for a statement of unterminated dollar tags.
        let odd: String = (0..20_000).map(|i| format!("$a{i}$ ")).collect();
        assert_eq!(signature(&format!("SELECT {odd}")), "SELECT");
        assert_eq!(signature("replace into t values (1)"), "REPLACE INTO t");
    }

    /// The statements other Elastic agents name beyond the shared fixtures (the Java agent's
    /// signature parser and JDBC escape filter are the reference).
    #[test]
    fn merge_escapes_cql_and_database_links() {
        for (sql, expected) in [
            (
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
                "MERGE INTO t",
            ),
            ("merge into s.t as x using u on x.a = u.a", "MERGE INTO s.t"),
            ("MERGE t USING s ON t.id = s.id", "MERGE t"),
            ("{call proc(?, ?)}", "CALL proc"),
            ("{ call pkg.proc(?) }", "CALL pkg.proc"),
            ("{? = call f(?)}", "CALL f"),
            ("{?=call f()}", "CALL f"),
            (
                "SELECT * FROM {oj t1 LEFT OUTER JOIN t2 ON t1.a = t2.a}",
                "SELECT FROM t1",
            ),
            (
                "INSERT INTO ks.t (a) VALUES (1) USING TIMESTAMP 123",
                "INSERT INTO ks.t",
            ),
            (
                "UPDATE ks.t USING TIMESTAMP 1 SET a = 1 WHERE b = 2",
                "UPDATE ks.t",
            ),
            ("UPDATE t USING TTL 60 SET a = 1", "UPDATE t"),
            (
                "DELETE FROM ks.t USING TIMESTAMP 1 WHERE a = 1",
                "DELETE FROM ks.t",
            ),
            ("SELECT * FROM TABLE1@DBLINK", "SELECT FROM TABLE1"),
            (
                "SELECT * FROM TABLE1@\"DBLINK.FQDN.COM@USER\"",
                "SELECT FROM TABLE1",
            ),
            (
                "UPDATE foo.bar@\"DBLINK.FQDN.COM@USER\" SET bar=1 WHERE baz=2",
                "UPDATE foo.bar",
            ),
            // A `?` or `=` outside an escape is not skipped.
            ("SELECT a FROM t WHERE a = ?", "SELECT FROM t"),
        ] {
            assert_eq!(signature(sql), expected, "{sql:?}");
        }
        for (sql, expected) in [
            ("SELECT * FROM TABLE1@DBLINK", Some("DBLINK")),
            (
                "SELECT * FROM TABLE1@\"DBLINK.FQDN.COM\"",
                Some("DBLINK.FQDN.COM"),
            ),
            (
                "SELECT * FROM TABLE1@\"DBLINK.FQDN.COM@USER\"",
                Some("DBLINK.FQDN.COM@USER"),
            ),
            (
                "UPDATE foo.bar@\"DBLINK.FQDN.COM@USER\" SET bar=1 WHERE baz=2",
                Some("DBLINK.FQDN.COM@USER"),
            ),
            ("SELECT * FROM remote.t@a.b WHERE x = 1", Some("a.b")),
            ("SELECT * FROM t WHERE email = 'a@b.c'", None),
            ("SELECT 1", None),
        ] {
            assert_eq!(db_link(sql).as_deref(), expected, "{sql:?}");
        }
    }
}
