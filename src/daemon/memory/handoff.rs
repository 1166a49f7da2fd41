//! A memory volume handed to a successor: the inode table (every inode the kernel
//! knows, with its number, lookup and open counts; names, attributes, xattrs and symlink
//! targets), the volume's generation, the usage counters and the open directories (where
//! each listing ends; these two from format 3 on) go in the state; the data stays in the
//! volume's tmpfs, whose mount's descriptor goes with it (shared, never copied; format
//! 4). A state from before format 4 had the data in a memfd: `legacy.rs` copies it in.
//!
//! What is read back is checked before it is served: entries name inodes of the table,
//! every live regular file has its data file, the tmpfs's usage equals what the inodes
//! hold, the root is a directory.

use super::MemoryFs;
use super::data::Data;
use super::dir::Dir;
use super::inode::{Body, Inode, Meta};
use super::legacy::{self, BlockMap};
use super::listing::Listings;
use super::xattr::Xattrs;
use crate::daemon::fs::Transfer;
use crate::daemon::fs::usage::{Usage, UsageSnapshot};
use crate::daemon::fs::{FileKind, Ino, ROOT_INO};
use crate::daemon::state::FdTable;
use crate::daemon::state::{Reader, Refused, Writer};
use dashmap::DashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

const FILE: u8 = 0;
const DIR: u8 = 1;
const SYMLINK: u8 = 2;
const SPECIAL: u8 = 3;

fn write_meta(w: &mut Writer, m: &Meta) {
    w.u16(m.perm);
    w.u32(m.uid);
    w.u32(m.gid);
    w.u32(m.nlink);
    w.u32(m.rdev);
    w.time(m.atime);
    w.time(m.mtime);
    w.time(m.ctime);
    m.xattrs.write_state(w);
    w.u64(m.xattr_blocks);
}

fn read_meta(r: &mut Reader<'_>) -> Result<Meta, Refused> {
    Ok(Meta {
        perm: r.u16()?,
        uid: r.u32()?,
        gid: r.u32()?,
        nlink: r.u32()?,
        rdev: r.u32()?,
        atime: r.time()?,
        mtime: r.time()?,
        ctime: r.time()?,
        xattrs: Xattrs::read_state(r)?,
        xattr_blocks: r.u64()?,
    })
}

fn write_inode(w: &mut Writer, i: &Inode) {
    w.u64(i.ino);
    w.u32(i.kind.mode_bits());
    w.u64(i.lookups.load(Relaxed));
    w.u64(i.opens.load(Relaxed));
    w.u64(i.parent());
    w.bool(i.released.load(Relaxed));
    write_meta(w, &i.meta());
    match &*i.body() {
        Body::File => w.u8(FILE),
        Body::Dir(d) => {
            w.u8(DIR);
            d.write_state(w);
        }
        Body::Symlink(t) => {
            w.u8(SYMLINK);
            w.bytes(t);
        }
        Body::Special => w.u8(SPECIAL),
    }
}

/// An inode of a volume whose generation is `generation`; a regular file's block map in
/// a state from before format 4 goes to `legacy`.
fn read_inode(
    r: &mut Reader<'_>,
    generation: u32,
    legacy: &mut Vec<(Ino, BlockMap)>,
) -> Result<Inode, Refused> {
    let ino = r.u64()?;
    let kind = FileKind::from_mode(r.u32()?).ok_or_else(|| format!("inode {ino} of no kind"))?;
    let (lookups, opens, parent, released) = (r.u64()?, r.u64()?, r.u64()?, r.bool()?);
    let meta = read_meta(r)?;
    let body = match (r.u8()?, kind) {
        (FILE, FileKind::Regular) => {
            if r.version() < 4 {
                legacy.push((ino, legacy::read_block_map(r)?));
            }
            Body::File
        }
        (DIR, FileKind::Directory) => Body::Dir(Dir::read_state(r)?),
        (SYMLINK, FileKind::Symlink) => Body::Symlink(r.bytes()?.to_vec()),
        (SPECIAL, _)
            if !matches!(
                kind,
                FileKind::Regular | FileKind::Directory | FileKind::Symlink
            ) =>
        {
            Body::Special
        }
        (tag, _) => {
            return Err(format!(
                "inode {ino}: a body ({tag}) of another kind ({kind:?})"
            ));
        }
    };
    let generation = if ino == ROOT_INO { 0 } else { generation };
    let inode = Inode::new(ino, generation, kind, body, meta, parent);
    inode.lookups.store(lookups, Relaxed);
    inode.opens.store(opens, Relaxed);
    inode.released.store(released, Relaxed);
    Ok(inode)
}

