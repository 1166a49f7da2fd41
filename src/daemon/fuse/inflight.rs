//! Requests in progress, and since when: what a daemon says when asked how it is doing
//! (`STATUS` on its control socket), so that the control side tells a stuck daemon (a
//! wedged backing disk, a deadlock) from a busy one without ever sending it a request
//! through the mount.
//!
//! Each request's [`super::gate::Pass`] takes a slot for its whole run: one
//! compare-and-swap when it starts, one store when it ends, on a cache line of its own
//! (a thread keeps finding the slot it had before). With more requests at once than
//! slots, the extra ones go uncounted; the oldest request is in a slot unless more than
//! [`SLOTS`] requests all started before it and still run.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Slots: more than the most request threads a daemon runs by default (8).
pub const SLOTS: usize = 64;
const NONE: usize = usize::MAX;

/// A slot on a cache line of its own: 0 when free, else the nanoseconds since the
/// tracker's epoch (plus one) at which its request started.
#[repr(align(64))]
#[derive(Default)]
struct Slot(AtomicU64);

pub struct InFlight {
    epoch: Instant,
    slots: Box<[Slot]>,
}

/// A request's slot, freed by [`InFlight::end`].
#[derive(Clone, Copy, Debug)]
pub struct Taken(usize);

thread_local! {
    /// The slot this thread took last: where it looks first next time.
    static HINT: Cell<usize> = const { Cell::new(0) };
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight {
            epoch: Instant::now(),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

impl InFlight {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A request starts.
    pub fn start(&self) -> Taken {
        let now = self.now();
        let hint = HINT.with(Cell::get);
        for i in 0..SLOTS {
            let k = (hint + i) % SLOTS;
            if self.slots[k]
                .0
                .compare_exchange(0, now, Relaxed, Relaxed)
                .is_ok()
            {
                HINT.with(|h| h.set(k));
                return Taken(k);
            }
        }
        Taken(NONE)
    }

    /// The request of `t` has been answered.
    pub fn end(&self, t: Taken) {
        if let Some(slot) = self.slots.get(t.0) {
            slot.0.store(0, Relaxed);
        }
    }

    /// Requests in progress now, and how long the oldest has run.
    pub fn snapshot(&self) -> (u64, Option<Duration>) {
        let now = self.now();
        let mut count = 0;
        let mut oldest = u64::MAX;
        for s in self.slots.iter() {
            let t = s.0.load(Relaxed);
            if t != 0 {
                count += 1;
                oldest = oldest.min(t);
            }
        }
        let age = (count > 0).then(|| Duration::from_nanos(now.saturating_sub(oldest)));
        (count, age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_request_is_the_one_still_running() {
        let f = InFlight::default();
        assert_eq!(f.snapshot(), (0, None));
        let a = f.start();
        std::thread::sleep(Duration::from_millis(20));
        let b = f.start();
        let (n, age) = f.snapshot();
        assert_eq!(n, 2);
        assert!(age.unwrap() >= Duration::from_millis(20));
        f.end(a);
        let (n, age) = f.snapshot();
        assert_eq!(n, 1);
        assert!(age.unwrap() < Duration::from_millis(20));
        f.end(b);
        assert_eq!(f.snapshot(), (0, None));
    }

    #[test]
    fn more_requests_than_slots_are_not_counted_but_harm_nothing() {
        let f = InFlight::default();
        let taken: Vec<Taken> = (0..SLOTS + 3).map(|_| f.start()).collect();
        assert_eq!(f.snapshot().0, SLOTS as u64);
        taken.into_iter().for_each(|t| f.end(t));
        assert_eq!(f.snapshot(), (0, None));
    }
}
