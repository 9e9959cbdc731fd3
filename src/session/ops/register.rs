//! `register_hstore` and `register_json`: teaching the session's one type registry about
//! types whose OIDs differ from database to database.
//!
//! It owns the lookups of the OIDs; the registry itself lives in the session and is shared
//! with its protocol core, so a registration holds for this session and every reconnect.

use std::rc::Rc;

use super::{to_cursor, Done};
use crate::error::Error;
use crate::proto::Request;
use crate::session::{Core, Drive};

/// Looks up hstore's OIDs.
pub(crate) fn hstore_oids<D: Drive>(core: &Rc<Core<D>>, done: Done<(u32, u32)>) {
    core.request(
        Request::Simple {
            query: "SELECT 'hstore'::regtype::oid AS hstore_oid, \
                    'hstore[]'::regtype::oid AS hstore_arr_oid"
                .to_owned(),
        },
        Box::new(move |r| {
            done.call(r.and_then(|resp| {
                let mut c = to_cursor(String::new(), resp)?;
                let row = c
                    .fetchone()
                    .ok_or_else(|| Error::protocol("no row for the hstore OIDs"))?;
                let oid: i64 = row.try_get(0)?;
                let arr: i64 = row.try_get(1)?;
                Ok((oid as u32, arr as u32))
            }))
        }),
    );
}

/// Registers hstore: its values decode to maps from now on, here and after reconnects.
pub(crate) fn register_hstore<D: Drive>(core: &Rc<Core<D>>, done: Done<()>) {
    let c = core.clone();
    hstore_oids(
        core,
        Done::new(move |r| {
            done.call(r.map(|(oid, arr)| c.with(|s| s.types().register_hstore(oid, arr))))
        }),
    );
}

/// Checks that json exists on the server. JSON and JSONB always decode to
/// `serde_json::Value`; the call is kept for Momoko compatibility.
pub(crate) fn register_json<D: Drive>(core: &Rc<Core<D>>, done: Done<()>) {
    core.request(
        Request::Simple {
            query:
                "SELECT 'json'::regtype::oid AS json_oid, 'json[]'::regtype::oid AS json_arr_oid"
                    .to_owned(),
        },
        Box::new(move |r| done.call(r.map(drop))),
    );
}
