//! Failures of a command, and the exit codes they map to.
//!
//! Exit codes: 0 success; 1 the command failed while acting (a mount or I/O error, a
//! daemon that would not start); 2 the input was refused before anything was done
//! (bad flag, bad quantity, bad path or name). A refused input changes nothing.

use std::fmt;

#[derive(Debug)]
pub enum Failure {
    /// Refused before acting (exit 2).
    Invalid(String),
    /// Failed while acting (exit 1).
    Failed(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Invalid(_) => 2,
            Failure::Failed(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Invalid(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}

pub fn invalid(msg: impl Into<String>) -> Failure {
    Failure::Invalid(msg.into())
}

pub fn failed(msg: impl Into<String>) -> Failure {
    Failure::Failed(msg.into())
}
