//! The tutorial's web application: a callback-driven HTTP/1.1 server on the [`IoLoop`] whose
//! `GET /` (the tutorial's `TutorialHandler`) runs three queries in parallel through a pool
//! (`application.db`) and writes their results.
//!
//! What it shows:
//! - a `mio::net::TcpListener` registered with `IoLoop::add_handler`, accepting until
//!   `WouldBlock`, and one handler per accepted connection that reads, parses (with
//!   `httparse`: no hand-written HTTP parser), answers and writes back, keeping the
//!   connection open (keep-alive, pipelined requests answered in order);
//! - the request handler as an `async` block spawned on the loop (Tornado's
//!   `@gen.coroutine def get`), awaiting the pool's futures;
//! - many requests served at once on one thread: while one request waits for PostgreSQL,
//!   the loop serves the others;
//! - a `LoopHandle` stopping the loop from another thread (the `--self-test` client).
//!
//! ```text
//! cargo run --release --example web                      # http://127.0.0.1:8888/ until ^C
//! cargo run --example web -- --port 0 --requests 100     # stop after 100 responses
//! cargo run --example web -- --self-test 200             # serve 200 requests of its own client
//! ```
//!
//! Options: `--port N` (default 8888; 0 picks a free port), `--pool N` (pool size, default
//! 4), `--requests N` (stop after N responses), `--self-test N` (also run a client thread that
//! sends N requests over 8 keep-alive connections, checks every answer, and stop after them).
//! The server comes from `MOMOKO_DSN`, else `MOMOKO_TEST_DSN`, else libpq's defaults and the
//! `PG*` variables.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::Interest;
use momoko::ioloop::{HandlerId, IoLoop, Ready};
use momoko::{Error, Pool, Row, Value};

/// A request head larger than this is refused (431) rather than buffered without end.
const MAX_HEAD: usize = 64 * 1024;
/// Headers beyond this count make httparse refuse the request (431 too).
const MAX_HEADERS: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = Options::parse()?;
    let dsn = dsn();
    let ioloop = IoLoop::current();

    // The tutorial's boilerplate: application.db = momoko.Pool(...), connected "in sync".
    let pool = Pool::builder(&dsn).size(opts.pool).build()?;
    let future = pool.connect();
    let lp = ioloop.clone();
    ioloop.add_future(&future, move |_| lp.stop());
    ioloop.start();
    future.take().expect("done")?;

    let app = Rc::new(App {
        db: pool.clone(),
        served: Cell::new(0),
        failed: Cell::new(0),
        limit: opts.requests.or(opts.self_test),
        ioloop: ioloop.clone(),
    });

    let addr: SocketAddr = ([127, 0, 0, 1], opts.port).into();
    // The listener lives in an Rc shared with its handler; add_handler needs it mutably
    // only to register it, before the handler can ever run.
    let listener = Rc::new(RefCell::new(TcpListener::bind(addr)?));
    let addr = listener.borrow().local_addr()?;
    // mio is edge-triggered: one event may stand for many waiting connections, so the
    // handler accepts until WouldBlock.
    let listener_id = {
        let (app, in_handler) = (app.clone(), listener.clone());
        ioloop.add_handler(
            &mut *listener.borrow_mut(),
            Interest::READABLE,
            move |_ready| accept_all(&app, &in_handler.borrow()),
        )?
    };
    println!(
        "listening on http://{addr}/ (pool of {}, {})",
        opts.pool,
        match app.limit {
            Some(n) => format!("stopping after {n} responses"),
            None => "until interrupted".to_owned(),
        }
    );

    // The self-test client runs on another thread with blocking sockets; it reaches the
    // loop only through a LoopHandle, the one Send way in.
    let client = opts.self_test.map(|n| {
        let handle = ioloop.handle();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let thread = std::thread::spawn(move || {
            let result = self_test(addr, n);
            if result.is_err() {
                flag.store(true, Ordering::SeqCst);
                handle.stop(); // the server would otherwise wait for requests never sent
            }
            result
        });
        (thread, failed)
    });

    ioloop.start();
    // Stopped: the listener's handler goes, so no new connection is accepted meanwhile.
    ioloop.remove_handler(listener_id, &mut *listener.borrow_mut());

    println!(
        "served {} responses ({} answered 500): {:?}",
        app.served.get(),
        app.failed.get(),
        pool
    );
    pool.close()?;
    if let Some((thread, _failed)) = client {
        let report = thread.join().expect("the client thread panicked")?;
        println!("self-test: {report}");
    }
    if app.failed.get() > 0 {
        return Err("some requests failed".into());
    }
    Ok(())
}

