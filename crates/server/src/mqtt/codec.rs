//! MQTT 3.1.1 and 5 on one connection type: rumqttc's packet codec
//! (`rumqttc::mqttbytes::v4` and `rumqttc::v5::mqttbytes::v5`) does the wire
//! format; this module picks the version from the CONNECT packet, maps both
//! versions' packets onto the few shapes the endpoint needs, and holds the
//! MQTT topic rules. It is the only module of the endpoint that names the
//! codec crate (see `docs/mqtt-codec.md`).

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes as m4;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes as m5;
use rumqttc::v5::mqttbytes::v5;

/// The protocol version a client connected with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.
    V5,
}

/// Quality of service of a PUBLISH or a subscription, ordered by strength.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// At most once (0).
    AtMostOnce = 0,
    /// At least once (1).
    AtLeastOnce = 1,
    /// Exactly once (2).
    ExactlyOnce = 2,
}

/// A packet from a client, whatever its version.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// CONNECT.
    Connect {
        /// The client id (may be empty).
        client_id: String,
        /// Keep-alive, seconds (0: none).
        keep_alive: u16,
    },
    /// PUBLISH, its topic already checked with [`valid_topic`].
    Publish {
        /// The topic.
        topic: String,
        /// Its QoS.
        qos: QoS,
        /// Packet id (QoS 1 and 2).
        pkid: u16,
        /// The payload.
        payload: Bytes,
    },
    /// SUBSCRIBE (each filter still to be checked with [`valid_filter`], so
    /// that a bad one is refused in the SUBACK).
    Subscribe {
        /// Packet id.
        pkid: u16,
        /// Topic filters and their requested QoS.
        filters: Vec<(String, QoS)>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Packet id.
        pkid: u16,
        /// Topic filters.
        filters: Vec<String>,
    },
    /// PUBACK (for our QoS 1 publishes).
    PubAck,
    /// PUBREL (the second step of a client's QoS 2 publish).
    PubRel {
        /// Packet id.
        pkid: u16,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
    /// Anything a client may send that the endpoint does not use (QoS 2 flow).
    Unsupported(&'static str),
}

/// What went wrong reading a packet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// More bytes are needed.
    #[error("incomplete packet")]
    Incomplete,
    /// The packet is larger than allowed (its remaining length, bytes).
    #[error("packet of {0} bytes is larger than allowed")]
    TooLarge(usize),
    /// The first packet was not a CONNECT.
    #[error("the first packet was not CONNECT")]
    NotConnect,
    /// A CONNECT for a protocol other than MQTT 3.1.1 or 5.
    #[error("unsupported protocol level {0}")]
    ProtocolLevel(u8),
    /// A PUBLISH to a topic that breaks the MQTT topic rules.
    #[error("invalid PUBLISH topic {0:?}")]
    InvalidTopic(String),
    /// Malformed input; `reason` is the codec's description, for logs.
    #[error("malformed MQTT {version:?} packet: {reason}")]
    Malformed {
        /// The version the packet was read as.
        version: Version,
        /// What the codec found wrong.
        reason: String,
    },
}

impl From<m4::Error> for CodecError {
    fn from(e: m4::Error) -> Self {
        match e {
            m4::Error::InsufficientBytes(_) => CodecError::Incomplete,
            m4::Error::PayloadSizeLimitExceeded(n) => CodecError::TooLarge(n),
            m4::Error::InvalidProtocolLevel(n) => CodecError::ProtocolLevel(n),
            m4::Error::NotConnect(_) => CodecError::NotConnect,
            other => CodecError::Malformed {
                version: Version::V4,
                reason: other.to_string(),
            },
        }
    }
}

