//! The state a daemon hands to its successor, as bytes: a versioned, checksummed
//! container and the primitives each part is written with.
//!
//! ```text
//! "EDFSTATE"  u32 format version  u64 payload length  payload  u64 FNV-1a of the payload
//! ```
//!
//! Integers are little-endian; byte strings are a `u32` length and the bytes. Each
//! change of the layout bumps [`FORMAT_VERSION`]; a daemon writes only that one and hands
//! over only to a successor that reads it, and reads every version from
//! [`OLDEST_FORMAT`] on (so a volume can be taken over from an older build). A reader
//! refuses other versions, a wrong length or checksum, and a payload not read to its end.
//!
//! Versions: 1, the backend's state; 2 (issue 16), then the mode of every open file
//! (`fuse/iomode.rs`). A volume taken over from a version 1 state caches every open.
//! 3 (issue 20): generations, for file handles (a memory volume's, `memory/mod.rs`; a
//! disk volume's nodes carry theirs, and the nodes the kernel forgot follow the table,
//! `disk/nodes.rs`); a memory volume's open directories (where each listing ends,
//! `memory/listing.rs`); a disk volume's private backing mount (`backing/mount.rs`);
//! the usage counts metadata blocks apart from data (`fs/usage.rs`: a disk volume from an
//! older state finds its directories' blocks by a walk).
//! 4 (issue 21): a memory volume's data is a file per inode in a tmpfs of its own, whose
//! mount goes with the state, with the blocks its metadata holds there; no slot
//! allocator nor block maps (`memory/data.rs`; an older state's data is copied in,
//! `memory/legacy.rs`).
//! Also from 4: the connection may have agreed to `FUSE_ATOMIC_O_TRUNC`
//! (`fuse/options.rs`), which a build from before it would adopt without truncating in
//! OPEN, so such a build must not take over (it does not read format 4).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const FORMAT_VERSION: u32 = 4;
/// The oldest version this build reads.
pub const OLDEST_FORMAT: u32 = 1;
const MAGIC: &[u8; 8] = b"EDFSTATE";
const HEADER: usize = 8 + 4 + 8;

/// Why a state is refused.
pub type Refused = String;

pub use crate::common::checksum;

pub struct Writer {
    buf: Vec<u8>,
    /// The layout written: [`FORMAT_VERSION`], or an older one a test emulates.
    version: u32,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::writing(FORMAT_VERSION)
    }
}

impl Writer {
    /// A writer of layout `version` (only tests write another than [`FORMAT_VERSION`]:
    /// the state of an older build, to take over from).
    pub fn writing(version: u32) -> Writer {
        Writer {
            buf: Vec::new(),
            version,
        }
    }

