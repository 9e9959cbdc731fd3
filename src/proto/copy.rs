//! COPY FROM STDIN's upload: the data pulled from the caller's source while the transmit
//! buffer has room, and the requests held back while the server accepts nothing but copy
//! data.
//!
//! A source is user code (an iterator and its captures): this module never calls it and
//! never drops it under a borrow. The session pulls the chunks ([`Protocol::take_copy_source`],
//! [`Protocol::feed_copy`]) and drops the sources the protocol is done with
//! ([`Protocol::take_spent_sources`]) with no borrow held.

use bytes::Bytes;
use postgres_protocol::message::frontend;

use super::in_flight::InFlight;
use super::Protocol;

/// Where COPY FROM STDIN data comes from: chunks pulled while the transmit buffer has room,
/// so a large COPY never sits in memory whole. An `Err` aborts the COPY with CopyFail.
pub(crate) struct CopySource(pub(crate) Box<dyn Iterator<Item = Result<Bytes, String>>>);

impl std::fmt::Debug for CopySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CopySource")
    }
}

/// How much COPY data is buffered for the socket before the source is asked for more.
const COPY_BUFFER: usize = 256 * 1024;

/// Where a COPY FROM STDIN's data stands.
///
/// ```text
///   Waiting ──CopyInResponse──▶ Sending ──CopyDone / CopyFail sent──▶ Over
///      │                           │                                   ▲
///      └──────ErrorResponse────────┴───────────────────────────────────┘
/// ```
#[derive(Debug)]
pub(super) enum Upload {
    /// Sent; the server has not asked for the data yet. Requests made now wait behind it.
    Waiting(CopySource),
    /// The server asked: data is being sent. `None` while the session pulls chunks from it.
    Sending(Option<CopySource>),
    /// Every byte sent, or the server refused the COPY: nothing more goes out for it.
    Over,
}