impl From<m5::Error> for CodecError {
    fn from(e: m5::Error) -> Self {
        match e {
            m5::Error::InsufficientBytes(_) => CodecError::Incomplete,
            m5::Error::PayloadSizeLimitExceeded { pkt_size, .. } => CodecError::TooLarge(pkt_size),
            m5::Error::InvalidProtocolLevel(n) => CodecError::ProtocolLevel(n),
            other => CodecError::Malformed {
                version: Version::V5,
                reason: other.to_string(),
            },
        }
    }
}

/// Reads the first packet, which must be CONNECT, and tells its version.
///
/// Nothing is consumed from `buf` unless a whole CONNECT was read; a packet
/// whose fixed header announces more than `max` bytes is refused before
/// the rest of it arrives.
pub fn read_connect(buf: &mut BytesMut, max: usize) -> Result<(Version, Incoming), CodecError> {
    m4::check(buf.iter(), max)?;
    if buf.first().map(|b| b >> 4) != Some(1) {
        return Err(CodecError::NotConnect);
    }
    // The 3.1.1 reader also takes a level-5 CONNECT (without reading its
    // properties), so anything but a clean level-4 CONNECT goes to the 5 reader.
    let mut probe = buf.clone();
    let v4_error = match v4::Packet::read(&mut probe, max) {
        Ok(v4::Packet::Connect(c)) if c.protocol == m4::Protocol::V4 => {
            *buf = probe;
            return Ok((
                Version::V4,
                Incoming::Connect {
                    client_id: c.client_id,
                    keep_alive: c.keep_alive,
                },
            ));
        }
        Ok(v4::Packet::Connect(_)) => None,
        Ok(_) => return Err(CodecError::NotConnect),
        Err(e) => Some(e),
    };
    let mut probe = buf.clone();
    match v5::Packet::read(&mut probe, Some(limit_u32(max))) {
        Ok(v5::Packet::Connect(c, _, _)) => {
            *buf = probe;
            Ok((
                Version::V5,
                Incoming::Connect {
                    client_id: c.client_id,
                    keep_alive: c.keep_alive,
                },
            ))
        }
        Ok(_) => Err(CodecError::NotConnect),
        Err(e) => Err(match v4_error {
            Some(e4) => e4.into(),
            None => e.into(),
        }),
    }
}

/// Reads the next packet of a connected client.
///
/// A packet whose fixed header announces more than `max` bytes is refused
/// before the rest of it arrives; a PUBLISH to a topic that breaks
/// [`valid_topic`] is an error.
pub fn read(version: Version, buf: &mut BytesMut, max: usize) -> Result<Incoming, CodecError> {
    let incoming = match version {
        Version::V4 => read_v4(buf, max)?,
        Version::V5 => read_v5(buf, max)?,
    };
    if let Incoming::Publish { topic, .. } = &incoming {
        if !valid_topic(topic) {
            return Err(CodecError::InvalidTopic(topic.clone()));
        }
    }
    Ok(incoming)
}

fn read_v4(buf: &mut BytesMut, max: usize) -> Result<Incoming, CodecError> {
    Ok(match v4::Packet::read(buf, max)? {
        v4::Packet::Publish(p) => Incoming::Publish {
            topic: p.topic,
            qos: QoS::from(p.qos),
            pkid: p.pkid,
            payload: p.payload,
        },
        v4::Packet::Subscribe(s) => Incoming::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, QoS::from(f.qos)))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PubAck(_) => Incoming::PubAck,
        v4::Packet::PubRel(r) => Incoming::PubRel { pkid: r.pkid },
        v4::Packet::PingReq => Incoming::PingReq,
        v4::Packet::Disconnect => Incoming::Disconnect,
        v4::Packet::Connect(_) => Incoming::Unsupported("a second CONNECT"),
        _ => Incoming::Unsupported("server-to-client packets"),
    })
}

