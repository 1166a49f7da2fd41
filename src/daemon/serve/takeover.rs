//! `serve --take-over CONTROL`: start by taking a live volume over from the daemon behind
//! its control socket (see [`crate::daemon::handoff`]), instead of mounting it.
//!
//! Until the predecessor says GO, any failure here (a state this build cannot read, a
//! refused INIT, another volume) tells it so, or just ends the connection: it then
//! serves on and this process exits 1.

use super::{Daemon, default_threads, signals};
use crate::common::serve_args::{Medium, ServeArgs};
use crate::daemon::disk::DiskFs;
use crate::daemon::fault::die_at;
use crate::daemon::fs::BLOCK_SIZE;
use crate::daemon::fs::Transfer;
use crate::daemon::fs::usage::Usage;
use crate::daemon::fuse::{self, Connection, IoModes};
use crate::daemon::handoff::Common;
use crate::daemon::handoff::client::{self, Offer};
use crate::daemon::memory::MemoryFs;
use crate::daemon::state::Reader;
use crate::error::{Failure, failed};
use std::path::Path;
use std::sync::Arc;

pub fn take_over(
    opts: &ServeArgs,
    control: &Path,
    signals: signals::Signals,
) -> Result<(), Failure> {
    // Resolved without entering the mount (the predecessor may be draining).
    let mountpoint = super::mountpoint::resolve(&opts.mountpoint)?;
    let mut offer = client::ask(control)
        .map_err(|e| failed(format!("hand-off from {}: {e}", control.display())))?;
    let state = std::mem::take(&mut offer.state);
    let mut r = match Reader::open(&state) {
        Ok(r) => r,
        Err(why) => return Err(refuse(offer, why)),
    };
    let common = match Common::read(&mut r) {
        Ok(c) => c,
        Err(why) => return Err(refuse(offer, why)),
    };
    let want = opts.medium.name();
    if common.medium != want || Path::new(&common.mountpoint) != mountpoint {
        let why = format!(
            "the offered volume is {} at {}, not {want} at {}",
            common.medium,
            common.mountpoint,
            mountpoint.display()
        );
        return Err(refuse(offer, why));
    }
    let threads = opts.threads.map_or_else(default_threads, usize::from);
    // The state's bytes are dropped once read: the daemon serves for long after.
    match opts.medium {
        Medium::Memory => {
            let (fs, io, offer) = import::<MemoryFs>(&mut r, offer, opts)?;
            drop(state);
            if let Err(e) = crate::daemon::memory::spawn_reclaimer(&fs) {
                return Err(refuse(offer, format!("starting the reclaimer: {e}")));
            }
            serve_taken(fs, io, offer, common, threads, opts, signals)
        }
        Medium::Disk => {
            let (fs, io, offer) = import::<DiskFs>(&mut r, offer, opts)?;
            drop(state);
            serve_taken(fs, io, offer, common, threads, opts, signals)
        }
    }
}

/// Tells the predecessor why not (it serves on) and returns the failure.
fn refuse(offer: Offer, why: String) -> Failure {
    offer.refuse(&why);
    failed(format!("refused the hand-off: {why}"))
}

/// The backend, and how its open files are served.
type Imported<B> = (Arc<B>, IoModes, Offer);

fn import<B: Transfer>(
    r: &mut Reader<'_>,
    mut offer: Offer,
    opts: &ServeArgs,
) -> Result<Imported<B>, Failure> {
    let imported = B::import(r, &mut offer.fds).and_then(|fs| {
        check_limits(fs.usage(), opts)?;
        let io = IoModes::import(r, &fs, &offer.device)?;
        r.done().map(|()| (fs, io))
    });
    die_at("after-import");
    match imported {
        Ok((fs, io)) => Ok((Arc::new(fs), io, offer)),
        Err(why) => Err(refuse(offer, why)),
    }
}

/// Limits on the command line must be the volume's: a hand-off never changes them (the
/// pod was promised those), and a successor that silently ignored them would lie.
fn check_limits(usage: &Usage, opts: &ServeArgs) -> Result<(), String> {
    if let Some(bytes) = opts.size_limit
        && bytes.div_ceil(BLOCK_SIZE) != usage.block_limit()
    {
        return Err(format!(
            "--size-limit {bytes} is not the volume's limit ({} bytes): a hand-off keeps the limits",
            usage.block_limit().saturating_mul(BLOCK_SIZE)
        ));
    }
    if let Some(inodes) = opts.inode_limit
        && inodes != usage.inode_limit()
    {
        return Err(format!(
            "--inode-limit {inodes} is not the volume's limit ({}): a hand-off keeps the limits",
            usage.inode_limit()
        ));
    }
    Ok(())
}

fn serve_taken<B: Transfer>(
    fs: Arc<B>,
    io: IoModes,
    offer: Offer,
    common: Common,
    threads: usize,
    opts: &ServeArgs,
    signals: signals::Signals,
) -> Result<(), Failure> {
    let device = match offer.device.try_clone() {
        Ok(d) => d,
        Err(e) => return Err(refuse(offer, format!("the connection's descriptor: {e}"))),
    };
    let connection = Connection {
        device,
        init: common.init.clone(),
    };
    let mounted = match fuse::take_over(fs.clone(), connection, io, threads) {
        Ok(m) => m,
        Err(e) => return Err(refuse(offer, e.to_string())),
    };
    offer.ready().map_err(|e| {
        failed(format!(
            "the predecessor did not give the volume: {e}; it serves on"
        ))
    })?;
    let listener = match offer.listener.try_clone() {
        Ok(l) => l,
        Err(e) => return Err(failed(format!("the control socket: {e}"))),
    };
    let d = Daemon {
        mountpoint: std::path::PathBuf::from(&common.mountpoint),
        threads,
        limits: super::describe(fs.usage()),
        ready_fd: opts.ready_fd,
        listener: Some(listener),
        handoffs: common.handoffs + 1,
    };
    d.run(fs, mounted, signals, move || offer.serving())
}
