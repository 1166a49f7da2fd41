//! The store's unit tests, and a store over a memfd a test may seal.

use super::*;

fn alloc(s: &Store, n: u64) -> Vec<(Slot, u64)> {
    let mut v = Vec::new();
    s.alloc(n, &mut v);
    v
}

#[test]
fn runs_are_reused_and_coalesced() {
    let s = Store::new(1 << 20).unwrap();
    assert_eq!(alloc(&s, 10), [(0, 10)]);
    assert_eq!(alloc(&s, 5), [(10, 5)]);
    s.free(&mut [3, 2, 4]);
    assert_eq!(alloc(&s, 4), [(15, 4)], "no free run of 4: fresh slots");
    assert_eq!(alloc(&s, 2), [(2, 2)], "lowest run that fits");
    s.free(&mut [2, 3, 15, 16, 17, 18]);
    let st = s.slots.lock().unwrap();
    assert_eq!(
        (st.runs.iter().collect::<Vec<_>>(), st.top),
        (vec![(&2, &3)], 15)
    );
}

/// A mapped store over a memfd the test may seal, as `Store::new` makes it.
pub(in crate::daemon::memory) fn sealable() -> Store {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create reads a static NUL-terminated name and takes integer flags.
    let fd = unsafe { libc::memfd_create(c"test".as_ptr(), flags) };
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by a successful memfd_create (asserted): nothing
    // else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(MAP_UNIT).unwrap();
    Store::mapped_file(file, MAP_UNIT, FreeSlots::default())
}

/// From now on the kernel refuses to punch or write the data file (the mapping
/// stays writable): what a kernel bug or a stray seal would do.
pub(in crate::daemon::memory) fn refuse_writes(s: &Store) {
    // SAFETY: F_ADD_SEALS takes an integer; the memfd is open while `s` lives.
    let rc = unsafe {
        libc::fcntl(
            s.file.as_raw_fd(),
            libc::F_ADD_SEALS,
            libc::F_SEAL_FUTURE_WRITE,
        )
    };
    assert_eq!(rc, 0, "{}", io::Error::last_os_error());
}

#[test]
fn a_data_file_that_cannot_be_zeroed_answers_eio_and_keeps_its_slots() {
    let s = sealable();
    let b = BLOCK_SIZE;
    assert_eq!(alloc(&s, 2), [(0, 2)]);
    s.write_at(&vec![7u8; 2 * b as usize], 0).unwrap();
    refuse_writes(&s);
    assert_eq!(s.zero(5, 10), Err(Errno::EIO), "an error, not a panic");
    s.free(&mut [0, 1]);
    assert!(
        !s.is_free(0) && !s.is_free(1),
        "slots still holding old bytes are never handed out again"
    );
    let mut out = [0u8; 4];
    s.read_at(&mut out, 0).unwrap();
    assert_eq!(out, [7; 4]);
}

fn seals(s: &Store) -> i32 {
    // SAFETY: F_GET_SEALS takes no argument; the memfd is open while `s` lives.
    unsafe { libc::fcntl(s.file.as_raw_fd(), libc::F_GET_SEALS) }
}

/// The data file is sealed against shrinking (a truncate would make the mapping
/// fault), on a new store and on one received in a hand-off; punching and growing
/// still work.
#[test]
fn the_data_file_is_sealed_against_shrinking() {
    let s = Store::new(1 << 20).unwrap();
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    assert_eq!(seals(&s) & want, want);
    let len = s.file.metadata().unwrap().len();
    let shrink = s.file.set_len(len - BLOCK_SIZE).unwrap_err();
    assert_eq!(shrink.raw_os_error(), Some(libc::EPERM));
    s.file.set_len(len + MAP_UNIT).unwrap(); // growing is allowed
    s.file.set_len(len).expect_err("and shrinking back is not");
    assert_eq!(alloc(&s, 1), [(0, 1)]);
    s.write_at(&[1; 4096], 0).unwrap();
    s.free(&mut [0]);
    assert_eq!(s.held_bytes(), 0, "punched");
    // A successor's store over the same file: still sealed.
    let s = Store::new(1 << 20).unwrap();
    s.write_at(b"kept", 0).unwrap();
    let got = handed_over(&s).unwrap();
    assert_eq!(seals(&got) & want, want);
    let mut out = [0u8; 4];
    got.read_at(&mut out, 0).unwrap();
    assert_eq!(&out, b"kept");
}

/// A predecessor's data file made before sealing (no MFD_ALLOW_SEALING) is still
/// taken over, unsealed.
#[test]
fn an_unsealable_data_file_is_still_taken_over() {
    // SAFETY: memfd_create reads a static NUL-terminated name and takes integer flags.
    let fd = unsafe { libc::memfd_create(c"old".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    // SAFETY: `fd` was just returned by a successful memfd_create (asserted): nothing
    // else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(MAP_UNIT).unwrap();
    let old = Store::mapped_file(file, MAP_UNIT, FreeSlots::default());
    old.write_at(b"data", 8).unwrap();
    let got = handed_over(&old).unwrap();
    assert_eq!(seals(&got), libc::F_SEAL_SEAL);
    let mut out = [0u8; 4];
    got.read_at(&mut out, 8).unwrap();
    assert_eq!(&out, b"data");
}

/// `s` written as a predecessor does and read back as a successor does.
fn handed_over(s: &Store) -> std::result::Result<Store, Refused> {
    use crate::daemon::state::FORMAT_VERSION;
    use std::os::fd::BorrowedFd;
    let mut w = Writer::default();
    let mut fds = Vec::new();
    s.write_state(&mut w, &mut fds);
    let data = w.finish(FORMAT_VERSION);
    // SAFETY: `fds[0]` is the data file's descriptor, which `s` keeps open during this
    // borrow.
    let dup = unsafe { BorrowedFd::borrow_raw(fds[0]) }.try_clone_to_owned();
    let mut table = FdTable::new(vec![dup.unwrap()]);
    Store::read_state(&mut Reader::open(&data)?, &mut table)
}

#[test]
fn data_round_trips_and_freed_slots_read_as_zeros() {
    let s = Store::new(1 << 20).unwrap();
    let b = BLOCK_SIZE;
    s.write_at(&vec![7u8; 3 * b as usize], 0).unwrap();
    assert!(s.held_bytes() >= 3 * b);
    let mut out = vec![0u8; 10];
    s.read_at(&mut out, b - 5).unwrap();
    assert_eq!(out, [7; 10]);
    s.free(&mut [0, 1, 2]);
    assert_eq!(s.held_bytes(), 0);
    s.read_at(&mut out, b - 5).unwrap();
    assert_eq!(out, [0; 10]);
    let mut far = [1u8; 4];
    s.read_at(&mut far, 1 << 40).unwrap();
    assert_eq!(far, [0; 4]);
    // Overwrites through the mapping are seen by pread and back.
    s.write_at(b"abcd", 8).unwrap();
    s.overwrite_at(b"XY", 9).unwrap();
    let mut got = [0u8; 4];
    s.read_at(&mut got, 8).unwrap();
    assert_eq!(&got, b"aXYd");
}