fn read_v5(buf: &mut BytesMut, max: usize) -> Result<Incoming, CodecError> {
    // A DISCONNECT without a reason code (remaining length 0, "normal
    // disconnection") is valid MQTT 5, but the codec wants a payload.
    if buf.starts_with(&[0xE0, 0x00]) {
        let _ = buf.split_to(2);
        return Ok(Incoming::Disconnect);
    }
    Ok(match v5::Packet::read(buf, Some(limit_u32(max)))? {
        v5::Packet::Publish(p) => Incoming::Publish {
            topic: String::from_utf8(p.topic.to_vec()).map_err(|_| CodecError::Malformed {
                version: Version::V5,
                reason: "topic is not UTF-8".into(),
            })?,
            qos: QoS::from(p.qos),
            pkid: p.pkid,
            payload: p.payload,
        },
        v5::Packet::Subscribe(s) => Incoming::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, QoS::from(f.qos)))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Incoming::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PubAck(_) => Incoming::PubAck,
        v5::Packet::PubRel(r) => Incoming::PubRel { pkid: r.pkid },
        v5::Packet::PingReq(_) => Incoming::PingReq,
        v5::Packet::Disconnect(_) => Incoming::Disconnect,
        v5::Packet::Connect(..) => Incoming::Unsupported("a second CONNECT"),
        v5::Packet::Auth(_) => Incoming::Unsupported("AUTH"),
        _ => Incoming::Unsupported("server-to-client packets"),
    })
}

/// The MQTT 5 codec takes its limit as a `u32`.
fn limit_u32(max: usize) -> u32 {
    u32::try_from(max).unwrap_or(u32::MAX)
}

pub use idmint_flows::mqtt_topic::{valid_filter, valid_topic};

// Writing fails only for a packet over 256 MB, which the endpoint never
// sends, so the writers below ignore the result.

/// CONNACK: accepted, or refused as not authorised.
pub fn connack(version: Version, accepted: bool, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::ConnAck::new(
            if accepted {
                v4::ConnectReturnCode::Success
            } else {
                v4::ConnectReturnCode::NotAuthorized
            },
            false,
        )
        .write(out)
        .ok(),
        // The codec writes the (empty) property length itself.
        Version::V5 => v5::ConnAck {
            session_present: false,
            code: if accepted {
                v5::ConnectReturnCode::Success
            } else {
                v5::ConnectReturnCode::NotAuthorized
            },
            properties: None,
        }
        .write(out)
        .ok(),
    };
}

/// SUBACK with one result per filter: the granted QoS, or refused.
pub fn suback(version: Version, pkid: u16, granted: &[Option<QoS>], out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::SubAck::new(
            pkid,
            granted
                .iter()
                .map(|g| match g {
                    Some(q) => v4::SubscribeReasonCode::Success(q.to_v4()),
                    None => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )
        .write(out)
        .ok(),
        Version::V5 => v5::SubAck {
            pkid,
            return_codes: granted
                .iter()
                .map(|g| match g {
                    Some(q) => v5::SubscribeReasonCode::Success(q.to_v5()),
                    None => v5::SubscribeReasonCode::NotAuthorized,
                })
                .collect(),
            properties: None,
        }
        .write(out)
        .ok(),
    };
}

/// UNSUBACK.
pub fn unsuback(version: Version, pkid: u16, filters: usize, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::UnsubAck::new(pkid).write(out).ok(),
        Version::V5 => v5::UnsubAck {
            pkid,
            reasons: vec![v5::UnsubAckReason::Success; filters],
            properties: None,
        }
        .write(out)
        .ok(),
    };
}

/// PUBACK for a client's QoS 1 publish.
pub fn puback(version: Version, pkid: u16, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::PubAck::new(pkid).write(out).ok(),
        Version::V5 => v5::PubAck::new(pkid, None).write(out).ok(),
    };
}

/// PUBREC for a client's QoS 2 publish (its request is then rejected).
pub fn pubrec(version: Version, pkid: u16, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::PubRec::new(pkid).write(out).ok(),
        Version::V5 => v5::PubRec::new(pkid, None).write(out).ok(),
    };
}

