//! Inode attributes and attribute changes, as backends report and accept them.

use std::time::SystemTime;

/// Inode number as the kernel knows it. The root is [`ROOT_INO`].
pub type Ino = u64;
/// File or directory handle returned by `open`/`opendir`.
pub type Fh = u64;
/// The FUSE root inode number.
pub const ROOT_INO: Ino = 1;
/// The unit in which data space is allocated and counted.
pub const BLOCK_SIZE: u64 = 4096;

/// The kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    /// The kind encoded in the `S_IFMT` bits of `mode`.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::Regular,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits of the kind (the inverse of [`FileKind::from_mode`]).
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Regular => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
        }
    }
}

/// What `stat` shows for an inode, and its generation.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub ino: Ino,
    /// Told to the kernel with every entry of the inode (`i_generation`), and part of
    /// the file handles it makes (`name_to_handle_at`): a number reused for another
    /// inode must come with another generation, so that an old handle gets ESTALE
    /// instead of the new inode. Constant for an inode while the kernel knows it; 0 for
    /// the root. How each medium chooses it: `memory/mod.rs`, `disk/nodes.rs`.
    pub generation: u32,
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    /// Space held, in 512-byte units as `st_blocks` counts it.
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// A time to set: the caller's clock now, or a given time.
#[derive(Clone, Copy, Debug)]
pub enum SetTime {
    Now,
    At(SystemTime),
}

/// The changes of one `setattr`; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    /// Whether the file's setid bits are to be cleared (see [`super::killpriv`]), after
    /// what else is set.
    pub kill: Option<super::killpriv::Kill>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub ctime: Option<SystemTime>,
}

/// Who asks: the credentials of the process behind a request.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// One directory entry handed out by `readdir`.
#[derive(Clone, Debug)]
pub struct DirEntry<'a> {
    pub ino: Ino,
    /// The offset at which the listing continues after this entry.
    pub next_offset: u64,
    pub kind: FileKind,
    pub name: &'a std::ffi::OsStr,
    /// Filled for `readdirplus`; the entry then counts as a lookup once accepted.
    pub attr: Option<Attr>,
}

/// What an `open` or `create` hands back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opened {
    pub fh: Fh,
    /// The page cache of the file may be kept across opens (the backend is the only writer).
    pub keep_cache: bool,
}

/// What a `write` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub bytes: u32,
    /// It cleared setid bits: the mode the kernel caches is no longer true.
    pub mode_changed: bool,
}

/// `statfs` numbers, in [`BLOCK_SIZE`] blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
    pub block_size: u32,
    pub name_max: u32,
}
