//! Criterion benches of the pure hot paths: templates, labels, plan().

use criterion::{Criterion, criterion_group, criterion_main};
use rancon::model::{Registration, RegistrationMap};
use rancon::template::{Props, Template};
use std::collections::BTreeMap;
use std::hint::black_box;

fn regs(n: usize, churn_every: usize) -> RegistrationMap {
    (0..n)
        .map(|i| {
            let port = if churn_every > 0 && i % churn_every == 0 {
                9999
            } else {
                8080
            };
            let r = Registration {
                id: format!("svc-{i}"),
                name: format!("svc-{}", i / 4),
                address: format!("10.0.{}.{}", i / 250, i % 250),
                port,
                tags: ["rancon-default".to_string()].into(),
                meta: [("rancon-owner".to_string(), "default".to_string())]
                    .into_iter()
                    .collect(),
                private: Default::default(),
                health: None,
            };
            (r.id.clone(), r)
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let t = Template::parse("%NAME%-%STACK%.%ENVIRONMENT%").unwrap();
    let props: Props = [("name", "web"), ("stack", "shop"), ("environment", "prod")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    c.bench_function("template_render", |b| {
        b.iter(|| t.render(black_box(&props)).unwrap())
    });

    // What a round runs per endpoint: label selection, then every label value rendered as a
    // template against the service's properties, then the name template.
    let labels: BTreeMap<String, String> = (0..18)
        .map(|i| (format!("io.rancher.label{i}"), "x".into()))
        .chain([
            ("rancon.name".into(), "%NAME%-%STACK%".into()),
            ("rancon.tags".into(), "web,%STACK%".into()),
            ("rancon.meta.team".into(), "%ENVIRONMENT%".into()),
            ("rancon.check.http".into(), "/health".into()),
        ])
        .collect();
    let common = rancon::config::Config::<(), ()>::default().common();
    let naming = rancon::source::Naming::new(&common, None, None).unwrap();
    let base: Props = [
        ("name", "web"),
        ("stack", "shop"),
        ("environment", "prod"),
        ("host", "10.0.0.1"),
        ("port", "8080"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    c.bench_function("endpoint_22_labels_4_templated", |b| {
        b.iter(|| {
            naming
                .endpoint(
                    "rancher",
                    black_box(base.clone()),
                    black_box(&labels),
                    false,
                )
                .unwrap()
        })
    });

    let actual = regs(10_000, 0);
    let desired = regs(10_000, 100);
    c.bench_function("plan_10k_1pct_churn", |b| {
        b.iter(|| rancon::plan::plan(black_box(&desired), black_box(&actual)))
    });
    // What the round engine runs: the desired map moved in (its copy made outside the timing).
    c.bench_function("plan_owned_10k_1pct_churn", |b| {
        b.iter_batched(
            || desired.clone(),
            |d| rancon::plan::plan_owned(d, black_box(&actual)),
            criterion::BatchSize::LargeInput,
        )
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);
