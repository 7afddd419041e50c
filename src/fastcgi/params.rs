//! Name-value pairs (FastCGI 1.0 §3.4), as carried by PARAMS (§5.2) and by
//! GET_VALUES / GET_VALUES_RESULT (§4.1).
//!
//! The PARAMS stream is collected whole (bounded by the caller) before it is
//! decoded, so a pair or even a length field may span records as §3.4 allows.
//! Lengths are checked against the bytes present before anything is sliced:
//! a length claiming 2 GiB costs nothing but an error.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("pair truncated at byte {0}")]
    Truncated(usize),
    #[error("more than {0} pairs")]
    TooMany(usize),
}

/// Decoded pairs in arrival order, names and values as raw bytes: names keep
/// their case and values may hold any byte. They share the buffer they were
/// decoded from.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(Bytes, Bytes)>);

impl Params {
    /// Decodes a complete name-value stream of at most `max_pairs` pairs.
    pub fn decode(stream: Bytes, max_pairs: usize) -> Result<Params, Error> {
        let mut pairs = Vec::new();
        let mut pos = 0;
        while pos < stream.len() {
            if pairs.len() == max_pairs {
                return Err(Error::TooMany(max_pairs));
            }
            let (name_len, after) = read_len(&stream, pos)?;
            let (value_len, after) = read_len(&stream, after)?;
            let name_end = after
                .checked_add(name_len)
                .filter(|&end| end <= stream.len())
                .ok_or(Error::Truncated(pos))?;
            let value_end = name_end
                .checked_add(value_len)
                .filter(|&end| end <= stream.len())
                .ok_or(Error::Truncated(pos))?;
            pairs.push((stream.slice(after..name_end), stream.slice(name_end..value_end)));
            pos = value_end;
        }
        Ok(Params(pairs))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(n, v)| (&n[..], &v[..]))
    }

    pub fn into_pairs(self) -> Vec<(Bytes, Bytes)> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(Bytes, Bytes)> for Params {
    fn from_iter<T: IntoIterator<Item = (Bytes, Bytes)>>(iter: T) -> Self {
        Params(iter.into_iter().collect())
    }
}

/// A length is one byte below 128, else four bytes big-endian with the top bit
/// masked off (§3.4).
fn read_len(stream: &[u8], pos: usize) -> Result<(usize, usize), Error> {
    match stream.get(pos) {
        Some(&b) if b < 0x80 => Ok((usize::from(b), pos + 1)),
        Some(_) => {
            let bytes = stream.get(pos..pos + 4).ok_or(Error::Truncated(pos))?;
            let len = u32::from_be_bytes([bytes[0] & 0x7f, bytes[1], bytes[2], bytes[3]]);
            Ok((len as usize, pos + 4))
        }
        None => Err(Error::Truncated(pos)),
    }
}

/// Appends one pair, choosing the short length form where it fits.
pub fn put_pair(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        match u8::try_from(len) {
            Ok(short) if short < 0x80 => out.put_u8(short),
            _ => out.put_u32(u32::try_from(len).expect("pair parts under 2 GiB") | 0x8000_0000),
        }
    }
    out.put_slice(name);
    out.put_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Bytes {
        let mut out = BytesMut::new();
        for (n, v) in pairs {
            put_pair(&mut out, n, v);
        }
        out.freeze()
    }

    #[test]
    fn all_four_length_forms() {
        for (n, v) in [(1usize, 1usize), (1, 300), (300, 1), (300, 70_000)] {
            for (name_len, value_len) in [(n, v), (127, 128), (128, 127), (65535, 65536)] {
                let name = vec![b'N'; name_len];
                let value = vec![b'v'; value_len];
                let params = Params::decode(encode(&[(&name, &value)]), 10).unwrap();
                let got: Vec<_> = params.iter().collect();
                assert_eq!(got, vec![(&name[..], &value[..])]);
            }
        }
    }

    #[test]
    fn four_byte_lengths_are_big_endian_with_top_bit_masked() {
        let stream = Bytes::from_static(&[0x80, 0, 0, 2, 0x80, 0, 1, 0]);
        // name length 2, value length 256: truncated, but the lengths decoded right.
        assert_eq!(Params::decode(stream, 10).unwrap_err(), Error::Truncated(0));
        let mut v = vec![0x80, 0, 0, 2, 0x80, 0, 1, 0, b'a', b'b'];
        v.extend([b'x'; 256]);
        let params = Params::decode(Bytes::from(v), 10).unwrap();
        let (name, value) = params.iter().next().unwrap();
        assert_eq!((name, value.len()), (&b"ab"[..], 256));
    }

    #[test]
    fn huge_claimed_lengths_fail_without_allocating() {
        // name length 0x7fffffff: the decoder only compares it to what is there.
        let stream = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x01, b'a']);
        assert_eq!(Params::decode(stream, 10).unwrap_err(), Error::Truncated(0));
        // name_len + value_len near 2^32 must not wrap around (CVE-2025-23016).
        let stream = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b'a']);
        assert_eq!(Params::decode(stream, 10).unwrap_err(), Error::Truncated(0));
    }

    #[test]
    fn truncations_are_errors() {
        for stream in [
            &[0x05][..],
            &[0x80, 0, 0],
            &[2, 2, b'a', b'b', b'c'],
            &[1, 1, b'a', b'b', 0x81],
        ] {
            assert!(matches!(
                Params::decode(Bytes::copy_from_slice(stream), 10),
                Err(Error::Truncated(_))
            ));
        }
    }

    #[test]
    fn names_keep_their_case_and_bytes_pass_verbatim() {
        let params = Params::decode(
            encode(&[(b"Script_Filename", b"/x"), (b"HTTP_X", b"a\0b\r\n\xff"), (b"E", b"")]),
            10,
        )
        .unwrap();
        let got: Vec<_> = params.iter().collect();
        assert_eq!(
            got,
            vec![
                (&b"Script_Filename"[..], &b"/x"[..]),
                (&b"HTTP_X"[..], &b"a\0b\r\n\xff"[..]),
                (&b"E"[..], &b""[..]),
            ]
        );
    }

    #[test]
    fn pair_count_is_bounded() {
        let stream = encode(&[(b"A", b"1"), (b"B", b"2"), (b"C", b"3")]);
        assert_eq!(Params::decode(stream.clone(), 2).unwrap_err(), Error::TooMany(2));
        assert_eq!(Params::decode(stream, 3).unwrap().len(), 3);
    }
}