impl Transfer for MemoryFs {
    fn export(&self, w: &mut Writer, fds: &mut Vec<RawFd>) -> std::io::Result<()> {
        w.u64(self.next_ino.load(Relaxed));
        if w.version() >= 3 {
            w.u32(self.generation);
        }
        if w.version() < 4 {
            return Err(std::io::Error::other(format!(
                "a memory volume's data cannot be written in state format {}",
                w.version()
            )));
        }
        self.usage.snapshot().write(w);
        self.data.write_state(w, fds);
        w.u64(self.next_fh.load(Relaxed));
        let inodes: Vec<Arc<Inode>> = self.table.iter().map(|e| e.value().clone()).collect();
        w.u64(inodes.len() as u64);
        for i in &inodes {
            write_inode(w, i);
        }
        if w.version() >= 3 {
            self.listings.write_state(w);
        }
        Ok(())
    }

    fn import(r: &mut Reader<'_>, fds: &mut FdTable) -> Result<MemoryFs, Refused> {
        let next_ino = r.u64()?;
        // Before format 3 every inode's generation was 0.
        let generation = if r.version() >= 3 { r.u32()? } else { 0 };
        let snapshot = UsageSnapshot::read(r)?;
        let usage = Usage::from_snapshot(snapshot);
        let (data, slots, next_fh) = if r.version() >= 4 {
            (Data::read_state(r, fds)?, None, r.u64()? & !1)
        } else {
            let slots = legacy::read_slots(r, fds)?;
            let bytes = snapshot.block_limit * crate::daemon::fs::BLOCK_SIZE;
            let data = Data::new(bytes, snapshot.inode_limit)
                .map_err(|e| format!("a tmpfs for the volume's data: {e}"))?;
            (data, Some(slots), 2) // its handles were 0 and 1
        };
        let mut maps = Vec::new();
        let table = DashMap::new();
        for _ in 0..r.count(40)? {
            let inode = read_inode(r, generation, &mut maps)?;
            if inode.ino >= next_ino && inode.ino != ROOT_INO {
                return Err(format!(
                    "inode {} at or past the next number {next_ino}",
                    inode.ino
                ));
            }
            if table.insert(inode.ino, Arc::new(inode)).is_some() {
                return Err("an inode number twice".into());
            }
        }
        let listings = if r.version() >= 3 {
            Listings::read_state(r, |ino| match &*table.get(&ino)?.body() {
                Body::Dir(d) => Some(d.next_cookie()),
                _ => None,
            })?
        } else {
            Listings::default() // the kernel's open directories are all handle 0
        };
        let fs = MemoryFs {
            table,
            next_ino: AtomicU64::new(next_ino),
            generation,
            usage,
            data,
            rename_lock: Mutex::new(()),
            listings,
            mount: Default::default(), // told where the volume is when it serves
            freed_inodes: AtomicU64::new(0),
            next_fh: AtomicU64::new(next_fh.max(2)),
        };
        if let Some(slots) = slots {
            fs.copy_legacy(&maps, &slots)?;
        }
        fs.check()?;
        Ok(fs)
    }
}

impl MemoryFs {
    /// Makes the data files of a state from before format 4 (`legacy.rs`), and reserves
    /// the metadata's blocks.
    fn copy_legacy(&self, maps: &[(Ino, BlockMap)], slots: &legacy::Slots) -> Result<(), Refused> {
        let maps: std::collections::HashMap<Ino, &BlockMap> =
            maps.iter().map(|(i, m)| (*i, m)).collect();
        let empty = BlockMap::default();
        for e in self.table.iter() {
            let i = e.value();
            if i.released.load(Relaxed) {
                continue;
            }
            let blocks = match &*i.body() {
                Body::File => {
                    let map = maps.get(&i.ino).copied().unwrap_or(&empty);
                    legacy::copy(map, slots, &self.data, i.ino)?;
                    0
                }
                Body::Symlink(t) => Inode::symlink_blocks(t),
                _ => 0,
            };
            self.data
                .reserve(blocks + i.meta().xattr_blocks)
                .map_err(|e| format!("the metadata of inode {}: {e}", i.ino))?;
        }
        Ok(())
    }

