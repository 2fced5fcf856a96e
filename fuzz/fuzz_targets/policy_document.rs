//! Fuzz the AWS IoT policy language: any text is a parsed document or a
//! `PolicyError` naming a JSON path, never a panic; a parsed document
//! decides every action for any resource (the fuzz input's tail) with
//! variables filled in or missing.
#![no_main]

use idmint_flows::access::policy::{evaluate, IotAction, PolicyDocument, PolicyVariables};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (document, resource) = text.split_once('\u{1}').unwrap_or((text, "a/b"));
    match PolicyDocument::parse(document) {
        Ok(policy) => {
            let mut variables = PolicyVariables {
                client_id: resource.to_string(),
                ..PolicyVariables::default()
            };
            for action in [
                IotAction::Connect,
                IotAction::Publish,
                IotAction::Subscribe,
                IotAction::Receive,
            ] {
                let _ = evaluate(std::slice::from_ref(&policy), action, resource, &variables);
            }
            variables.thing_name = Some(resource.to_string());
            variables
                .attributes
                .insert("site".into(), resource.to_string());
            for statement in policy.statements() {
                for r in &statement.resources {
                    let _ = variables.substitute(&r.pattern);
                }
            }
            let _ = evaluate(&[policy], IotAction::Publish, resource, &variables);
        }
        Err(e) => assert!(!e.path.is_empty() || !e.reason.is_empty()),
    }
});
