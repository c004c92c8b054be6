//! End-to-end tests of the `gatehouse` binary: each starts the real executable in its
//! own directory on a free port and speaks HTTP to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod startup;
mod support;
