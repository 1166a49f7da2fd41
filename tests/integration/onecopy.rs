//! One copy of a volume's data in the node's memory. A memory volume's data is its tmpfs's
//! pages alone. A disk volume's is in the node's page cache once: files opened read-only are
//! read (and mapped) by the kernel from the backing file, files opened for writing go
//! to the daemon without FUSE's page cache. What a user sees must not change: every mix
//! of opens on one file works and reads what was written, mappings included, and the
//! limit still holds against a shared mapping.

use crate::harness::*;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i * 7 + seed * 13) % 251) as u8)
        .collect()
}

#[test]
fn a_disk_file_written_and_read_is_cached_once() {
    let v = Volume::start(Medium::Disk, &[]);
    let data = pattern(16 << 20, 1);
    let p = v.path("f");
    let mut w = File::create(&p).unwrap();
    w.write_all(&data).unwrap();
    w.sync_all().unwrap();
    assert_eq!(cached_pages(&w), 0, "writing kept no page of FUSE's own");
    drop(w);
    // Read through a file opened for reading only, one opened for writing too, and a
    // mapping. (A mapping while the file is open for writing is cached by FUSE.)
    let r = File::open(&p).unwrap();
    let mut back = Vec::new();
    (&r).read_to_end(&mut back).unwrap();
    assert!(back == data, "read back what was written");
    let rw = open_rw(&p);
    let mut again = vec![0; data.len()];
    rw.read_exact_at(&mut again, 0).unwrap();
    assert!(again == data);
    let map = Mapping::of(&r, data.len(), false);
    assert!(map.bytes() == &data[..], "mapped what was written");
    for f in [&r, &rw] {
        assert_eq!(cached_pages(f), 0, "no page of FUSE's own");
    }
    let backing = File::open(v.backing.join("f")).unwrap();
    let pages = (data.len() / 4096) as u64;
    assert!(
        cached_pages(&backing) >= pages * 9 / 10,
        "the backing file's pages hold the data: {} of {pages}",
        cached_pages(&backing)
    );
}

/// A memory volume's data is its own tmpfs's pages and nothing else: written, read and
/// mapped through the volume (the kernel's passthrough to the tmpfs file), no page lands
/// in FUSE's own cache, and `df` counts the data once.
#[test]
fn a_memory_file_written_read_and_mapped_is_held_once() {
    let v = Volume::start(Medium::Memory, &["--size-limit", "64Mi"]);
    let before = v.used();
    let data = pattern(16 << 20, 3);
    let p = v.path("f");
    let mut w = File::create(&p).unwrap();
    w.write_all(&data).unwrap();
    assert_eq!(cached_pages(&w), 0, "writing kept no page of FUSE's own");
    let r = File::open(&p).unwrap();
    let mut back = Vec::new();
    (&r).read_to_end(&mut back).unwrap();
    assert!(back == data, "read back what was written");
    let rw = open_rw(&p);
    let mut map = Mapping::of(&rw, data.len(), true);
    assert!(map.bytes() == &data[..], "mapped what was written");
    map.bytes_mut()[..4096].fill(9);
    map.sync();
    let mut first = vec![0; 4096];
    r.read_exact_at(&mut first, 0).unwrap();
    assert_eq!(first, vec![9; 4096], "a read sees what the mapping wrote");
    for f in [&w, &r, &rw] {
        assert_eq!(cached_pages(f), 0, "no page of FUSE's own");
    }
    assert_eq!(v.used() - before, 16 << 20, "df counts the data once");
}

/// One open file of the mixes test.
enum Open {
    Reader(File),
    Writer(File),
    /// A writer with a shared writable mapping of the whole file.
    Mapped {
        _file: File,
        map: Mapping,
    },
}

