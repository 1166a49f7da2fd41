//! Test-only fault injection (`EMPTYDIRFS_TEST_FAULT=<name>`): the tests kill a successor
//! at each step of a hand-off, or make a predecessor write a state to refuse. Never set
//! in production; a leaf any part of the daemon may ask.

use std::sync::OnceLock;

/// Whether fault `name` is asked for.
pub fn fault(name: &str) -> bool {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    FAULT
        .get_or_init(|| std::env::var("EMPTYDIRFS_TEST_FAULT").ok())
        .as_deref()
        == Some(name)
}

/// Dies at a step of a hand-off if the tests ask for it, as a kill there would.
pub fn die_at(step: &str) {
    if fault(&format!("kill-successor-{step}")) {
        log::warn!("test fault: killed at {step}");
        // SAFETY: raise has no memory effects; SIGKILL ends the process here.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
