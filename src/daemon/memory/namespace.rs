//! Names: lookup, creation, links, removal and rename (listing is `listing.rs`).

use super::MemoryFs;
use super::dir::Dir;
use super::inode::{Body, Inode, Meta};
use crate::daemon::fs::{Attr, Caller, Errno, FileKind, Ino, ROOT_INO, Result, creds, names};
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

fn dir_of(body: &mut Body) -> Result<&mut Dir> {
    match body {
        Body::Dir(d) => Ok(d),
        _ => Err(Errno::ENOTDIR),
    }
}

impl MemoryFs {
    pub(super) fn do_lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        names::check_name(name).map_err(|e| if e == Errno::EINVAL { Errno::ENOENT } else { e })?;
        let p = self.get(parent)?;
        let body = p.body();
        let Body::Dir(dir) = &*body else {
            return Err(Errno::ENOTDIR);
        };
        let entry = dir.get(name).ok_or(Errno::ENOENT)?;
        let child = self.get(entry.ino)?;
        child.lookups.fetch_add(1, Relaxed);
        Ok(self.attr(&child))
    }

    /// Adds a kernel reference to `inode`, found by its number, unless it was removed
    /// (a file handle of a removed inode is stale). Decided under the body's read lock:
    /// `maybe_release` decides under the write lock, after the link count went to 0, so
    /// a referenced inode is never dropped from the table.
    pub(super) fn recall(&self, inode: &Arc<Inode>) -> Result<Attr> {
        let body = inode.body();
        if inode.meta().nlink == 0 || inode.released.load(Relaxed) {
            return Err(Errno::ESTALE);
        }
        inode.lookups.fetch_add(1, Relaxed);
        Ok(self.attr_with(inode, &body))
    }

    /// Creates an inode of `kind` named `name` in `parent`, owned by the caller, after
    /// reserving an inode and `blocks` blocks (a regular file: its data file). The new
    /// inode has one lookup.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn make(
        &self,
        who: &Caller,
        parent: Ino,
        name: &OsStr,
        kind: FileKind,
        mode: u32,
        rdev: u32,
        body: Body,
        blocks: u64,
    ) -> Result<Attr> {
        names::check_name(name)?;
        let p = self.get(parent)?;
        let mut pbody = p.body_mut();
        let dir = dir_of(&mut pbody)?;
        let (pperm, pgid, plinks) = {
            let m = p.meta();
            (m.perm, m.gid, m.nlink)
        };
        if plinks == 0 {
            return Err(Errno::ENOENT); // the directory was removed
        }
        if dir.get(name).is_some() {
            return Err(Errno::EEXIST);
        }
        if !self.usage.reserve_inode() {
            return Err(Errno::ENOSPC);
        }
        let ino = self.next_ino.fetch_add(1, Relaxed);
        let taken = match body {
            Body::File => self.data.create(ino),
            _ => self.data.reserve(blocks),
        };
        if let Err(e) = taken {
            self.usage.release_inode();
            return Err(e);
        }
        // Ownership as inode_init_owner: a setgid directory passes on its group (and, to
        // directories, the setgid bit); a setgid file keeps the bit only for a member.
        let setgid_parent = pperm & libc::S_ISGID as u16 != 0;
        let gid = if setgid_parent { pgid } else { who.gid };
        let mut perm = (mode & 0o7777) as u16;
        if kind == FileKind::Directory && setgid_parent {
            perm |= libc::S_ISGID as u16;
        } else if kind != FileKind::Directory
            && perm & libc::S_ISGID as u16 != 0
            && perm & libc::S_IXGRP as u16 != 0
            && !creds::in_group_or_root(who, gid)
        {
            perm &= !(libc::S_ISGID as u16);
        }
        let now = SystemTime::now();
        let meta = Meta {
            perm,
            uid: who.uid,
            gid,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            rdev,
            atime: now,
            mtime: now,
            ctime: now,
            xattrs: Default::default(),
            xattr_blocks: 0,
        };
        let inode = Arc::new(Inode::new(ino, self.generation, kind, body, meta, parent));
        inode.lookups.store(1, Relaxed);
        self.table.insert(ino, inode.clone());
        dir.insert(name, ino, kind);
        let mut pm = p.meta();
        pm.touch_mc(now);
        if kind == FileKind::Directory {
            pm.nlink += 1;
        }
        drop(pm);
        Ok(self.attr(&inode))
    }

    pub(super) fn do_link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        names::check_name(newname)?;
        let np = self.get(newparent)?;
        let child = self.get(ino)?;
        if child.kind == FileKind::Directory {
            return Err(Errno::EPERM);
        }
        let mut pbody = np.body_mut();
        let dir = dir_of(&mut pbody)?;
        if np.meta().nlink == 0 {
            return Err(Errno::ENOENT);
        }
        if dir.get(newname).is_some() {
            return Err(Errno::EEXIST);
        }
        let now = SystemTime::now();
        {
            let mut m = child.meta();
            if m.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            if m.nlink == u32::MAX {
                return Err(Errno::EMLINK);
            }
            m.nlink += 1;
            m.ctime = now;
        }
        dir.insert(newname, ino, child.kind);
        np.meta().touch_mc(now);
        self.changed(&child);
        child.lookups.fetch_add(1, Relaxed);
        Ok(self.attr(&child))
    }

    /// unlink (`want_dir` false) or rmdir (`want_dir` true).
    pub(super) fn remove(&self, parent: Ino, name: &OsStr, want_dir: bool) -> Result<()> {
        let p = self.get(parent)?;
        let mut pbody = p.body_mut();
        let dir = dir_of(&mut pbody)?;
        let entry = dir.get(name).ok_or(Errno::ENOENT)?;
        let child = self.get(entry.ino)?;
        match (want_dir, entry.kind == FileKind::Directory) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) => {
                if !matches!(&*child.body(), Body::Dir(d) if d.is_empty()) {
                    return Err(Errno::ENOTEMPTY);
                }
            }
            (false, false) => {}
        }
        dir.remove(name);
        let now = SystemTime::now();
        {
            let mut m = child.meta();
            m.nlink = if want_dir { 0 } else { m.nlink - 1 };
            m.ctime = now;
        }
        let mut pm = p.meta();
        pm.touch_mc(now);
        if want_dir {
            pm.nlink -= 1;
        }
        drop(pm);
        drop(pbody);
        self.changed(&child);
        self.maybe_release(&child);
        Ok(())
    }

    /// Whether `ino` is `ancestor` or lies below it. Parent pointers only change under
    /// the rename lock, which the caller holds.
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            match self.get(ino) {
                Ok(i) => ino = i.parent(),
                Err(_) => return false,
            }
        }
    }

    pub(super) fn do_rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let (noreplace, exchange) = (
            flags & libc::RENAME_NOREPLACE != 0,
            flags & libc::RENAME_EXCHANGE != 0,
        );
        if flags & !(libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE) != 0 || (noreplace && exchange)
        {
            return Err(Errno::EINVAL);
        }
        names::check_name(newname)?;
        let _cross = (parent != newparent)
            .then(|| self.rename_lock.lock().unwrap_or_else(|e| e.into_inner()));
        let (p1, p2) = (self.get(parent)?, self.get(newparent)?);
        // Lock the two parents in inode order (lock order level 2).
        let (mut b1, mut b2) = if parent == newparent {
            (p1.body_mut(), None)
        } else if parent < newparent {
            let b1 = p1.body_mut();
            (b1, Some(p2.body_mut()))
        } else {
            let b2 = p2.body_mut();
            (p1.body_mut(), Some(b2))
        };
        dir_of(&mut b1)?;
        if let Some(b) = b2.as_deref_mut() {
            dir_of(b)?;
        }
        if p2.meta().nlink == 0 {
            return Err(Errno::ENOENT);
        }
        let src = dir_of(&mut b1)?.get(name).ok_or(Errno::ENOENT)?;
        let dst = match b2.as_deref_mut() {
            Some(b) => dir_of(b)?.get(newname),
            None => dir_of(&mut b1)?.get(newname),
        };
        let src_is_dir = src.kind == FileKind::Directory;
        if parent != newparent && src_is_dir && self.is_within(newparent, src.ino) {
            return Err(Errno::EINVAL);
        }
        let now = SystemTime::now();
        let src_inode = self.get(src.ino)?;
        let mut victim: Option<Arc<Inode>> = None;
        match dst {
            Some(_) if noreplace => return Err(Errno::EEXIST),
            None if exchange => return Err(Errno::ENOENT),
            Some(d) if d.ino == src.ino => return Ok(()), // two links to one inode
            // The target is the source's own parent: it holds the source, so it is not
            // empty (the kernel refuses this before asking; never deadlock on it).
            Some(d) if d.ino == parent => {
                return Err(if exchange {
                    Errno::EINVAL
                } else {
                    Errno::ENOTEMPTY
                });
            }
            Some(d) if exchange => {
                let dst_is_dir = d.kind == FileKind::Directory;
                if parent != newparent && dst_is_dir && self.is_within(parent, d.ino) {
                    return Err(Errno::EINVAL);
                }
                let other = self.get(d.ino)?;
                dir_of(&mut b1)?.replace(name, d.ino, d.kind);
                match b2.as_deref_mut() {
                    Some(b) => dir_of(b)?.replace(newname, src.ino, src.kind),
                    None => dir_of(&mut b1)?.replace(newname, src.ino, src.kind),
                }
                if parent != newparent && src_is_dir != dst_is_dir {
                    let (gains, loses) = if src_is_dir { (&p2, &p1) } else { (&p1, &p2) };
                    gains.meta().nlink += 1;
                    loses.meta().nlink -= 1;
                }
                if src_is_dir {
                    src_inode.parent.store(newparent, Relaxed);
                }
                if dst_is_dir {
                    other.parent.store(parent, Relaxed);
                }
                other.meta().ctime = now;
                self.changed(&other);
            }
            Some(d) => {
                let dst_is_dir = d.kind == FileKind::Directory;
                if src_is_dir && !dst_is_dir {
                    return Err(Errno::ENOTDIR);
                }
                if !src_is_dir && dst_is_dir {
                    return Err(Errno::EISDIR);
                }
                let other = self.get(d.ino)?;
                if dst_is_dir && !matches!(&*other.body(), Body::Dir(x) if x.is_empty()) {
                    return Err(Errno::ENOTEMPTY);
                }
                let target = match b2.as_deref_mut() {
                    Some(b) => dir_of(b)?,
                    None => dir_of(&mut b1)?,
                };
                target.remove(newname);
                let mut m = other.meta();
                m.nlink = if dst_is_dir { 0 } else { m.nlink - 1 };
                m.ctime = now;
                drop(m);
                if dst_is_dir {
                    p2.meta().nlink -= 1;
                }
                victim = Some(other);
            }
            None => {}
        }
        if !exchange {
            dir_of(&mut b1)?.remove(name);
            match b2.as_deref_mut() {
                Some(b) => dir_of(b)?.insert(newname, src.ino, src.kind),
                None => dir_of(&mut b1)?.insert(newname, src.ino, src.kind),
            }
            if src_is_dir && parent != newparent {
                p1.meta().nlink -= 1;
                p2.meta().nlink += 1;
                src_inode.parent.store(newparent, Relaxed);
            }
        }
        src_inode.meta().ctime = now;
        p1.meta().touch_mc(now);
        if parent != newparent {
            p2.meta().touch_mc(now);
        }
        drop((b1, b2));
        self.changed(&src_inode);
        if let Some(v) = &victim {
            self.changed(v);
        }
        if let Some(v) = victim {
            self.maybe_release(&v);
        }
        Ok(())
    }
}
