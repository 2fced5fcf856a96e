//! The parsers of outside data (CSRs, certificates, keys) on mutated and
//! truncated inputs: a typed error, never a panic. A stable-toolchain
//! companion to the `csr_parse` fuzz target.

use idmint_pki::{CaBuilder, CertificateInfo, Csr, DeviceKey, KeyType, Profile, SubjectValues};

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn mutate(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.next() % 4 {
        0 => v.truncate((rng.next() as usize) % (v.len() + 1)),
        1 => {
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % v.len();
                v[i] ^= 1 << (rng.next() % 8);
            }
        }
        2 => {
            let i = (rng.next() as usize) % v.len();
            v.insert(i, rng.next() as u8);
        }
        _ => {
            let i = (rng.next() as usize) % v.len();
            v[i] = 0xff;
            v.truncate(v.len().saturating_sub((rng.next() % 3) as usize));
        }
    }
    v
}

#[test]
fn mutated_csrs_and_certificates_never_panic() {
    let key = DeviceKey::generate(KeyType::P256).unwrap();
    let pair = rcgen::KeyPair::try_from(key.pkcs8_der().as_slice()).unwrap();
    let csr = rcgen::CertificateParams::new(vec!["dev".to_string()])
        .unwrap()
        .serialize_request(&pair)
        .unwrap()
        .der()
        .to_vec();
    let ca = CaBuilder::root("Root", KeyType::P256).build().unwrap();
    let cert = ca
        .issue_for_key(&key, &Profile::device(), &SubjectValues::for_thing("dev"))
        .unwrap()
        .der;
    assert!(Csr::from_der(&csr).is_ok());
    let mut rng = XorShift(0x1d3a_7000_2026);
    let mut rejected = 0;
    for _ in 0..20_000 {
        let bad_csr = mutate(&csr, &mut rng);
        if Csr::from_der(&bad_csr).is_err() {
            rejected += 1;
        }
        let _ = Csr::from_pem_or_der(&bad_csr);
        let _ = CertificateInfo::from_der(&mutate(&cert, &mut rng));
        let _ = DeviceKey::from_pkcs8_der(&mutate(&key.pkcs8_der(), &mut rng));
    }
    assert!(
        rejected > 15_000,
        "most mutations must be rejected, got {rejected}"
    );
}
