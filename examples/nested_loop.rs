//! momoko inside a program that owns its event loop: the program's `mio::Poll` runs a tiny
//! line server of its own, and momoko's `IoLoop` nests in it as one more source, so a
//! `Pool` runs queries and delivers a LISTEN notification without `IoLoop::start` or
//! `run_sync` ever being called.
//!
//! The protocol of the nesting is three calls (see `IoLoop`'s "Nesting" docs):
//!
//! * register the loop's descriptor (`as_raw_fd`) for reading, with `mio::unix::SourceFd`;
//! * never wait longer than `next_timeout()` (`Some(ZERO)` when the loop has work now);
//! * after every wake-up, `turn(Some(Duration::ZERO))`: one iteration, without blocking.
//!
//! The line server squares the numbers its client sends, one per line, by asking the
//! database; its client is this same program, connected to itself.
//!
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults and
//! the `PG*` variables. Run it with `cargo run --example nested_loop`, or against a
//! throwaway server under `make examples`.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use momoko::ioloop::IoLoop;
use momoko::{Notification, Pool};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

// The program's tokens: three sockets of its own, and one for all of momoko.
const LISTENER: Token = Token(0);
const SERVER: Token = Token(1);
const CLIENT: Token = Token(2);
const MOMOKO: Token = Token(3);

/// Nothing in this program may take longer than this.
const LIMIT: Duration = Duration::from_secs(20);

fn main() -> Result<()> {
    let dsn = dsn();
    match momoko::Config::parse(&dsn) {
        Ok(c) => println!("server: {}", c.summary()),
        Err(e) => println!("server: unusable DSN: {e}"),
    }

    // The program's own loop, and momoko's loop registered in it under one token.
    let inner = IoLoop::try_new()?;
    let mut program = Program {
        poll: Poll::new()?,
        events: Events::with_capacity(64),
        inner: inner.clone(),
        deadline: Instant::now() + LIMIT,
        turns: 0,
        wakeups: 0,
    };
    program.poll.registry().register(
        &mut SourceFd(&inner.as_raw_fd()),
        MOMOKO,
        Interest::READABLE,
    )?;

    // A pool on the nested loop. connect() returns a future: the program's loop does the
    // work, turning the inner loop, until the future is done.
    let pool = Pool::builder(&dsn).ioloop(&inner).size(2).build()?;
    let connecting = pool.connect();
    let mut app = App::new(&mut program, pool.clone())?;
    program.run_until(&mut app, |_| connecting.done())?;
    connecting.take().expect("done")?;
    println!("pool: connected: {pool:?}");

    // LISTEN on a connection of the pool's own; the callback runs inside a turn.
    let channel = "nested_loop";
    let heard: Rc<RefCell<Vec<String>>> = Rc::default();
    let h = heard.clone();
    let listening = pool.listen(channel, move |n: &Notification| {
        println!("listener: {:?} on {:?}", n.payload(), n.channel());
        h.borrow_mut().push(n.payload().to_owned());
    });
    program.run_until(&mut app, |_| listening.done())?;
    listening.take().expect("done")?;
    println!("listener: LISTEN {channel}");

    // The line server at work: the client sends three numbers, the server answers each one
    // from a pool query, the client reads the answers. All of it is the program's own IO.
    app.client.outbox.extend_from_slice(b"3\n4\n5\n");
    println!("client: sends 3, 4 and 5");
    program.run_until(&mut app, |app| app.client.lines().len() == 3)?;
    let mut answers = app.client.lines();
    answers.sort();
    println!("client: 3 answers: {answers:?}");

    // A NOTIFY through the pool; the LISTEN connection's idle socket delivers it.
    let notifying = pool.execute(
        "SELECT pg_notify(%s, %s)",
        (channel, "hello from the outer loop"),
    );
    program.run_until(&mut app, |_| notifying.done() && !heard.borrow().is_empty())?;
    notifying.take().expect("done")?;
    println!("listener: {} notification(s)", heard.borrow().len());

    pool.close()?;
    // close() fails what was still queued; those futures' callbacks run in a turn.
    inner.turn(Some(Duration::ZERO))?;
    println!("pool: closed: {pool:?}");
    println!(
        "the program's loop turned momoko's {} times ({} wake-ups of its fd); \
         IoLoop::start and run_sync were never called",
        program.turns, program.wakeups
    );
    Ok(())
}

/// The program's event loop: its poll, and momoko's loop nested in it.
struct Program {
    poll: Poll,
    events: Events,
    inner: IoLoop,
    deadline: Instant,
    turns: u64,
    wakeups: u64,
}

