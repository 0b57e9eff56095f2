//! In-repo test doubles of the servers rancon talks to.

pub mod consul;
pub mod etcd;
pub mod pki;
pub mod rancher;
