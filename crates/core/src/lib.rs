//! Core types shared by every Gatehouse crate.
//!
//! This crate sits at the bottom of the dependency graph: it must never depend on a
//! database driver, an HTTP framework or any other Gatehouse crate.

pub mod clock;
pub mod config;
pub mod error;
pub mod events;
pub mod ids;
pub mod net;
pub mod outcomes;
pub mod secrets;
pub mod tenant_settings;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::Error;