    /// The layout being written; parts added in a later version are left out of an
    /// older one.
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    /// Seconds (signed) and nanoseconds since the epoch.
    pub fn time(&mut self, t: SystemTime) {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let secs = -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0);
                let nanos = (1_000_000_000 - d.subsec_nanos()) % 1_000_000_000;
                (secs, nanos)
            }
        };
        self.u64(secs as u64);
        self.u32(nanos);
    }

    /// The whole container, written with `version` (only tests write another).
    pub fn finish(self, version: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.buf.len() + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(self.buf.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(&checksum(&self.buf).to_le_bytes());
        out
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    version: u32,
}

impl<'a> Reader<'a> {
    /// Checks a container and returns a reader of its payload.
    pub fn open(data: &'a [u8]) -> Result<Reader<'a>, Refused> {
        if data.len() < HEADER + 8 || &data[..8] != MAGIC {
            return Err("not an emptydirfs state".into());
        }
        let version = u32::from_le_bytes(data[8..12].try_into().unwrap());
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&version) {
            let which = if version > FORMAT_VERSION {
                "newer"
            } else {
                "older"
            };
            return Err(format!(
                "state format {version} is {which} than this daemon reads ({OLDEST_FORMAT} to {FORMAT_VERSION})"
            ));
        }
        let len = u64::from_le_bytes(data[12..20].try_into().unwrap()) as usize;
        if data.len() != HEADER + len + 8 {
            return Err(format!(
                "the state is {} bytes, its header says {}",
                data.len(),
                HEADER + len + 8
            ));
        }
        let payload = &data[HEADER..HEADER + len];
        let sum = u64::from_le_bytes(data[HEADER + len..].try_into().unwrap());
        if sum != checksum(payload) {
            return Err("the state's checksum does not match: it is damaged".into());
        }
        Ok(Reader {
            buf: payload,
            pos: 0,
            version,
        })
    }

    /// The format version the state was written in.
    pub fn version(&self) -> u32 {
        self.version
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(format!("the state ends early (at byte {})", self.pos));
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, Refused> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, Refused> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("{v} is not a boolean (byte {})", self.pos - 1)),
        }
    }
    pub fn u16(&mut self) -> Result<u16, Refused> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    pub fn u32(&mut self) -> Result<u32, Refused> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn i32(&mut self) -> Result<i32, Refused> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, Refused> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Refused> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str(&mut self) -> Result<&'a str, Refused> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a name in the state is not UTF-8".into())
    }
    pub fn time(&mut self) -> Result<SystemTime, Refused> {
        let secs = self.u64()? as i64;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(format!("{nanos} nanoseconds in a time"));
        }
        Ok(if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
                + Duration::from_nanos(nanos.into())
        })
    }
    /// A count of items to follow, refused if it could not fit in what is left (each
    /// item takes at least `min_size` bytes), so a damaged count allocates nothing.
    pub fn count(&mut self, min_size: usize) -> Result<usize, Refused> {
        let n = self.u64()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.buf.len() - self.pos {
            return Err(format!("a count of {n} items does not fit in the state"));
        }
        Ok(n)
    }

    /// The payload must be read to its end.
    pub fn done(&self) -> Result<(), Refused> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes of the state are left unread",
                self.buf.len() - self.pos
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Writer {
        let mut w = Writer::default();
        w.u8(7);
        w.bool(true);
        w.u32(0xdead_beef);
        w.u64(u64::MAX);
        w.str("naïve");
        w.time(UNIX_EPOCH - Duration::from_nanos(1_500_000_000));
        w.time(UNIX_EPOCH + Duration::new(1_700_000_000, 42));
        w
    }

    #[test]
    fn round_trips() {
        let data = sample().finish(FORMAT_VERSION);
        let mut r = Reader::open(&data).unwrap();
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.bool().unwrap());
        assert_eq!(r.u32().unwrap(), 0xdead_beef);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.str().unwrap(), "naïve");
        assert_eq!(
            r.time().unwrap(),
            UNIX_EPOCH - Duration::from_nanos(1_500_000_000)
        );
        assert_eq!(
            r.time().unwrap(),
            UNIX_EPOCH + Duration::new(1_700_000_000, 42)
        );
        r.done().unwrap();
    }

    #[test]
    fn every_damage_is_refused() {
        let good = sample().finish(FORMAT_VERSION);
        let refused = |d: &[u8]| Reader::open(d).err().unwrap();
        assert!(refused(&sample().finish(FORMAT_VERSION + 1)).contains("newer"));
        assert!(refused(&sample().finish(OLDEST_FORMAT - 1)).contains("older"));
        for v in OLDEST_FORMAT..=FORMAT_VERSION {
            assert_eq!(Reader::open(&sample().finish(v)).unwrap().version(), v);
        }
        assert!(refused(&good[..good.len() - 1]).contains("bytes"));
        let mut flipped = good.clone();
        flipped[HEADER + 3] ^= 1;
        assert!(refused(&flipped).contains("checksum"));
        assert!(refused(b"something else entirely").contains("not an emptydirfs"));
        let mut r = Reader::open(&good).unwrap();
        r.u8().unwrap();
        assert!(r.done().unwrap_err().contains("unread"));
        let mut w = Writer::default();
        w.u64(1 << 40);
        let big = w.finish(FORMAT_VERSION);
        assert!(
            Reader::open(&big).unwrap().count(1).is_err(),
            "a count past the end"
        );
    }
}
