//! The protocol floor: a minimal blocking loop on postgres-protocol over a `TcpStream`. It
//! writes the same messages as the clients under test, flushes once per batch, and frames
//! the answers (`Message::parse`) without decoding any value. Nothing can do less work per
//! query on the client side, so a client's distance from it is its own overhead.
//! Trust login only: the floor carries no password code.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;

use crate::env::Env;
use crate::measure::{Meter, Sample};
use crate::workloads::{Proto, IN_FLIGHT, MIXED_SQL};

const STMT: &str = "floor_s";

struct Floor {
    sock: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    scratch: Box<[u8]>,
    /// How the values of the answers being read are encoded: text (a simple Query) or
    /// binary (Bind with binary results). Every value is read as an integer.
    text: bool,
}

fn err(m: impl Into<String>) -> io::Error {
    io::Error::other(m.into())
}

impl Floor {
    /// Connects and logs in (trust), reading up to the first ReadyForQuery.
    fn connect(env: &Env) -> io::Result<Floor> {
        let sock = TcpStream::connect((env.host.as_str(), env.port))?;
        sock.set_nodelay(true)?;
        let mut f = Floor {
            sock,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            text: true,
        };
        frontend::startup_message(
            [
                ("user", env.user.as_str()),
                ("database", env.dbname.as_str()),
                ("client_encoding", "UTF8"),
            ],
            &mut f.wbuf,
        )?;
        f.flush()?;
        loop {
            match f.next()? {
                Message::AuthenticationOk
                | Message::ParameterStatus(_)
                | Message::BackendKeyData(_) => {}
                Message::ReadyForQuery(_) => return Ok(f),
                Message::ErrorResponse(_) => return Err(err("login refused")),
                _ => return Err(err("the floor does trust logins only")),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.write_all(&self.wbuf)?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads whatever the socket has into the read buffer (through a fixed scratch
    /// buffer: one copy of the bytes read, no zeroing of spare capacity).
    fn fill(&mut self) -> io::Result<()> {
        let n = self.sock.read(&mut self.scratch[..])?;
        if n == 0 {
            return Err(err("server closed the connection"));
        }
        self.rbuf.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    /// The next framed message.
    fn next(&mut self) -> io::Result<Message> {
        loop {
            if let Some(m) = Message::parse(&mut self.rbuf)? {
                return Ok(m);
            }
            self.fill()?;
        }
    }

    /// Frames messages up to ReadyForQuery, reading every value of every DataRow as an
    /// integer (text or binary, as [`Floor::text`] says); returns the DataRows seen.
    fn until_ready(&mut self) -> io::Result<u64> {
        let mut rows = 0;
        let mut sum = 0i64;
        loop {
            match self.next()? {
                Message::DataRow(body) => {
                    rows += 1;
                    let buf = body.buffer();
                    let mut it = body.ranges();
                    while let Some(r) = it.next()? {
                        if let Some(r) = r {
                            sum += read_int(&buf[r], self.text);
                        }
                    }
                }
                Message::ReadyForQuery(_) => {
                    std::hint::black_box(sum);
                    return Ok(rows);
                }
                Message::ErrorResponse(_) => return Err(err("the server answered an error")),
                _ => {}
            }
        }
    }

    fn simple(&mut self, sql: &str) -> io::Result<u64> {
        self.text = true;
        frontend::query(sql, &mut self.wbuf)?;
        self.flush()?;
        self.until_ready()
    }

    /// Parse + Sync of the named statement the prepared workloads run.
    fn prepare(&mut self, sql: &str) -> io::Result<()> {
        frontend::parse(STMT, sql, std::iter::empty(), &mut self.wbuf)?;
        frontend::sync(&mut self.wbuf);
        self.flush()?;
        self.until_ready().map(drop)
    }

    /// Appends one request: Query, or Bind/Execute/Sync of the prepared statement with
    /// binary results (what momoko's `execute_prepared` and tokio-postgres's `query` send).
    fn request(&mut self, proto: Proto, sql: &str) -> io::Result<()> {
        self.text = proto == Proto::Simple;
        match proto {
            Proto::Simple => frontend::query(sql, &mut self.wbuf)?,
            Proto::Prepared => {
                bind_no_params(&mut self.wbuf)?;
                frontend::execute("", 0, &mut self.wbuf)?;
                frontend::sync(&mut self.wbuf);
            }
        }
        Ok(())
    }
}

/// A value read as an integer: decimal text, or a big-endian int of 2, 4 or 8 bytes (other
/// binary values by their length only).
#[inline]
fn read_int(v: &[u8], text: bool) -> i64 {
    if text {
        let (neg, digits) = match v.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, v),
        };
        let n = digits.iter().fold(0i64, |n, d| {
            n.wrapping_mul(10)
                .wrapping_add(i64::from(d.wrapping_sub(b'0')))
        });
        if neg {
            -n
        } else {
            n
        }
    } else {
        match v.len() {
            2 => i64::from(i16::from_be_bytes([v[0], v[1]])),
            4 => i64::from(i32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            8 => i64::from_be_bytes(v.try_into().unwrap_or_default()),
            n => n as i64,
        }
    }
}

fn bind_no_params(buf: &mut BytesMut) -> io::Result<()> {
    frontend::bind(
        "",
        STMT,
        std::iter::empty::<i16>(),
        std::iter::empty::<&[u8]>(),
        |_, _| Ok(IsNull::No),
        Some(1),
        buf,
    )
    .map_err(|_| err("bind failed"))
}

fn run(env: &Env, body: impl FnOnce(&mut Floor) -> io::Result<Sample>) -> Result<Sample, String> {
    let mut f = Floor::connect(env).map_err(|e| format!("floor: {e}"))?;
    let s = body(&mut f).map_err(|e| format!("floor: {e}"))?;
    frontend::terminate(&mut f.wbuf);
    let _ = f.flush();
    Ok(s)
}

pub fn w1(env: &Env, proto: Proto) -> Result<Sample, String> {
    let n = env.sizes.w1;
    run(env, |f| {
        if proto == Proto::Prepared {
            f.prepare("SELECT 1")?;
        }
        let m = Meter::start();
        for _ in 0..n {
            f.request(proto, "SELECT 1")?;
            f.flush()?;
            f.until_ready()?;
        }
        Ok(m.finish(n))
    })
}

/// W2: `IN_FLIGHT` requests (each with its own Sync) written and flushed together, then
/// their `IN_FLIGHT` answers read, and again: the loop the issue calls the floor. (Refilling
/// one request per ReadyForQuery instead was slower here: it degenerates into many tiny
/// writes and reads.)
pub fn w2(env: &Env, proto: Proto) -> Result<Sample, String> {
    let groups = env.sizes.w2 / IN_FLIGHT;
    run(env, |f| {
        if proto == Proto::Prepared {
            f.prepare("SELECT 1")?;
        }
        let m = Meter::start();
        for _ in 0..groups {
            for _ in 0..IN_FLIGHT {
                f.request(proto, "SELECT 1")?;
            }
            f.flush()?;
            for _ in 0..IN_FLIGHT {
                f.until_ready()?;
            }
        }
        Ok(m.finish(groups * IN_FLIGHT))
    })
}

/// W2b: the messages of momoko's `batch()` (unnamed Parse/Bind/Describe/Execute per
/// statement, one Sync), one round trip per 100 statements.
pub fn w2b(env: &Env, reps: u64) -> Result<Sample, String> {
    run(env, |f| {
        let m = Meter::start();
        for _ in 0..reps {
            for _ in 0..100 {
                frontend::parse("", "SELECT 1", std::iter::empty(), &mut f.wbuf)?;
                frontend::bind(
                    "",
                    "",
                    std::iter::empty::<i16>(),
                    std::iter::empty::<&[u8]>(),
                    |_, _| Ok(IsNull::No),
                    std::iter::empty::<i16>(),
                    &mut f.wbuf,
                )
                .map_err(|_| err("bind failed"))?;
                frontend::describe(b'P', "", &mut f.wbuf)?;
                frontend::execute("", 0, &mut f.wbuf)?;
            }
            frontend::sync(&mut f.wbuf);
            f.flush()?;
            f.until_ready()?;
        }
        Ok(m.finish(reps * 100))
    })
}

/// W4: the prepared query, binary results; rows framed, values not decoded.
pub fn w4(env: &Env, sql: &str) -> Result<Sample, String> {
    run(env, |f| {
        f.prepare(sql)?;
        let m = Meter::start();
        f.request(Proto::Prepared, sql)?;
        f.flush()?;
        let rows = f.until_ready()?;
        Ok(m.finish(rows))
    })
}

pub fn w4_series(env: &Env) -> Result<Sample, String> {
    w4(
        env,
        &format!(
            "SELECT i FROM generate_series(1, {}) AS i",
            env.sizes.w4_series
        ),
    )
}

/// W4 through a simple Query (text results), every value read as an integer.
pub fn w4_series_text(env: &Env) -> Result<Sample, String> {
    let sql = format!(
        "SELECT i FROM generate_series(1, {}) AS i",
        env.sizes.w4_series
    );
    run(env, |f| {
        let m = Meter::start();
        let rows = f.simple(&sql)?;
        Ok(m.finish(rows))
    })
}

pub fn w4_mixed(env: &Env) -> Result<Sample, String> {
    w4(
        env,
        &MIXED_SQL.replace("$N", &env.sizes.w4_mixed.to_string()),
    )
}

pub fn w5_insert(env: &Env, stmts: Arc<Vec<String>>, rows: u64) -> Result<Sample, String> {
    run(env, |f| {
        f.simple(crate::workloads::TRUNCATE)?;
        let m = Meter::start();
        for s in stmts.iter() {
            f.simple(s)?;
        }
        Ok(m.finish(rows))
    })
}

pub fn w5_copy(env: &Env, chunks: Arc<Vec<Bytes>>, rows: u64) -> Result<Sample, String> {
    run(env, |f| {
        f.simple(crate::workloads::TRUNCATE)?;
        let m = Meter::start();
        frontend::query(crate::workloads::COPY_SQL, &mut f.wbuf)?;
        f.flush()?;
        match f.next()? {
            Message::CopyInResponse(_) => {}
            _ => return Err(err("expected CopyInResponse")),
        }
        for c in chunks.iter() {
            frontend::CopyData::new(c.clone())?.write(&mut f.wbuf);
            if f.wbuf.len() >= 256 * 1024 {
                f.flush()?;
            }
        }
        frontend::copy_done(&mut f.wbuf);
        f.flush()?;
        f.until_ready()?;
        Ok(m.finish(rows))
    })
}

/// W6, trust only: startup, login, ReadyForQuery, Terminate.
pub fn w6(env: &Env, n: u64) -> Result<Sample, String> {
    let m = Meter::start();
    for _ in 0..n {
        let mut f = Floor::connect(env).map_err(|e| format!("floor: {e}"))?;
        frontend::terminate(&mut f.wbuf);
        f.flush().map_err(|e| format!("floor: {e}"))?;
    }
    Ok(m.finish(n))
}
