use super::*;
use std::time::Duration;

/// The payload of record `i` in these tests: its length and bytes follow from `i`.
fn payload(i: u64, buf: &mut [u8; 200]) -> &[u8] {
    let n = (i as usize * 7) % buf.len();
    for (k, b) in buf[..n].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(k as u8);
    }
    &buf[..n]
}

/// Checks that `j` holds records 0, 1, ... as [`payload`] makes them; returns how many.
fn check(j: &Journal) -> u64 {
    let mut buf = [0u8; 200];
    let mut n = 0;
    for r in j.records() {
        let r = r.unwrap();
        assert_eq!((r.seq, r.kind), (n, (n % 5) as u16), "record {n}");
        assert_eq!(r.payload, payload(n, &mut buf), "the bytes of record {n}");
        n += 1;
    }
    n
}

#[test]
fn records_read_back_in_order_until_full_and_after_a_reopen() {
    let mut j = Journal::create(4096).unwrap();
    let mut buf = [0u8; 200];
    let mut i = 0;
    while j.append((i % 5) as u16, payload(i, &mut buf)).is_ok() {
        i += 1;
    }
    assert!(i > 20, "4 KiB holds more than {i} small records");
    assert_eq!(j.append(0, &[0; 4096]), Err(Full));
    assert_eq!(check(&j), i);
    let again = Journal::open(j.fd().try_clone_to_owned().unwrap()).unwrap();
    assert_eq!(check(&again), i, "a successor reads the same");
    drop(again);
    j.clear();
    assert_eq!(j.records().count(), 0);
    assert_eq!(
        j.append(1, b"x"),
        Ok(i),
        "sequence numbers go on after a clear"
    );
}

#[test]
fn a_memfd_that_is_no_journal_is_refused() {
    let j = Journal::create(4096).unwrap();
    let fd = j.fd().try_clone_to_owned().unwrap();
    drop(j);
    let f = std::fs::File::from(fd);
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"not one", 0).unwrap();
    assert!(Journal::open(f.into()).is_err());
}

/// A writer killed by SIGKILL at arbitrary instructions (a child process appending as
/// fast as it can, killed after a different delay each round) leaves a log whose every
/// record reads back whole, numbered from 0 without a gap.
#[test]
fn a_sigkill_at_any_instruction_leaves_the_committed_records() {
    let mut killed_midway = 0;
    for round in 0..40u64 {
        let mut j = Journal::create(8 << 20).unwrap();
        // SAFETY: the child runs only the loop below: appends into the shared mapping
        // (no lock, no allocation) and _exit; it touches nothing another thread of
        // this process could have held at the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let mut buf = [0u8; 200];
            let mut i = 0;
            while j.append((i % 5) as u16, payload(i, &mut buf)).is_ok() {
                i += 1;
            }
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) };
        }
        std::thread::sleep(Duration::from_micros(200 + round * 97));
        // SAFETY: signals the child forked above, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reaps that child; writes one int to a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        let n = check(&j);
        let full = j.append(0, &[0; 256]).is_err();
        if libc::WIFSIGNALED(status) && n > 0 && !full {
            killed_midway += 1;
        }
    }
    assert!(
        killed_midway >= 10,
        "only {killed_midway} of 40 rounds killed the writer mid-log"
    );
}