/// The application: the tutorial's `web.Application` with its `db`, plus counters.
struct App {
    db: Pool,
    ioloop: IoLoop,
    /// Responses written out completely.
    served: Cell<u64>,
    /// Of those, how many were 500s (a query failed).
    failed: Cell<u64>,
    /// Stop the loop after this many responses.
    limit: Option<u64>,
}

impl App {
    fn written(&self, responses: u64) {
        self.served.set(self.served.get() + responses);
        if self.limit.is_some_and(|limit| self.served.get() >= limit) {
            self.ioloop.stop();
        }
    }
}

/// The tutorial's `TutorialHandler.get`: three queries in parallel, then their rows.
async fn tutorial_handler(db: Pool) -> Response {
    // The futures are all taken before any is awaited, so the three run at once.
    let f1 = db.execute("select 1;", ());
    let f2 = db.execute("select 2;", ());
    let f3 = db.execute("select 3;", ());
    let result: Result<String, Error> = async {
        let (mut c1, mut c2, mut c3) = (f1.await?, f2.await?, f3.await?);
        Ok(format!(
            "Q1: {}<br>Q2: {}<br>Q3: {}<br>",
            py_rows(&c1.fetchall()),
            py_rows(&c2.fetchall()),
            py_rows(&c3.fetchall())
        ))
    }
    .await;
    match result {
        Ok(body) => Response::new(200, "OK", body),
        // The tutorial writes the error's text; a 500 also lets a load test count it.
        Err(error) => Response::new(500, "Internal Server Error", error.to_string()),
    }
}

/// Routes one parsed request.
fn route(app: &Rc<App>, client: &ClientRef, method: &str, path: &str) {
    let response = match (method, path) {
        ("GET", "/") => {
            // Answered later, from a task on the loop; the client stays busy until then, so
            // a pipelined request behind this one waits its turn.
            let (app, client) = (app.clone(), client.clone());
            let db = app.db.clone();
            app.ioloop.clone().spawn(async move {
                let response = tutorial_handler(db).await;
                respond(&app, &client, response);
            });
            return;
        }
        ("GET", "/stats") => Response::new(200, "OK", format!("{:?}", app.db)),
        ("GET", _) => Response::new(404, "Not Found", format!("no page at {path}")),
        _ => Response::new(405, "Method Not Allowed", "only GET here".to_owned()),
    };
    respond(app, client, response);
}

/// A response to write: status line and body (headers are added by `respond`).
struct Response {
    status: u16,
    reason: &'static str,
    body: String,
}

impl Response {
    fn new(status: u16, reason: &'static str, body: String) -> Response {
        Response {
            status,
            reason,
            body,
        }
    }
}

/// One accepted HTTP connection.
struct Client {
    stream: TcpStream,
    /// Its handler, once registered.
    id: Option<HandlerId>,
    /// Bytes read and not parsed yet (possibly several pipelined requests).
    input: Vec<u8>,
    /// Bytes to write, and how many of them are written.
    output: Vec<u8>,
    written: usize,
    /// Responses in `output` not yet written out completely.
    unflushed: u64,
    /// A request is being answered: the next one waits (answers go out in order).
    busy: bool,
    /// Close once `output` is written (Connection: close, HTTP/1.0, a bad request).
    close_after_write: bool,
    /// The peer closed its side: nothing more will arrive.
    eof: bool,
    /// Whether WRITABLE is in the registered interest.
    want_write: bool,
    closed: bool,
}

type ClientRef = Rc<RefCell<Client>>;

/// Accepts every connection waiting on the listener and gives each its handler.
fn accept_all(app: &Rc<App>, listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true); // small responses: no Nagle delay
                let client = Rc::new(RefCell::new(Client {
                    stream,
                    id: None,
                    input: Vec::new(),
                    output: Vec::new(),
                    written: 0,
                    unflushed: 0,
                    busy: false,
                    close_after_write: false,
                    eof: false,
                    want_write: false,
                    closed: false,
                }));
                let (app2, client2) = (app.clone(), client.clone());
                let mut c = client.borrow_mut();
                // The handler owns an Rc of its client; removing the handler drops it.
                match app
                    .ioloop
                    .add_handler(&mut c.stream, Interest::READABLE, move |ready| {
                        on_ready(&app2, &client2, ready)
                    }) {
                    Ok(id) => c.id = Some(id),
                    Err(e) => eprintln!("cannot watch a new connection: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of file descriptors, say: drop this wakeup, try again on the next.
                eprintln!("accept failed: {e}");
                return;
            }
        }
    }
}

