//! The nodes the kernel has forgotten, so that a file handle can bring them back.
//!
//! The kernel makes a file handle of an inode from its node id and generation alone, and
//! when it decodes one after dropping the inode from its cache it asks for the node id
//! by itself (a LOOKUP of `.`): no name, no parent, no generation. A node id is the
//! backing inode's `st_ino`, and nothing opens a backing inode by number without its
//! own generation (xfs and tmpfs check it; a handle of ext4 with generation 0 would open
//! any inode of the node's disk, outside the volume too). So when a node leaves the
//! table, its backing file handle and generation are kept here, keyed by its number; a
//! LOOKUP of `.` opens that handle, and the backing filesystem answers ESTALE if the
//! inode was deleted since. Every handle here was made from an inode inside the
//! backing directory, so nothing outside it is ever reached.
//!
//! An entry lives until its inode comes back into the table (a lookup), its last link
//! goes, or its handle is found stale. So the index holds at most one entry per inode
//! of the volume; it is also bounded by [`CAP`] entries (130 bytes each with an ext4
//! handle, measured: 34 MiB when full): past that, an arbitrary entry is dropped, and a
//! handle of that inode gets ESTALE until the inode is looked up again by name (its
//! generation is the same then: it is derived from the backing handle).
//!
//! Entries of synthetic numbers are not kept: such a number is not the inode's
//! `st_ino`, and the inode may have its own number by the time a handle comes back.

use crate::daemon::disk::handle::Handle;
use crate::daemon::fs::Ino;
use crate::daemon::state::{Reader, Refused, Writer};
use dashmap::DashMap;

/// Most forgotten nodes remembered.
pub const CAP: usize = 1 << 18;

/// Forgotten nodes: number -> (backing handle, generation).
pub struct Forgotten {
    map: DashMap<Ino, (Handle, u32)>,
    cap: usize,
}

impl Default for Forgotten {
    fn default() -> Forgotten {
        Forgotten {
            map: DashMap::new(),
            cap: CAP,
        }
    }
}

impl Forgotten {
    /// Remembers node `ino` as it leaves the table.
    pub fn insert(&self, ino: Ino, handle: Handle, generation: u32) {
        self.map.insert(ino, (handle, generation));
        if self.map.len() > self.cap {
            let victim = self.map.iter().map(|e| *e.key()).find(|&k| k != ino);
            if let Some(v) = victim {
                self.map.remove(&v);
            }
        }
    }

    /// What is remembered of number `ino`.
    pub fn get(&self, ino: Ino) -> Option<(Handle, u32)> {
        self.map.get(&ino).map(|e| e.value().clone())
    }

    /// Number `ino` goes back into the table for the inode of `handle`: its entry goes,
    /// and its generation comes back if it was that inode's (else the number's old
    /// inode is gone, and the caller gives the new one its own generation).
    pub fn take(&self, ino: Ino, handle: &Handle) -> Option<u32> {
        let (_, (h, generation)) = self.map.remove(&ino)?;
        (h == *handle).then_some(generation)
    }

    /// The inode numbered `ino` lost its last link, or its handle is stale.
    pub fn remove(&self, ino: Ino) {
        self.map.remove(&ino);
    }

    pub fn write_state(&self, w: &mut Writer) {
        let all: Vec<(Ino, (Handle, u32))> = self
            .map
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        w.u64(all.len() as u64);
        for (ino, (handle, generation)) in all {
            w.u64(ino);
            handle.write_state(w);
            w.u32(generation);
        }
    }

    pub fn read_state(r: &mut Reader<'_>) -> Result<Forgotten, Refused> {
        let f = Forgotten::default();
        // Number, handle type and length, generation.
        for _ in 0..r.count(20)? {
            let ino = r.u64()?;
            let handle = Handle::read_state(r)?;
            let generation = r.u32()?;
            if f.map.insert(ino, (handle, generation)).is_some() {
                return Err(format!("forgotten node {ino} twice"));
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::FORMAT_VERSION;

    /// Handles as the state carries them (type 1, `bytes`).
    fn handles(all: &[&[u8]]) -> Vec<Handle> {
        let mut w = Writer::default();
        for b in all {
            w.i32(1);
            w.bytes(b);
        }
        let data = w.finish(FORMAT_VERSION);
        let mut r = Reader::open(&data).unwrap();
        all.iter()
            .map(|_| Handle::read_state(&mut r).unwrap())
            .collect()
    }

    #[test]
    fn a_number_comes_back_with_its_generation_only_for_its_own_inode() {
        let h = handles(&[b"inode-a1", b"inode-b1"]);
        let f = Forgotten::default();
        f.insert(7, h[0].clone(), 42);
        assert_eq!(f.get(7), Some((h[0].clone(), 42)));
        assert_eq!(f.take(7, &h[0]), Some(42));
        assert_eq!(f.get(7), None, "taken back into the table");
        f.insert(7, h[0].clone(), 42);
        assert_eq!(f.take(7, &h[1]), None, "another inode took number 7");
        assert_eq!(f.get(7), None, "and the old entry went");
        f.insert(8, h[1].clone(), 5);
        f.remove(8);
        assert_eq!(f.get(8), None);
    }

    #[test]
    fn it_never_holds_more_than_its_cap_and_keeps_the_newest() {
        let h = handles(&[b"x"]);
        let f = Forgotten {
            map: DashMap::new(),
            cap: 16,
        };
        for ino in 0..100 {
            f.insert(ino, h[0].clone(), ino as u32);
            assert!(f.map.len() <= 16);
            assert_eq!(f.get(ino), Some((h[0].clone(), ino as u32)));
        }
    }

    #[test]
    fn it_goes_through_a_state_and_a_damaged_one_is_refused() {
        let h = handles(&[b"inode-a1", b"inode-b1"]);
        let f = Forgotten::default();
        f.insert(7, h[0].clone(), 42);
        f.insert(9, h[1].clone(), 0);
        let mut w = Writer::default();
        f.write_state(&mut w);
        let data = w.finish(FORMAT_VERSION);
        let back = Forgotten::read_state(&mut Reader::open(&data).unwrap()).unwrap();
        assert_eq!(back.get(7), Some((h[0].clone(), 42)));
        assert_eq!(back.get(9), Some((h[1].clone(), 0)));
        assert_eq!(back.map.len(), 2);
        let mut w = Writer::default();
        w.u64(2);
        for _ in 0..2 {
            w.u64(7);
            h[0].write_state(&mut w);
            w.u32(1);
        }
        let data = w.finish(FORMAT_VERSION);
        let refused = Forgotten::read_state(&mut Reader::open(&data).unwrap());
        assert!(refused.err().unwrap().contains("twice"));
    }
}
