//! The statement cache of `query`: statements prepared in the current server session, by
//! text and parameter types, bounded, the least recently used evicted first (a statement run
//! on every request stays prepared however many one-off statements pass through).
//!
//! It owns only names and descriptions; it never talks to the server (an evicted statement's
//! name is handed back for the caller to close) and is cleared by the session at every
//! successful connect, since the server forgets prepared statements with its session.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;

use lru::LruCache;

use crate::row::Column;

/// Statements kept per connection by `query` unless `statement_cache_size` says otherwise.
pub(crate) const STATEMENT_CACHE_SIZE: usize = 256;

/// A statement prepared by `query`.
#[derive(Clone)]
pub(crate) struct CachedStatement {
    pub(crate) name: Rc<str>,
    pub(crate) param_types: Rc<[u32]>,
    pub(crate) columns: Option<Arc<[Column]>>,
    pub(crate) result_formats: Rc<[i16]>,
}

/// See the module documentation. Unbounded to `lru` itself: the bound is the caller's
/// capacity, applied at each insert.
pub(crate) struct StatementCache {
    map: LruCache<Key, CachedStatement>,
}

/// A statement's text and parameter types, owned by the cache.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    sql: String,
    types: Vec<u32>,
}

/// A key as looked up: borrowed, so that a lookup copies neither the text nor the types.
trait KeyView {
    fn parts(&self) -> (&str, &[u32]);
}

impl KeyView for Key {
    fn parts(&self) -> (&str, &[u32]) {
        (&self.sql, &self.types)
    }
}

impl KeyView for (&str, &[u32]) {
    fn parts(&self) -> (&str, &[u32]) {
        (self.0, self.1)
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

// Hashed as `Key`'s derived Hash hashes (its fields in order), as `Borrow` requires.
impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (sql, types) = self.parts();
        sql.hash(state);
        types.hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyView + '_ {}

impl Default for StatementCache {
    fn default() -> StatementCache {
        StatementCache {
            map: LruCache::unbounded(),
        }
    }
}

impl StatementCache {
    /// The statement for `sql` and `types`, which becomes the most recently used.
    pub(crate) fn get(&mut self, sql: &str, types: &[u32]) -> Option<CachedStatement> {
        self.map.get(&(sql, types) as &dyn KeyView).cloned()
    }

    /// Inserts as the most recently used, keeping at most `capacity`; returns the name of a
    /// statement to close on the server (the least recently used, or an older twin).
    pub(crate) fn insert(
        &mut self,
        sql: String,
        types: Vec<u32>,
        st: CachedStatement,
        capacity: usize,
    ) -> Option<String> {
        // Two first uses raced: keep the newer, close the older.
        if let Some(previous) = self.map.put(Key { sql, types }, st) {
            return Some(previous.name.to_string());
        }
        // One statement is added at a time, so one eviction keeps the bound.
        if self.map.len() > capacity {
            return self.map.pop_lru().map(|(_, s)| s.name.to_string());
        }
        None
    }

    pub(crate) fn remove(&mut self, sql: &str, types: &[u32]) {
        self.map.pop(&(sql, types) as &dyn KeyView);
    }

    /// The server session ended: its statements are gone.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str) -> CachedStatement {
        CachedStatement {
            name: Rc::from(name),
            param_types: Rc::from([]),
            columns: None,
            result_formats: Rc::from([]),
        }
    }

    #[test]
    fn the_least_recently_used_statement_is_evicted() {
        let mut c = StatementCache::default();
        assert_eq!(c.insert("hot".into(), vec![], st("s_hot"), 2), None);
        assert_eq!(c.insert("a".into(), vec![], st("s_a"), 2), None);
        assert!(c.get("hot", &[]).is_some());
        // "a" is the least recently used now, not "hot", the first inserted.
        assert_eq!(
            c.insert("b".into(), vec![], st("s_b"), 2).as_deref(),
            Some("s_a")
        );
        assert!(c.get("hot", &[]).is_some());
        assert_eq!(
            c.insert("c".into(), vec![], st("s_c"), 2).as_deref(),
            Some("s_b")
        );
        assert_eq!(c.get("hot", &[]).unwrap().name.as_ref(), "s_hot");
        assert!(c.get("a", &[]).is_none() && c.get("b", &[]).is_none());
    }

    #[test]
    fn parameter_types_are_part_of_the_key_and_a_twin_replaces_its_elder() {
        let mut c = StatementCache::default();
        c.insert("q".into(), vec![23], st("s_int"), 8);
        c.insert("q".into(), vec![25], st("s_text"), 8);
        assert_eq!(c.get("q", &[23]).unwrap().name.as_ref(), "s_int");
        assert_eq!(
            c.insert("q".into(), vec![23], st("s_int2"), 8).as_deref(),
            Some("s_int")
        );
        c.remove("q", &[25]);
        assert!(c.get("q", &[25]).is_none());
        c.clear();
        assert!(c.get("q", &[23]).is_none());
    }
}