/// PUBCOMP, the end of a client's QoS 2 publish.
pub fn pubcomp(version: Version, pkid: u16, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::PubComp::new(pkid).write(out).ok(),
        Version::V5 => v5::PubComp::new(pkid, None).write(out).ok(),
    };
}

/// PINGRESP.
pub fn pingresp(version: Version, out: &mut BytesMut) {
    let _ = match version {
        Version::V4 => v4::PingResp.write(out).ok(),
        Version::V5 => v5::PingResp::write(out).ok(),
    };
}

/// A PUBLISH from the server.
pub fn publish(
    version: Version,
    topic: &str,
    qos: QoS,
    pkid: u16,
    payload: Bytes,
    out: &mut BytesMut,
) {
    let _ = match version {
        Version::V4 => {
            let mut p = v4::Publish::from_bytes(topic, qos.to_v4(), payload);
            p.pkid = pkid;
            p.write(out).ok()
        }
        Version::V5 => {
            let mut p = v5::Publish::new(topic, qos.to_v5(), payload, None);
            p.pkid = pkid;
            p.write(out).ok()
        }
    };
}

/// DISCONNECT from the server (MQTT 5 only; 3.1.1 just closes).
pub fn disconnect_not_authorized(version: Version, out: &mut BytesMut) {
    if version == Version::V5 {
        // Written by hand: rumqttc 0.25's DISCONNECT writer gets a reason
        // code without properties wrong (remaining length 1, two bytes
        // written) and with empty properties writes a normal disconnection.
        // Reason code 0x87 (not authorized), property length 0.
        out.extend_from_slice(&[0xE0, 0x02, 0x87, 0x00]);
    }
}

impl QoS {
    fn to_v4(self) -> m4::QoS {
        match self {
            QoS::AtMostOnce => m4::QoS::AtMostOnce,
            QoS::AtLeastOnce => m4::QoS::AtLeastOnce,
            QoS::ExactlyOnce => m4::QoS::ExactlyOnce,
        }
    }

    fn to_v5(self) -> m5::QoS {
        match self {
            QoS::AtMostOnce => m5::QoS::AtMostOnce,
            QoS::AtLeastOnce => m5::QoS::AtLeastOnce,
            QoS::ExactlyOnce => m5::QoS::ExactlyOnce,
        }
    }
}

impl From<m4::QoS> for QoS {
    fn from(q: m4::QoS) -> Self {
        match q {
            m4::QoS::AtMostOnce => QoS::AtMostOnce,
            m4::QoS::AtLeastOnce => QoS::AtLeastOnce,
            m4::QoS::ExactlyOnce => QoS::ExactlyOnce,
        }
    }
}

