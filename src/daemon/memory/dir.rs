//! A directory's entries, listed in a stable order while they change.
//!
//! Each entry gets a cookie from a per-directory counter when it is inserted; a listing
//! resumes after the last cookie it returned. Entries added during a listing come after
//! it (they may or may not be seen), removed ones vanish, and no entry is ever returned
//! twice or skipped, which is what POSIX asks of `readdir` under concurrent change.
//! Cookies 1 and 2 are `.` and `..`.
//!
//! A renamed entry is removed and inserted again, with a new cookie: a listing that
//! renames what it meets would meet it again, forever, if it did not stop at the cookie
//! the directory would have given next when the listing began (`listing.rs` keeps that
//! end per open directory).

use crate::daemon::fs::{FileKind, Ino};
use crate::daemon::state::{Reader, Refused, Writer};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// Offset after which the first real entry is listed (after `.` and `..`).
pub const FIRST_COOKIE: u64 = 3;
/// Size a directory reports per entry (as tmpfs does, `BOGO_DIRENT_SIZE`).
const ENTRY_SIZE: u64 = 20;

#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub ino: Ino,
    pub kind: FileKind,
    cookie: u64,
}

#[derive(Debug)]
pub struct Dir {
    by_name: HashMap<Arc<OsStr>, Entry>,
    by_cookie: BTreeMap<u64, Arc<OsStr>>,
    next_cookie: u64,
}

impl Default for Dir {
    fn default() -> Self {
        Dir {
            by_name: HashMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
        }
    }
}

impl Dir {
    pub fn get(&self, name: &OsStr) -> Option<Entry> {
        self.by_name.get(name).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// `st_size` of the directory, as tmpfs reports it.
    pub fn size(&self) -> u64 {
        (self.len() as u64 + 2) * ENTRY_SIZE
    }

    /// Adds `name`; the caller has checked it is absent.
    pub fn insert(&mut self, name: &OsStr, ino: Ino, kind: FileKind) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let name: Arc<OsStr> = Arc::from(name);
        self.by_cookie.insert(cookie, name.clone());
        let old = self.by_name.insert(name, Entry { ino, kind, cookie });
        debug_assert!(old.is_none(), "insert over an existing entry");
    }

    pub fn remove(&mut self, name: &OsStr) -> Option<Entry> {
        let e = self.by_name.remove(name)?;
        self.by_cookie.remove(&e.cookie);
        Some(e)
    }

    /// Points an existing entry at another inode (the other half of an exchange).
    pub fn replace(&mut self, name: &OsStr, ino: Ino, kind: FileKind) {
        if let Some(e) = self.by_name.get_mut(name) {
            e.ino = ino;
            e.kind = kind;
        }
    }

    /// The cookie the next entry inserted will get: a listing that starts now ends
    /// before it.
    pub fn next_cookie(&self) -> u64 {
        self.next_cookie
    }

    /// Entries whose cookie is greater than `offset` and less than `end`, in cookie
    /// order, with the cookie at which to resume after each.
    pub fn after(&self, offset: u64, end: u64) -> impl Iterator<Item = (u64, &OsStr, Entry)> {
        let start = offset.max(FIRST_COOKIE - 1) + 1;
        self.by_cookie
            .range(start..end.max(start))
            .map(|(&cookie, name)| (cookie, &**name, self.by_name[name]))
    }
}

impl Dir {
    /// The entries with their cookies, for a hand-off (a listing under way resumes at the
    /// same cookie in the successor).
    pub fn write_state(&self, w: &mut Writer) {
        w.u64(self.next_cookie);
        w.u64(self.by_cookie.len() as u64);
        for (&cookie, name) in &self.by_cookie {
            let e = self.by_name[name];
            w.bytes(name.as_bytes());
            w.u64(e.ino);
            w.u32(e.kind.mode_bits());
            w.u64(cookie);
        }
    }

    pub fn read_state(r: &mut Reader<'_>) -> Result<Dir, Refused> {
        let mut d = Dir {
            next_cookie: r.u64()?,
            ..Dir::default()
        };
        for _ in 0..r.count(20)? {
            let name: Arc<OsStr> = Arc::from(OsStr::from_bytes(r.bytes()?));
            let ino = r.u64()?;
            let kind = FileKind::from_mode(r.u32()?).ok_or("a directory entry of no kind")?;
            let cookie = r.u64()?;
            if cookie < FIRST_COOKIE || cookie >= d.next_cookie {
                return Err(format!("cookie {cookie} of {name:?} out of range"));
            }
            if d.by_cookie.insert(cookie, name.clone()).is_some()
                || d.by_name
                    .insert(name.clone(), Entry { ino, kind, cookie })
                    .is_some()
            {
                return Err(format!("{name:?} or its cookie twice in a directory"));
            }
        }
        Ok(d)
    }

    /// Inode numbers and kinds of the entries.
    pub fn entries(&self) -> impl Iterator<Item = (&OsStr, Entry)> {
        self.by_name.iter().map(|(n, e)| (&**n, *e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(d: &Dir, offset: u64) -> Vec<String> {
        d.after(offset, u64::MAX)
            .map(|(_, n, _)| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn listing_resumes_after_changes() {
        let mut d = Dir::default();
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            d.insert(OsStr::new(n), 10 + i as u64, FileKind::Regular);
        }
        let (resume, _, _) = d.after(0, u64::MAX).nth(1).unwrap(); // listed a, b
        d.remove(OsStr::new("a"));
        d.remove(OsStr::new("c"));
        d.insert(OsStr::new("a"), 20, FileKind::Regular); // re-added: comes last
        assert_eq!(names(&d, resume), ["d", "a"]);
        assert_eq!(names(&d, 0), ["b", "d", "a"]);
        assert_eq!(d.size(), 5 * 20);
    }

    #[test]
    fn a_listing_ends_where_the_directory_ended_when_it_began() {
        let mut d = Dir::default();
        for n in ["f0", "f1", "f2"] {
            d.insert(OsStr::new(n), 10, FileKind::Regular);
        }
        let end = d.next_cookie();
        let mut seen = Vec::new();
        let mut offset = 0;
        // Each entry met is renamed away and back, as a scandir loop might.
        loop {
            let met = d.after(offset, end).next();
            let Some((cookie, name, e)) = met.map(|(c, n, e)| (c, n.to_owned(), e)) else {
                break;
            };
            d.remove(&name);
            d.insert(&name, e.ino, e.kind);
            seen.push(name.to_string_lossy().into_owned());
            offset = cookie;
        }
        assert_eq!(seen, ["f0", "f1", "f2"]);
        assert_eq!(
            names(&d, 0),
            ["f0", "f1", "f2"],
            "all three are still there"
        );
    }
}
