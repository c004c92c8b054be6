//! The JSON APIs that are not OAuth: the consent API for applications, the AuthZEN
//! policy decision point and the admin API. (SCIM will live here too.)

pub(crate) mod admin;
pub(crate) mod authzen;
pub(crate) mod consent;
pub(crate) mod problem;
