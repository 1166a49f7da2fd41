//! Just enough HPACK (RFC 7541) to find a request's `:authority` in a header block and
//! replace a value that is no authority (a socket's path) by one of the same length.
//!
//! Every header block a client sends must pass through [`Table::rewrite`], in order: it
//! mirrors the client's dynamic table (each entry's size, and whether its name is
//! `:authority`) to know what an indexed name refers to. A replaced value has the length
//! of the original, so each entry the server's decoder inserts has the size the client
//! counted, and the two tables stay alike: indexes the client sends later mean the same.

use std::collections::VecDeque;

/// The header block cannot be read: it is passed on as it is (the server refuses it).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// The names of the static table (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// What the mirror keeps of a dynamic table entry.
#[derive(Clone, Copy, Debug)]
struct Entry {
    authority: bool,
    name_len: usize,
    /// RFC 7541 4.1: name length + value length + 32.
    size: usize,
}

/// A mirror of the client's dynamic table: entry sizes and names that are `:authority`.
#[derive(Debug)]
pub struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            entries: VecDeque::new(),
            size: 0,
            // SETTINGS_HEADER_TABLE_SIZE's initial value; the server sets no other.
            max: 4096,
        }
    }
}

impl Table {
    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            let Some(old) = self.entries.pop_back() else {
                break;
            };
            self.size -= old.size;
        }
    }

    fn insert(&mut self, e: Entry) {
        if e.size > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - e.size);
        self.size += e.size;
        self.entries.push_front(e);
    }

    /// The name an index refers to: its length and whether it is `:authority`.
    fn name(&self, index: usize) -> Result<(usize, bool), Malformed> {
        match index {
            0 => Err(Malformed),
            1..=61 => Ok((STATIC_NAMES[index - 1].len(), index == 1)),
            _ => self
                .entries
                .get(index - 62)
                .map(|e| (e.name_len, e.authority))
                .ok_or(Malformed),
        }
    }

    /// Reads one header block, updating the mirror; returns the block with every
    /// `:authority` that is not one made valid (`None` when none needed it).
    pub fn rewrite(&mut self, block: &[u8]) -> Result<Option<Rewritten>, Malformed> {
        let mut out = Vec::with_capacity(block.len());
        let mut fixed = Vec::new();
        let mut pos = 0;
        while pos < block.len() {
            let start = pos;
            let b = block[pos];
            if b & 0x80 != 0 {
                // Indexed field: adds nothing to the table.
                let (index, next) = integer(block, pos, 7)?;
                self.name(index)?;
                pos = next;
            } else if b & 0xE0 == 0x20 {
                // Dynamic table size update.
                let (max, next) = integer(block, pos, 5)?;
                self.max = max;
                self.evict_to(max);
                pos = next;
            } else {
                // A literal: with incremental indexing (01), without (0000) or never (0001).
                let indexing = b & 0xC0 == 0x40;
                let (index, next) = integer(block, pos, if indexing { 6 } else { 4 })?;
                let (name_len, authority, value_at) = if index == 0 {
                    let (name, next) = string(block, next)?;
                    (name.len(), name == b":authority", next)
                } else {
                    let (len, authority) = self.name(index)?;
                    (len, authority, next)
                };
                let (value, end) = string(block, value_at)?;
                if indexing {
                    self.insert(Entry {
                        authority,
                        name_len,
                        size: name_len + value.len() + 32,
                    });
                }
                pos = end;
                if authority && let Some(valid) = made_valid(&value) {
                    out.extend_from_slice(&block[start..value_at]);
                    put_string(&mut out, &valid);
                    fixed.push(Fixed {
                        sent: value,
                        served: valid,
                    });
                    continue;
                }
            }
            out.extend_from_slice(&block[start..pos]);
        }
        Ok((!fixed.is_empty()).then_some((out, fixed)))
    }
}

/// A header block with its `:authority` replaced, and what was replaced.
pub type Rewritten = (Vec<u8>, Vec<Fixed>);

/// An `:authority` replaced: what the client sent and what the server gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Fixed {
    pub sent: Vec<u8>,
    pub served: Vec<u8>,
}

/// `value` as a valid authority of the same length, if it is none (a unix socket's
/// path, raw or percent-encoded): each byte other than a letter, digit, `-` or `.`
/// becomes `-`. `None` when it is valid already, or cannot be made valid (empty).
fn made_valid(value: &[u8]) -> Option<Vec<u8>> {
    if http::uri::Authority::try_from(value).is_ok() {
        return None;
    }
    let valid: Vec<u8> = value
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                b
            } else {
                b'-'
            }
        })
        .collect();
    http::uri::Authority::try_from(&valid[..])
        .is_ok()
        .then_some(valid)
}