/// A connection's handler: read what arrived, write what is pending, answer what is parsed.
fn on_ready(app: &Rc<App>, client: &ClientRef, ready: Ready) {
    {
        let mut c = client.borrow_mut();
        if c.closed {
            return;
        }
        // Edge-triggered: read until WouldBlock, whatever `ready` says (it is a hint).
        let mut buf = [0u8; 16 * 1024];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    c.eof = true;
                    break;
                }
                Ok(n) => c.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    close(app, &mut c); // reset by the peer
                    return;
                }
            }
        }
        if ready.writable && !flush(app, &mut c) {
            return;
        }
    }
    next_request(app, client);
}

/// Parses the next buffered request if none is being answered, and routes it.
fn next_request(app: &Rc<App>, client: &ClientRef) {
    let mut c = client.borrow_mut();
    if c.closed || c.busy || c.close_after_write {
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let bad = match req.parse(&c.input) {
        Ok(httparse::Status::Complete(head_len)) => {
            let method = req.method.unwrap_or("").to_owned();
            let path = req.path.unwrap_or("").to_owned();
            let http10 = req.version == Some(0);
            let mut body_len = 0usize;
            let mut keep_alive = !http10;
            let mut chunked = false;
            for h in req.headers.iter() {
                let value = String::from_utf8_lossy(h.value);
                if h.name.eq_ignore_ascii_case("content-length") {
                    body_len = value.trim().parse().unwrap_or(usize::MAX);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = true;
                } else if h.name.eq_ignore_ascii_case("connection") {
                    let value = value.to_ascii_lowercase();
                    if value.contains("close") {
                        keep_alive = false;
                    } else if value.contains("keep-alive") {
                        keep_alive = true;
                    }
                }
            }
            if chunked || body_len > MAX_HEAD {
                Some((413, "Payload Too Large"))
            } else if c.input.len() < head_len + body_len {
                None // the body is still on its way
            } else {
                // The request is whole: consume it (a GET's body, if any, is ignored).
                c.input.drain(..head_len + body_len);
                c.busy = true;
                c.close_after_write = !keep_alive;
                drop(c);
                route(app, client, &method, &path);
                return;
            }
        }
        Ok(httparse::Status::Partial) if c.input.len() > MAX_HEAD => {
            Some((431, "Request Header Fields Too Large"))
        }
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some((431, "Request Header Fields Too Large")),
        Err(_) => Some((400, "Bad Request")),
    };
    match bad {
        Some((status, reason)) => {
            // Nothing after a malformed request can be trusted: answer and close.
            c.busy = true;
            c.close_after_write = true;
            c.input.clear();
            drop(c);
            respond(
                app,
                client,
                Response::new(status, reason, reason.to_owned()),
            );
        }
        None if c.eof && c.output.is_empty() => close(app, &mut c),
        None => {}
    }
}

/// Queues `response` on the client's connection, writes what it can, then moves on to the
/// next pipelined request.
fn respond(app: &Rc<App>, client: &ClientRef, response: Response) {
    {
        let mut c = client.borrow_mut();
        if c.closed {
            return; // the peer left while its request was answered
        }
        if response.status >= 500 {
            app.failed.set(app.failed.get() + 1);
        }
        let connection = if c.close_after_write {
            "close"
        } else {
            "keep-alive"
        };
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
            response.status,
            response.reason,
            response.body.len()
        );
        c.output.extend_from_slice(head.as_bytes());
        c.output.extend_from_slice(response.body.as_bytes());
        c.unflushed += 1;
        c.busy = false;
        if !flush(app, &mut c) {
            return;
        }
    }
    next_request(app, client);
}

/// Writes until done or `WouldBlock`, and asks for WRITABLE only while output is left.
/// Returns false when the connection was closed.
fn flush(app: &Rc<App>, c: &mut Client) -> bool {
    while c.written < c.output.len() {
        let Client {
            stream,
            output,
            written,
            ..
        } = c;
        match stream.write(&output[*written..]) {
            Ok(0) => break,
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                close(app, c);
                return false;
            }
        }
    }
    let pending = c.written < c.output.len();
    if !pending {
        c.output.clear();
        c.written = 0;
        app.written(std::mem::take(&mut c.unflushed));
        if c.close_after_write && !c.busy {
            close(app, c);
            return false;
        }
    }
    if pending != c.want_write {
        c.want_write = pending;
        let interest = if pending {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Some(id) = c.id {
            if app
                .ioloop
                .update_handler(id, &mut c.stream, interest)
                .is_err()
            {
                close(app, c);
                return false;
            }
        }
    }
    true
}

