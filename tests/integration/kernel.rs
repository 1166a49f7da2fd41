//! What crash recovery (docs/RECOVERY.md) relies on in the kernel's FUSE, checked on the
//! kernel the tests run on, with a bare connection (no daemon of ours):
//!
//! - a request read through a descriptor that shares its open file with one still held
//!   (a `dup`, or one passed over a socket) survives the reader's death, and
//!   `FUSE_NOTIFY_RESEND` puts it back on the queue with bit 63 of its `unique` set; the
//!   answer to that unique reaches the caller;
//! - a request read through a `FUSE_DEV_IOC_CLONE` descriptor is ended with
//!   `ECONNABORTED` when that descriptor's last reference closes, whatever else is held.
//!
//! A reader's death is its descriptors' last close: a thread closing them is what the
//! kernel sees when a process dies.

use crate::harness::*;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

const FUSE_LOOKUP: u32 = 1;
const FUSE_INIT: u32 = 26;
const FUSE_NOTIFY_RESEND: i32 = 7;
const FUSE_UNIQUE_RESEND: u64 = 1 << 63;
/// `_IOR(229, 0, uint32_t)`.
const FUSE_DEV_IOC_CLONE: libc::c_ulong = 0x8004_e500;

/// One request as read from `/dev/fuse`: opcode, unique, node id and what follows the
/// header.
struct Request {
    opcode: u32,
    unique: u64,
    nodeid: u64,
    body: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

fn read_request(dev: &File) -> io::Result<Request> {
    let mut buf = vec![0u8; 1 << 17];
    let n = (&*dev).read(&mut buf)?;
    buf.truncate(n);
    Ok(Request {
        opcode: u32_at(&buf, 4),
        unique: u64_at(&buf, 8),
        nodeid: u64_at(&buf, 16),
        body: buf[40..].to_vec(),
    })
}

/// Writes `fuse_out_header` (`error`, `unique`) and `body` in one write.
fn answer(dev: &File, unique: u64, error: i32, body: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&error.to_ne_bytes());
    out.extend_from_slice(&unique.to_ne_bytes());
    out.extend_from_slice(body);
    (&*dev).write_all(&out)
}

/// A bare FUSE mount whose connection the test holds (`keeper`); unmounted (lazily)
/// and its connection ended on drop, whatever happened: a caller stuck on a request
/// then gets ENOTCONN.
struct Bare {
    keeper: Option<File>,
    mnt: PathBuf,
    _dir: TempDir,
}

impl Bare {
    /// Mounts a connection and answers its INIT (protocol 7.40, no features).
    fn mount() -> Bare {
        let dir = TempDir::new("kernel");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let keeper = open_dev_fuse();
        let data = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0",
            keeper.as_raw_fd()
        );
        emptydirfs::mounts::mount("emptydirfs-probe", &mnt, "fuse.emptydirfs-probe", &data)
            .unwrap();
        let bare = Bare {
            keeper: Some(keeper),
            mnt,
            _dir: dir,
        };
        let init = read_request(bare.keeper()).unwrap();
        assert_eq!(init.opcode, FUSE_INIT);
        // fuse_init_out: major, minor, max_readahead, flags, max_background,
        // congestion_threshold, max_write, time_gran, max_pages, map_alignment, flags2,
        // max_stack_depth, unused[6]: 64 bytes.
        let mut out = Vec::new();
        for v in [7u32, 40, u32_at(&init.body, 8), 0] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&16u16.to_ne_bytes());
        out.extend_from_slice(&12u16.to_ne_bytes());
        out.extend_from_slice(&4096u32.to_ne_bytes());
        out.extend_from_slice(&1u32.to_ne_bytes());
        out.resize(64, 0);
        answer(bare.keeper(), init.unique, 0, &out).unwrap();
        bare
    }

    fn keeper(&self) -> &File {
        self.keeper.as_ref().unwrap()
    }

    /// A caller on another thread: `stat` of `name` in the mount; its result arrives
    /// on the channel (as an errno, 0 for success).
    fn stat_in_background(&self, name: &str) -> mpsc::Receiver<i32> {
        let (tx, rx) = mpsc::channel();
        let path = self.mnt.join(name);
        std::thread::spawn(move || {
            let r = std::fs::symlink_metadata(&path);
            let _ = tx.send(r.map_or_else(|e| e.raw_os_error().unwrap_or(-1), |_| 0));
        });
        rx
    }

    /// Reads requests from `dev` until the LOOKUP of `name` (in the root), answering any
    /// other with ENOSYS (the kernel may ask for the root's attributes first).
    fn read_lookup(dev: &File, name: &str) -> Request {
        loop {
            let r = read_request(dev).unwrap();
            if r.opcode == FUSE_LOOKUP && r.body.starts_with(name.as_bytes()) {
                assert_eq!(r.nodeid, 1, "looked up in the root");
                return r;
            }
            answer(dev, r.unique, -libc::ENOSYS, &[]).unwrap();
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        // The last descriptor of the connection: the kernel ends it, and every caller
        // still waiting gets ENOTCONN.
        drop(self.keeper.take());
        lazy_unmount(&self.mnt);
    }
}

