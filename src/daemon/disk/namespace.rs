//! Names: lookup, creation, links, removal, rename and listing, each an `*at` call on a
//! descriptor of the parent directory with one name component, never following a symlink.

use super::account::{Charge, Space};
use super::creds::AsCaller;
use super::nodes::{Node, NodeState, attr_of, blocks_of};
use super::{DiskFs, sys};
use crate::daemon::fs::creds;
use crate::daemon::fs::*;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// What a create call made: a new entry, and for `create` its open descriptor.
type Made = Option<OwnedFd>;

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// `mode` for a new non-directory made by `who` in the directory behind `dir`, without
/// the setgid bit when the file would get a group its creator is not in (what the
/// kernel's `inode_init_owner` does; the backing filesystem cannot, as the daemon keeps
/// CAP_FSETID while acting as the caller).
pub(super) fn creation_mode(who: &Caller, dir: BorrowedFd<'_>, mode: u32) -> Result<u32> {
    if mode & libc::S_ISGID == 0 || mode & libc::S_IFMT == libc::S_IFDIR {
        return Ok(mode);
    }
    let st = sys::fstat(dir)?;
    let group = if st.st_mode & libc::S_ISGID != 0 {
        st.st_gid
    } else {
        who.gid
    };
    Ok(if creds::in_group_or_root(who, group) {
        mode
    } else {
        mode & !libc::S_ISGID
    })
}

fn name_of(name: &OsStr) -> Result<CString> {
    names::check_name(name)?;
    sys::cstr(name)
}

impl DiskFs {
    fn dir_node(&self, ino: Ino) -> Result<Arc<Node>> {
        let node = self.nodes.get(ino)?;
        if node.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(node)
    }

    /// Looks `name` up in the directory behind `dir` and adds a kernel reference to it.
    fn lookup_at(&self, dir: BorrowedFd<'_>, name: &CStr) -> Result<(Arc<Node>, libc::stat)> {
        let fd = sys::open_path(dir, name)?;
        let st = sys::fstat(fd.as_fd())?;
        if st.st_dev != self.dev {
            return Err(Errno::ENOENT); // another filesystem mounted inside: not ours to serve
        }
        Ok((self.nodes.remember(fd, &st, true)?, st))
    }

