//! In-repo test doubles of the servers rancon talks to.

pub mod bench;
pub mod consul;
pub mod consul_setup;
pub mod docker;
pub mod etcd;
pub mod pki;
pub mod process;
pub mod rancher;
pub mod rancher_events;
pub mod raw;
