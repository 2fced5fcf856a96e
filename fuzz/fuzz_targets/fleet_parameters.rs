//! Fuzz what a device sends RegisterThing: the payload (JSON or CBOR, as the
//! AWS SDKs send it) is decoded, its `parameters` filtered as a device's
//! and rendered into each checked-in fleet template with a real claim
//! certificate's parameters. Any payload gives a provisioning or a
//! `Rejection`, never a panic; what renders names a valid thing.
#![no_main]

use std::sync::OnceLock;

use idmint_fleet::provision::{device_parameters, render_for_device};
use idmint_pki::CertificateInfo;
use idmint_server::mqtt::payload::{decode, RegisterRequest};
use idmint_server::mqtt::topics::Format;
use idmint_template::{valid_thing_name, Template};
use libfuzzer_sys::fuzz_target;

const TEMPLATES: [&str; 3] = [
    include_str!("../../tests/vectors/fleet/template-serial.json"),
    include_str!("../../tests/vectors/fleet/template-joined.json"),
    include_str!("../../tests/vectors/fleet/template-mapped.json"),
];
const DEVICE_CERT: &[u8] = include_bytes!("../../tests/vectors/fleet/device-cert.pem");

struct Fixture {
    templates: Vec<Template>,
    certificate: CertificateInfo,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        templates: TEMPLATES
            .iter()
            .map(|t| Template::parse(t).expect("a checked-in template parses"))
            .collect(),
        certificate: CertificateInfo::from_pem(DEVICE_CERT)
            .expect("a checked-in certificate parses")
            .0,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 {
        Format::Json
    } else {
        Format::Cbor
    };
    let Ok(request) = decode::<RegisterRequest>(format, payload) else {
        return;
    };
    let params = device_parameters(request.parameters.unwrap_or_default());
    assert!(params.keys().all(|k| !k.starts_with("AWS::")));
    let fixture = fixture();
    let template = &fixture.templates[usize::from(selector >> 1) % fixture.templates.len()];
    if let Ok((provisioning, thing)) =
        render_for_device(template, "FuzzTemplate", params, &fixture.certificate)
    {
        assert!(valid_thing_name(&thing));
        assert_eq!(provisioning.thing.map(|t| t.name), Some(thing));
    }
});
