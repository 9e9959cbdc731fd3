//! The heap allocations of one round trip (issue 26), counted by a global allocator that
//! counts the allocations of the calling thread only (the test harness runs other tests on
//! other threads). Each bound is what the code achieves, so that a change that adds an
//! allocation to the per-query path fails here and is seen.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{dsn, run};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; counting touches only a
// thread-local `Cell` of a const-initialized `u64`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const ROUND_TRIPS: u64 = 200;

/// Allocations per round trip of `op` run `ROUND_TRIPS` times one after the other, after a
/// warm-up (buffers grown, the RowDescription cached).
async fn per_round_trip<F, Fut>(op: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    for _ in 0..20 {
        assert_eq!(op().await, 1);
    }
    let before = allocations();
    for _ in 0..ROUND_TRIPS {
        assert_eq!(op().await, 1);
    }
    (allocations() - before) as f64 / ROUND_TRIPS as f64
}

#[test]
fn a_simple_round_trip_allocates_at_most_four_times() {
    let per = run(async {
        let conn = momoko::connect(&dsn()).await.unwrap();
        let per = per_round_trip(|| async {
            let mut c = conn.execute("SELECT 1", ()).await.unwrap();
            c.fetchone().unwrap().get::<_, i32>(0usize)
        })
        .await;
        conn.close();
        per
    });
    eprintln!("execute(\"SELECT 1\"): {per:.2} allocations per round trip");
    assert!(per <= 4.0, "{per} allocations per round trip");
}

#[test]
fn a_prepared_round_trip_allocates_at_most_three_times() {
    let per = run(async {
        let conn = momoko::connect(&dsn()).await.unwrap();
        let st = conn.prepare("SELECT 1").await.unwrap();
        let per = per_round_trip(|| async {
            let mut c = conn.execute_prepared(&st, ()).await.unwrap();
            c.fetchone().unwrap().get::<_, i32>(0usize)
        })
        .await;
        conn.close();
        per
    });
    eprintln!("execute_prepared: {per:.2} allocations per round trip");
    assert!(per <= 3.0, "{per} allocations per round trip");
}

#[test]
fn a_cached_query_round_trip_allocates_at_most_eleven_times() {
    let per = run(async {
        let conn = momoko::connect(&dsn()).await.unwrap();
        let per = per_round_trip(|| async {
            let mut c = conn.query("SELECT $1::int4", (1i32,)).await.unwrap();
            c.fetchone().unwrap().get::<_, i32>(0usize)
        })
        .await;
        conn.close();
        per
    });
    eprintln!("query (cached): {per:.2} allocations per round trip");
    assert!(per <= 11.0, "{per} allocations per round trip");
}
