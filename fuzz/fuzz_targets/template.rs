//! Fuzz the provisioning template engine: any text must parse into a
//! `Template` or a `TemplateError`, and any template that parses must render
//! into a `Provisioning` or a `RenderError`, never a panic, whatever the
//! parameters. What renders must keep the output's invariants.
//!
//! The first byte picks the parameter values: none, every referenced
//! parameter set to a plain value, or every one set to the rest of the input.

#![no_main]

use std::collections::BTreeMap;

use idmint_template::{is_pseudo_parameter, valid_thing_name, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(template) = Template::parse(body) else {
        return;
    };
    assert_eq!(template.body(), body);

    let referenced = template.referenced_parameters();
    for name in &referenced {
        assert!(template.parameters().contains_key(name) || is_pseudo_parameter(name));
    }
    assert!(template.required_parameters().is_subset(&referenced));

    let value = match mode % 3 {
        0 => None,
        1 => Some("device-0001"),
        _ => Some(body),
    };
    let params: BTreeMap<String, String> = match value {
        None => BTreeMap::new(),
        Some(value) => referenced
            .iter()
            .map(|n| (n.clone(), value.to_owned()))
            .collect(),
    };
    let Ok(out) = template.render(&params) else {
        return;
    };
    if let Some(thing) = &out.thing {
        assert!(valid_thing_name(&thing.name));
    }
    for policy in &out.policies {
        assert!(policy.name.is_some() != policy.document.is_some());
    }
    // Rendering is deterministic.
    assert_eq!(template.render(&params).ok(), Some(out));
});