    /// The consistency a received table must have before it is served.
    fn check(&self) -> Result<(), Refused> {
        let root = self.table.get(&ROOT_INO).ok_or("no root")?;
        if root.kind != FileKind::Directory {
            return Err("the root is not a directory".into());
        }
        drop(root);
        let mut live = 0u64;
        let mut metadata = 0u64;
        for e in self.table.iter() {
            let i = e.value();
            match &*i.body() {
                Body::Dir(d) => {
                    for (name, entry) in d.entries() {
                        let target = self.table.get(&entry.ino).ok_or_else(|| {
                            format!(
                                "{name:?} in directory {} names no inode ({})",
                                i.ino, entry.ino
                            )
                        })?;
                        if target.kind != entry.kind {
                            return Err(format!(
                                "{name:?} in {} is not of its inode's kind",
                                i.ino
                            ));
                        }
                    }
                }
                Body::File if !i.released.load(Relaxed) => {
                    self.data
                        .stat(i.ino)
                        .map_err(|e| format!("the data of inode {}: {e}", i.ino))?;
                }
                Body::Symlink(t) if !i.released.load(Relaxed) => {
                    metadata += Inode::symlink_blocks(t)
                }
                _ => {}
            }
            if !i.released.load(Relaxed) {
                metadata += i.meta().xattr_blocks;
                live += 1;
            }
        }
        let held = self.data.metadata_blocks();
        let inodes = self.usage.inodes_used();
        if held != metadata || inodes != live {
            return Err(format!(
                "the state holds {held} metadata blocks and {inodes} inodes; the inodes hold {metadata} and are {live}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::fs::{BLOCK_SIZE, Backend};
    use std::ffi::OsStr;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::time::SystemTime;

    fn meta(perm: u16, nlink: u32, xattrs: Xattrs, xattr_blocks: u64) -> Meta {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        Meta {
            perm,
            uid: 0,
            gid: 0,
            nlink,
            rdev: 0,
            atime: t,
            mtime: t,
            ctime: t,
            xattrs,
            xattr_blocks,
        }
    }

    fn inode_head(w: &mut Writer, ino: u64, kind: u32, m: &Meta) {
        w.u64(ino);
        w.u32(kind);
        w.u64(0); // lookups
        w.u64(0); // opens
        w.u64(ROOT_INO);
        w.bool(false);
        write_meta(w, m);
    }

    /// A volume as a build before format 4 handed it over (its data in 4 KiB slots of a
    /// memfd, a block map per file) is served by this one with every byte, hole and
    /// block where it was, and its metadata's blocks charged.
    #[test]
    fn a_format_3_state_has_its_data_copied_into_a_tmpfs() {
        // SAFETY: memfd_create reads the NUL-terminated name; it returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(c"test-store".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: `fd` was just returned, owned here alone.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let store = std::fs::File::from(memfd.try_clone().unwrap());
        std::os::unix::fs::FileExt::write_all_at(&store, b"hello", 5 * BLOCK_SIZE).unwrap();
        store.set_len(8 * BLOCK_SIZE).unwrap();

        let mut w = Writer::writing(3);
        w.u64(5); // next inode number
        w.u32(77); // generation
        UsageSnapshot {
            block_limit: 64,
            metadata_allowance: 0,
            inode_limit: 100,
            blocks: 4, // the file's two, the symlink's one, one of xattrs
            inodes: 3,
            released: 0,
            metadata: Some(0),
        }
        .write(&mut w);
        let mut fds = Vec::new();
        w.u64(FdTable::push(
            &mut fds,
            std::os::fd::AsRawFd::as_raw_fd(&memfd),
        ));
        w.bool(true); // sized
        w.u64(8); // cap
        w.u64(6); // top
        w.u64(0); // free runs
        w.u64(3); // inodes
        let mut root = Dir::default();
        root.insert(OsStr::new("f"), 2, FileKind::Regular);
        root.insert(OsStr::new("l"), 3, FileKind::Symlink);
        inode_head(
            &mut w,
            ROOT_INO,
            libc::S_IFDIR,
            &meta(0o777, 2, Xattrs::default(), 0),
        );
        w.u8(DIR);
        root.write_state(&mut w);
        inode_head(
            &mut w,
            2,
            libc::S_IFREG,
            &meta(0o644, 1, Xattrs::default(), 0),
        );
        w.u8(FILE);
        w.u64(6000); // size
        w.u64(2); // blocks: 0 in slot 5, 1 allocated and never written
        w.u64(0);
        w.u8(1);
        w.u64(5);
        w.u64(1);
        w.u8(0);
        let mut x = Xattrs::default();
        x.set(OsStr::new("user.a"), &[7u8; 100], 0).unwrap();
        inode_head(&mut w, 3, libc::S_IFLNK, &meta(0o777, 1, x, 1));
        w.u8(SYMLINK);
        w.bytes(&[b'x'; 200]);
        Listings::default().write_state(&mut w);
        let state = w.finish(3);

        let owned: Vec<OwnedFd> = fds
            .iter()
            // SAFETY: dup returns a new descriptor or -1, checked below.
            .map(|&f| unsafe { OwnedFd::from_raw_fd(libc::dup(f)) })
            .collect();
        let mut r = Reader::open(&state).unwrap();
        let fs = MemoryFs::import(&mut r, &mut FdTable::new(owned)).unwrap();
        r.done().unwrap();

        let mut buf = Vec::new();
        fs.read(2, 0, 0, 8192, &mut buf).unwrap();
        assert_eq!(buf.len(), 6000);
        assert_eq!(&buf[..5], b"hello");
        assert!(buf[5..].iter().all(|&b| b == 0));
        let a = fs.getattr(2).unwrap();
        assert_eq!((a.size, a.blocks), (6000, 2 * BLOCK_SIZE / 512));
        assert_eq!(
            fs.blocks_used(),
            4,
            "the file's two blocks and the metadata's two"
        );
        assert_eq!(fs.walk_blocks(), 4);
        assert_eq!(fs.readlink(3).unwrap(), vec![b'x'; 200]);
        let st = fs.statfs();
        assert_eq!((st.blocks, st.blocks_free), (64, 60));
    }
}
