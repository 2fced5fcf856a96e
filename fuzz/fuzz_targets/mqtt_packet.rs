//! Fuzz what an MQTT client can send the fleet provisioning endpoint: any
//! bytes must read as packets or a typed error (first as a CONNECT, then as
//! 3.1.1 and 5 traffic), and any payload must decode into a request or a
//! rejection, in JSON and CBOR, never a panic.
#![no_main]

use bytes::BytesMut;
use idmint_server::mqtt::codec::{read, read_connect, Version};
use idmint_server::mqtt::payload::{decode, CreateRequest, CsrRequest, RegisterRequest};
use idmint_server::mqtt::topics::{claim_may_subscribe, matches, FleetTopic, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok((version, _)) = read_connect(&mut buf, 1 << 16) {
        while read(version, &mut buf, 1 << 16).is_ok() {}
    }
    for version in [Version::V4, Version::V5] {
        let mut buf = BytesMut::from(data);
        while read(version, &mut buf, 1 << 16).is_ok() {}
    }
    for format in [Format::Json, Format::Cbor] {
        let _ = decode::<CreateRequest>(format, data);
        let _ = decode::<CsrRequest>(format, data);
        let _ = decode::<RegisterRequest>(format, data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = FleetTopic::parse(text);
        let _ = claim_may_subscribe(text, &["T".to_string()]);
        if let Some((topic, filter)) = text.split_once('\n') {
            let _ = matches(topic, filter);
        }
    }
});
