//! The successor's side of a hand-off.

use crate::common::control::{kind, refused};
use crate::common::wire;
use crate::daemon::fault::die_at;
use crate::daemon::state::{FORMAT_VERSION, FdTable, OLDEST_FORMAT};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// How long a successor waits for its predecessor to offer (it first lets its requests
/// finish, then writes its state).
const OFFER_LIMIT: Duration = Duration::from_secs(60);
/// How long a successor waits to be let in (a stopped predecessor never accepts).
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// What the predecessor sent.
pub struct Offer {
    /// The socket to the predecessor: held until this daemon serves.
    pub conn: OwnedFd,
    pub device: OwnedFd,
    pub listener: OwnedFd,
    pub state: Vec<u8>,
    pub fds: FdTable,
}

/// Asks the daemon behind `control` for its volume.
pub fn ask(control: &Path) -> Result<Offer, String> {
    let conn =
        wire::connect(control, CONNECT_LIMIT).map_err(|e| format!("{}: {e}", control.display()))?;
    // Every format this build reads, oldest first: a predecessor from before format 2
    // looks only at the first `format=` line.
    let formats: String = (OLDEST_FORMAT..=FORMAT_VERSION)
        .map(|v| format!("format={v}\n"))
        .collect();
    let hello = format!(
        "{formats}build={}\npid={}\n",
        crate::common::build(),
        std::process::id()
    );
    wire::send(conn.as_fd(), kind::HELLO, hello.as_bytes(), &[]).map_err(|e| e.to_string())?;
    die_at("after-hello");
    let m =
        wire::recv(conn.as_fd(), OFFER_LIMIT).map_err(|e| format!("waiting for the offer: {e}"))?;
    if m.kind != kind::OFFER {
        return Err(refused(&m));
    }
    let text = String::from_utf8_lossy(&m.payload).into_owned();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| format!("the offer has no {k}"))
    };
    let (count, bytes) = (field("fds=")?, field("bytes=")?);
    let mut head = m.fds.into_iter();
    let (Some(device), Some(listener), Some(memfd), None) =
        (head.next(), head.next(), head.next(), head.next())
    else {
        return Err("the offer does not carry /dev/fuse, the control socket and the state".into());
    };
    let mut fds = Vec::with_capacity(count);
    while fds.len() < count {
        let m = wire::recv(conn.as_fd(), OFFER_LIMIT)
            .map_err(|e| format!("waiting for descriptors: {e}"))?;
        if m.kind != kind::FDS || m.fds.is_empty() {
            return Err(format!("expected descriptors, got {:?}", m.kind as char));
        }
        fds.extend(m.fds);
    }
    if fds.len() != count {
        return Err(format!(
            "{} descriptors arrived, {count} were offered",
            fds.len()
        ));
    }
    let state = read_all(&memfd, bytes)?;
    die_at("after-offer");
    Ok(Offer {
        conn,
        device,
        listener,
        state,
        fds: FdTable::new(fds),
    })
}

fn read_all(memfd: &OwnedFd, bytes: usize) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::from(memfd.try_clone().map_err(|e| e.to_string())?);
    let len = file.metadata().map_err(|e| e.to_string())?.len() as usize;
    if len != bytes {
        return Err(format!("the state is {len} bytes, {bytes} were offered"));
    }
    let mut state = vec![0u8; len];
    file.read_exact_at(&mut state, 0)
        .map_err(|e| format!("reading the state: {e}"))?;
    Ok(state)
}

impl Offer {
    /// Says this daemon is ready and waits for the connection to be given: after `Ok`
    /// the volume is this daemon's to serve.
    pub fn ready(&self) -> Result<(), String> {
        wire::send(self.conn.as_fd(), kind::READY, b"", &[]).map_err(|e| e.to_string())?;
        die_at("after-ready");
        let m = wire::recv(self.conn.as_fd(), OFFER_LIMIT)
            .map_err(|e| format!("waiting for GO: {e}"))?;
        if m.kind != kind::GO {
            return Err(refused(&m));
        }
        die_at("after-go");
        Ok(())
    }

    /// Tells the predecessor this daemon serves: it exits.
    pub fn serving(self) {
        let _ = wire::send(self.conn.as_fd(), kind::SERVING, b"", &[]);
    }

    /// Tells the predecessor why this daemon will not take the volume (it then serves on).
    pub fn refuse(self, why: &str) {
        let _ = wire::send(self.conn.as_fd(), kind::REFUSED, why.as_bytes(), &[]);
    }
}
