//! Integration tests: real FUSE mounts, as root, under temporary directories.
//!
//! Each case is a `fn(Medium)` that mounts what it needs; [`on_every_medium!`] runs it on
//! every backend, so a new backend is one line in that macro and runs every case.
//!
//! Every `unsafe` block says why it is sound in a `// SAFETY:` comment (clippy denies one
//! without).

#![deny(clippy::undocumented_unsafe_blocks)]

mod harness;

/// Generates, for each listed case, one `#[test]` per medium (`memory::case`, ...).
macro_rules! on_every_medium {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[test]
            fn $case() {
                super::$case(crate::harness::Medium::Memory);
            })*
        }
        mod disk {
            $(#[test]
            fn $case() {
                super::$case(crate::harness::Medium::Disk);
            })*
        }
    };
}

mod cli;
mod conformance;
mod csi;
mod disk;
mod durability;
mod escape;
mod faults;
mod full;
pub mod handoff;
mod hostile;
mod hugepages;
mod inprocess;
mod kernel;
mod killpriv;
mod kubelet;
mod limits;
mod load;
mod onecopy;
pub mod posix;
mod programs;
mod refusals;
mod setup;
mod shell;
mod wedged;
