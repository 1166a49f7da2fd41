//! The answer of a failed CSI call: a gRPC code and a message for people. Kept apart
//! from tonic's `Status` so that the node logic does not know the transport.
//!
//! Kubelet treats `ABORTED`, `UNAVAILABLE` and `RESOURCE_EXHAUSTED` as not final (the
//! volume stays "uncertain" and the call is repeated); every other code is final.

use crate::error::Failure;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    Ok,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Aborted,
    ResourceExhausted,
    Unimplemented,
    Internal,
    Unavailable,
}

impl Code {
    /// As gRPC names it (the label of the failure counters).
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsiError {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for CsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

pub type CsiResult<T> = Result<T, CsiError>;

pub fn err(code: Code, message: impl Into<String>) -> CsiError {
    CsiError {
        code,
        message: message.into(),
    }
}

pub fn invalid_argument(message: impl Into<String>) -> CsiError {
    err(Code::InvalidArgument, message)
}

/// A failure of the shared volume code: refused input is `INVALID_ARGUMENT`, a failure
/// while acting `INTERNAL`.
impl From<Failure> for CsiError {
    fn from(f: Failure) -> CsiError {
        match f {
            Failure::Invalid(m) => err(Code::InvalidArgument, m),
            Failure::Failed(m) => err(Code::Internal, m),
        }
    }
}
