//! A disk volume handed to a successor: the node table, the open files and directories
//! with their descriptors (an open file's backing descriptor, and its `O_DIRECT` one,
//! go as they are, so a file unlinked while open stays reachable), the usage counters,
//! the limits and (format 3 on) the private backing mount. Nothing is walked again: the
//! counters are the predecessor's (but from a state before format 3, whose usage did not
//! count directories apart: their blocks are found by a walk).

use super::BackingMount;
use super::data::{OpenDir, OpenFile};
use super::nodes::Nodes;
use super::{DIRENT_BUF, DiskFs};
use crate::daemon::fs::usage::{Usage, UsageSnapshot};
use crate::daemon::fs::{BLOCK_SIZE, Backend, Transfer};
use crate::daemon::state::FdTable;
use crate::daemon::state::{Reader, Refused, Writer};
use dashmap::DashMap;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

impl Transfer for DiskFs {
    fn export(&self, w: &mut Writer, fds: &mut Vec<RawFd>) -> std::io::Result<()> {
        w.u64(self.dev);
        w.bool(self.size_limited);
        w.bool(self.inodes_limited);
        self.usage.snapshot().write(w);
        self.nodes.write_state(w, fds);
        w.u64(self.next_fh.load(Relaxed));
        let files: Vec<(u64, Arc<OpenFile>)> = self
            .files
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        w.u64(files.len() as u64);
        for (fh, f) in files {
            w.u64(fh);
            w.u64(f.node.ino);
            w.u64(FdTable::push(fds, f.fd.as_raw_fd()));
            match &f.direct {
                Some(d) => {
                    w.bool(true);
                    w.u64(FdTable::push(fds, d.as_raw_fd()));
                }
                None => w.bool(false),
            }
        }
        let dirs: Vec<(u64, Arc<OpenDir>)> = self
            .dirs
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        w.u64(dirs.len() as u64);
        for (fh, d) in dirs {
            w.u64(fh);
            w.u64(FdTable::push(fds, d.fd.as_raw_fd()));
        }
        if w.version() >= 3 {
            self.backing.write_state(w, fds);
        }
        Ok(())
    }

    fn import(r: &mut Reader<'_>, fds: &mut FdTable) -> Result<DiskFs, Refused> {
        let dev = r.u64()?;
        let (size_limited, inodes_limited) = (r.bool()?, r.bool()?);
        let mut usage = UsageSnapshot::read(r)?;
        let mut nodes = Nodes::read_state(r, fds)?;
        if usage.metadata.is_none() {
            // An older build counted directories' blocks as data: count them apart (a
            // walk, once, while no request runs).
            let tally = super::scan(nodes.root_fd(), dev)
                .map_err(|e| format!("counting the directories' blocks: {e}"))?;
            log::info!(
                "state from before format 3: {} blocks of directories counted apart",
                tally.metadata_blocks
            );
            usage.split_metadata(tally.metadata_blocks);
        }
        let usage = Usage::from_snapshot(usage);
        let next_fh = r.u64()?;
        let files = DashMap::new();
        let mut opens: HashMap<u64, u32> = HashMap::new();
        for _ in 0..r.count(25)? {
            let fh = r.u64()?;
            let node = nodes
                .get(r.u64()?)
                .map_err(|_| format!("open file {fh} of no node"))?;
            let fd = Arc::new(fds.take(r.u64()?)?);
            let direct = if r.bool()? {
                Some(fds.take(r.u64()?)?)
            } else {
                None
            };
            if fh >= next_fh {
                return Err(format!(
                    "open file {fh} at or past the next handle {next_fh}"
                ));
            }
            node.pin(&fd);
            *opens.entry(node.ino).or_default() += 1;
            files.insert(fh, Arc::new(OpenFile { fd, node, direct }));
        }
        for n in nodes.all() {
            let want = opens.get(&n.ino).copied().unwrap_or(0);
            if n.state().opens != want {
                return Err(format!(
                    "node {} counts {} opens, {want} files are open",
                    n.ino,
                    n.state().opens
                ));
            }
        }
        let dirs = DashMap::new();
        for _ in 0..r.count(16)? {
            let fh = r.u64()?;
            let fd = fds.take(r.u64()?)?;
            dirs.insert(
                fh,
                Arc::new(OpenDir {
                    fd,
                    buf: vec![0; DIRENT_BUF].into(),
                }),
            );
        }
        let backing = if r.version() >= 3 {
            BackingMount::read_state(r, fds)?
        } else {
            // The predecessor opened files through the node's mount: clone it now.
            match BackingMount::clone_of(nodes.root_fd()) {
                Ok((m, root)) => {
                    nodes.set_root(root);
                    m
                }
                Err(e) => {
                    log::warn!(
                        "no private backing mount ({e}): access times follow the node's mount"
                    );
                    BackingMount::none()
                }
            }
        };
        let fs = DiskFs {
            nodes,
            dev,
            files,
            dirs,
            next_fh: AtomicU64::new(next_fh),
            usage,
            size_limited,
            inodes_limited,
            node_free: AtomicU64::new(u64::MAX / BLOCK_SIZE),
            node_free_inodes: AtomicU64::new(u64::MAX / 2),
            mount: Default::default(), // told where the volume is when it serves
            backing,
        };
        fs.statfs(); // the node's free space, measured before anyone asks
        Ok(fs)
    }
}
