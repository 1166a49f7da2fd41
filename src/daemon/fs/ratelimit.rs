//! Error lines a failing medium could repeat on every request (a node disk that answers
//! EIO, a data file that refuses a punch): at most one per interval, each telling how
//! many were left out since the one before, so that an operator sees the trouble and the
//! log does not drown in it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of line's allowance: a `static` next to where it is logged.
pub struct RateLimit {
    interval: Duration,
    state: Mutex<State>,
}

struct State {
    /// When the last line was let through.
    last: Option<Instant>,
    /// Lines held back since.
    left_out: u64,
}

impl RateLimit {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            state: Mutex::new(State {
                last: None,
                left_out: 0,
            }),
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)` with the `n` lines left out
    /// since the last one, or `None` (this one is left out and counted).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                s.left_out = s.left_out.saturating_add(1);
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.left_out))
            }
        }
    }

    /// [`RateLimit::admit`] now, with the count as words to append to the line.
    pub fn admit_now(&self) -> Option<String> {
        self.admit(Instant::now()).map(|n| match n {
            0 => String::new(),
            n => format!(" ({n} more like it left out of the log)"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let r = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(r.admit(at(0)), Some(0));
        assert_eq!(r.admit(at(1)), None);
        assert_eq!(r.admit(at(9)), None);
        assert_eq!(r.admit(at(10)), Some(2), "the two left out are told");
        assert_eq!(r.admit(at(15)), None);
        assert_eq!(r.admit(at(100)), Some(1));
        assert_eq!(r.admit(at(200)), Some(0));
    }
}
