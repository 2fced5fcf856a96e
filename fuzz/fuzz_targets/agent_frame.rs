//! Fuzz the device side of the agent protocol: arbitrary bytes from a
//! station go through `FrameDecoder` and `Agent` (streaming and one-frame
//! entry points); nothing may panic and every response must be a frame.
#![no_main]

use idmint_agent::device::{Device, Proof};
use idmint_agent::frame::{decode_frame, decode_message, FrameDecoder};
use idmint_agent::{
    Agent, CertificateChain, DeviceError, HelloInfo, KeyType, Response, SecretBytes,
};
use libfuzzer_sys::fuzz_target;

struct Stub;

impl Device for Stub {
    fn hello(&mut self) -> Result<HelloInfo, DeviceError> {
        Ok(HelloInfo {
            protocol: 1,
            hw_id: "fuzz".into(),
            firmware: "0".into(),
            capabilities: vec![],
            locked: false,
        })
    }
    fn keygen(&mut self, _: KeyType) -> Result<Vec<u8>, DeviceError> {
        Ok(vec![0x30, 0x00])
    }
    fn install(&mut self, chain: &CertificateChain) -> Result<(), DeviceError> {
        chain
            .leaf()
            .map(|_| ())
            .ok_or_else(DeviceError::no_certificate)
    }
    fn inject(&mut self, _: &SecretBytes, _: &CertificateChain) -> Result<(), DeviceError> {
        Err(DeviceError::unsupported("fuzz"))
    }
    fn prove(&mut self, message: &[u8]) -> Result<Proof, DeviceError> {
        Ok(Proof {
            key_type: KeyType::P256,
            signature: message.to_vec(),
        })
    }
    fn lock(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut agent = Agent::new(Stub);
    for out in agent.receive(data) {
        assert_eq!(out.last(), Some(&0));
        let payload = decode_frame(&out[..out.len() - 1]).expect("agent frames are valid");
        let _: Response = decode_message(&payload).expect("agent responses decode");
    }
    let _ = agent.handle(data);
    let _ = agent.handle_payload(data);
    let mut decoder = FrameDecoder::new();
    for frame in decoder.feed(data) {
        if let Ok(payload) = frame {
            let _ = decode_message::<Response>(&payload);
        }
    }
});
