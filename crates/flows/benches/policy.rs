//! One policy decision: a 10-statement AWS IoT policy with variables,
//! wildcards and a Deny, decided for a publish (target: < 2 µs).

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use criterion::{criterion_group, criterion_main, Criterion};
use idmint_flows::access::policy::{evaluate, IotAction, PolicyDocument, PolicyVariables};

fn policy() -> PolicyDocument {
    let mut statements = Vec::new();
    for i in 0..8 {
        statements.push(format!(
            r#"{{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":["arn:aws:iot:*:*:topic/fleet/{i}/${{iot:Connection.Thing.ThingName}}/*","arn:aws:iot:*:*:topic/site/${{iot:Connection.Thing.Attributes[site]}}/{i}"]}}"#
        ));
    }
    statements.push(r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:ClientId}"}"#.into());
    statements.push(r#"{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/fleet/*/admin"}"#.into());
    PolicyDocument::parse(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    ))
    .expect("policy")
}

fn decide(c: &mut Criterion) {
    let policies = [policy()];
    let vars = PolicyVariables {
        client_id: "sensor-000123".into(),
        thing_name: Some("sensor-000123".into()),
        thing_type: None,
        attributes: [("site".to_string(), "berlin".to_string())].into(),
        common_name: Some("sensor-000123".into()),
    };
    c.bench_function(
        "policy decision (10 statements, publish allowed by the 8th)",
        |b| {
            b.iter(|| {
                evaluate(
                    &policies,
                    IotAction::Publish,
                    std::hint::black_box("fleet/7/sensor-000123/telemetry"),
                    &vars,
                )
            })
        },
    );
}

criterion_group!(benches, decide);
criterion_main!(benches);
