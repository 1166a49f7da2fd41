use super::*;
use std::sync::Arc;

#[test]
fn never_passes_the_limit() {
    let u = Usage::new(10 * BLOCK_SIZE, 2);
    assert_eq!(u.reserve_blocks_upto(4), 4);
    assert!(!u.reserve_blocks(7));
    assert_eq!(u.reserve_blocks_upto(7), 6);
    assert_eq!(u.reserve_blocks_upto(1), 0);
    u.release_blocks(3);
    assert!(u.reserve_blocks(3));
    assert!(u.reserve_inode() && u.reserve_inode() && !u.reserve_inode());
    assert_eq!(u.statfs().files_free, 0);
}

#[test]
fn metadata_may_pass_the_data_limit_by_the_allowance_only() {
    let u = Usage::new(10 * BLOCK_SIZE, 100).with_metadata_allowance(3);
    assert!(u.reserve_blocks(10));
    assert!(!u.reserve_blocks(1), "data stops at the limit");
    assert!(u.reserve_metadata_blocks(2));
    assert!(!u.reserve_metadata_blocks(2), "exactly, or nothing");
    assert!(u.reserve_metadata_blocks(1));
    assert!(!u.reserve_metadata_blocks(1), "the allowance is used up");
    u.release_blocks(5);
    assert_eq!(
        u.reserve_blocks_upto(5),
        5,
        "metadata holds none of the limit"
    );
    assert_eq!(u.statfs().blocks_free, 0);
    assert_eq!(u.total_blocks_used(), 13);
}

/// A release of more than is held (a double release, a bug elsewhere) stops the
/// counters at 0: they never wrap to a volume that reports itself full forever. No
/// debug assertion guards this, so the test checks what a release build does.
#[test]
fn releasing_more_than_held_stops_at_zero() {
    let u = Usage::new(10 * BLOCK_SIZE, 5);
    assert!(u.reserve_blocks(3) && u.reserve_inode());
    u.release_blocks(3);
    u.release_blocks(3);
    u.release_inode();
    u.release_inode();
    assert_eq!((u.blocks_used(), u.inodes_used()), (0, 0));
    assert_eq!(
        u.released_total(),
        3,
        "only what was held counts as released"
    );
    let s = u.statfs();
    assert_eq!(
        (s.blocks_free, s.files_free),
        (10, 5),
        "the volume is empty"
    );
    assert!(u.reserve_blocks(10) && u.reserve_inode(), "and fills again");
}

#[test]
fn limit_rounds_up_to_whole_blocks() {
    assert_eq!(Usage::new(500_000_000, 1).block_limit(), 122_071);
}

/// Data has the whole limit while metadata fits the allowance; metadata beyond it
/// takes the limit, and gives it back when it shrinks into the allowance again.
#[test]
fn metadata_takes_the_allowance_first_then_the_limit() {
    let u = Usage::new(10 * BLOCK_SIZE, 100).with_metadata_allowance(3);
    assert!(u.reserve_metadata_blocks(1), "a root directory's block");
    let s = u.statfs();
    assert_eq!(
        (s.blocks, s.blocks - s.blocks_free, s.blocks_avail),
        (10, 1, 10)
    );
    assert!(u.reserve_blocks(10), "data: the whole limit");
    let s = u.statfs();
    assert_eq!(
        (s.blocks, s.blocks - s.blocks_free, s.blocks_avail),
        (10, 10, 0)
    );
    u.release_blocks(4);
    assert!(
        u.reserve_metadata_blocks(4),
        "2 in the allowance, 2 of the limit"
    );
    assert_eq!((u.blocks_used(), u.metadata_blocks_used()), (8, 5));
    assert_eq!(u.reserve_blocks_upto(5), 2, "data: what the spill left");
    assert!(!u.reserve_metadata_blocks(1), "limit and allowance used up");
    assert_eq!(u.total_blocks_used(), 13);
    let s = u.statfs();
    assert_eq!(
        (s.blocks, s.blocks - s.blocks_free, s.blocks_avail),
        (10, 10, 0)
    );
    u.release_metadata_blocks(3);
    assert_eq!((u.blocks_used(), u.metadata_blocks_used()), (8, 2));
    assert!(u.reserve_blocks(2), "the spill came back to data");
    u.release_metadata_blocks(7);
    assert_eq!(u.metadata_blocks_used(), 0, "a release past 0 stops there");
    assert_eq!(u.blocks_used(), 10, "and gives back no data");
    u.force_add_metadata_blocks(5);
    assert_eq!(
        (u.blocks_used(), u.total_blocks_used()),
        (12, 15),
        "counted after the fact: the spill passes the limit"
    );
}

/// Concurrent metadata and data reservations never pass limit + allowance, and
/// data never passes the limit.
#[test]
fn concurrent_metadata_and_data_stay_within_limit_and_allowance() {
    let u = Arc::new(Usage::new(1000 * BLOCK_SIZE, 1).with_metadata_allowance(100));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let u = u.clone();
            std::thread::spawn(move || {
                let mut held = (0u64, 0u64);
                for i in 0..20_000u64 {
                    if t % 2 == 0 {
                        held.0 += u.reserve_blocks_upto(3);
                    } else if u.reserve_metadata_blocks(2) {
                        held.1 += 2;
                    }
                    if i % 3 == 0 {
                        u.release_blocks(held.0.min(2));
                        held.0 -= held.0.min(2);
                        u.release_metadata_blocks(held.1.min(2));
                        held.1 -= held.1.min(2);
                    }
                    assert!(u.total_blocks_used() <= 1100);
                }
                held
            })
        })
        .collect();
    let (data, meta) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |a, h| (a.0 + h.0, a.1 + h.1));
    assert_eq!(u.metadata_blocks_used(), meta);
    assert_eq!(u.blocks_used(), data + meta.saturating_sub(100));
    assert!(u.blocks_used() <= 1000 && u.total_blocks_used() <= 1100);
}

/// A state from before format 3 counted metadata with the data; read, split and
/// rebuilt, it gives the counters this build keeps.
#[test]
fn a_snapshot_from_before_format_3_splits_its_metadata() {
    use crate::daemon::state::{Reader, Writer};
    let u = Usage::new(10 * BLOCK_SIZE, 100).with_metadata_allowance(3);
    assert!(u.reserve_metadata_blocks(5) && u.reserve_blocks(4));
    for version in 1..=crate::daemon::state::FORMAT_VERSION {
        let mut w = Writer::writing(version);
        u.snapshot().write(&mut w);
        let bytes = w.finish(version);
        let mut r = Reader::open(&bytes).unwrap();
        let mut s = UsageSnapshot::read(&mut r).unwrap();
        r.done().unwrap();
        if version < 3 {
            assert_eq!((s.blocks, s.metadata), (9, None), "all as data");
            s.split_metadata(5);
        }
        assert_eq!(s, u.snapshot(), "version {version}");
    }
}

#[test]
fn concurrent_reservations_stop_exactly_at_the_limit() {
    let u = Arc::new(Usage::new(100_000 * BLOCK_SIZE, 1));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let u = u.clone();
            std::thread::spawn(move || (0..50_000).map(|_| u.reserve_blocks_upto(3)).sum::<u64>())
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum::<u64>();
    assert_eq!(total, 100_000);
    assert_eq!(u.blocks_used(), 100_000);
}
