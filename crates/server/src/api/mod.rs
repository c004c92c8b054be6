//! The JSON APIs that are not OAuth: the consent API for applications and the
//! AuthZEN policy decision point. (The admin API and SCIM will live here too.)

pub(crate) mod authzen;
pub(crate) mod consent;
pub(crate) mod problem;
