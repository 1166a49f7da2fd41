//! A disk volume's node table written out for a hand-off and read back by the successor
//! (see `disk/handoff.rs`).

use super::*;

/// For a hand-off: the table (numbers, generations, file handles, lookup counts, charges,
/// open and unlinked state), the forgotten nodes and the backing directory's descriptor;
/// the descriptor cache is not handed on (the successor opens from the handles as it
/// needs). Generations and forgotten nodes are in states from format 3 on; nodes from an
/// older state have generation 0, what their daemon told the kernel.
impl Nodes {
    pub fn write_state(&self, w: &mut Writer, fds: &mut Vec<RawFd>) {
        w.u64(FdTable::push(fds, self.root_fd.as_raw_fd()));
        w.u64(self.root_backing_ino);
        w.u64(self.next_synthetic.load(Relaxed));
        let nodes: Vec<Arc<Node>> = self.map.iter().map(|e| e.value().clone()).collect();
        w.u64(nodes.len() as u64);
        for n in nodes {
            w.u64(n.ino);
            w.u64(n.backing_ino);
            w.u32(n.kind.mode_bits());
            n.handle.write_state(w);
            if w.version() >= 3 {
                w.u32(n.generation);
            }
            w.u64(n.lookups.load(Relaxed));
            w.bool(n.unlinked.load(Relaxed));
            let s = n.state();
            w.u64(s.charged);
            w.u32(s.opens);
            w.bool(s.orphan);
        }
        let synthetic: Vec<((u64, Handle), Ino)> = self
            .synthetic
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        w.u64(synthetic.len() as u64);
        for ((st_ino, handle), ino) in synthetic {
            w.u64(st_ino);
            handle.write_state(w);
            w.u64(ino);
        }
        if w.version() >= 3 {
            self.forgotten.write_state(w);
        }
    }

    pub fn read_state(
        r: &mut Reader<'_>,
        fds: &mut FdTable,
    ) -> std::result::Result<Nodes, Refused> {
        let root_fd = fds.take(r.u64()?)?;
        let root_backing_ino = r.u64()?;
        let next_synthetic = r.u64()?;
        let mut nodes = Nodes {
            map: DashMap::new(),
            synthetic: DashMap::new(),
            next_synthetic: AtomicU64::new(next_synthetic),
            forgotten: Forgotten::default(),
            generations: generations(),
            dir_fds: FdCache::new(fd_cache_cap() / 2),
            file_fds: FdCache::new(fd_cache_cap() / 2),
            root_fd: Arc::new(root_fd),
            root_backing_ino,
        };
        for _ in 0..r.count(40)? {
            let ino = r.u64()?;
            let backing_ino = r.u64()?;
            let kind =
                FileKind::from_mode(r.u32()?).ok_or_else(|| format!("node {ino} of no kind"))?;
            let handle = Handle::read_state(r)?;
            let generation = if r.version() >= 3 { r.u32()? } else { 0 };
            let node = Node {
                ino,
                generation,
                backing_ino,
                kind,
                handle,
                lookups: AtomicU64::new(r.u64()?),
                unlinked: AtomicBool::new(r.bool()?),
                pinned: Mutex::new(None),
                caps: Default::default(),
                state: Mutex::new(NodeState {
                    charged: r.u64()?,
                    opens: r.u32()?,
                    orphan: r.bool()?,
                    hole_free: false, // set again by the io modes' import
                }),
            };
            if nodes.map.insert(ino, Arc::new(node)).is_some() {
                return Err(format!("node {ino} twice"));
            }
        }
        for _ in 0..r.count(16)? {
            let st_ino = r.u64()?;
            let handle = Handle::read_state(r)?;
            let ino = r.u64()?;
            if !nodes.map.contains_key(&ino) {
                return Err(format!("synthetic number {ino} of no node"));
            }
            nodes.synthetic.insert((st_ino, handle), ino);
        }
        if r.version() >= 3 {
            nodes.forgotten = Forgotten::read_state(r)?;
        }
        match nodes.map.get(&ROOT_INO) {
            Some(root) if root.kind == FileKind::Directory => {}
            _ => return Err("no root directory node".into()),
        }
        Ok(nodes)
    }

    /// Every node, for a hand-off's checks.
    pub fn all(&self) -> Vec<Arc<Node>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }
}
