//! Listing 5,000 labelled services from the in-repo Rancher double through the real
//! `RancherSource` (pages of 1,000, as rancon asks). Prints wall time per full listing.
//!
//!     cargo bench --bench rancher_list

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use rancon::build::Config;
use rancon::source::Source;
use rancon::source::rancher::RancherSource;
use rancon::source::rancher::RancherSourceConfig;
use std::time::Instant;
use support::rancher::{Project, Rancher, service};

const SERVICES: usize = 5_000;
const ROUNDS: usize = 20;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let project = Project {
            id: "1a5".into(),
            name: "bench".into(),
            stacks: (0..50).map(|i| (format!("1st{i}"), format!("stack{i}"))).collect(),
            services: (0..SERVICES)
                .map(|i| {
                    let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                    service(&format!("1s{i}"), &format!("svc{i}"), &format!("1st{}", i % 50), &[("rancon.name", "%NAME%-%STACK%")], &[(ip.as_str(), 8080)])
                })
                .collect(),
            containers: vec![],
        };
        let double = Rancher::start(vec![project], None).await;
        let cfg: RancherSourceConfig = toml::from_str(&format!("url = {:?}", double.url("/v2-beta/projects/1a5"))).unwrap();
        let src = RancherSource::new("bench", &cfg, &Config::default().common()).unwrap();
        let (eps, _) = src.fetch().await.unwrap(); // warm-up, and a sanity check
        assert_eq!(eps.len(), SERVICES);
        let before = double.requests();
        let mut times = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let (eps, _) = src.fetch().await.unwrap();
            times.push(t.elapsed());
            assert_eq!(eps.len(), SERVICES);
        }
        times.sort();
        let reqs = (double.requests() - before) / ROUNDS;
        println!(
            "rancher_list: {SERVICES} services, {reqs} requests per listing, median {:.1} ms, min {:.1} ms, max {:.1} ms over {ROUNDS} listings",
            times[ROUNDS / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[ROUNDS - 1].as_secs_f64() * 1e3
        );
    });
}
