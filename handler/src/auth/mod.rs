//! Who may call: function keys in standalone mode (the Functions host checks them itself).

pub mod keys;