impl Program {
    /// Runs passes of the program's loop until `done` says so. A pass: move the bytes of
    /// the program's own sockets (which may start queries); stop if done; wait for those
    /// sockets or momoko's fd, at most as long as the inner loop allows; take the program's
    /// own events; turn the inner loop once, which runs the callbacks of momoko's futures.
    fn run_until(&mut self, app: &mut App, done: impl Fn(&App) -> bool) -> Result<()> {
        loop {
            app.pump(&self.poll)?;
            if done(app) {
                return Ok(());
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("not done within {LIMIT:?}").into());
            }
            // Asked again on every pass: work queued from outside a turn (app.pump's
            // queries) does not wake the fd. None: nothing scheduled, IO will wake us.
            let wait = self.inner.next_timeout().map_or(left, |t| t.min(left));
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for event in self.events.iter() {
                match event.token() {
                    MOMOKO => self.wakeups += 1, // the turn below takes its events
                    LISTENER => app.ready_to_accept = true,
                    _ => {} // SERVER and CLIENT: every pump reads and writes them
                }
            }
            self.inner.turn(Some(Duration::ZERO))?;
            self.turns += 1;
        }
    }
}

/// The program's own sockets: a listener, the one connection it accepts, and its client.
struct App {
    listener: TcpListener,
    /// The listener reported a connection: accept on the next pump.
    ready_to_accept: bool,
    server: Option<Peer>,
    client: Peer,
    pool: Pool,
}

/// One end of a line-based TCP connection, with buffers both ways.
struct Peer {
    stream: TcpStream,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    /// Shared with the pool's callbacks, which queue the server's answers here; `pump`
    /// moves them to the outbox.
    answers: Rc<RefCell<Vec<u8>>>,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        Peer {
            stream,
            inbox: Vec::new(),
            outbox: Vec::new(),
            answers: Rc::default(),
        }
    }

    /// Reads until `WouldBlock` (mio is edge-triggered), then writes what is queued.
    fn pump(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        self.outbox.append(&mut self.answers.borrow_mut());
        while !self.outbox.is_empty() {
            match self.stream.write(&self.outbox) {
                Ok(n) => drop(self.outbox.drain(..n)),
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Takes the complete lines read so far.
    fn take_lines(&mut self) -> Vec<String> {
        let end = self
            .inbox
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&self.inbox[..end]).into_owned();
        self.inbox.drain(..end);
        text.lines().map(str::to_owned).collect()
    }

    /// The complete lines read so far, left in place.
    fn lines(&self) -> Vec<String> {
        let end = self
            .inbox
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&self.inbox[..end]);
        text.lines().map(str::to_owned).collect()
    }
}

/// Not ready yet: `WouldBlock`, or a client socket whose connect has not completed.
fn would_block(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::NotConnected)
}

impl App {
    /// Listens on a port of 127.0.0.1 and connects a client to it.
    fn new(program: &mut Program, pool: Pool) -> Result<App> {
        let mut listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
        let addr = listener.local_addr()?;
        let registry = program.poll.registry();
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut stream = TcpStream::connect(addr)?;
        registry.register(&mut stream, CLIENT, Interest::READABLE | Interest::WRITABLE)?;
        println!("line server: listening on {addr}; its client connects");
        Ok(App {
            listener,
            ready_to_accept: false,
            server: None,
            client: Peer::new(stream),
            pool,
        })
    }

    /// Accepts the client (until `WouldBlock`; any second client is turned away).
    fn accept(&mut self, poll: &Poll) -> Result<()> {
        loop {
            match self.listener.accept() {
                Ok((mut stream, from)) if self.server.is_none() => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    poll.registry().register(&mut stream, SERVER, interest)?;
                    println!("line server: accepted a client from {from}");
                    self.server = Some(Peer::new(stream));
                }
                Ok(_) => {} // dropped: this server has one client
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Accepts, moves bytes on every socket, and starts a query for each line the server
    /// got.
    fn pump(&mut self, poll: &Poll) -> Result<()> {
        if std::mem::take(&mut self.ready_to_accept) {
            self.accept(poll)?;
        }
        self.client.pump()?;
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        server.pump()?;
        for line in server.take_lines() {
            let n: i32 = line.trim().parse()?;
            let answer = self
                .pool
                .execute("SELECT %s::int * %s::int AS square", (n, n));
            // Runs inside a later turn; the answer goes out on the pump after it.
            let answers = server.answers.clone();
            self.pool.ioloop().add_future(&answer, move |f| {
                let line = match f.take().expect("done") {
                    Ok(mut cursor) => {
                        let square: i32 = cursor.fetchone().expect("one row").get("square");
                        format!("{n} squared is {square}\n")
                    }
                    Err(e) => format!("{n}: error: {e}\n"),
                };
                println!("line server: answers {:?}", line.trim_end());
                answers.borrow_mut().extend_from_slice(line.as_bytes());
            });
        }
        Ok(())
    }
}

/// `MOMOKO_DSN`, else `MOMOKO_TEST_DSN` (what `momoko-testpg run` exports), else the empty
/// string: libpq's defaults and `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`...
fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