impl Upload {
    /// CopyInResponse: the server asks for the data. False when it already did (a second
    /// COPY in one query string), which the core refuses: one source feeds one COPY.
    pub(super) fn start(&mut self) -> bool {
        match std::mem::replace(self, Upload::Over) {
            Upload::Waiting(source) => {
                *self = Upload::Sending(Some(source));
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }

    /// The COPY is over (refused, failed, or the connection closed): the source, if it is
    /// still here, is handed back.
    pub(super) fn stop(&mut self) -> Option<CopySource> {
        match std::mem::replace(self, Upload::Over) {
            Upload::Waiting(source) | Upload::Sending(Some(source)) => Some(source),
            Upload::Sending(None) | Upload::Over => None,
        }
    }

    /// Whether the server is not yet past its copy data: requests made now must wait.
    fn in_progress(&self) -> bool {
        !matches!(self, Upload::Over)
    }
}

impl Protocol {
    /// Whether a COPY FROM STDIN is in flight and not yet fully sent.
    pub(super) fn copy_in_progress(&self) -> bool {
        // Most connections never COPY: no scan of the requests in flight for them.
        self.copy_flights > 0
            && self.in_flight.iter().any(
                |f| matches!(&f.answers, InFlight::CopyIn { upload, .. } if upload.in_progress()),
            )
    }

    /// The source of the COPY FROM STDIN being sent, taken out when the transmit buffer has
    /// room for more of its data. The caller pulls chunks from it with no borrow held (the
    /// source is user code) and gives it back with [`Protocol::feed_copy`].
    pub(crate) fn take_copy_source(&mut self) -> Option<CopySource> {
        if self.copy_flights == 0 || self.out.len() >= COPY_BUFFER / 2 {
            return None;
        }
        match self.in_flight.front_mut()?.answers.upload()? {
            Upload::Sending(source) => source.take(),
            _ => None,
        }
    }

    /// How many bytes of COPY data [`Protocol::feed_copy`] takes at once.
    pub(crate) const COPY_CHUNK_BUDGET: usize = COPY_BUFFER;

    /// Queues chunks pulled from a source that [`Protocol::take_copy_source`] gave out, and
    /// how the source ended (`Some(Ok)`: exhausted, `Some(Err)`: it failed). The source is
    /// kept for more unless it ended or the COPY is over (the server refused it, or the
    /// connection closed while the chunks were being pulled): then it is handed back, for
    /// the caller to drop with no borrow held.
    pub(crate) fn feed_copy(
        &mut self,
        source: CopySource,
        chunks: Vec<Bytes>,
        end: Option<Result<(), String>>,
    ) -> Option<CopySource> {
        let closed = self.is_closed();
        let Some(upload) = self
            .in_flight
            .front_mut()
            .and_then(|f| f.answers.upload())
            .filter(|u| !closed && matches!(u, Upload::Sending(None)))
        else {
            return Some(source);
        };
        let out = &mut self.out;
        let mut ended = false;
        for chunk in chunks {
            if chunk.is_empty() {
                continue;
            }
            match frontend::CopyData::new(chunk) {
                Ok(d) => d.write(out),
                Err(e) => {
                    let _ = frontend::copy_fail(&format!("COPY chunk refused: {e}"), out);
                    ended = true;
                    break;
                }
            }
        }
        if !ended {
            match end {
                Some(Ok(())) => {
                    frontend::copy_done(out);
                    ended = true;
                }
                Some(Err(msg)) => {
                    let msg = msg.replace('\0', " ");
                    let _ = frontend::copy_fail(&msg, out);
                    ended = true;
                }
                None => {}
            }
        }
        if ended {
            *upload = Upload::Over;
            self.release_held();
            Some(source)
        } else {
            *upload = Upload::Sending(Some(source));
            None
        }
    }

    /// Whether a COPY source waits to be handed back.
    pub(crate) fn has_spent_sources(&self) -> bool {
        !self.spent_sources.is_empty()
    }

    /// COPY sources the protocol no longer needs, to be dropped with no borrow held.
    pub(crate) fn take_spent_sources(&mut self) -> Vec<CopySource> {
        std::mem::take(&mut self.spent_sources)
    }

    /// Moves the requests held behind a COPY into the transmit buffer, in order.
    pub(super) fn release_held(&mut self) {
        if self.held.is_empty() || self.copy_in_progress() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        let mut at = self.queued_total();
        self.out.extend_from_slice(&held);
        for f in self.in_flight.iter_mut().filter(|f| f.held) {
            f.held = false;
            f.start = at;
            at += f.len;
            f.bytes_before = self.request_bytes;
            self.request_bytes += f.len;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Scripted exchanges for a COPY FROM STDIN's upload.

    use super::super::tests::{connected, Script};
    use super::super::{Event, Request};
    use super::*;

    fn source() -> CopySource {
        CopySource(Box::new(std::iter::once(Ok(Bytes::from_static(b"1\n")))))
    }

    fn copy_in_response() -> Script {
        Script::new().msg(b'G', &[0, 0, 0])
    }

    fn written(p: &mut Protocol) -> Vec<u8> {
        let v = p.transmit_buf().to_vec();
        p.advance_transmit(v.len());
        v
    }

    #[test]
    fn a_copy_refused_before_it_started_hands_its_source_back_to_be_dropped_outside_borrows() {
        let mut p = connected();
        p.send(Request::CopyIn {
            query: "COPY missing FROM STDIN".into(),
            source: source(),
        })
        .unwrap();
        written(&mut p);
        p.handle_input(
            &Script::new()
                .error("ERROR", "42P01", "relation \"missing\" does not exist")
                .ready(b'I')
                .0,
        );
        assert!(matches!(p.poll_event(), Some(Event::Completed(Err(_)))));
        // The source is user code: the session drops it, not the protocol under a borrow.
        assert_eq!(p.take_spent_sources().len(), 1);
    }

    #[test]
    fn a_second_copy_in_response_for_one_source_is_refused_with_copy_fail() {
        let mut p = connected();
        p.send(Request::CopyIn {
            query: "COPY a FROM STDIN; COPY b FROM STDIN".into(),
            source: source(),
        })
        .unwrap();
        written(&mut p);
        p.handle_input(&copy_in_response().0);
        let source = p.take_copy_source().expect("the server asked for the data");
        let back = p.feed_copy(source, vec![Bytes::from_static(b"1\n")], Some(Ok(())));
        assert!(back.is_some(), "an exhausted source is handed back");
        let sent = written(&mut p);
        assert_eq!(sent.last().copied(), Some(4), "CopyDone is 'c', 0, 0, 0, 4");
        assert_eq!(sent[sent.len() - 5], b'c');
        p.handle_input(&copy_in_response().0);
        // Nothing feeds the second COPY: CopyFail, at once, instead of a server waiting.
        let sent = written(&mut p);
        assert_eq!(sent.first().copied(), Some(b'f'), "CopyFail expected");
        assert!(p.take_copy_source().is_none());
    }
}
