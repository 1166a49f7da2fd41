//! Telling the kernel that what it caches of an inode changed behind its back.
//!
//! The kernel keeps an inode's attributes for the TTL of the reply that gave them, and
//! updates them itself after each change it asks for, except where the daemon changes more
//! than the kernel knows. One case: a write by a caller without `CAP_FSETID` to a file
//! served `FOPEN_DIRECT_IO` (a disk volume's files opened for writing) carries only the
//! kill flag (`FUSE_HANDLE_KILLPRIV_V2`); the daemon clears the setid bits, and after the
//! write the kernel drops its cached size and times but not the mode, so `stat` would show
//! the bits until the TTL ran out. (Through the page cache, the kernel sends an empty
//! SETATTR first, whose answer carries the cleared mode.)
//!
//! So the adapter sends `FUSE_NOTIFY_INVAL_INODE` with a negative offset (attributes
//! only, no page is touched) before it answers such a request: the caller's next `stat`
//! asks again. The kernel handles a notification within the `write(2)` to `/dev/fuse`,
//! looking the inode up by node id under spinlocks; it waits for no request and no page
//! lock (only a page invalidation, offset >= 0, could wait on a read this daemon serves),
//! so a request thread may send one before it answers. An inode the kernel does not
//! cache gets ENOENT, which is no error here.

use crate::daemon::fs::Ino;
use std::sync::OnceLock;

/// The connection's notification channel, set once the session serves the real
/// connection (before any request is read).
#[derive(Default)]
pub struct Notifier(OnceLock<fuser::Notifier>);

impl Notifier {
    /// Notifications go to `session`'s connection from now on.
    pub fn set(&self, notifier: fuser::Notifier) {
        let _ = self.0.set(notifier);
    }

    /// The kernel must ask for `ino`'s attributes again (its pages stay).
    pub fn attributes_changed(&self, ino: Ino) {
        let Some(n) = self.0.get() else { return };
        if let Err(e) = n.inval_inode(fuser::INodeNo(ino), -1, 0) {
            log::warn!("cannot tell the kernel that inode {ino} changed: {e}");
        }
    }
}
