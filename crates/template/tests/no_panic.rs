//! Robustness without a fuzzer: every truncation, byte flip, byte
//! substitution and byte deletion of valid templates is parsed, and every
//! mutation that parses is rendered. Nothing may panic, and whatever renders
//! must satisfy the output's invariants.

use std::collections::BTreeMap;

use idmint_template::{is_pseudo_parameter, valid_thing_name, Template};

const SEEDS: [(&str, &str); 3] = [
    ("everything", include_str!("data/everything.json")),
    ("aws_fleet", include_str!("data/aws_fleet.json")),
    ("aws_jitp", include_str!("data/aws_jitp.json")),
];

/// Parameter values that make the seed templates render.
fn good_values() -> BTreeMap<String, String> {
    [
        ("SerialNumber", "0042"),
        ("ThingName", "lightbulb-1"),
        ("DeviceLocation", "Seattle"),
        ("AWS::IoT::Certificate::Id", "9f2c"),
        ("AWS::IoT::Certificate::CommonName", "sensor-1"),
        ("AWS::IoT::Certificate::Country", "US"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[derive(Default)]
struct Tally {
    tried: usize,
    parsed: usize,
    rendered: usize,
}

/// Parses `body`; if it parses, renders it three ways and checks what
/// comes out.
fn exercise(body: &str, good: &BTreeMap<String, String>, tally: &mut Tally) {
    tally.tried += 1;
    let Ok(template) = Template::parse(body) else {
        return;
    };
    tally.parsed += 1;
    assert_eq!(template.body(), body);
    let referenced = template.referenced_parameters();
    for name in &referenced {
        assert!(
            template.parameters().contains_key(name) || is_pseudo_parameter(name),
            "{name} is referenced but neither declared nor pseudo"
        );
    }
    assert!(template.required_parameters().is_subset(&referenced));
    let filled: BTreeMap<String, String> = referenced
        .iter()
        .map(|name| (name.clone(), "v-1".to_string()))
        .collect();
    for values in [&BTreeMap::new(), &filled, good] {
        let Ok(out) = template.render(values) else {
            continue;
        };
        tally.rendered += 1;
        if let Some(thing) = &out.thing {
            assert!(valid_thing_name(&thing.name), "{:?}", thing.name);
        }
        for policy in &out.policies {
            assert!(
                policy.name.is_some() != policy.document.is_some(),
                "{policy:?}"
            );
        }
    }
}

fn mutate_all(name: &str, seed: &str) -> Tally {
    let good = good_values();
    let mut tally = Tally::default();
    let bytes = seed.as_bytes();

    // The seed itself renders.
    let template = Template::parse(seed).unwrap_or_else(|e| panic!("{name}: {e}"));
    template
        .render(&good)
        .unwrap_or_else(|e| panic!("{name}: {e}"));

    let try_bytes = |candidate: &[u8], tally: &mut Tally| {
        if let Ok(text) = std::str::from_utf8(candidate) {
            exercise(text, &good, tally);
        }
    };
    for end in 0..bytes.len() {
        try_bytes(&bytes[..end], &mut tally);
    }
    let mut buf = bytes.to_vec();
    for i in 0..bytes.len() {
        let original = buf[i];
        for mask in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80] {
            buf[i] = original ^ mask;
            try_bytes(&buf, &mut tally);
        }
        for &replacement in b"{}[]\":,0-\\$!x " {
            buf[i] = replacement;
            try_bytes(&buf, &mut tally);
        }
        buf[i] = original;
        let mut deleted = bytes.to_vec();
        deleted.remove(i);
        try_bytes(&deleted, &mut tally);
    }
    tally
}

#[test]
fn mutations_never_panic() {
    for (name, seed) in SEEDS {
        let tally = mutate_all(name, seed);
        // The mutations reach both the parser's refusals and the renderer.
        assert!(tally.tried > 20 * seed.len(), "{name}: {}", tally.tried);
        assert!(tally.parsed > seed.len(), "{name}: {}", tally.parsed);
        assert!(tally.parsed < tally.tried, "{name}");
        assert!(tally.rendered > seed.len(), "{name}: {}", tally.rendered);
    }
}

#[test]
fn spliced_function_objects_never_panic() {
    // Put every intrinsic, well- and ill-formed, in every string position
    // of the richest seed.
    let seed = SEEDS[0].1;
    let good = good_values();
    let snippets = [
        r#"{"Ref": "SerialNumber"}"#,
        r#"{"Ref": "AWS::IoT::Certificate::Id"}"#,
        r#"{"Ref": 1}"#,
        r#"{"Fn::Join": ["", []]}"#,
        r#"{"Fn::Join": ["-", {"Fn::Split": [",", {"Ref": "Groups"}]}]}"#,
        r#"{"Fn::Sub": "${SerialNumber}${!x}"}"#,
        r#"{"Fn::Sub": ["${a}", {"a": {"Fn::Select": [9, []]}}]}"#,
        r#"{"Fn::Select": [{"Ref": "SerialNumber"}, ["a"]]}"#,
        r#"{"Fn::Select": [0, {"Fn::FindInMap": ["Regions", "eu", "Groups"]}]}"#,
        r#"{"Fn::Split": [",", {"Fn::FindInMap": ["Regions", "eu", "Url"]}]}"#,
        r#"{"Fn::FindInMap": ["Regions", {"Ref": "SerialNumber"}, "Url"]}"#,
        r#"{"Fn::FindInMap": [{"Ref": "Site"}, "eu", "Url"]}"#,
        r#"{"Fn::If": []}"#,
        r#"[null, 1, true, {"a": []}]"#,
        r#"{}"#,
        r#""""#,
    ];
    let mut tally = Tally::default();
    let quotes: Vec<usize> = seed.match_indices('"').map(|(i, _)| i).collect();
    for pair in quotes.chunks(2) {
        let [start, end] = pair else { continue };
        for snippet in snippets {
            let body = format!("{}{}{}", &seed[..*start], snippet, &seed[end + 1..]);
            exercise(&body, &good, &mut tally);
        }
    }
    assert!(tally.parsed > 0 && tally.rendered > 0);
}
