//! The CopyBoth exchange of a walsender (START_REPLICATION): CopyBothResponse, read here
//! because postgres-protocol 0.6 does not know it, and the caller's CopyData and CopyDone
//! written into the stream while the copy is open.
//!
//! It knows nothing of what the CopyData carries (XLogData, keepalives, status updates: see
//! `crate::replication`), and never writes anything while the copy is not open on our side.

use postgres_protocol::message::frontend;

use super::in_flight::{Answer, Both};
use super::{Protocol, Stage};
use crate::error::Error;

/// CopyBothResponse's tag: Int8 overall format, Int16 column count, Int16 format each.
pub(super) const COPY_BOTH_RESPONSE_TAG: u8 = b'W';

impl Protocol {
    pub(super) fn on_copy_both_response(&mut self, body: &[u8]) -> Result<(), Error> {
        if !matches!(self.stage, Stage::Ready) || self.in_flight.is_empty() {
            return Err(Error::protocol(
                "unexpected CopyBothResponse with no request in flight",
            ));
        }
        if body.len() < 3 {
            return Err(Error::protocol("malformed CopyBothResponse message"));
        }
        self.on_answer(Answer::CopyBothResponse)
    }

    /// The CopyBoth exchange of the oldest request, when it is one.
    fn both(&mut self) -> Option<&mut Both> {
        self.in_flight.front_mut()?.answers.both()
    }

    /// Queues one CopyData message into the open CopyBoth exchange. Refused (with nothing
    /// written) when no exchange is open on our side: the command was not answered yet, or
    /// it is over.
    pub(crate) fn copy_both_write(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Stage::Closed(e) = &self.stage {
            return Err(e.clone());
        }
        match self.both() {
            Some(Both::Open) => {}
            _ => return Err(Error::usage("the replication stream is not streaming")),
        }
        let len = i32::try_from(data.len() + 4)
            .map_err(|_| Error::usage("a CopyData message over 2 GiB"))?;
        self.out.extend_from_slice(b"d");
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(data);
        Ok(())
    }

    /// Ends our side of the CopyBoth exchange (CopyDone): at once when it is open, as soon as
    /// the server starts it when it has not yet. False when there is nothing to end (no
    /// CopyBoth in flight, or ours is over already).
    pub(crate) fn copy_both_done(&mut self) -> bool {
        if self.is_closed() {
            return false;
        }
        match self.both() {
            Some(both @ Both::Open) => {
                *both = Both::Over;
                frontend::copy_done(&mut self.out);
                true
            }
            Some(Both::Waiting { stop }) => {
                *stop = true;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Scripted exchanges for a CopyBoth (START_REPLICATION) request.

    use super::super::tests::{connected, Script};
    use super::super::{Event, Request, Response};
    use super::*;

    fn written(p: &mut Protocol) -> Vec<u8> {
        let v = p.transmit_buf().to_vec();
        p.advance_transmit(v.len());
        v
    }

    fn copy_both_response() -> Script {
        Script::new().msg(b'W', &[0, 0, 0])
    }

    fn start(p: &mut Protocol) {
        p.send(Request::CopyBoth {
            query: "START_REPLICATION SLOT \"s\" LOGICAL 0/0".into(),
        })
        .unwrap();
        let sent = written(p);
        assert_eq!(sent[0], b'Q');
    }

    #[test]
    fn data_flows_both_ways_until_both_sides_sent_copy_done() {
        let mut p = connected();
        start(&mut p);
        assert!(
            p.copy_both_write(b"r").is_err(),
            "nothing is written before the server starts the copy"
        );
        p.handle_input(&copy_both_response().msg(b'd', b"k123").0);
        match p.poll_event() {
            Some(Event::CopyData(d)) => assert_eq!(&d[..], b"k123"),
            other => panic!("expected CopyData, got {other:?}"),
        }
        p.copy_both_write(b"r-update").unwrap();
        assert_eq!(written(&mut p), b"d\0\0\0\x0cr-update");
        assert!(p.copy_both_done());
        assert_eq!(written(&mut p), b"c\0\0\0\x04");
        assert!(
            p.copy_both_write(b"late").is_err(),
            "nothing after our CopyDone"
        );
        assert!(!p.copy_both_done(), "CopyDone is sent once");
        p.handle_input(
            &Script::new()
                .msg(b'c', &[])
                .complete("START_REPLICATION")
                .ready(b'I')
                .0,
        );
        match p.poll_event() {
            Some(Event::Completed(Ok(Response::Query(r)))) => {
                assert_eq!(r.tag.as_deref(), Some("START_REPLICATION"))
            }
            other => panic!("expected the command's completion, got {other:?}"),
        }
    }

    #[test]
    fn a_stop_before_the_copy_started_sends_copy_done_when_it_starts() {
        let mut p = connected();
        start(&mut p);
        assert!(p.copy_both_done());
        assert!(written(&mut p).is_empty());
        p.handle_input(&copy_both_response().0);
        assert_eq!(written(&mut p), b"c\0\0\0\x04");
    }

    #[test]
    fn the_servers_copy_done_is_answered_with_ours() {
        let mut p = connected();
        start(&mut p);
        p.handle_input(&copy_both_response().msg(b'c', &[]).0);
        assert_eq!(written(&mut p), b"c\0\0\0\x04");
    }

    #[test]
    fn a_copy_both_nobody_can_feed_is_ended_and_its_request_fails_as_usage() {
        let mut p = connected();
        p.send(Request::Simple {
            query: "START_REPLICATION SLOT s LOGICAL 0/0".into(),
        })
        .unwrap();
        written(&mut p);
        p.handle_input(&copy_both_response().0);
        assert_eq!(written(&mut p), b"c\0\0\0\x04");
        p.handle_input(&Script::new().msg(b'c', &[]).complete("x").ready(b'I').0);
        match p.poll_event() {
            Some(Event::Completed(Err(e))) => {
                assert_eq!(e.kind(), crate::ErrorKind::Usage)
            }
            other => panic!("expected a Usage error, got {other:?}"),
        }
    }

    #[test]
    fn a_copy_both_response_with_nothing_in_flight_breaks_the_protocol() {
        let mut p = connected();
        p.handle_input(&copy_both_response().0);
        assert!(p.is_closed());
    }
}