    pub(super) fn do_lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let p = self.dir_node(parent)?;
        let (node, st) = self.lookup_at(self.nodes.fd(&p)?.as_fd(), &name_of(name)?)?;
        Ok(node.attr(&st))
    }

    /// A LOOKUP of `.`: node `ino` itself, for a file handle (see `nodes.rs`).
    pub(super) fn do_lookup_self(&self, ino: Ino) -> Result<Attr> {
        let (node, st) = self.nodes.recall(ino, self.dev)?;
        Ok(node.attr(&st))
    }

    /// A LOOKUP of `..`: the directory holding directory `ino`, from the backing
    /// directory's own `..` entry of it. Never leaves the volume: `ino` is a directory
    /// inside it (the root, whose backing `..` lies outside, answers itself).
    pub(super) fn do_lookup_parent(&self, ino: Ino) -> Result<Attr> {
        let dir = self.dir_node(ino)?;
        if dir.unlinked.load(Relaxed) {
            return Err(Errno::ESTALE);
        }
        let fd = match dir.ino {
            ROOT_INO => sys::open_path(self.nodes.root_fd(), c"."),
            _ => sys::open_path(self.nodes.fd(&dir)?.as_fd(), c".."),
        };
        // A removed directory has no `..` any more.
        let fd = fd.map_err(|e| if e == Errno::ENOENT { Errno::ESTALE } else { e })?;
        let st = sys::fstat(fd.as_fd())?;
        if st.st_dev != self.dev {
            return Err(Errno::ESTALE);
        }
        let node = self.nodes.remember(fd, &st, true)?;
        Ok(node.attr(&st))
    }

    /// Creates `name` in `parent` as the caller, with `make`, charging its inode and the
    /// space it and the parent take. The worst case reserved is a block of the parent
    /// (its entries may need one more: metadata) plus `own`, what the new inode takes
    /// from the start (a directory's first block: metadata; a long symlink's target:
    /// data).
    pub(super) fn make(
        &self,
        who: &Caller,
        parent: Ino,
        name: &OsStr,
        own: (Space, u64),
        make: impl FnOnce(BorrowedFd<'_>, &CStr) -> Result<Made>,
    ) -> Result<(Attr, Made)> {
        let c = name_of(name)?;
        let p = self.dir_node(parent)?;
        let pfd = self.nodes.fd(&p)?;
        if !self.usage.reserve_inode() {
            return Err(Errno::ENOSPC);
        }
        let mut ps = p.state();
        let made = Charge::reserve_metadata(&self.usage, 1).and_then(|mut charge| {
            charge.reserve_more(own.0, own.1)?;
            let made = {
                let _as = AsCaller::new(who)?;
                make(pfd.as_fd(), &c)?
            };
            let (node, st) = self.lookup_at(pfd.as_fd(), &c)?;
            node.caps.created(); // every `make` creates (O_EXCL, mkdir, ...)
            charge.added(Space::of_mode(st.st_mode), blocks_of(&st));
            let parent_now = blocks_of(&sys::fstat(pfd.as_fd())?);
            charge.measured_in(Space::Metadata, &mut ps.charged, parent_now);
            Ok((node.attr(&st), made))
        });
        if made.is_err() {
            self.usage.release_inode();
        }
        made
    }

    pub(super) fn do_link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        let c = name_of(newname)?;
        let node = self.nodes.get(ino)?;
        let p = self.dir_node(newparent)?;
        let pfd = self.nodes.fd(&p)?;
        let mut ps = p.state();
        let _ns = node.state(); // no unlink of its last link meanwhile
        let mut charge = Charge::reserve_metadata(&self.usage, 1)?;
        sys::link_fd(self.nodes.fd(&node)?.as_fd(), pfd.as_fd(), &c)?;
        let parent_now = blocks_of(&sys::fstat(pfd.as_fd())?);
        charge.measured_in(Space::Metadata, &mut ps.charged, parent_now);
        let fd = sys::open_path(pfd.as_fd(), &c)?;
        let st = sys::fstat(fd.as_fd())?;
        let node = self.nodes.remember(fd, &st, true)?;
        Ok(node.attr(&st))
    }

    /// Gives back the space and inode of an inode whose last link is gone (`st` as it was
    /// before), or leaves that to its last close if it is open.
    fn unlinked(
        &self,
        charge: &mut Charge<'_>,
        st: &libc::stat,
        node: Option<(&Node, &mut NodeState)>,
    ) {
        let dir = is_dir(st);
        let space = Space::of_mode(st.st_mode);
        if !dir && st.st_nlink > 1 {
            return;
        }
        self.nodes.deleted(st.st_ino);
        match node {
            Some((node, ns)) => {
                node.unlinked.store(true, Relaxed);
                if ns.opens > 0 {
                    ns.orphan = true;
                    return;
                }
                charge.freed(space, std::mem::take(&mut ns.charged));
                self.nodes.uncache(node);
            }
            None => charge.freed(space, blocks_of(st)),
        }
        self.usage.release_inode();
    }

    pub(super) fn remove(&self, parent: Ino, name: &OsStr, dir: bool) -> Result<()> {
        let c = name_of(name)?;
        let p = self.dir_node(parent)?;
        let pfd = self.nodes.fd(&p)?;
        let mut ps = p.state();
        let st = sys::fstatat(pfd.as_fd(), &c)?;
        let node = self.nodes.find(&st);
        // A directory's own state is never taken under its parent's (see the lock order).
        let mut ns = node.as_ref().filter(|_| !is_dir(&st)).map(|n| n.state());
        sys::unlinkat(pfd.as_fd(), &c, if dir { libc::AT_REMOVEDIR } else { 0 })?;
        let mut charge = Charge::none(&self.usage);
        match (&node, ns.as_deref_mut()) {
            (Some(n), Some(s)) => self.unlinked(&mut charge, &st, Some((n, s))),
            (Some(n), None) => {
                n.unlinked.store(true, Relaxed);
                self.unlinked(&mut charge, &st, None)
            }
            (None, _) => self.unlinked(&mut charge, &st, None),
        }
        let parent_now = blocks_of(&sys::fstat(pfd.as_fd())?);
        charge.measured_in(Space::Metadata, &mut ps.charged, parent_now);
        Ok(())
    }

    pub(super) fn do_rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let (a, b) = (name_of(name)?, name_of(newname)?);
        let (p, np) = (self.dir_node(parent)?, self.dir_node(newparent)?);
        let (pfd, npfd) = (self.nodes.fd(&p)?, self.nodes.fd(&np)?);
        // Parents in ascending inode order, then the replaced non-directory.
        let (first, second) = if p.ino <= np.ino {
            (&p, &np)
        } else {
            (&np, &p)
        };
        let mut s1 = first.state();
        let mut s2 = (first.ino != second.ino).then(|| second.state());
        let src = sys::fstatat(pfd.as_fd(), &a)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let replaced = match sys::fstatat(npfd.as_fd(), &b) {
            Ok(st) if !exchange && st.st_ino != src.st_ino => Some(st),
            Ok(_) => None,
            Err(e) if e == Errno::ENOENT => None,
            Err(e) => return Err(e),
        };
        let victim = replaced.as_ref().and_then(|st| self.nodes.find(st));
        let replaced_file = replaced.as_ref().is_some_and(|st| !is_dir(st));
        let mut vs = victim.as_ref().filter(|_| replaced_file).map(|n| n.state());
        // A rename takes no space but may grow the new directory: it must not fail on a
        // full volume (write a temporary file, rename it over the old one).
        let mut charge = Charge::reserve_metadata_if_free(&self.usage, 1);
        sys::renameat2(pfd.as_fd(), &a, npfd.as_fd(), &b, flags)?;
        if let Some(st) = &replaced {
            match (&victim, vs.as_deref_mut()) {
                (Some(n), Some(s)) => self.unlinked(&mut charge, st, Some((n, s))),
                (victim, _) => {
                    if let Some(n) = victim {
                        n.unlinked.store(true, Relaxed);
                    }
                    self.unlinked(&mut charge, st, None)
                }
            }
        }
        charge.measured_in(
            Space::Metadata,
            &mut s1.charged,
            blocks_of(&sys::fstat(self.nodes.fd(first)?.as_fd())?),
        );
        if let Some(s2) = s2.as_mut() {
            charge.measured_in(
                Space::Metadata,
                &mut s2.charged,
                blocks_of(&sys::fstat(self.nodes.fd(second)?.as_fd())?),
            );
        }
        Ok(())
    }

    pub(super) fn do_readdir(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(&DirEntry<'_>) -> bool,
    ) -> Result<()> {
        let dir = self
            .dirs
            .get(&fh)
            .map(|d| d.value().clone())
            .ok_or(Errno::EBADF)?;
        let mut buf = dir.buf.lock().unwrap_or_else(|p| p.into_inner());
        let fd = dir.fd.as_fd();
        let mut offset = offset as i64;
        let mut listed = false;
        loop {
            let n = match sys::getdents(fd, offset, &mut buf) {
                Err(_) if listed => return Ok(()),
                r => r?,
            };
            if n == 0 {
                return Ok(());
            }
            for e in sys::dirents(&buf[..n]) {
                let name = OsStr::from_bytes(e.name);
                let dots = e.name == b"." || e.name == b"..";
                let accepted = if !plus {
                    let kind = kind_of_dtype(e.dtype);
                    add(&DirEntry {
                        ino: self.dirent_ino(ino, &e),
                        next_offset: e.next_offset as u64,
                        kind,
                        name,
                        attr: None,
                    })
                } else if dots {
                    // The kernel takes no reference for these and ignores their
                    // attributes (the directory's own here), but shows their number.
                    let st = sys::fstat(fd)?;
                    let attr = attr_of(self.dirent_ino(ino, &e), &st);
                    add(&DirEntry {
                        ino: attr.ino,
                        next_offset: e.next_offset as u64,
                        kind: attr.kind,
                        name,
                        attr: Some(attr),
                    })
                } else {
                    let c = CString::new(e.name).map_err(|_| Errno::EIO)?;
                    match self.lookup_at(fd, &c) {
                        Ok((node, st)) => {
                            let attr = node.attr(&st);
                            let entry = DirEntry {
                                ino: node.ino,
                                next_offset: e.next_offset as u64,
                                kind: attr.kind,
                                name,
                                attr: Some(attr),
                            };
                            let accepted = add(&entry);
                            if !accepted {
                                self.nodes.forget(node.ino, 1);
                            }
                            accepted
                        }
                        Err(err) if err == Errno::ENOENT => true, // gone meanwhile, or hidden
                        // Entries already accepted carry lookups: answer with them.
                        Err(_) if listed => return Ok(()),
                        Err(err) => return Err(err),
                    }
                };
                if !accepted {
                    return Ok(());
                }
                listed = true;
                offset = e.next_offset;
            }
        }
    }
}

impl DiskFs {
    /// The number a listing of directory `dir` shows for entry `e` without looking it
    /// up: `.` is `dir`; `..` is its parent as the backing directory records it, except
    /// for the volume's root, whose `..` is itself (the backing `..` lies outside); any
    /// other entry, its backing inode's number.
    fn dirent_ino(&self, dir: Ino, e: &sys::RawDirent<'_>) -> Ino {
        match e.name {
            b"." => dir,
            b".." if dir == ROOT_INO => ROOT_INO,
            _ => self.nodes.dirent_ino(e.ino),
        }
    }
}

fn kind_of_dtype(t: u8) -> FileKind {
    match t {
        libc::DT_DIR => FileKind::Directory,
        libc::DT_LNK => FileKind::Symlink,
        libc::DT_FIFO => FileKind::Fifo,
        libc::DT_SOCK => FileKind::Socket,
        libc::DT_CHR => FileKind::CharDevice,
        libc::DT_BLK => FileKind::BlockDevice,
        _ => FileKind::Regular,
    }
}