/// A little generator, so a failure can be run again (the seed is in the message).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Opens for reading, for writing and mapped shared, in random orders with random
/// closes, writes through files and mappings and reads through all of them: every open
/// succeeds (the kernel answers EIO to mixes of io modes it refuses) and every read sees
/// every write before it, as on a local filesystem.
fn every_mix_of_opens_reads_what_was_written(m: Medium) {
    const LEN: usize = 64 << 10;
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    let mut model = pattern(LEN, 0);
    std::fs::write(&p, &model).unwrap();
    for seed in 1..=4u64 {
        let mut rng = Lcg(seed);
        let mut open: Vec<Open> = Vec::new();
        for step in 0..300 {
            let at = format!("seed {seed} step {step}");
            match rng.below(7) {
                0 => open.push(Open::Reader(
                    File::open(&p).unwrap_or_else(|e| panic!("{at}: open for reading: {e}")),
                )),
                1 => open.push(Open::Writer(
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&p)
                        .unwrap_or_else(|e| panic!("{at}: open for writing: {e}")),
                )),
                2 => {
                    let f = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&p)
                        .unwrap_or_else(|e| panic!("{at}: open to map: {e}"));
                    let map = Mapping::of(&f, LEN, true);
                    open.push(Open::Mapped { _file: f, map });
                }
                3 if !open.is_empty() => {
                    let i = rng.below(open.len());
                    drop(open.swap_remove(i));
                }
                4 | 5 => {
                    let writers: Vec<usize> = (0..open.len())
                        .filter(|&i| !matches!(open[i], Open::Reader(_)))
                        .collect();
                    if writers.is_empty() {
                        continue;
                    }
                    let (off, len) = (rng.below(LEN - 1), 1 + rng.below(8192));
                    let len = len.min(LEN - off);
                    let bytes = pattern(len, seed * 1000 + step);
                    match &mut open[writers[rng.below(writers.len())]] {
                        Open::Writer(f) => f.write_all_at(&bytes, off as u64).unwrap(),
                        Open::Mapped { map, .. } => {
                            map.bytes_mut()[off..off + len].copy_from_slice(&bytes)
                        }
                        Open::Reader(_) => unreachable!(),
                    }
                    model[off..off + len].copy_from_slice(&bytes);
                }
                _ if !open.is_empty() => {
                    let mut got = vec![0; LEN];
                    match &open[rng.below(open.len())] {
                        Open::Reader(f) | Open::Writer(f) => f.read_exact_at(&mut got, 0).unwrap(),
                        Open::Mapped { map, .. } => got.copy_from_slice(map.bytes()),
                    }
                    if let Some(i) = (0..LEN).find(|&i| got[i] != model[i]) {
                        panic!(
                            "{at}: byte {i} reads {} where {} was written",
                            got[i], model[i]
                        );
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        std::fs::read(&p).unwrap() == model,
        "the file holds every write"
    );
}

/// A file opened for writing while the kernel reads it by passthrough is mapped from the
/// backing file, where a shared mapping could fill holes without a request: growing the
/// file then allocates (and charges) the new part, and a limit too small for that is
/// ENOSPC, so what the mapping writes never takes space uncounted.
#[test]
fn a_mapping_beside_a_passthrough_reader_takes_no_uncounted_space() {
    const MIB: u64 = 1 << 20;
    let v = Volume::start(Medium::Disk, &["--size-limit", "8Mi"]);
    let p = v.path("f");
    std::fs::write(&p, pattern(MIB as usize, 3)).unwrap();
    let reader = File::open(&p).unwrap();
    let writer = open_rw(&p);
    let used = v.used();
    assert_eq!(
        errno(writer.set_len(64 * MIB)),
        libc::ENOSPC,
        "64 MiB cannot be allocated on an 8 MiB volume"
    );
    assert_eq!(
        writer.metadata().unwrap().len(),
        MIB,
        "the size did not change"
    );
    writer.set_len(4 * MIB).unwrap();
    let grown = v.used();
    assert!(
        grown >= used + 3 * MIB,
        "the new 3 MiB are charged: {used} then {grown}"
    );
    assert!(
        std::fs::metadata(v.backing.join("f")).unwrap().blocks() * 512 >= 4 * MIB,
        "and allocated"
    );
    {
        let mut map = Mapping::of(&writer, (4 * MIB) as usize, true);
        map.bytes_mut().fill(7);
        map.sync();
    }
    assert!(
        v.used() <= grown + (64 << 10),
        "what the mapping wrote took nothing new"
    );
    let mut back = vec![0; (4 * MIB) as usize];
    reader.read_exact_at(&mut back, 0).unwrap();
    assert!(
        back.iter().all(|&b| b == 7),
        "the reader sees what the mapping wrote"
    );
    // Punching a hole zeroes the range and keeps it allocated meanwhile.
    // SAFETY: `writer` is open for the call; fallocate takes integers otherwise.
    let punched = unsafe {
        libc::fallocate(
            writer.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            MIB as i64,
        )
    };
    assert_eq!(punched, 0, "punch: {}", std::io::Error::last_os_error());
    reader.read_exact_at(&mut back[..MIB as usize], 0).unwrap();
    assert!(
        back[..MIB as usize].iter().all(|&b| b == 0),
        "the punched range reads zeros"
    );
    drop((reader, writer));
    // With no passthrough open left, files may be sparse again, as on tmpfs.
    open_rw(&p).set_len(64 * MIB).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 64 * MIB);
}

/// A file with holes is not read by passthrough (it would have to be filled first): it
/// is served direct, still one copy, and grows sparse as on tmpfs.
#[test]
fn a_sparse_file_stays_sparse_while_read() {
    let v = Volume::start(Medium::Disk, &["--size-limit", "8Mi"]);
    let p = v.path("sparse");
    open_rw(&p).set_len(1 << 30).unwrap();
    let reader = File::open(&p).unwrap();
    let writer = open_rw(&p);
    writer.set_len(2 << 30).unwrap();
    writer.write_all_at(b"end", (2 << 30) - 3).unwrap();
    let mut tail = [0u8; 3];
    reader.read_exact_at(&mut tail, (2 << 30) - 3).unwrap();
    assert_eq!(&tail, b"end");
    assert!(v.used() < 1 << 20, "still sparse: {} bytes used", v.used());
    assert_eq!(cached_pages(&reader), 0);
}

/// Files opened `O_DIRECT`, for reading and for writing, beside buffered ones.
fn o_direct_opens_mix_with_buffered_ones(m: Medium) {
    let v = Volume::start(m, &[]);
    let p = v.path("f");
    std::fs::write(&p, pattern(1 << 20, 5)).unwrap();
    let buffered = File::open(&p).unwrap();
    let direct = |write: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_DIRECT)
            .open(&p)
            .unwrap()
    };
    let (dr, dw) = (direct(false), direct(true));
    // An O_DIRECT buffer: the 4 KiB-aligned 64 KiB window of a zeroed Vec.
    let mut backing = vec![0u8; 65536 + 4096];
    let skip = backing.as_ptr().addr().wrapping_neg() % 4096;
    let buf = &mut backing[skip..skip + 65536];
    buf.fill(0x5a);
    dw.write_all_at(buf, 65536).unwrap();
    buf.fill(0);
    dr.read_exact_at(buf, 65536).unwrap();
    assert!(
        buf.iter().all(|&b| b == 0x5a),
        "O_DIRECT reads what O_DIRECT wrote"
    );
    let mut b = vec![0; 65536];
    buffered.read_exact_at(&mut b, 65536).unwrap();
    assert!(b.iter().all(|&x| x == 0x5a), "a buffered reader too");
}

on_every_medium!(
    every_mix_of_opens_reads_what_was_written,
    o_direct_opens_mix_with_buffered_ones
);
