//! Graceful degradation: store failures either go back to the caller ([`Strict`]) or are
//! logged, counted and turned into misses ([`Lenient`]).

use std::convert::Infallible;

use crate::error::Error;

/// Whether store failures are surfaced ([`Strict`]) or degraded to misses ([`Lenient`]).
pub(crate) trait Strictness {
    type Error;
    /// Whether failures go back to the caller (and so need no log line of their own).
    const SURFACES: bool;
    fn fail(err: Error) -> std::result::Result<(), Self::Error>;
}

pub(crate) enum Strict {}
pub(crate) enum Lenient {}

impl Strictness for Strict {
    type Error = Error;
    const SURFACES: bool = true;
    fn fail(err: Error) -> std::result::Result<(), Error> {
        Err(err)
    }
}

impl Strictness for Lenient {
    type Error = Infallible;
    const SURFACES: bool = false;
    fn fail(_: Error) -> std::result::Result<(), Infallible> {
        Ok(())
    }
}
