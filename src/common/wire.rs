//! The control socket: a `SOCK_SEQPACKET` unix socket (each message arrives whole), with
//! descriptors passed as `SCM_RIGHTS`, at most [`FDS_PER_MESSAGE`] a message.
//!
//! Socket paths of volumes are long (kubelet's pod directories), longer than a unix
//! socket address holds (108 bytes): they are bound and reached through
//! `/proc/self/fd/<directory>/<name>`, which resolves to the same file.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// The kernel's limit is 253 descriptors a message.
pub const FDS_PER_MESSAGE: usize = 250;
/// The largest message (descriptors aside): state travels in a memfd, not in messages.
const MAX_MESSAGE: usize = 64 << 10;

/// One message: a kind, a payload, descriptors.
pub struct Message {
    pub kind: u8,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An address for `path`, through a descriptor of its directory (kept open by the
/// caller while the address is used).
fn address(path: &Path) -> io::Result<(OwnedFd, libc::sockaddr_un, libc::socklen_t)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a socket path needs a name"))?;
    let c = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: `c` is a NUL-terminated CString that outlives the call; open takes integer
    // flags.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: `cvt` returned the descriptor of the successful open above: new, owned by
    // nothing else.
    let dir_fd = unsafe { OwnedFd::from_raw_fd(cvt(fd)?) };
    let short = format!("/proc/self/fd/{}/", dir_fd.as_raw_fd());
    let mut bytes = short.into_bytes();
    bytes.extend_from_slice(name.as_bytes());
    // SAFETY: sockaddr_un is plain data (a family and a byte array), for which all-zero
    // bytes are valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket name too long",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(&bytes) {
        *d = *s as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len()) as libc::socklen_t;
    Ok((dir_fd, addr, len))
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    // SAFETY: `cvt` returned the descriptor of the successful socket above: new, owned by
    // nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(cvt(fd)?) })
}

/// Listens at `path`, mode 0600 from its first moment; an old socket there is replaced,
/// anything else refused.
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    let sock = socket()?;
    let (_dir, addr, len) = address(path)?;
    // Bound on a thread whose own umask makes the socket 0600 from its first moment.
    // (errno is per thread: the result is checked on that thread.)
    super::umask::with_umask(0o177, || {
        // SAFETY: `sock` is open (owned here), and `addr` is a live sockaddr_un of which
        // `len` (at most its size: checked in `address`) bytes are read; this runs on the
        // scoped thread while the caller waits, so both outlive the call.
        cvt(unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        })
    })??;
    // SAFETY: `sock` is open (owned here); listen takes integers otherwise.
    cvt(unsafe { libc::listen(sock.as_raw_fd(), 4) })?;
    Ok(sock)
}

/// Connects to the control socket at `path`, which must be a socket itself, not a
/// symlink to one (a symlink could lead a hand-off to another daemon). A listener whose
/// backlog is full (a stopped daemon asked many times) makes the connect wait: at most
/// `timeout`, then `WouldBlock`; sends on the connection are bounded the same way.
pub fn connect(path: &Path, timeout: Duration) -> io::Result<OwnedFd> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symlink; refusing to follow it", path.display()),
        ));
    }
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a socket", path.display()),
        ));
    }
    let sock = socket()?;
    let (_dir, addr, len) = address(path)?;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: `sock` is an open socket we own; `tv` is a valid timeval of the size given.
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    // SAFETY: `sock` is open (owned here), and `addr` is a live sockaddr_un of which `len`
    // (at most its size: checked in `address`) bytes are read.
    cvt(unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    Ok(sock)
}

/// Accepts one connection; returns it and the peer's uid.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, u32)> {
    let fd = loop {
        // SAFETY: `listener` is borrowed (open); null address pointers ask for no peer
        // address, which accept4 allows.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            break fd;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: `fd` was just returned by a successful accept4: a new descriptor nothing else
    // owns.
    let conn = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ucred is three integers, for which all-zero bytes are valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `conn` is open, `cred` is a live ucred and `len` says its size, so
    // SO_PEERCRED writes no more than it holds.
    cvt(unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok((conn, cred.uid))
}

/// A zeroed buffer for `space` bytes of control messages, aligned as `struct cmsghdr`
/// (the CMSG_* macros read and write headers in it through `*mut cmsghdr`; a `Vec<u8>`
/// is only promised byte alignment).
fn control_buffer(space: usize) -> Vec<u64> {
    const _: () = assert!(std::mem::align_of::<libc::cmsghdr>() <= std::mem::align_of::<u64>());
    vec![0u64; space.div_ceil(8).max(1)]
}

/// Sends a message with up to [`FDS_PER_MESSAGE`] descriptors.
pub fn send(sock: BorrowedFd<'_>, kind: u8, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(fds.len() <= FDS_PER_MESSAGE);
    let mut data = Vec::with_capacity(payload.len() + 1);
    data.push(kind);
    data.extend_from_slice(payload);
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE only computes a length from an integer.
    let space = unsafe { libc::CMSG_SPACE((fds.len() * 4) as u32) } as usize;
    let mut control = control_buffer(space);
    // SAFETY: msghdr is plain data (pointers and integers), for which all-zero bytes (null
    // pointers, zero lengths) are valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: `msg.msg_control` points to `control`, a live buffer aligned as cmsghdr
        // (`control_buffer`) of `space` = CMSG_SPACE(n * 4) bytes, so CMSG_FIRSTHDR is
        // non-null and the header and its n descriptors (CMSG_DATA, after the header) fit
        // in it; `fds` is a live slice of n descriptors in another allocation, so the copy
        // does not overlap.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
    }
    loop {
        // SAFETY: `sock` is borrowed (open), and `msg` points to `iov` (over `data`) and
        // `control`, all live for the call, with the lengths they were made with.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message, waiting at most `timeout`. End of file (the peer is gone) is
/// `UnexpectedEof`.
pub fn recv(sock: BorrowedFd<'_>, timeout: Duration) -> io::Result<Message> {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: `pfd` is a live pollfd and the count is 1; `sock` is borrowed (open).
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            0 => return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")),
            n if n > 0 => break,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    let mut data = vec![0u8; MAX_MESSAGE];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE only computes a length from an integer.
    let space = unsafe { libc::CMSG_SPACE((FDS_PER_MESSAGE * 4) as u32) } as usize;
    let mut control = control_buffer(space);
    // SAFETY: msghdr is plain data (pointers and integers), for which all-zero bytes (null
    // pointers, zero lengths) are valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: `sock` is borrowed (open); `msg` points to `iov` (over `data`, MAX_MESSAGE
    // bytes) and `control` (`space` bytes), all live and writable, with those lengths, so
    // the kernel writes no more than they hold.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: recvmsg set `msg_controllen` to what it wrote in `control` (aligned as
    // cmsghdr), and CMSG_FIRSTHDR/CMSG_NXTHDR return only headers that lie within it (else
    // null). For an SCM_RIGHTS header the kernel wrote `cmsg_len` = CMSG_LEN(k * 4) with k
    // descriptors after it (fewer when truncated, with MSG_CTRUNC), so the k unaligned
    // reads stay inside it. Each descriptor is new in this process (the kernel installed it
    // for this message) and becomes an OwnedFd once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                let p = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..bytes / 4 {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(p.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a control message was cut short",
        ));
    }
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the other side is gone",
        ));
    }
    data.truncate(n as usize);
    let kind = data.remove(0);
    Ok(Message {
        kind,
        payload: data,
        fds,
    })
}