/// An HPACK integer with an `n`-bit prefix at `pos` (RFC 7541 5.1); returns it and
/// where it ends.
fn integer(block: &[u8], pos: usize, n: u32) -> Result<(usize, usize), Malformed> {
    let mask = (1usize << n) - 1;
    let mut value = usize::from(block[pos]) & mask;
    let mut pos = pos + 1;
    if value < mask {
        return Ok((value, pos));
    }
    let mut shift = 0;
    loop {
        let b = *block.get(pos).ok_or(Malformed)?;
        pos += 1;
        if shift > 28 {
            return Err(Malformed);
        }
        value += usize::from(b & 0x7F) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok((value, pos));
        }
    }
}

/// An HPACK string literal at `pos` (RFC 7541 5.2), decoded; and where it ends.
fn string(block: &[u8], pos: usize) -> Result<(Vec<u8>, usize), Malformed> {
    let huffman = *block.get(pos).ok_or(Malformed)? & 0x80 != 0;
    let (len, start) = integer(block, pos, 7)?;
    let end = start.checked_add(len).ok_or(Malformed)?;
    let raw = block.get(start..end).ok_or(Malformed)?;
    let s = if huffman {
        huffman_decode(raw)?
    } else {
        raw.to_vec()
    };
    Ok((s, end))
}

/// Writes `s` as a string literal without Huffman coding.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 0x7F {
        out.push(len as u8);
    } else {
        out.push(0x7F);
        len -= 0x7F;
        while len >= 0x80 {
            out.push((len & 0x7F) as u8 | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(s);
}

/// Bit lengths of the Huffman code of each byte value (RFC 7541 Appendix B). The code is
/// canonical: codes follow from the lengths, in order of length, then of value; EOS (256)
/// is the last, 30 bits of ones.
const HUFFMAN_LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];

/// The canonical code, per length: the first code of each length, and the byte values
/// of that length in order.
struct Code {
    first: [u32; 31],
    symbols: [Vec<u8>; 31],
}

fn code() -> &'static Code {
    static CODE: std::sync::OnceLock<Code> = std::sync::OnceLock::new();
    CODE.get_or_init(|| {
        let mut symbols: [Vec<u8>; 31] = Default::default();
        for (byte, &len) in HUFFMAN_LENGTHS.iter().enumerate() {
            symbols[usize::from(len)].push(byte as u8);
        }
        let mut first = [0u32; 31];
        let mut next = 0u32;
        for len in 1..31 {
            next <<= 1;
            first[len] = next;
            next += symbols[len].len() as u32;
        }
        Code { first, symbols }
    })
}

