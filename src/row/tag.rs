//! [`Tag`]: a statement's command tag (`SELECT 1`, `INSERT 0 5`) as a cursor keeps it.
//!
//! Every statement has one, so it is held without a heap allocation whenever it fits (every
//! tag the server writes but a long `MERGE`/`COPY` count does); a longer one is boxed. It
//! owns that representation only, and never holds anything but valid UTF-8.

use std::fmt;
use std::ops::Deref;

/// The longest tag held inline (`INSERT 0 ` and a thirteen-digit count still fit): a tag is no larger than a `String`.
const INLINE: usize = 22;

/// A command tag: valid UTF-8, inline when short.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Tag(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Tag {
    /// The tag of `text`.
    pub(crate) fn new(text: &str) -> Tag {
        Tag::inline(text.as_bytes()).unwrap_or_else(|| Tag(Repr::Heap(text.into())))
    }

    /// The tag of a CommandComplete's bytes, `None` if they are not UTF-8. Tags are ASCII:
    /// that is checked first, cheaper than a UTF-8 validation.
    pub(crate) fn from_bytes(b: &[u8]) -> Option<Tag> {
        if b.is_ascii() {
            if let Some(tag) = Tag::inline(b) {
                return Some(tag);
            }
        }
        std::str::from_utf8(b).ok().map(Tag::new)
    }

    /// `text` held inline, if it fits. The caller vouches that it is UTF-8.
    fn inline(text: &[u8]) -> Option<Tag> {
        let len = u8::try_from(text.len())
            .ok()
            .filter(|n| usize::from(*n) <= INLINE)?;
        let mut bytes = [0; INLINE];
        bytes[..text.len()].copy_from_slice(text);
        Some(Tag(Repr::Inline { len, bytes }))
    }

    /// The tag's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// The tag as text.
    pub(crate) fn as_str(&self) -> &str {
        // Made from a `&str` only, cut at its own length: always valid.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl Deref for Tag {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Tag {
    fn from(s: String) -> Tag {
        Tag::inline(s.as_bytes()).unwrap_or_else(|| Tag(Repr::Heap(s.into_boxed_str())))
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_tag_is_held_inline_and_reads_back_the_same() {
        let t = Tag::new("SELECT 1");
        assert!(matches!(t.0, Repr::Inline { len: 8, .. }));
        assert_eq!(t.as_str(), "SELECT 1");
        assert_eq!(&*t, "SELECT 1");
    }

    #[test]
    fn a_tag_longer_than_the_inline_room_is_boxed_whole() {
        let text = "MERGE 12345678901234567890";
        let t = Tag::from(text.to_owned());
        assert!(matches!(t.0, Repr::Heap(_)));
        assert_eq!(t.as_str(), text);
        let exactly = "x".repeat(INLINE);
        assert_eq!(Tag::new(&exactly).as_str(), exactly);
        assert!(matches!(Tag::new(&exactly).0, Repr::Inline { .. }));
    }

    #[test]
    fn a_multibyte_tag_keeps_every_character() {
        let t = Tag::new("SELECT é 2");
        assert_eq!(t.as_str(), "SELECT é 2");
        let b = Tag::from_bytes("SELECT é 2".as_bytes()).expect("UTF-8");
        assert_eq!(b.as_str(), "SELECT é 2");
    }

    #[test]
    fn tag_bytes_that_are_not_utf8_make_no_tag() {
        assert!(Tag::from_bytes(&[b'S', 0xff]).is_none());
        assert_eq!(
            Tag::from_bytes(b"UPDATE 3").map(|t| t.as_str().to_owned()),
            Some("UPDATE 3".to_owned())
        );
        let long = "x".repeat(INLINE + 1);
        assert_eq!(
            Tag::from_bytes(long.as_bytes()).map(|t| t.as_str().to_owned()),
            Some(long)
        );
    }
}
