//! Who may call and what they may see: function keys (standalone), caller identity, the one
//! authorization module, the auth middleware and abuse limits.

pub mod access;
pub mod bearer;
pub mod guard;
pub mod identity;
pub mod keys;
pub mod rate_limit;