fn open_dev_fuse() -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .unwrap()
}

fn clone_of(dev: &File) -> File {
    let fd = open_dev_fuse();
    let mut from = dev.as_raw_fd() as u32;
    // SAFETY: FUSE_DEV_IOC_CLONE reads one u32 (the descriptor to clone) from a live
    // local; `fd` is an open /dev/fuse descriptor we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), FUSE_DEV_IOC_CLONE, &mut from) };
    assert_eq!(rc, 0, "FUSE_DEV_IOC_CLONE: {}", io::Error::last_os_error());
    fd
}

fn dup_of(dev: &File) -> File {
    // SAFETY: dup of a descriptor we hold open; the new one is owned by the File.
    let fd = unsafe { libc::dup(dev.as_raw_fd()) };
    assert!(fd >= 0, "dup: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by dup: a new descriptor nothing else owns.
    File::from(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// No answer yet: the caller still waits.
fn still_waiting(rx: &mpsc::Receiver<i32>) -> bool {
    rx.recv_timeout(Duration::from_millis(200)).is_err()
}

#[test]
fn a_request_read_through_a_held_open_file_survives_its_reader_and_is_resent() {
    let bare = Bare::mount();
    let caller = bare.stat_in_background("x");
    // The reader: a descriptor sharing the keeper's open file (as one passed over a
    // socket does); it reads the request and dies without answering.
    let reader = dup_of(bare.keeper());
    let first = Bare::read_lookup(&reader, "x");
    drop(reader);
    assert!(
        still_waiting(&caller),
        "the request was not ended by its reader's death"
    );

    // A successor asks for every request read and not answered, and answers it.
    answer(bare.keeper(), 0, FUSE_NOTIFY_RESEND, &[]).unwrap();
    let again = Bare::read_lookup(bare.keeper(), "x");
    assert_eq!(
        again.unique,
        first.unique | FUSE_UNIQUE_RESEND,
        "the same request, marked as resent"
    );
    assert_eq!(again.body, first.body);
    answer(bare.keeper(), again.unique, -libc::ENOENT, &[]).unwrap();
    assert_eq!(
        caller.recv_timeout(SOON),
        Ok(libc::ENOENT),
        "the caller got the successor's answer"
    );
}

#[test]
fn a_request_read_through_a_cloned_descriptor_ends_with_it() {
    let bare = Bare::mount();
    let caller = bare.stat_in_background("y");
    let reader = clone_of(bare.keeper());
    Bare::read_lookup(&reader, "y");
    drop(reader);
    assert_eq!(
        caller.recv_timeout(SOON),
        Ok(libc::ECONNABORTED),
        "a clone's last close ends the requests read through it, though the keeper \
         holds the connection"
    );
    // The connection itself lives on: the next request is read from the keeper.
    let next = bare.stat_in_background("z");
    let r = Bare::read_lookup(bare.keeper(), "z");
    answer(bare.keeper(), r.unique, -libc::ENOENT, &[]).unwrap();
    assert_eq!(next.recv_timeout(SOON), Ok(libc::ENOENT));
}
