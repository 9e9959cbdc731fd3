//! Message framing: cutting whole backend messages out of the input buffer, with the checks
//! libpq makes before it trusts a length.
//!
//! This module decides only where a message starts and ends and whether its declared length
//! is believable; it never interprets a message body and never allocates for a length it has
//! not yet received (a hostile length of 2^31-1 costs nothing).

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;

use crate::error::Error;

/// The default bound on one server message: PostgreSQL itself cannot send a field above
/// 1 GiB, so nothing legitimate is refused.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 30;

/// libpq's bound for message types that are never long (pqParseInput3: 30000 bytes). Only
/// RowDescription, DataRow, CopyData, FunctionCallResponse, ErrorResponse, NoticeResponse
/// and NotificationResponse may be larger.
const SHORT_MESSAGE_BOUND: usize = 30_000;

fn may_be_long(tag: u8) -> bool {
    matches!(tag, b'T' | b'D' | b'd' | b'V' | b'E' | b'N' | b'A')
}

/// One whole backend message: tag, length and body.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) tag: u8,
    whole: BytesMut,
}

impl Frame {
    /// The body, after the tag and the length.
    pub(crate) fn body(&self) -> &[u8] {
        &self.whole[5..]
    }

    /// Parses the message with postgres-protocol's decoders.
    pub(crate) fn parse(mut self) -> Result<Message, Error> {
        match Message::parse(&mut self.whole) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Error::protocol("incomplete message after framing")),
            Err(e) => Err(Error::protocol(format!(
                "malformed message of type {:?}: {e}",
                char::from(self.tag)
            ))),
        }
    }
}

impl Frame {
    /// The message [`peek_frame`] found, copied out of the bytes it lies in.
    pub(crate) fn copied(tag: u8, whole: &[u8]) -> Frame {
        Frame {
            tag,
            whole: BytesMut::from(whole),
        }
    }

    /// The message [`peek_frame`] found: `input`'s first `end` bytes, cut off.
    #[cfg(test)]
    pub(crate) fn cut(tag: u8, input: &mut BytesMut, end: usize) -> Frame {
        Frame {
            tag,
            whole: input.split_to(end),
        }
    }
}

/// Cuts the next whole message from `input`, or returns `Ok(None)` when more bytes are needed.
#[cfg(test)]
pub(crate) fn next_frame(
    input: &mut BytesMut,
    max_message_size: usize,
) -> Result<Option<Frame>, Error> {
    Ok(peek_frame(input, max_message_size)?.map(|(tag, end)| Frame::cut(tag, input, end)))
}

/// The length the header of the message at the start of `input` declares (counting itself,
/// not the tag), once its five bytes are there; not yet checked.
#[inline]
pub(crate) fn declared_len(input: &[u8]) -> Option<i32> {
    let &[_, a, b, c, d, ..] = input else {
        return None;
    };
    Some(i32::from_be_bytes([a, b, c, d]))
}

/// The tag of the next whole message in `input` and where it ends (tag and length
/// included), or `Ok(None)` when more bytes are needed; nothing is cut.
#[inline]
pub(crate) fn peek_frame(
    input: &[u8],
    max_message_size: usize,
) -> Result<Option<(u8, usize)>, Error> {
    let Some(len) = declared_len(input) else {
        return Ok(None);
    };
    let tag = input[0];
    if len < 4 {
        return Err(Error::protocol(format!(
            "lost synchronization with the server: message of type {:?} declares length {len}",
            char::from(tag)
        )));
    }
    let len = len as usize;
    let bound = if may_be_long(tag) {
        max_message_size
    } else {
        SHORT_MESSAGE_BOUND.min(max_message_size)
    };
    if len > bound {
        return Err(Error::protocol(format!(
            "server message of type {:?} declares {len} bytes, over the bound of {bound}",
            char::from(tag)
        )));
    }
    if input.len() < len + 1 {
        return Ok(None);
    }
    Ok(Some((tag, len + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first five bytes of a message: its tag and declared length.
    fn header(tag: u8, len: i32) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[tag]);
        b.extend_from_slice(&len.to_be_bytes());
        b
    }

    fn verdict(tag: u8, len: i32, max: usize) -> Result<Option<Frame>, Error> {
        next_frame(&mut header(tag, len), max)
    }

    #[test]
    fn lengths_under_four_are_lost_sync_for_every_type() {
        for tag in 0..=255u8 {
            for len in [i32::MIN, -1, 0, 3] {
                let e = verdict(tag, len, DEFAULT_MAX_MESSAGE_SIZE).unwrap_err();
                assert_eq!(e.kind(), crate::ErrorKind::Protocol);
                assert!(e.to_string().contains("lost synchronization"), "{e}");
            }
        }
    }

    #[test]
    fn a_length_of_exactly_four_is_an_empty_body() {
        let mut input = header(b'1', 4);
        let frame = next_frame(&mut input, DEFAULT_MAX_MESSAGE_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(frame.tag, b'1');
        assert_eq!(frame.body(), b"");
        assert!(input.is_empty());
    }

    #[test]
    fn only_t_d_d_v_e_n_a_may_exceed_30000_bytes() {
        for tag in 0..=255u8 {
            // Exactly at libpq's bound every type is still waiting for its body.
            assert!(verdict(tag, 30_000, DEFAULT_MAX_MESSAGE_SIZE)
                .unwrap()
                .is_none());
            let over = verdict(tag, 30_001, DEFAULT_MAX_MESSAGE_SIZE);
            if b"TDdVENA".contains(&tag) {
                assert!(over.unwrap().is_none(), "{:?} may be long", char::from(tag));
            } else {
                let e = over.unwrap_err();
                assert_eq!(e.kind(), crate::ErrorKind::Protocol);
                assert!(e.to_string().contains("over the bound of 30000"), "{e}");
            }
        }
    }

    #[test]
    fn the_overall_bound_is_configurable_and_caps_long_types_too() {
        assert!(verdict(b'D', 1_000_000, 1_000_000).unwrap().is_none());
        let e = verdict(b'D', 1_000_001, 1_000_000).unwrap_err();
        assert!(e.to_string().contains("over the bound of 1000000"), "{e}");
        // A bound below libpq's 30000 applies to every type.
        let e = verdict(b'C', 1_001, 1_000).unwrap_err();
        assert!(e.to_string().contains("over the bound of 1000"), "{e}");
        // 2^31-1 is refused on sight under the default bound: nothing is allocated for it.
        let e = verdict(b'D', i32::MAX, DEFAULT_MAX_MESSAGE_SIZE).unwrap_err();
        assert!(e.to_string().contains("2147483647"), "{e}");
    }

    #[test]
    fn a_message_is_cut_only_once_whole() {
        let mut input = header(b'C', 9);
        input.extend_from_slice(b"SEL");
        assert!(next_frame(&mut input, DEFAULT_MAX_MESSAGE_SIZE)
            .unwrap()
            .is_none());
        assert_eq!(input.len(), 8, "an incomplete message is left in place");
        input.extend_from_slice(b"EC\0Z");
        let frame = next_frame(&mut input, DEFAULT_MAX_MESSAGE_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(frame.body(), b"SELEC");
        assert_eq!(&input[..], b"\0Z", "the next message's bytes stay");
    }
}
