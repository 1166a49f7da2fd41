//! Listing directories: each open directory handle remembers where its listing ends.
//!
//! An entry renamed during a listing gets a new, higher cookie (`dir.rs`), so a loop that
//! renames each entry it meets away and back would meet the same entries forever. As
//! tmpfs does (its stable offsets, Linux 6.13 on), a listing ends at the cookie the
//! directory would have given next when the directory was opened, or when its listing
//! started again from offset 0 (`rewinddir`, which POSIX says sees the directory as a new
//! `opendir` would). Entries inserted after that are not listed by this handle.
//!
//! Listing a directory updates its access time (unless it was opened `O_NOATIME`), as
//! the volume's mount options say (`nodiratime` among them).
//!
//! Handles are numbered from 1 and travel in a hand-off (state format 3). Handle 0 is a
//! directory opened by a daemon that recorded no end (format 1 or 2): it lists to the
//! directory's current end, as those daemons did.

use super::MemoryFs;
use super::inode::Body;
use crate::daemon::fs::{Attr, DirEntry, Errno, Fh, FileKind, Ino, Result};
use crate::daemon::state::{Reader, Refused, Writer};
use dashmap::DashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One open directory.
#[derive(Clone, Copy, Debug)]
struct Listing {
    ino: Ino,
    /// The listing stops before this cookie.
    end: u64,
    /// Opened `O_NOATIME`: listing it leaves its access time alone.
    noatime: bool,
}

/// The open directories of a volume.
#[derive(Debug)]
pub struct Listings {
    open: DashMap<Fh, Listing>,
    next_fh: AtomicU64,
}

impl Default for Listings {
    fn default() -> Self {
        Listings {
            open: DashMap::new(),
            next_fh: AtomicU64::new(1),
        }
    }
}

impl Listings {
    /// Whether listing `fh` leaves the directory's access time alone (`O_NOATIME`).
    fn noatime(&self, fh: Fh) -> bool {
        self.open.get(&fh).is_some_and(|l| l.noatime)
    }

    /// The end of `fh`'s listing resuming at `offset` in a directory whose next cookie is
    /// `next`: from offset 0 the listing starts again and ends at `next`.
    fn end(&self, fh: Fh, offset: u64, next: u64) -> u64 {
        match self.open.get_mut(&fh) {
            Some(mut l) if offset == 0 => {
                l.end = next;
                next
            }
            Some(l) => l.end,
            None => next, // handle 0: opened by a daemon that kept no end
        }
    }

    pub fn write_state(&self, w: &mut Writer) {
        w.u64(self.next_fh.load(Relaxed));
        let open: Vec<(Fh, Listing)> = self.open.iter().map(|e| (*e.key(), *e.value())).collect();
        w.u64(open.len() as u64);
        for (fh, l) in open {
            w.u64(fh);
            w.u64(l.ino);
            w.u64(l.end);
            w.bool(l.noatime);
        }
    }

    /// Reads what [`Listings::write_state`] wrote; `next_cookie` says, for an inode
    /// number, whether it is a directory and what its next cookie is.
    pub fn read_state(
        r: &mut Reader<'_>,
        next_cookie: impl Fn(Ino) -> Option<u64>,
    ) -> std::result::Result<Listings, Refused> {
        let next_fh = r.u64()?;
        let open = DashMap::new();
        for _ in 0..r.count(25)? {
            let (fh, ino, end, noatime) = (r.u64()?, r.u64()?, r.u64()?, r.bool()?);
            match next_cookie(ino) {
                None => return Err(format!("open directory {fh} of {ino}, not a directory")),
                Some(next) if end > next => {
                    return Err(format!(
                        "open directory {fh} ends at {end}, past its directory's {next}"
                    ));
                }
                Some(_) => {}
            }
            if fh == 0 || fh >= next_fh || open.insert(fh, Listing { ino, end, noatime }).is_some()
            {
                return Err(format!("open directory {fh} out of range or twice"));
            }
        }
        Ok(Listings {
            open,
            next_fh: AtomicU64::new(next_fh),
        })
    }
}

impl MemoryFs {
    pub(super) fn do_opendir(&self, ino: Ino, flags: i32) -> Result<Fh> {
        let d = self.get(ino)?;
        let Body::Dir(dir) = &*d.body() else {
            return Err(Errno::ENOTDIR);
        };
        let fh = self.listings.next_fh.fetch_add(1, Relaxed);
        let listing = Listing {
            ino,
            end: dir.next_cookie(),
            noatime: flags & libc::O_NOATIME != 0,
        };
        self.listings.open.insert(fh, listing);
        Ok(fh)
    }

    pub(super) fn do_releasedir(&self, fh: Fh) {
        self.listings.open.remove(&fh);
    }

    pub(super) fn do_readdir(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<()> {
        let d = self.get(ino)?;
        let body = d.body();
        let Body::Dir(dir) = &*body else {
            return Err(Errno::ENOTDIR);
        };
        let end = self.listings.end(fh, offset, dir.next_cookie());
        self.accessed(&d, self.listings.noatime(fh));
        // The kernel takes no lookup for `.` and `..`, and ignores their attributes.
        let own = plus.then(|| self.attr_with(&d, &body));
        let dots = [(OsStr::new("."), d.ino), (OsStr::new(".."), d.parent())];
        for (i, (name, ino)) in dots.into_iter().enumerate().skip(offset.min(2) as usize) {
            let attr = own.map(|a| Attr { ino, ..a });
            let e = DirEntry {
                ino,
                next_offset: i as u64 + 1,
                kind: FileKind::Directory,
                name,
                attr,
            };
            if !add(&e) {
                return Ok(());
            }
        }
        for (cookie, name, entry) in dir.after(offset, end) {
            let attr = if plus {
                let child = self.get(entry.ino)?;
                child.lookups.fetch_add(1, Relaxed);
                Some((self.attr(&child), child))
            } else {
                None
            };
            let e = DirEntry {
                ino: entry.ino,
                next_offset: cookie,
                kind: entry.kind,
                name,
                attr: attr.as_ref().map(|(a, _)| *a),
            };
            if !add(&e) {
                if let Some((_, child)) = attr {
                    child.lookups.fetch_sub(1, Relaxed);
                }
                break;
            }
        }
        Ok(())
    }
}
