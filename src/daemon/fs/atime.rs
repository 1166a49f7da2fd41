//! When a read updates an access time, as the kernel decides it for a local filesystem
//! (`atime_needs_update` and `relatime_need_update` in `fs/inode.c`), under the options
//! of the volume's own mount (read by [`super::mount_options`]).
//!
//! The kernel never updates a FUSE inode's atime itself (it marks FUSE inodes
//! `S_NOATIME`): the memory medium updates it when a read reaches the daemon (and keeps
//! the kernel from serving a read that should update it from its page cache, see
//! `memory/io.rs`); the disk medium lets the backing filesystem do it, through a mount
//! whose options follow the volume's (`backing/mount.rs`).

use super::FileKind;
use std::time::{SystemTime, UNIX_EPOCH};

/// A day: `relatime` updates an atime at least this old.
const DAY_SECS: i64 = 24 * 60 * 60;

/// How reads update access times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Never: `noatime`, a read-only mount, or a directory under `nodiratime`.
    Never,
    /// When the atime is not after the mtime or the ctime, or is a day old: `relatime`,
    /// a new mount's default.
    Relative,
    /// On every read: `strictatime`.
    Always,
}

/// The options of the volume's mount that decide access times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub files: Rule,
    pub dirs: Rule,
}

impl Options {
    /// A new mount's (`relatime`), and what the daemon applies while it cannot read its
    /// mount's.
    pub const DEFAULT: Options = Options {
        files: Rule::Relative,
        dirs: Rule::Relative,
    };
    /// No access time changes (`noatime`).
    pub const NEVER: Options = Options {
        files: Rule::Never,
        dirs: Rule::Never,
    };

    /// The rule for an inode of `kind`.
    pub fn rule(self, kind: FileKind) -> Rule {
        if kind == FileKind::Directory {
            self.dirs
        } else {
            self.files
        }
    }

    /// The options in four bits (for an atomic).
    pub fn bits(self) -> u8 {
        let r = |rule| match rule {
            Rule::Never => 0,
            Rule::Relative => 1,
            Rule::Always => 2,
        };
        r(self.files) | r(self.dirs) << 2
    }

    /// The inverse of [`Options::bits`].
    pub fn from_bits(bits: u8) -> Options {
        let r = |b| match b & 3 {
            0 => Rule::Never,
            2 => Rule::Always,
            _ => Rule::Relative,
        };
        Options {
            files: r(bits),
            dirs: r(bits >> 2),
        }
    }
}

/// Whole seconds since the epoch, rounded down (as the kernel's `tv_sec`).
fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => {
            let d = e.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// Whether a read at `now` updates an access time of `atime`, under `rule`, on an inode
/// last modified at `mtime` and changed at `ctime`.
pub fn due(
    rule: Rule,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    now: SystemTime,
) -> bool {
    match rule {
        Rule::Never => false,
        Rule::Always => true,
        Rule::Relative => mtime >= atime || ctime >= atime || secs(now) - secs(atime) >= DAY_SECS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn relatime_as_the_kernel_decides_it() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s);
        let now = t(100_000);
        let due = |a, m, c| due(Rule::Relative, a, m, c, now);
        assert!(due(t(10), t(10), t(5)), "atime not after mtime");
        assert!(due(t(10), t(5), t(10)), "atime not after ctime");
        assert!(!due(t(20_000), t(10), t(10)), "read since the last change");
        assert!(due(t(100_000 - 86_400), t(10), t(10)), "a day old");
        assert!(!due(t(100_000 - 86_399), t(10), t(10)), "not quite a day");
        let before_1970 = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(secs(before_1970), -2);
        assert!(due(before_1970, before_1970, before_1970));
        assert!(!super::due(Rule::Never, t(1), t(2), t(2), now));
        assert!(super::due(Rule::Always, t(99_999), t(1), t(1), now));
    }

    #[test]
    fn options_fit_in_four_bits() {
        for files in [Rule::Never, Rule::Relative, Rule::Always] {
            for dirs in [Rule::Never, Rule::Relative, Rule::Always] {
                let o = Options { files, dirs };
                assert!(o.bits() < 16);
                assert_eq!(Options::from_bits(o.bits()), o);
            }
        }
    }
}
