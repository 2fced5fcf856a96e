//! Criterion benchmarks of the PKI hot paths: a new identity (key generation
//! and certificate), issuance from a CSR, and chain verification.

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use idmint_pki::{verify_chain, CaBuilder, Csr, DeviceKey, KeyType, Profile, SubjectValues};

fn pki(c: &mut Criterion) {
    let root = CaBuilder::root("Bench Root", KeyType::P256)
        .build()
        .expect("root");
    let issuing = CaBuilder::issuing("Bench Issuing", KeyType::P256, &root)
        .build()
        .expect("issuing");
    let profile = Profile::device();
    let values = SubjectValues::for_thing("bench-device").with("org", "Bench Co");

    let mut group = c.benchmark_group("pki");
    group.throughput(Throughput::Elements(1));
    group.bench_function("new_identity_p256", |b| {
        b.iter(|| {
            let key = DeviceKey::generate(KeyType::P256).expect("key");
            issuing
                .issue_for_key(&key, &profile, &values)
                .expect("issue")
        })
    });

    let device = DeviceKey::generate(KeyType::P256).expect("key");
    let csr_der = device_csr(&device);
    group.bench_function("issue_from_csr_p256", |b| {
        b.iter(|| {
            let csr = Csr::from_der(&csr_der).expect("csr");
            issuing
                .issue(csr.public_key(), &profile, &values)
                .expect("issue")
        })
    });

    let leaf = issuing
        .issue_for_key(&device, &profile, &values)
        .expect("leaf");
    group.bench_function("verify_chain_p256", |b| {
        b.iter(|| {
            verify_chain(
                &leaf.der,
                &[issuing.certificate_der()],
                &[root.certificate_der()],
            )
            .expect("verify")
        })
    });
    group.finish();
}

/// A PKCS#10 request for `key`, made with rcgen as a device would.
fn device_csr(key: &DeviceKey) -> Vec<u8> {
    let pair = rcgen::KeyPair::try_from(key.pkcs8_der().as_slice()).expect("key pair");
    let params = rcgen::CertificateParams::new(vec![]).expect("params");
    params.serialize_request(&pair).expect("csr").der().to_vec()
}

criterion_group!(benches, pki);
criterion_main!(benches);
