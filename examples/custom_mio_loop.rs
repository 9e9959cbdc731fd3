//! A program that owns its `mio::Poll` and its tokens, and drives a PostgreSQL connection
//! through momoko's embedding API (`MioConnection`) instead of momoko's `IoLoop`.
//!
//! Run it with `MOMOKO_DSN` (or `MOMOKO_TEST_DSN`) naming a server, e.g. under
//! `make examples`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use momoko::MioConnection;

/// Our own token for the database socket; the rest of the program may use others.
const DB: Token = Token(7);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dsn = std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_else(|_| "dbname=postgres".to_owned());
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(64);

    let conn = MioConnection::connect(&dsn, |r| match r {
        Ok(()) => println!("connected"),
        Err(e) => println!("connect failed: {e}"),
    });
    conn.register(poll.registry(), DB)?;

    // Queued at once: they go out together as soon as the connection is ready.
    let answers: Rc<RefCell<Vec<String>>> = Rc::default();
    for i in 1..=3i32 {
        let answers = answers.clone();
        conn.execute("SELECT %s * 2 AS doubled", (i,), move |r| {
            let line = match r {
                Ok(mut cursor) => {
                    let v: i32 = cursor.fetchone().expect("a row").get("doubled");
                    format!("{i} * 2 = {v}")
                }
                Err(e) => format!("query {i} failed: {e}"),
            };
            answers.borrow_mut().push(line);
        });
    }

    // The program's own loop: poll, hand our token's events over, honour the connection's
    // deadline, then let it write and run callbacks. Bounded so it can never hang.
    let give_up = Instant::now() + Duration::from_secs(10);
    while answers.borrow().len() < 3 && !conn.is_closed() {
        if Instant::now() > give_up {
            return Err("no answer within 10 s".into());
        }
        let timeout = conn
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(500));
        poll.poll(&mut events, Some(timeout))?;
        for event in events.iter() {
            if event.token() == DB {
                conn.handle_event(poll.registry(), event);
            }
        }
        conn.handle_timeout(poll.registry(), Instant::now());
        conn.dispatch(poll.registry());
    }
    for line in answers.borrow().iter() {
        println!("{line}");
    }
    conn.close();
    conn.dispatch(poll.registry());
    if answers.borrow().len() == 3 {
        Ok(())
    } else {
        Err("the connection closed before every answer arrived".into())
    }
}
