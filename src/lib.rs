//! emptydirfs: a FUSE filesystem that serves Kubernetes emptyDir volumes with hard size
//! and inode limits.
//!
//! # Layout
//! Two sides, kept apart by the compiler:
//! - [`daemon`]: what runs inside a volume's daemon (`serve`): the media, the FUSE
//!   adapter, hand-offs;
//! - [`control`]: what runs on the node's control side (`setup`, `teardown`, `status`,
//!   `upgrade`, `csi`): layouts, daemons started and stopped, health from outside;
//! - [`common`]: the few names both need: the filesystem type, a build's identity, the
//!   control socket and what is asked over it;
//! - leaves both use: [`mounts`] (the mount table, unmounting), [`fscontext`] (a
//!   filesystem mounted nowhere), [`quantity`] (Kubernetes
//!   quantities), [`error`] (failures and exit codes);
//! - [`cli`]: arguments; `main.rs` only dispatches.
//!
//! Every `unsafe` block says why it is sound in a `// SAFETY:` comment: clippy denies one
//! without (`scripts/test.sh` runs clippy with `-D warnings`).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
pub mod common;
pub mod control;
pub mod daemon;
pub mod error;
pub mod fscontext;
pub mod mounts;
pub mod quantity;