/// Deregisters and forgets the connection; the socket closes when the last Rc goes.
fn close(app: &Rc<App>, c: &mut Client) {
    if c.closed {
        return;
    }
    c.closed = true;
    if let Some(id) = c.id.take() {
        app.ioloop.remove_handler(id, &mut c.stream);
    }
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    c.input = Vec::new();
    c.output = Vec::new();
}

/// Rows as psycopg2 prints `cursor.fetchall()`: `[(1,)]`.
fn py_rows(rows: &[Row]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|row| {
            let values: Vec<String> = row.to_values().iter().map(py_value).collect();
            if values.len() == 1 {
                format!("({},)", values[0])
            } else {
                format!("({})", values.join(", "))
            }
        })
        .collect();
    format!("[{}]", rows.join(", "))
}

fn py_value(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Int2(n) => n.to_string(),
        Value::Int4(n) => n.to_string(),
        Value::Int8(n) => n.to_string(),
        Value::Text(s) => format!("{s:?}"),
        other => format!("{other:?}"),
    }
}

/// Command-line options.
struct Options {
    port: u16,
    pool: usize,
    requests: Option<u64>,
    self_test: Option<u64>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut opts = Options {
            port: 8888,
            pool: 4,
            requests: None,
            self_test: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| format!("{arg} needs a value"))
                    .and_then(|v| v.parse::<u64>().map_err(|e| format!("{arg} {v}: {e}")))
            };
            match arg.as_str() {
                "--port" => opts.port = u16::try_from(value()?).map_err(|e| e.to_string())?,
                "--pool" => opts.pool = value()? as usize,
                "--requests" => opts.requests = Some(value()?),
                "--self-test" => opts.self_test = Some(value()?),
                _ => {
                    return Err(format!(
                        "unknown argument {arg:?}; usage: web [--port N] [--pool N] \
                         [--requests N] [--self-test N]"
                    ))
                }
            }
        }
        Ok(opts)
    }
}

/// The `--self-test` client: `n` requests for `/` over 8 keep-alive connections, the first
/// of them pipelining two requests per write. Every answer must be a 200 with three results.
fn self_test(addr: SocketAddr, n: u64) -> Result<String, String> {
    use std::io::BufReader;
    const CONNECTIONS: u64 = 8;
    let mut threads = Vec::new();
    for i in 0..CONNECTIONS {
        let count = n / CONNECTIONS + u64::from(i < n % CONNECTIONS);
        threads.push(std::thread::spawn(move || -> Result<u64, String> {
            let stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
            let mut reader = BufReader::new(stream);
            let batch = if i == 0 { 2 } else { 1 };
            let mut sent = 0;
            while sent < count {
                let k = batch.min(count - sent);
                let request = "GET / HTTP/1.1\r\nHost: self-test\r\n\r\n".repeat(k as usize);
                writer
                    .write_all(request.as_bytes())
                    .map_err(|e| e.to_string())?;
                for _ in 0..k {
                    let (status, body) = read_response(&mut reader)?;
                    if status != 200 || !body.starts_with("Q1: [(1,)]<br>Q2: [(2,)]") {
                        return Err(format!("answer {status}: {body}"));
                    }
                }
                sent += k;
            }
            Ok(sent)
        }));
    }
    let mut total = 0;
    for t in threads {
        total += t
            .join()
            .map_err(|_| "a client thread panicked".to_owned())??;
    }
    Ok(format!(
        "{total} requests over {CONNECTIONS} keep-alive connections, all 200 with \
         \"Q1: [(1,)]<br>Q2: [(2,)]<br>Q3: [(3,)]<br>\""
    ))
}

/// Reads one response (head parsed by httparse, body by Content-Length).
fn read_response(reader: &mut impl io::BufRead) -> Result<(u16, String), String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut line = Vec::new();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".to_owned());
        }
        head.extend_from_slice(&line);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&head).map_err(|e| e.to_string())?;
    let length = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
        .ok_or("no Content-Length")?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((
        resp.code.unwrap_or(0),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// `MOMOKO_DSN`, else `MOMOKO_TEST_DSN` (what `momoko-testpg run` exports), else the empty
/// string: libpq's defaults and `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`...
fn dsn() -> String {
    std::env::var("MOMOKO_DSN")
        .or_else(|_| std::env::var("MOMOKO_TEST_DSN"))
        .unwrap_or_default()
}
