//! The setup helper: `setup`, `teardown` and `status` of emptyDir volumes laid out where
//! kubelet lays them out (see `layout.rs`). What a volume is and how it runs (its daemon,
//! its mount, its health) is [`crate::control::volume`]'s, shared with the CSI plugin; this module
//! is only the layout and the three commands.
//!
//! # Layout
//! - [`layout`]: the paths of a volume and the checks on its names and kubelet root;
//! - [`lock`]: the pod lock and the no-symlink check of the layout;
//! - [`setup`], [`teardown`], [`status`]: the three commands; [`upgrade`]: a volume
//!   handed to a new daemon.

pub mod layout;
pub mod lock;
pub mod setup;
pub mod status;
pub mod teardown;
pub mod upgrade;
