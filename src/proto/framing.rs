//! Message framing: cutting whole backend messages out of the input buffer, with the checks
//! libpq makes before it trusts a length.
//!
//! This module decides only where a message starts and ends and whether its declared length
//! is believable; it never interprets a message body and never allocates for a length it has
//! not yet received (a hostile length of 2^31-1 costs nothing).

use bytes::{Bytes, BytesMut};
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

    /// The body as shared bytes, without copying.
    pub(crate) fn into_body(self) -> Bytes {
        self.whole.freeze().slice(5..)
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

/// Cuts the next whole message from `input`, or returns `Ok(None)` when more bytes are needed.
pub(crate) fn next_frame(
    input: &mut BytesMut,
    max_message_size: usize,
) -> Result<Option<Frame>, Error> {
    if input.len() < 5 {
        return Ok(None);
    }
    let tag = input[0];
    let len = i32::from_be_bytes([input[1], input[2], input[3], input[4]]);
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
    Ok(Some(Frame {
        tag,
        whole: input.split_to(len + 1),
    }))
}
