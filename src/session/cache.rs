//! The statement cache of `query`: statements prepared in the current server session, by
//! text and parameter types, bounded, oldest evicted first.
//!
//! It owns only names and descriptions; it never talks to the server (an evicted statement's
//! name is handed back for the caller to close) and is cleared by the session at every
//! successful connect, since the server forgets prepared statements with its session.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use crate::row::Column;

/// Statements kept per connection by `query` unless `statement_cache_size` says otherwise.
pub(crate) const STATEMENT_CACHE_SIZE: usize = 256;

/// A statement prepared by `query`.
#[derive(Clone)]
pub(crate) struct CachedStatement {
    pub(crate) name: Rc<str>,
    pub(crate) param_types: Vec<u32>,
    pub(crate) columns: Option<Arc<[Column]>>,
    pub(crate) result_formats: Rc<[i16]>,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct StatementCache {
    map: HashMap<(String, Vec<u32>), CachedStatement>,
    order: VecDeque<(String, Vec<u32>)>,
}

impl StatementCache {
    pub(crate) fn get(&self, sql: &str, types: &[u32]) -> Option<CachedStatement> {
        self.map.get(&(sql.to_owned(), types.to_vec())).cloned()
    }

    /// Inserts, keeping at most `capacity`; returns the name of an evicted statement to close
    /// on the server.
    pub(crate) fn insert(
        &mut self,
        sql: String,
        types: Vec<u32>,
        st: CachedStatement,
        capacity: usize,
    ) -> Option<String> {
        let key = (sql, types);
        if let Some(previous) = self.map.insert(key.clone(), st) {
            // Two first uses raced: keep the newer, close the older.
            return Some(previous.name.to_string());
        }
        self.order.push_back(key);
        if self.order.len() > capacity {
            let old = self.order.pop_front()?;
            return self.map.remove(&old).map(|s| s.name.to_string());
        }
        None
    }

    pub(crate) fn remove(&mut self, sql: &str, types: &[u32]) {
        let key = (sql.to_owned(), types.to_vec());
        self.map.remove(&key);
        self.order.retain(|k| *k != key);
    }

    /// The server session ended: its statements are gone.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}
