//! Listing 5,000 labelled services from the in-repo Rancher double through the real
//! `RancherSource` (pages as large as the server gives, as rancon asks). Prints wall time per
//! full listing, beside the double's own rate: the same pages fetched by a plain client that
//! only reads the bytes, so what is left is rancon's decoding and naming.
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
use support::bench::project;
use support::rancher::Rancher;

const SERVICES: usize = 5_000;
const ROUNDS: usize = 20;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let project = project(SERVICES, |_| "web");
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
        // The double alone: the same pages, read as bytes by a plain client, one after another.
        let client = rancon::http::client(std::time::Duration::from_secs(30), &Default::default()).unwrap();
        let mut raw = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let mut next = Some(double.url("/v2-beta/projects/1a5/services?limit=3000"));
            let mut pages = 0;
            while let Some(url) = next.take() {
                let body: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
                pages += 1;
                next = body["pagination"]["next"].as_str().map(str::to_string);
            }
            assert!(pages >= 2);
            raw.push(t.elapsed());
        }
        raw.sort();
        println!(
            "rancher_list: {SERVICES} services, {reqs} requests per listing, median {:.1} ms, min {:.1} ms, max {:.1} ms over {ROUNDS} listings",
            times[ROUNDS / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[ROUNDS - 1].as_secs_f64() * 1e3
        );
        println!(
            "rancher_list: the double alone (services pages, read and parsed by a plain client): median {:.1} ms, min {:.1} ms",
            raw[ROUNDS / 2].as_secs_f64() * 1e3,
            raw[0].as_secs_f64() * 1e3
        );
    });
}
