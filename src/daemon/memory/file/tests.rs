use super::*;
const B: u64 = BLOCK_SIZE;

fn read(f: &FileData, off: u64, len: usize, s: &Store) -> Vec<u8> {
    let mut v = Vec::new();
    f.read(off, len, &mut v, s).unwrap();
    v
}

#[test]
fn sparse_write_read_and_holes() {
    let u = Usage::new(100 * B, 10);
    let s = Store::new(1 << 30).unwrap();
    let mut f = FileData::default();
    assert_eq!(f.write(10 * B + 5, b"hello", &u, &s), Ok(5));
    assert_eq!(
        (f.size(), f.held_blocks(), u.blocks_used()),
        (10 * B + 10, 1, 1)
    );
    assert_eq!(read(&f, 10 * B, 10, &s), b"\0\0\0\0\0hello");
    assert!(read(&f, 0, 4096, &s).iter().all(|&b| b == 0));
    assert_eq!(f.seek_data(0), Ok(10 * B));
    assert_eq!(f.seek_hole(0), Ok(0));
    assert_eq!(f.seek_hole(10 * B + 1), Ok(10 * B + 10));
    assert_eq!(f.seek_data(10 * B + 10), Err(Errno::ENXIO));
}

#[test]
fn write_stops_at_the_limit() {
    let u = Usage::new(3 * B, 10);
    let s = Store::new(1 << 30).unwrap();
    let mut f = FileData::default();
    assert_eq!(f.write(0, &vec![1; 10_000], &u, &s), Ok(10_000));
    // 3 blocks held; the rest of block 2 can still be written, nothing past it.
    assert_eq!(
        f.write(10_000, &vec![2; 10_000], &u, &s),
        Ok(3 * B as usize - 10_000)
    );
    assert_eq!(f.write(3 * B, b"x", &u, &s), Err(Errno::ENOSPC));
    assert_eq!(u.blocks_used(), 3);
    f.truncate(B + 1, &u, &s).unwrap();
    assert_eq!(u.blocks_used(), 2);
    assert_eq!(read(&f, B, 10, &s), [1]);
    f.truncate(3 * B, &u, &s).unwrap();
    assert_eq!(read(&f, B, 3, &s), [1, 0, 0]);
}

#[test]
fn punch_zero_and_allocate() {
    let u = Usage::new(10 * B, 10);
    let s = Store::new(1 << 30).unwrap();
    let mut f = FileData::default();
    f.write(0, &vec![7; 4 * B as usize], &u, &s).unwrap();
    f.punch_hole(100, 2 * B, &u, &s).unwrap();
    assert_eq!(u.blocks_used(), 3);
    assert_eq!(read(&f, 99, 2, &s), [7, 0]);
    assert_eq!(read(&f, 2 * B + 99, 2, &s), [0, 7]);
    f.zero_range(2 * B, 2 * B, false, &u, &s).unwrap();
    assert_eq!((u.blocks_used(), f.size()), (3, 4 * B));
    assert!(read(&f, 2 * B, 2 * B as usize, &s).iter().all(|&b| b == 0));
    f.allocate(4 * B, 2 * B, true, &u).unwrap();
    assert_eq!((u.blocks_used(), f.size()), (5, 4 * B));
    assert_eq!(f.allocate(0, 20 * B, false, &u), Err(Errno::ENOSPC));
    assert_eq!(u.blocks_used(), 5);
    assert_eq!(f.clear(&u, &s), 5);
    assert_eq!(u.blocks_used(), 0);
}

#[test]
fn a_failed_write_gives_back_what_it_did_not_reach() {
    let u = Usage::new(100 * B, 10);
    let s = Store::new(1 << 30).unwrap();
    let mut f = FileData::default();
    f.allocate(2 * B, B, true, &u).unwrap(); // block 2: allocated, unwritten
    // A write over blocks 0..4 that failed after its first two blocks: its slots
    // went out, data reached only blocks 0 and 1 (some bytes landed in block 3).
    assert!(u.reserve_blocks(3));
    let given = f.give_slots(0..=3, &s);
    s.write_at(&[5; 2 * B as usize], f.blocks[&0].unwrap() * B)
        .unwrap();
    s.write_at(b"stale", f.blocks[&3].unwrap() * B).unwrap();
    f.size = 2 * B;
    f.take_back(&given, 2 * B, &u, &s);
    assert_eq!(
        (f.held_blocks(), u.blocks_used()),
        (3, 3),
        "0, 1 and 2 stay"
    );
    assert_eq!(f.blocks.get(&2), Some(&None), "unwritten again");
    assert_eq!(s.held_bytes(), 2 * B, "block 3's bytes are gone");
    f.truncate(4 * B, &u, &s).unwrap();
    assert!(read(&f, 2 * B, 2 * B as usize, &s).iter().all(|&b| b == 0));
}

#[test]
fn freed_blocks_give_memory_back_and_never_show_old_data() {
    let u = Usage::new(100 * B, 10);
    let s = Store::new(1 << 30).unwrap();
    let mut a = FileData::default();
    a.write(0, &vec![9; 8 * B as usize], &u, &s).unwrap();
    assert_eq!(s.held_bytes(), 8 * B);
    a.truncate(B + 10, &u, &s).unwrap();
    assert_eq!(s.held_bytes(), 2 * B, "the dropped blocks' memory is back");
    // Growing again shows zeros past the old end, in the kept block and beyond.
    a.truncate(3 * B, &u, &s).unwrap();
    assert_eq!(read(&a, B + 8, 4, &s), [9, 9, 0, 0]);
    assert!(read(&a, 2 * B, B as usize, &s).iter().all(|&b| b == 0));
    // Another file's partial writes into reused slots see no trace of file a.
    assert_eq!(a.clear(&u, &s), 2);
    let mut b = FileData::default();
    b.write(5, b"x", &u, &s).unwrap();
    b.write(3 * B + 1, b"y", &u, &s).unwrap();
    let got = read(&b, 0, 4 * B as usize, &s);
    assert_eq!(got.iter().filter(|&&c| c != 0).count(), 2);
    assert_eq!((got[5], got[3 * B as usize + 1]), (b'x', b'y'));
    b.clear(&u, &s);
    assert_eq!((s.held_bytes(), u.blocks_used()), (0, 0));
}

#[test]
fn a_tail_that_cannot_be_zeroed_fails_the_truncate_and_shows_nothing_old() {
    let s = crate::daemon::memory::store::tests::sealable();
    let u = Usage::new(1 << 20, 10);
    let mut f = FileData::default();
    f.write(0, &vec![9; 2 * B as usize], &u, &s).unwrap();
    crate::daemon::memory::store::tests::refuse_writes(&s);
    assert_eq!(f.truncate(10, &u, &s), Err(Errno::EIO));
    assert_eq!((f.size(), u.blocks_used()), (2 * B, 2), "nothing changed");
    assert_eq!(f.punch_hole(10, B, &u, &s), Err(Errno::EIO));
    assert_eq!(read(&f, 8, 4, &s), [9, 9, 9, 9]);
    // Whole blocks need no zeroing of a tail: they go, their slots are kept aside.
    f.truncate(B, &u, &s).unwrap();
    assert_eq!((f.size(), u.blocks_used()), (B, 1));
}
