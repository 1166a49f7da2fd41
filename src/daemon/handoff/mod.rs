//! Handing a live volume from its daemon (the predecessor) to a new `emptydirfs serve`
//! process (the successor), so an upgrade or a restart costs the pod nothing: no request
//! fails, the data stays (a memory volume's memfd is shared, not copied), and every
//! descriptor the pod holds keeps working.
//!
//! The kernel keeps a FUSE connection while any process holds a `/dev/fuse` descriptor
//! of it, and queues requests while nobody reads them. So, over the daemon's control
//! socket (`wire.rs`, mode 0600, root only):
//!
//! ```text
//! successor                         predecessor
//! HELLO (format it reads)    ---->  checks the asker is root and the format;
//!                                   stops taking requests: every thread answers what
//!                                   it read and parks (fuse/gate.rs); writes its state
//!                                   (format.rs) into a sealed memfd
//!                            <----  OFFER: /dev/fuse, the control socket, the state;
//!                                   FDS: the backend's descriptors, 250 a message
//! checks and rebuilds the state,
//! replays INIT (fuse/handshake.rs)
//! READY                      ---->
//!                            <----  GO: from here the connection is the successor's
//! serves; SERVING            ---->  exits, its threads still parked
//! ```
//!
//! Before GO, anything that goes wrong on either side (a refusal, a state the successor
//! cannot read, the successor dying: end of file on the socket) ends with the
//! predecessor resuming: its parked threads read on, the queued requests are served, and
//! none has failed. After GO the predecessor waits for SERVING; end of file instead
//! means the successor died (it holds the socket until it serves), and the predecessor
//! resumes then too.
//!
//! # Layout
//! - [`server`]: the predecessor's side (and `STATUS` answers);
//! - [`client`]: the successor's side.
//!
//! The state itself is written with `daemon/state` (a leaf below `fuse/` and the media);
//! the socket and its message kinds are `common/wire` and `common/control`.

pub mod client;
pub mod server;

use crate::daemon::state::{Reader, Refused, Writer};

/// What every daemon's state starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    pub medium: String,
    pub mountpoint: String,
    /// Hand-offs this volume went through before this one.
    pub handoffs: u64,
    pub init: crate::daemon::fuse::InitExchange,
}

impl Common {
    pub fn write(&self, w: &mut Writer) {
        w.str(&self.medium);
        w.str(&self.mountpoint);
        w.u64(self.handoffs);
        w.bytes(&self.init.request);
        w.bytes(&self.init.reply);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Common, Refused> {
        Ok(Common {
            medium: r.str()?.to_string(),
            mountpoint: r.str()?.to_string(),
            handoffs: r.u64()?,
            init: crate::daemon::fuse::InitExchange {
                request: r.bytes()?.to_vec(),
                reply: r.bytes()?.to_vec(),
            },
        })
    }
}
