//! Query parameters as psycopg2 takes them: `%s` placeholders for positional parameters,
//! `%(name)s` for named ones, `%%` for a percent sign, with every value rendered as a SQL
//! literal on the client ([`mogrify`]).
//!
//! This module owns the placeholder grammar and the [`Params`] shapes (tuples, slices,
//! vectors, maps). It never sends anything and never guesses: a query whose placeholders do
//! not match its parameters is a Usage error naming the problem, and a query with no
//! parameters at all is left untouched (Momoko issue 136: `SELECT 'a%s'` and `100%` work).

use std::collections::{BTreeMap, HashMap};

use crate::error::Error;
use crate::types::{QuoteContext, ToSql, Value};

/// The parameters of a query: positional (`%s`) or named (`%(name)s`).
///
/// Implemented for `()`, tuples of up to 16 [`ToSql`] values, slices, arrays and vectors of
/// `ToSql` values (`Vec<Value>`, `&[&dyn ToSql]`), and maps or [`Named`] for named
/// parameters.
///
/// ```
/// use momoko::{Params, QuoteContext};
/// let ctx = QuoteContext::default();
/// assert_eq!((1i32, "two").render("SELECT %s, %s", &ctx).unwrap(), "SELECT 1, 'two'");
/// assert_eq!(().render("SELECT '100%'", &ctx).unwrap(), "SELECT '100%'");
/// ```
pub trait Params {
    /// The number of parameters (positional or named).
    fn len(&self) -> usize;

    /// True for named parameters (`%(name)s`).
    fn is_named(&self) -> bool {
        false
    }

    /// The positional parameter at `index`.
    fn get_positional(&self, index: usize) -> Option<&dyn ToSql>;

    /// The named parameter `name`.
    fn get_named(&self, name: &str) -> Option<&dyn ToSql> {
        let _ = name;
        None
    }

    /// The names of named parameters, in a stable order.
    fn names(&self) -> Vec<&str> {
        Vec::new()
    }

    /// True when there are no parameters: the query is then sent as it is, and `%` in it is
    /// literal.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The query with every placeholder replaced by its parameter's literal.
    fn render(&self, query: &str, ctx: &QuoteContext) -> Result<String, Error> {
        render(query, self, ctx)
    }

    /// An owned copy of the parameters, for storing a query to send it later (or again).
    fn to_values(&self) -> ParamValues {
        if self.is_named() {
            ParamValues::Named(
                self.names()
                    .into_iter()
                    .filter_map(|n| Some((n.to_owned(), self.get_named(n)?.to_value())))
                    .collect(),
            )
        } else {
            ParamValues::Positional(
                (0..self.len())
                    .filter_map(|i| Some(self.get_positional(i)?.to_value()))
                    .collect(),
            )
        }
    }

    /// The parameters in order, for the extended protocol (`$1`, `$2`…). Named parameters
    /// have no order: a Usage error.
    fn positional(&self) -> Result<Vec<Value>, Error> {
        if self.is_named() && !self.is_empty() {
            return Err(Error::usage(
                "named parameters cannot be bound to $n placeholders; pass them in order",
            ));
        }
        Ok((0..self.len())
            .filter_map(|i| Some(self.get_positional(i)?.to_value()))
            .collect())
    }
}

/// Parameters in owned form: what the pool keeps to retry a query.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValues {
    /// `%s` parameters in order.
    Positional(Vec<Value>),
    /// `%(name)s` parameters.
    Named(BTreeMap<String, Value>),
}

impl Default for ParamValues {
    fn default() -> ParamValues {
        ParamValues::Positional(Vec::new())
    }
}

impl Params for ParamValues {
    fn len(&self) -> usize {
        match self {
            ParamValues::Positional(v) => v.len(),
            ParamValues::Named(m) => m.len(),
        }
    }
    fn is_named(&self) -> bool {
        matches!(self, ParamValues::Named(_))
    }
    fn get_positional(&self, index: usize) -> Option<&dyn ToSql> {
        match self {
            ParamValues::Positional(v) => v.get(index).map(|v| v as &dyn ToSql),
            ParamValues::Named(_) => None,
        }
    }
    fn get_named(&self, name: &str) -> Option<&dyn ToSql> {
        match self {
            ParamValues::Named(m) => m.get(name).map(|v| v as &dyn ToSql),
            ParamValues::Positional(_) => None,
        }
    }
    fn names(&self) -> Vec<&str> {
        match self {
            ParamValues::Named(m) => m.keys().map(String::as_str).collect(),
            ParamValues::Positional(_) => Vec::new(),
        }
    }
    fn to_values(&self) -> ParamValues {
        self.clone()
    }
}

