//! LISTEN/NOTIFY: a connection listens on a channel and a callback runs for every
//! notification, as soon as it arrives (the idle socket stays watched); a pool keeps a
//! LISTEN connection of its own that comes back after the server goes away.
//!
//! Run it with `MOMOKO_DSN` (or `MOMOKO_TEST_DSN`) naming a server, e.g. under
//! `make examples`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use momoko::ioloop::{sleep, IoLoop};
use momoko::{Connection, Error, Notification, Pool};

fn main() -> Result<(), Error> {
    let dsn = std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default();
    let lp = IoLoop::new();
    let result = lp.run_sync_timeout(
        async move {
            // One connection listens; another one sends.
            let listener = momoko::connect(&dsn).await?;
            let sender: Connection = momoko::connect(&dsn).await?;
            let got: Rc<RefCell<Vec<String>>> = Rc::default();
            let g = got.clone();
            listener
                .listen("jobs", move |n: &Notification| {
                    println!(
                        "listener: notification on {:?} from backend {}: {:?}",
                        n.channel(),
                        n.process_id(),
                        n.payload()
                    );
                    g.borrow_mut().push(n.payload().to_owned());
                })
                .await?;
            println!("listener: LISTEN jobs");
            for job in ["resize image 1", "send mail 2", "rebuild index 3"] {
                sender
                    .execute("SELECT pg_notify('jobs', %s)", (job,))
                    .await?;
            }
            println!("sender: three NOTIFYs sent");
            // Nothing runs on the listener: its idle socket delivers them.
            while got.borrow().len() < 3 {
                sleep(&IoLoop::current(), Duration::from_millis(10)).await;
            }
            println!(
                "listener: {} notifications, in order: {:?}",
                got.borrow().len(),
                got.borrow()
            );
            listener.unlisten("jobs").await?;
            listener.close();

            // A pool listens on a connection of its own, outside its size.
            let pool = Pool::builder(&dsn).size(1).build()?.connect().await?;
            let count = Rc::new(std::cell::Cell::new(0));
            let c = count.clone();
            pool.listen("events", move |n: &Notification| {
                c.set(c.get() + 1);
                println!("pool listener: {:?}", n.payload());
            })
            .await?;
            pool.on_notifications_missed(|| {
                println!("pool listener: reconnected; some may be lost")
            });
            pool.execute("NOTIFY events, 'hello from the pool'", ())
                .await?;
            while count.get() < 1 {
                sleep(&IoLoop::current(), Duration::from_millis(10)).await;
            }
            pool.close()?;
            println!("pool: closed: {pool:?}");
            Ok::<(), Error>(())
        },
        Duration::from_secs(20),
    );
    match result {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            momoko::ErrorKind::Timeout,
            "the example took over 20 s",
        )),
    }
}
