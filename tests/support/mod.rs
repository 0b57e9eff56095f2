//! In-repo test doubles of the servers rancon talks to.

pub mod rancher;