/// Decodes a Huffman-coded string (RFC 7541 5.2): the padding is at most 7 bits, all ones.
fn huffman_decode(raw: &[u8]) -> Result<Vec<u8>, Malformed> {
    let code = code();
    let mut out = Vec::with_capacity(raw.len() * 8 / 5);
    let (mut acc, mut len) = (0u32, 0usize);
    for &byte in raw {
        for bit in (0..8).rev() {
            acc = (acc << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            if len > 30 {
                return Err(Malformed); // EOS, or no code
            }
            let offset = acc.wrapping_sub(code.first[len]) as usize;
            if acc >= code.first[len] && offset < code.symbols[len].len() {
                out.push(code.symbols[len][offset]);
                (acc, len) = (0, 0);
            }
        }
    }
    if len > 7 || acc != (1 << len) - 1 {
        return Err(Malformed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Huffman-codes `s` as a client would (padding with ones).
    fn huffman_encode(s: &[u8]) -> Vec<u8> {
        let code = code();
        let (mut out, mut acc, mut bits) = (Vec::new(), 0u64, 0u32);
        for &b in s {
            let len = usize::from(HUFFMAN_LENGTHS[usize::from(b)]);
            let at = code.symbols[len].iter().position(|&x| x == b).unwrap() as u32;
            acc = (acc << len) | u64::from(code.first[len] + at);
            bits += len as u32;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) as u8) | ((1u8 << (8 - bits)) - 1));
        }
        out
    }

    #[test]
    fn huffman_decodes_the_rfc_examples() {
        // RFC 7541 C.4.1 to C.4.3 and C.6.1.
        for (coded, plain) in [
            ("f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"),
            ("a8eb10649cbf", "no-cache"),
            ("25a849e95ba97d7f", "custom-key"),
            ("25a849e95bb8e8b4bf", "custom-value"),
            ("6402", "302"),
            ("aec3771a4b", "private"),
        ] {
            assert_eq!(huffman_decode(&hex(coded)).unwrap(), plain.as_bytes());
        }
        assert!(
            huffman_decode(&hex("ffffffff")).is_err(),
            "EOS is no symbol"
        );
        assert!(huffman_decode(&hex("00")).is_err(), "padding must be ones");
        let every: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&every)).unwrap(), every);
    }

    /// RFC 7541 C.3: three requests with the dynamic table; nothing to replace.
    #[test]
    fn valid_authorities_pass_unchanged_and_the_table_follows() {
        let mut t = Table::default();
        let first = hex("828684410f7777772e6578616d706c652e636f6d");
        assert_eq!(t.rewrite(&first), Ok(None));
        assert_eq!((t.entries.len(), t.size), (1, 57));
        assert!(t.entries[0].authority);
        let second = hex("828684be58086e6f2d6361636865");
        assert_eq!(t.rewrite(&second), Ok(None));
        assert_eq!((t.entries.len(), t.size), (2, 110));
        let third = hex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565");
        assert_eq!(t.rewrite(&third), Ok(None));
        assert_eq!((t.entries.len(), t.size), (3, 164));
        assert!(!t.entries[0].authority && t.entries[2].authority);
    }

    /// A socket's path, raw or Huffman-coded, with or without indexing, becomes a valid
    /// authority of the same length; later references to the entry need nothing.
    #[test]
    fn a_socket_path_becomes_a_valid_authority_of_its_length() {
        // :method POST, :scheme http, :path /x, :authority tmp%2Fa.sock (incremental
        // indexing, static name 1), then an indexed reference to it.
        let mut block = hex("8386");
        block.extend_from_slice(&hex("4402"));
        block.extend_from_slice(b"/x");
        block.push(0x41);
        put_string(&mut block, b"tmp%2Fa.sock");
        let mut t = Table::default();
        let (out, fixed) = t.rewrite(&block).unwrap().expect("replaced");
        assert_eq!(fixed[0].served, b"tmp-2Fa.sock");
        assert!(out.ends_with(b"\x41\x0ctmp-2Fa.sock"));
        assert_eq!(
            t.entries[0].size,
            10 + 12 + 32,
            "the size the client counted"
        );
        assert_eq!(
            t.rewrite(&hex("8386be")),
            Ok(None),
            "indexed: already replaced"
        );
        // Never indexed, Huffman-coded "/run/csi.sock" (as grpc-go would code it).
        let mut t = Table::default();
        let coded = huffman_encode(b"/run/csi.sock");
        assert_eq!(huffman_decode(&coded).unwrap(), b"/run/csi.sock");
        let mut block = vec![0x11, 0x80 | coded.len() as u8];
        block.extend_from_slice(&coded);
        let (out, _) = t.rewrite(&block).unwrap().unwrap();
        assert_eq!(out, b"\x11\x0d-run-csi.sock");
        assert!(t.entries.is_empty(), "never indexed: no entry");
        // A literal name ":authority" with a path value.
        let mut block = vec![0x00];
        put_string(&mut block, b":authority");
        put_string(&mut block, b"/s");
        let (out, _) = Table::default().rewrite(&block).unwrap().unwrap();
        assert!(out.ends_with(b"\x02-s"));
    }

    #[test]
    fn a_truncated_block_is_malformed() {
        let mut t = Table::default();
        assert_eq!(t.rewrite(&hex("410f7777")), Err(Malformed));
        assert_eq!(t.rewrite(&hex("ff")), Err(Malformed));
        assert_eq!(t.rewrite(&hex("c0")), Err(Malformed), "no such entry");
    }

    #[test]
    fn size_updates_evict() {
        let mut t = Table::default();
        t.rewrite(&hex("410f7777772e6578616d706c652e636f6d"))
            .unwrap();
        assert_eq!(t.entries.len(), 1);
        t.rewrite(&hex("20")).unwrap();
        assert!(t.entries.is_empty() && t.size == 0);
    }

    #[test]
    fn long_strings_take_a_multibyte_length() {
        let mut out = Vec::new();
        put_string(&mut out, &[b'a'; 300]);
        assert_eq!(string(&out, 0).unwrap(), (vec![b'a'; 300], out.len()));
    }
}