impl From<m5::QoS> for QoS {
    fn from(q: m5::QoS) -> Self {
        match q {
            m5::QoS::AtMostOnce => QoS::AtMostOnce,
            m5::QoS::AtLeastOnce => QoS::AtLeastOnce,
            m5::QoS::ExactlyOnce => QoS::ExactlyOnce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 16;

    fn connect(version: Version) -> BytesMut {
        let mut out = BytesMut::new();
        match version {
            Version::V4 => {
                let mut c = v4::Connect::new("device-1");
                c.keep_alive = 30;
                c.write(&mut out).expect("v4 connect");
            }
            Version::V5 => {
                let c = v5::Connect {
                    keep_alive: 30,
                    client_id: "device-1".into(),
                    clean_start: true,
                    properties: None,
                };
                c.write(&None, &None, &mut out).expect("v5 connect");
            }
        }
        out
    }

    fn traffic(version: Version) -> BytesMut {
        let mut out = BytesMut::new();
        match version {
            Version::V4 => {
                v4::Subscribe::new(
                    "$aws/certificates/create/json/accepted",
                    m4::QoS::AtLeastOnce,
                )
                .write(&mut out)
                .expect("sub");
                let mut p = v4::Publish::new(
                    "$aws/certificates/create/json",
                    m4::QoS::AtLeastOnce,
                    b"{}".to_vec(),
                );
                p.pkid = 7;
                p.write(&mut out).expect("pub");
                v4::PingReq.write(&mut out).expect("ping");
            }
            Version::V5 => {
                let mut s = v5::Subscribe::new(
                    v5::Filter::new("$aws/certificates/create/cbor/+", m5::QoS::AtMostOnce),
                    None,
                );
                s.pkid = 3;
                s.write(&mut out).expect("sub");
                let mut p = v5::Publish::new(
                    "$aws/certificates/create/cbor",
                    m5::QoS::AtLeastOnce,
                    vec![0xa0],
                    None,
                );
                p.pkid = 9;
                p.write(&mut out).expect("pub");
                v5::PingReq::write(&mut out).expect("ping");
            }
        }
        out
    }

    /// Reads every packet of `bytes` as `version`, until an error.
    fn read_all(version: Version, bytes: &[u8]) -> (Vec<Incoming>, CodecError) {
        let mut buf = BytesMut::from(bytes);
        let mut packets = Vec::new();
        loop {
            match read(version, &mut buf, MAX) {
                Ok(p) => packets.push(p),
                Err(e) => return (packets, e),
            }
        }
    }

    #[test]
    fn reads_both_versions() {
        for version in [Version::V4, Version::V5] {
            let mut buf = connect(version);
            buf.extend_from_slice(&traffic(version));
            let (v, first) = read_connect(&mut buf, MAX).expect("connect");
            assert_eq!(v, version);
            assert_eq!(
                first,
                Incoming::Connect {
                    client_id: "device-1".into(),
                    keep_alive: 30
                }
            );
            assert!(matches!(
                read(v, &mut buf, MAX),
                Ok(Incoming::Subscribe { .. })
            ));
            match read(v, &mut buf, MAX) {
                Ok(Incoming::Publish {
                    topic, pkid, qos, ..
                }) => {
                    assert!(topic.starts_with("$aws/certificates/create/"));
                    assert!(pkid == 7 || pkid == 9);
                    assert_eq!(qos, QoS::AtLeastOnce);
                }
                other => panic!("expected PUBLISH, got {other:?}"),
            }
            assert_eq!(read(v, &mut buf, MAX).expect("ping"), Incoming::PingReq);
            assert!(matches!(
                read(v, &mut buf, MAX),
                Err(CodecError::Incomplete)
            ));
        }
    }

    #[test]
    fn qos_is_ordered() {
        assert!(QoS::AtMostOnce < QoS::AtLeastOnce && QoS::AtLeastOnce < QoS::ExactlyOnce);
        assert_eq!(QoS::ExactlyOnce as u8, 2);
    }

    #[test]
    fn an_mqtt5_connack_carries_its_property_length() {
        let mut out = BytesMut::new();
        connack(Version::V5, true, &mut out);
        assert_eq!(&out[..], &[0x20, 3, 0, 0, 0]);
        let mut out = BytesMut::new();
        connack(Version::V5, false, &mut out);
        assert_eq!(&out[..], &[0x20, 3, 0, 0x87, 0]);
        let mut out = BytesMut::new();
        connack(Version::V4, false, &mut out);
        assert_eq!(&out[..], &[0x20, 2, 0, 5]);
    }

    type Writer = fn(Version, &mut BytesMut);

    #[test]
    fn server_packets_are_written_as_the_standard_says() {
        let cases: [(Version, Writer, &[u8]); 10] = [
            (Version::V5, |v, o| puback(v, 12, o), &[0x40, 2, 0, 12]),
            (Version::V5, |v, o| pubrec(v, 12, o), &[0x50, 2, 0, 12]),
            (
                Version::V4,
                |v, o| suback(v, 10, &[Some(QoS::AtLeastOnce), None], o),
                &[0x90, 4, 0, 10, 1, 0x80],
            ),
            (
                Version::V5,
                |v, o| suback(v, 10, &[Some(QoS::AtMostOnce), None], o),
                &[0x90, 5, 0, 10, 0, 0, 0x87],
            ),
            (Version::V4, |v, o| unsuback(v, 11, 2, o), &[0xb0, 2, 0, 11]),
            (
                Version::V5,
                |v, o| unsuback(v, 11, 2, o),
                &[0xb0, 5, 0, 11, 0, 0, 0],
            ),
            (Version::V4, |v, o| puback(v, 12, o), &[0x40, 2, 0, 12]),
            (Version::V5, |v, o| pubcomp(v, 12, o), &[0x70, 2, 0, 12]),
            (Version::V5, pingresp, &[0xd0, 0]),
            (Version::V5, disconnect_not_authorized, &[0xe0, 2, 0x87, 0]),
        ];
        for (version, write, expected) in cases {
            let mut out = BytesMut::new();
            write(version, &mut out);
            assert_eq!(&out[..], expected, "{version:?}");
        }
        let mut out = BytesMut::new();
        disconnect_not_authorized(Version::V4, &mut out);
        assert!(out.is_empty());
        let mut out = BytesMut::new();
        publish(
            Version::V5,
            "a/b",
            QoS::AtLeastOnce,
            5,
            Bytes::from_static(b"x"),
            &mut out,
        );
        assert_eq!(&out[..], &[0x32, 9, 0, 3, b'a', b'/', b'b', 0, 5, 0, b'x']);
        let mut out = BytesMut::new();
        publish(
            Version::V4,
            "a/b",
            QoS::AtMostOnce,
            0,
            Bytes::from_static(b"x"),
            &mut out,
        );
        assert_eq!(&out[..], &[0x30, 6, 0, 3, b'a', b'/', b'b', b'x']);
    }

    #[test]
    fn a_packet_over_the_limit_is_refused_before_it_is_buffered() {
        let mut buf = BytesMut::new();
        v4::Publish::new("t", m4::QoS::AtMostOnce, vec![0u8; 5000])
            .write(&mut buf)
            .expect("pub");
        buf.truncate(10);
        for version in [Version::V4, Version::V5] {
            assert!(matches!(
                read(version, &mut buf.clone(), 1000),
                Err(CodecError::TooLarge(_))
            ));
        }
        // A CONNECT announcing 2 MB is refused from its first 5 bytes.
        let mut buf = BytesMut::from(&[0x10, 0x80, 0x80, 0x80, 0x01][..]);
        assert!(matches!(
            read_connect(&mut buf, 1000),
            Err(CodecError::TooLarge(2_097_152))
        ));
    }

    #[test]
    fn a_malformed_remaining_length_is_an_error() {
        // Five length bytes with the continuation bit: more than MQTT allows.
        let bytes = [0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0];
        for version in [Version::V4, Version::V5] {
            let (_, e) = read_all(version, &bytes);
            assert!(matches!(e, CodecError::Malformed { .. }), "{e:?}");
        }
        let mut buf = BytesMut::from(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(matches!(
            read_connect(&mut buf, MAX),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn a_truncated_packet_is_incomplete_and_left_in_the_buffer() {
        for version in [Version::V4, Version::V5] {
            let whole = connect(version);
            for i in 0..whole.len() {
                let mut buf = BytesMut::from(&whole[..i]);
                assert!(matches!(
                    read_connect(&mut buf, MAX),
                    Err(CodecError::Incomplete)
                ));
                assert_eq!(buf.len(), i);
            }
            let whole = traffic(version);
            for i in 0..whole.len() {
                let mut buf = BytesMut::from(&whole[..i]);
                while read(version, &mut buf, MAX).is_ok() {}
                // Whatever was not read is still there, from a packet start.
                assert!(whole[..i].ends_with(&buf[..]));
            }
        }
    }

    #[test]
    fn a_first_packet_that_is_not_connect_is_refused() {
        let mut buf = traffic(Version::V4);
        assert!(matches!(
            read_connect(&mut buf, MAX),
            Err(CodecError::NotConnect)
        ));
        let mut buf = connect(Version::V4);
        buf[8] = 3; // protocol level 3 (MQTT 3.1)
        assert!(matches!(
            read_connect(&mut buf, MAX),
            Err(CodecError::ProtocolLevel(3))
        ));
    }

    #[test]
    fn a_publish_to_a_wildcard_or_empty_topic_is_an_error() {
        for topic in ["a/#", "#", "a/+/b", "+", "a\0b"] {
            let mut v4_bytes = BytesMut::new();
            v4::Publish::new(topic, m4::QoS::AtMostOnce, b"x".to_vec())
                .write(&mut v4_bytes)
                .expect("pub");
            let mut v5_bytes = BytesMut::new();
            v5::Publish::new(topic, m5::QoS::AtMostOnce, b"x".to_vec(), None)
                .write(&mut v5_bytes)
                .expect("pub");
            for (version, bytes) in [(Version::V4, v4_bytes), (Version::V5, v5_bytes)] {
                let (read, e) = read_all(version, &bytes);
                assert!(read.is_empty(), "{topic:?}");
                assert!(
                    matches!(&e, CodecError::InvalidTopic(t) if t == topic),
                    "{topic:?}: {e:?}"
                );
            }
        }
        // MQTT 5 without a topic (a topic alias we never granted).
        let (_, e) = read_all(Version::V5, &[0x30, 4, 0, 0, 0, b'x']);
        assert!(matches!(e, CodecError::InvalidTopic(_)), "{e:?}");
    }

    #[test]
    fn a_subscribe_with_a_bad_filter_reads_and_its_filter_is_refused() {
        for version in [Version::V4, Version::V5] {
            let mut bytes = BytesMut::new();
            match version {
                Version::V4 => v4::Subscribe::new("a/#/b", m4::QoS::AtMostOnce)
                    .write(&mut bytes)
                    .ok(),
                Version::V5 => {
                    let mut s =
                        v5::Subscribe::new(v5::Filter::new("a/#/b", m5::QoS::AtMostOnce), None);
                    s.pkid = 1;
                    s.write(&mut bytes).ok()
                }
            }
            .expect("sub");
            match read(version, &mut bytes, MAX) {
                Ok(Incoming::Subscribe { filters, .. }) => {
                    assert_eq!(filters, vec![("a/#/b".to_string(), QoS::AtMostOnce)]);
                    assert!(!valid_filter(&filters[0].0));
                }
                other => panic!("{other:?}"),
            }
        }
        // SUBSCRIBE without any filter, and with QoS 3.
        for bytes in [&[0x82, 2, 0, 1][..], &[0x82, 6, 0, 1, 0, 1, b'a', 3]] {
            let (_, e) = read_all(Version::V4, bytes);
            assert!(matches!(e, CodecError::Malformed { .. }), "{e:?}");
        }
    }

    #[test]
    fn topic_rules() {
        for ok in ["a", "a/b", "/", "$aws/things/x/shadow", "é/ü"] {
            assert!(valid_topic(ok), "{ok:?}");
            assert!(valid_filter(ok), "{ok:?}");
        }
        for ok in ["#", "+", "a/#", "a/+", "+/+/#", "/+/", "a//#"] {
            assert!(valid_filter(ok), "{ok:?}");
            assert!(!valid_topic(ok), "{ok:?}");
        }
        for bad in ["", "a#", "a/#/b", "#/", "a+", "a/b+/c", "++", "a/\0", "##"] {
            assert!(!valid_filter(bad), "{bad:?}");
        }
        assert!(!valid_topic(""));
        assert!(!valid_topic("a\0"));
        assert!(valid_topic(&"x".repeat(65535)));
        assert!(!valid_topic(&"x".repeat(65536)));
        assert!(!valid_filter(&"x".repeat(65536)));
    }

    #[test]
    fn mqtt5_properties_are_read_and_skipped() {
        let mut buf = BytesMut::new();
        // CONNECT, keep-alive 30, session expiry 60, receive max 16, user property k=v.
        buf.extend_from_slice(&[
            0x10, 36, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 15, 0x11, 0, 0, 0, 60, 0x21, 0,
            16, 0x26, 0, 1, b'k', 0, 1, b'v', 0, 8,
        ]);
        buf.extend_from_slice(b"device-1");
        // PUBLISH QoS 1 with payload format, message expiry and content type.
        buf.extend_from_slice(&[
            0x32, 20, 0, 1, b't', 0, 5, 12, 0x01, 1, 0x02, 0, 0, 0, 16, 0x03, 0, 2, b'j', b's',
            b'{', b'}',
        ]);
        // SUBSCRIBE with a subscription identifier.
        buf.extend_from_slice(&[0x82, 11, 0, 2, 2, 0x0b, 1, 0, 3, b'a', b'/', b'#', 1]);
        // PUBACK without a reason code, then one with reason and no properties.
        buf.extend_from_slice(&[0x40, 2, 0, 1, 0x40, 3, 0, 2, 0]);
        // DISCONNECT: normal (no reason), then with reason code and properties.
        buf.extend_from_slice(&[0xe0, 0, 0xe0, 2, 0, 0]);
        let (version, connect) = read_connect(&mut buf, MAX).expect("connect");
        assert_eq!(version, Version::V5);
        assert_eq!(
            connect,
            Incoming::Connect {
                client_id: "device-1".into(),
                keep_alive: 30
            }
        );
        let (packets, end) = read_all(Version::V5, &buf);
        assert!(matches!(end, CodecError::Incomplete), "{end:?}");
        assert_eq!(
            packets,
            vec![
                Incoming::Publish {
                    topic: "t".into(),
                    qos: QoS::AtLeastOnce,
                    pkid: 5,
                    payload: Bytes::from_static(b"{}"),
                },
                Incoming::Subscribe {
                    pkid: 2,
                    filters: vec![("a/#".into(), QoS::AtLeastOnce)]
                },
                Incoming::PubAck,
                Incoming::PubAck,
                Incoming::Disconnect,
                Incoming::Disconnect,
            ]
        );
        // A property id MQTT 5 does not define, and a property length past
        // the end of the packet.
        for bytes in [
            &[0x30, 7, 0, 1, b't', 2, 0x7f, 0, b'x'][..],
            &[0x30, 5, 0, 1, b't', 9, 0x01],
        ] {
            let (read, e) = read_all(Version::V5, bytes);
            assert!(read.is_empty());
            assert!(matches!(e, CodecError::Malformed { .. }), "{e:?}");
        }
    }

    /// Every truncation and byte flip of valid traffic reads as a packet or
    /// an error, never a panic (the fuzz target explores further).
    #[test]
    fn mutated_packets_never_panic() {
        for version in [Version::V4, Version::V5] {
            let mut valid = connect(version);
            valid.extend_from_slice(&traffic(version));
            for i in 0..valid.len() {
                for mutation in 0..3 {
                    let mut bytes = valid.clone();
                    match mutation {
                        0 => bytes.truncate(i),
                        1 => bytes[i] ^= 0xff,
                        _ => bytes[i] = bytes[i].wrapping_add(1),
                    }
                    let mut buf = bytes.clone();
                    if let Ok((v, _)) = read_connect(&mut buf, MAX) {
                        for _ in 0..8 {
                            if read(v, &mut buf, MAX).is_err() {
                                break;
                            }
                        }
                    }
                    for v in [Version::V4, Version::V5] {
                        let mut buf = bytes.clone();
                        for _ in 0..8 {
                            if read(v, &mut buf, MAX).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}
