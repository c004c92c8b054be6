//! The JSON APIs that are not OAuth: the consent API for applications, the AuthZEN
//! policy decision point, the admin API and SCIM.

pub(crate) mod admin;
pub(crate) mod authzen;
pub(crate) mod consent;
pub(crate) mod operator;
pub(crate) mod problem;
pub(crate) mod scim;