/// Named parameters for `%(name)s` placeholders; build them with [`named`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Named(BTreeMap<String, Value>);

impl Named {
    /// No parameters yet.
    pub fn new() -> Named {
        Named::default()
    }

    /// Adds (or replaces) the parameter `name`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) -> &mut Named {
        self.0.insert(name.into(), value.into());
        self
    }

    /// The parameters as a map.
    pub fn as_map(&self) -> &BTreeMap<String, Value> {
        &self.0
    }
}

impl From<BTreeMap<String, Value>> for Named {
    fn from(map: BTreeMap<String, Value>) -> Named {
        Named(map)
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Named {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Named {
        Named(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Named parameters from `(name, value)` pairs.
///
/// ```
/// use momoko::{named, Params, QuoteContext, Value};
/// let p = named([("x", Value::from(3i32)), ("y", Value::from("why"))]);
/// let sql = p.render("SELECT %(x)s, %(y)s, %(x)s", &QuoteContext::default()).unwrap();
/// assert_eq!(sql, "SELECT 3, 'why', 3");
/// ```
pub fn named<K: Into<String>, I: IntoIterator<Item = (K, Value)>>(items: I) -> Named {
    items.into_iter().collect()
}

impl Params for Named {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_named(&self) -> bool {
        true
    }
    fn get_positional(&self, _: usize) -> Option<&dyn ToSql> {
        None
    }
    fn get_named(&self, name: &str) -> Option<&dyn ToSql> {
        self.0.get(name).map(|v| v as &dyn ToSql)
    }
    fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl<V: ToSql> Params for BTreeMap<String, V> {
    fn len(&self) -> usize {
        BTreeMap::len(self)
    }
    fn is_named(&self) -> bool {
        true
    }
    fn get_positional(&self, _: usize) -> Option<&dyn ToSql> {
        None
    }
    fn get_named(&self, name: &str) -> Option<&dyn ToSql> {
        self.get(name).map(|v| v as &dyn ToSql)
    }
    fn names(&self) -> Vec<&str> {
        self.keys().map(String::as_str).collect()
    }
}

impl<V: ToSql, S: std::hash::BuildHasher> Params for HashMap<String, V, S> {
    fn len(&self) -> usize {
        HashMap::len(self)
    }
    fn is_named(&self) -> bool {
        true
    }
    fn get_positional(&self, _: usize) -> Option<&dyn ToSql> {
        None
    }
    fn get_named(&self, name: &str) -> Option<&dyn ToSql> {
        self.get(name).map(|v| v as &dyn ToSql)
    }
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl<P: Params + ?Sized> Params for &P {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn is_named(&self) -> bool {
        (**self).is_named()
    }
    fn get_positional(&self, index: usize) -> Option<&dyn ToSql> {
        (**self).get_positional(index)
    }
    fn get_named(&self, name: &str) -> Option<&dyn ToSql> {
        (**self).get_named(name)
    }
    fn names(&self) -> Vec<&str> {
        (**self).names()
    }
}

impl<T: ToSql> Params for [T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn get_positional(&self, index: usize) -> Option<&dyn ToSql> {
        self.get(index).map(|v| v as &dyn ToSql)
    }
}

impl<T: ToSql> Params for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn get_positional(&self, index: usize) -> Option<&dyn ToSql> {
        self.get(index).map(|v| v as &dyn ToSql)
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn len(&self) -> usize {
        N
    }
    fn get_positional(&self, index: usize) -> Option<&dyn ToSql> {
        self.get(index).map(|v| v as &dyn ToSql)
    }
}

impl Params for () {
    fn len(&self) -> usize {
        0
    }
    fn get_positional(&self, _: usize) -> Option<&dyn ToSql> {
        None
    }
}

macro_rules! tuple_params {
    ($n:expr; $($t:ident $i:tt),+) => {
        impl<$($t: ToSql),+> Params for ($($t,)+) {
            fn len(&self) -> usize {
                $n
            }
            fn get_positional(&self, index: usize) -> Option<&dyn ToSql> {
                match index {
                    $($i => Some(&self.$i as &dyn ToSql),)+
                    _ => None,
                }
            }
        }
    };
}

tuple_params!(1; A 0);
tuple_params!(2; A 0, B 1);
tuple_params!(3; A 0, B 1, C 2);
tuple_params!(4; A 0, B 1, C 2, D 3);
tuple_params!(5; A 0, B 1, C 2, D 3, E 4);
tuple_params!(6; A 0, B 1, C 2, D 3, E 4, F 5);
tuple_params!(7; A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_params!(8; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_params!(9; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_params!(10; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_params!(11; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_params!(12; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
tuple_params!(13; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
tuple_params!(14; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
tuple_params!(15; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
tuple_params!(16; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);

/// The query with its parameters quoted in, exactly as psycopg2's `cursor.mogrify` writes it.
///
/// With no parameters at all the query comes back unchanged (so `%` is literal there, as in
/// Momoko). Otherwise `%s` takes the next positional parameter, `%(name)s` the named one (a
/// name may repeat), `%%` is `%`; anything else after `%` is a Usage error, as are too few
/// or too many positional parameters, a missing name, and mixing the two styles.
///
/// ```
/// use momoko::QuoteContext;
/// let sql = momoko::mogrify("SELECT %s, %s", &("it's", 1i32), &QuoteContext::default()).unwrap();
/// assert_eq!(sql, "SELECT 'it''s', 1");
/// ```
///
/// The result cannot be dropped unseen (PHP's GHSA-hrwm-9436-5mv3 ignored its escaping
/// routine's error): an ignored `mogrify` is a warning, an error under
/// `deny(unused_must_use)`.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// momoko::mogrify("SELECT %s", &(1i32,), &momoko::QuoteContext::default());
/// ```
///
/// The same holds for [`Connection::mogrify`](crate::Connection::mogrify), which returns a
/// `Result` (itself `#[must_use]`):
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn render(conn: &momoko::Connection) {
///     conn.mogrify("SELECT %s", (1i32,));
/// }
/// ```
#[must_use = "mogrify only returns the rendered query"]
pub fn mogrify<P: Params + ?Sized>(
    query: &str,
    params: &P,
    ctx: &QuoteContext,
) -> Result<String, Error> {
    render(query, params, ctx)
}

fn render<P: Params + ?Sized>(
    query: &str,
    params: &P,
    ctx: &QuoteContext,
) -> Result<String, Error> {
    if params.is_empty() {
        return Ok(query.to_owned());
    }
    let named = params.is_named();
    let mut out = String::with_capacity(query.len() + 16 * params.len());
    let mut next = 0usize;
    let mut rest = query;
    let mut offset = 0usize;
    while let Some(p) = rest.find('%') {
        out.push_str(&rest[..p]);
        let at = offset + p;
        let after = &rest[p + 1..];
        let mut chars = after.chars();
        let consumed =
            match chars.next() {
                None if named => return Err(Error::usage(
                    "argument formats can't be mixed: a lone '%' at the end with named parameters",
                )),
                None => {
                    return Err(Error::usage(
                        "incomplete format: the query ends with a lone '%'",
                    ))
                }
                Some('%') => {
                    out.push('%');
                    1
                }
                Some('(') => {
                    let close = after
                        .find(')')
                        .ok_or_else(|| Error::usage("incomplete placeholder: '%(' without ')'"))?;
                    let name = &after[1..close];
                    match after[close + 1..].chars().next() {
                        None => {
                            return Err(Error::usage(format!(
                                "incomplete format: the placeholder %({name}) has no conversion"
                            )))
                        }
                        Some('s') => {}
                        Some(c) => return Err(unsupported(c, at + close + 2)),
                    }
                    if !named {
                        return Err(Error::usage(format!(
                        "argument formats can't be mixed: %({name})s with positional parameters"
                    )));
                    }
                    let v = params.get_named(name).ok_or_else(|| {
                        Error::usage(format!("no parameter named {name:?} for %({name})s"))
                    })?;
                    v.write_literal(ctx, &mut out)?;
                    close + 2
                }
                Some('s') => {
                    if named {
                        return Err(Error::usage(
                            "argument formats can't be mixed: %s with named parameters",
                        ));
                    }
                    let v = params.get_positional(next).ok_or_else(|| {
                        Error::usage(format!(
                        "not enough parameters: {} given, but the query has more %s placeholders",
                        params.len()
                    ))
                    })?;
                    v.write_literal(ctx, &mut out)?;
                    next += 1;
                    1
                }
                // psycopg2 reads any other '%' in a named query as a positional placeholder.
                Some(c) if named => {
                    return Err(Error::usage(format!(
                    "argument formats can't be mixed: '%{c}' at index {at} with named parameters"
                )));
                }
                Some(c) => return Err(unsupported(c, at + 1)),
            };
        let advance = p + 1 + consumed;
        rest = &rest[advance..];
        offset += advance;
    }
    out.push_str(rest);
    if !named && next < params.len() {
        return Err(Error::usage(format!(
            "not all arguments converted during string formatting: {} parameters given, {next} placeholders",
            params.len()
        )));
    }
    Ok(out)
}

fn unsupported(c: char, index: usize) -> Error {
    Error::usage(format!(
        "unsupported format character '{c}' (0x{:x}) at index {index}",
        c as u32
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const CTX: QuoteContext = QuoteContext {
        standard_conforming_strings: true,
    };

    fn m<P: Params + ?Sized>(q: &str, p: &P) -> Result<String, Error> {
        mogrify(q, p, &CTX)
    }

    fn usage<P: Params + ?Sized>(q: &str, p: &P) -> String {
        let e = m(q, p).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
        e.to_string()
    }

    #[test]
    fn positional_placeholders_take_parameters_in_order() {
        assert_eq!(
            m("SELECT %s, %s;", &("'\"test\"'", "SELECT 1;")).unwrap(),
            "SELECT '''\"test\"''', 'SELECT 1;';"
        );
        assert_eq!(
            m("SELECT %s::int, %s, %s", &(1i32, "two", None::<i64>)).unwrap(),
            "SELECT 1::int, 'two', NULL"
        );
    }

    #[test]
    fn a_negative_parameter_never_forms_a_comment() {
        assert_eq!(m("SELECT 1-%s", &(-1i32,)).unwrap(), "SELECT 1- -1");
    }

    #[test]
    fn double_percent_is_one_percent_when_there_are_parameters() {
        assert_eq!(m("%s %%", &(1i32,)).unwrap(), "1 %");
        assert_eq!(
            m("%(a)s %%", &named([("a", Value::from(1i32))])).unwrap(),
            "1 %"
        );
    }

    #[test]
    fn without_parameters_the_query_is_unchanged_and_percent_is_literal() {
        assert_eq!(m("SELECT 'a%s'", &()).unwrap(), "SELECT 'a%s'");
        assert_eq!(m("SELECT 100%", &()).unwrap(), "SELECT 100%");
        assert_eq!(m("SELECT '%%'", &()).unwrap(), "SELECT '%%'");
        assert_eq!(m("SELECT %(a)s", &Named::new()).unwrap(), "SELECT %(a)s");
        assert_eq!(m("%s", &Vec::<Value>::new()).unwrap(), "%s");
        assert_eq!(m("%s", &BTreeMap::<String, Value>::new()).unwrap(), "%s");
    }

    #[test]
    fn placeholders_inside_string_literals_are_still_placeholders() {
        assert_eq!(m("'%s'", &(1i32,)).unwrap(), "'1'");
    }

    #[test]
    fn named_placeholders_may_repeat_and_extra_names_are_ignored() {
        let p = named([("x", Value::from(3i32)), ("y", Value::from("why"))]);
        assert_eq!(
            m("SELECT %(x)s, %(y)s, %(x)s", &p).unwrap(),
            "SELECT 3, 'why', 3"
        );
        assert_eq!(
            m("%(a)s%(a)s", &named([("a", Value::from(1i32))])).unwrap(),
            "11"
        );
        assert_eq!(m("%(x)s", &p).unwrap(), "3");
        assert_eq!(m("%()s", &named([("", Value::from(5i32))])).unwrap(), "5");
        let mut h = HashMap::new();
        h.insert("k".to_owned(), Value::from("v"));
        assert_eq!(m("%(k)s", &h).unwrap(), "'v'");
    }

    #[test]
    fn placeholder_errors_are_usage_errors_with_clear_messages() {
        let one = (1i32,);
        let a = named([("a", Value::from(1i32))]);
        assert!(usage("%s %s", &one).contains("not enough parameters"));
        assert!(usage("%s", &(1i32, 2i32)).contains("not all arguments converted"));
        assert!(usage("x", &one).contains("not all arguments converted"));
        assert!(usage("%(a)s %s", &a).contains("argument formats can't be mixed"));
        assert!(usage("%s %(a)s", &one).contains("argument formats can't be mixed"));
        assert!(usage("%(a)sx%", &a).contains("argument formats can't be mixed"));
        assert!(usage("%(b)s", &a).contains("no parameter named \"b\""));
        assert!(
            usage("SELECT %(foos;", &named([("foo", Value::from("bar"))]))
                .contains("incomplete placeholder: '%(' without ')'")
        );
        assert!(usage("%(a)", &a).contains("incomplete format"));
        assert!(usage("%s %", &one).contains("incomplete format"));
        assert_eq!(
            usage("%(a)d", &a),
            "usage error: unsupported format character 'd' (0x64) at index 4"
        );
        assert_eq!(
            usage("%s %d", &(1i32, 2i32)),
            "usage error: unsupported format character 'd' (0x64) at index 4"
        );
        assert!(usage("%5s", &one).contains("unsupported format character '5'"));
    }

    #[test]
    fn a_nul_in_a_string_parameter_is_a_usage_error() {
        assert!(usage("%s", &("a\0b",)).contains("NUL"));
    }

    #[test]
    fn every_parameter_shape_renders() {
        let want = "SELECT 1, 's'";
        let q = "SELECT %s, %s";
        let dynamic: &[&dyn ToSql] = &[&1i32, &"s"];
        assert_eq!(m(q, &dynamic).unwrap(), want);
        assert_eq!(m(q, dynamic).unwrap(), want);
        let v: Vec<&dyn ToSql> = vec![&1i32, &"s"];
        assert_eq!(m(q, &v).unwrap(), want);
        let values = vec![Value::from(1i32), Value::from("s")];
        assert_eq!(m(q, &values).unwrap(), want);
        assert_eq!(m(q, &values[..]).unwrap(), want);
        assert_eq!(m(q, &["1", "s"]).unwrap(), "SELECT '1', 's'");
        assert_eq!(m(q, &values.to_values()).unwrap(), want);
        let sixteen = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16i64);
        assert_eq!(
            m(&"%s".repeat(16), &sixteen).unwrap(),
            "12345678910111213141516"
        );
        let b: BTreeMap<String, Value> = [("a".to_owned(), Value::from(1i32))].into();
        assert_eq!(m("%(a)s", &b).unwrap(), "1");
        assert_eq!(b.render("%(a)s", &CTX).unwrap(), "1");
    }

    #[test]
    fn to_values_keeps_an_owned_copy_that_renders_the_same() {
        let p = (1i32, "x", None::<i64>);
        assert_eq!(
            p.to_values(),
            ParamValues::Positional(vec![Value::Int4(1), Value::from("x"), Value::Null])
        );
        let n = named([("x", Value::from(3i32))]);
        let owned = n.to_values();
        assert_eq!(
            owned,
            ParamValues::Named([("x".to_owned(), Value::Int4(3))].into())
        );
        assert_eq!(m("%(x)s", &owned).unwrap(), "3");
        assert!(!owned.is_empty());
        assert!(().is_empty());
    }

    #[test]
    fn positional_gives_the_values_for_the_extended_protocol() {
        assert_eq!((41i64,).positional().unwrap(), vec![Value::Int8(41)]);
        let n = named([("x", Value::from(3i32))]);
        assert_eq!(n.positional().unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(Named::new().positional().unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn non_ascii_queries_are_copied_intact() {
        assert_eq!(
            m("SELECT 'é', %s -- ü", &("ñ",)).unwrap(),
            "SELECT 'é', 'ñ' -- ü"
        );
        assert!(usage("%é", &(1i32,)).contains("unsupported format character 'é' (0xe9)"));
    }
}
