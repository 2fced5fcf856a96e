//! The template language piece by piece: each intrinsic function alone and
//! nested, every refusal at creation (with its path), every fault at render.

use std::collections::BTreeMap;

use idmint_template::{
    valid_template_name, CertificateSource, CertificateStatus, OverrideSetting, RenderError,
    Template, TemplateError, MAX_BODY_CHARS, MAX_RENDER_BYTES,
};
use serde_json::{json, Value};

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Parameters and mappings shared by the expression tests.
const PARAMETERS: &str = r#"{
    "A": {"Type": "String", "Default": "alpha"},
    "B": {"Type": "String"},
    "List": {"Type": "String", "Default": "x,y,z"},
    "Index": {"Type": "String", "Default": "1"},
    "Region": {"Type": "String", "Default": "eu"},
    "Fqdn": {"Type": "String", "Default": "dev42.plant7.example.com"}
}"#;

const MAPPINGS: &str = r#"{
    "Regions": {
        "eu": {"Url": "https://eu.example", "Groups": ["eu-devices", "all-devices"]},
        "us": {"Url": "https://us.example"}
    }
}"#;

/// A template whose `DeviceConfiguration.v` is `expr`.
fn body_with(expr: &str) -> String {
    format!(
        r#"{{"Parameters": {PARAMETERS}, "Mappings": {MAPPINGS},
            "Resources": {{"p": {{"Type": "AWS::IoT::Policy", "Properties": {{"PolicyName": "P"}}}}}},
            "DeviceConfiguration": {{"v": {expr}}}}}"#
    )
}

fn try_eval(expr: &str, values: &[(&str, &str)]) -> Result<Value, RenderError> {
    let template =
        Template::parse(&body_with(expr)).unwrap_or_else(|e| panic!("{expr} should parse: {e}"));
    let mut out = template.render(&params(values))?;
    Ok(out.device_configuration.remove("v").unwrap())
}

fn eval(expr: &str, values: &[(&str, &str)]) -> Value {
    try_eval(expr, values).unwrap_or_else(|e| panic!("{expr} should render: {e}"))
}

fn refuse(expr: &str) -> TemplateError {
    match Template::parse(&body_with(expr)) {
        Ok(_) => panic!("{expr} should be refused"),
        Err(e) => e,
    }
}

/// A template with one thing whose properties are `properties`.
fn thing_body(properties: &str) -> String {
    format!(
        r#"{{"Parameters": {PARAMETERS}, "Mappings": {MAPPINGS},
            "Resources": {{"thing": {{"Type": "AWS::IoT::Thing", "Properties": {properties}}}}}}}"#
    )
}

fn refuse_body(body: &str) -> String {
    match Template::parse(body) {
        Ok(_) => panic!("{body} should be refused"),
        Err(e) => e.to_string(),
    }
}

// ---- intrinsic functions ----

#[test]
fn ref_uses_value_then_default() {
    assert_eq!(eval(r#"{"Ref": "A"}"#, &[]), "alpha");
    assert_eq!(eval(r#"{"Ref": "A"}"#, &[("A", "given")]), "given");
    // An empty value is a value: the default is for absent parameters.
    assert_eq!(eval(r#"{"Ref": "A"}"#, &[("A", "")]), "");
    assert_eq!(eval(r#"{"Ref": "B"}"#, &[("B", "bee")]), "bee");
    assert_eq!(
        eval(
            r#"{"Ref": "AWS::IoT::Certificate::SerialNumber"}"#,
            &[("AWS::IoT::Certificate::SerialNumber", "0A1B")]
        ),
        "0A1B"
    );
}

#[test]
fn join() {
    assert_eq!(
        eval(r#"{"Fn::Join": ["-", ["a", {"Ref": "A"}, "c"]]}"#, &[]),
        "a-alpha-c"
    );
    assert_eq!(eval(r#"{"Fn::Join": ["", ["a", "b"]]}"#, &[]), "ab");
    assert_eq!(eval(r#"{"Fn::Join": [", ", []]}"#, &[]), "");
    // Join over a list made by another function.
    assert_eq!(
        eval(
            r#"{"Fn::Join": ["+", {"Fn::Split": [",", {"Ref": "List"}]}]}"#,
            &[]
        ),
        "x+y+z"
    );
    assert_eq!(
        eval(
            r#"{"Fn::Join": ["|", {"Fn::FindInMap": ["Regions", "eu", "Groups"]}]}"#,
            &[]
        ),
        "eu-devices|all-devices"
    );
}

#[test]
fn sub() {
    assert_eq!(
        eval(r#"{"Fn::Sub": "x-${A}-${B}"}"#, &[("B", "b")]),
        "x-alpha-b"
    );
    assert_eq!(
        eval(r#"{"Fn::Sub": "${!Literal} and ${A}"}"#, &[]),
        "${Literal} and alpha"
    );
    assert_eq!(
        eval(r#"{"Fn::Sub": "no variables $ {}"}"#, &[]),
        "no variables $ {}"
    );
    assert_eq!(
        eval(
            r#"{"Fn::Sub": "${AWS::IoT::Certificate::CommonName}.${A}"}"#,
            &[("AWS::IoT::Certificate::CommonName", "cn")]
        ),
        "cn.alpha"
    );
    // Variables of the map form; they shadow parameters of the same name.
    assert_eq!(
        eval(
            r#"{"Fn::Sub": ["${Greeting}, ${A}! ${Greeting}", {"Greeting": {"Fn::Join": ["", ["hel", "lo"]]}, "A": "world"}]}"#,
            &[]
        ),
        "hello, world! hello"
    );
}

#[test]
fn select() {
    assert_eq!(eval(r#"{"Fn::Select": [1, ["a", "b", "c"]]}"#, &[]), "b");
    assert_eq!(eval(r#"{"Fn::Select": ["2", ["a", "b", "c"]]}"#, &[]), "c");
    assert_eq!(
        eval(
            r#"{"Fn::Select": [{"Ref": "Index"}, {"Fn::Split": [",", {"Ref": "List"}]}]}"#,
            &[]
        ),
        "y"
    );
    assert_eq!(
        eval(
            r#"{"Fn::Select": [{"Ref": "Index"}, {"Fn::Split": [",", {"Ref": "List"}]}]}"#,
            &[("Index", "0"), ("List", "p,q")]
        ),
        "p"
    );
    // Select may pick a list, which Join then uses.
    assert_eq!(
        eval(
            r#"{"Fn::Join": ["/", {"Fn::Select": [1, [["a"], ["b", "c"]]]}]}"#,
            &[]
        ),
        "b/c"
    );
}

#[test]
fn split() {
    assert_eq!(
        eval(r#"{"Fn::Split": [",", "a,b,,c"]}"#, &[]),
        json!(["a", "b", "", "c"])
    );
    assert_eq!(eval(r#"{"Fn::Split": ["::", "one"]}"#, &[]), json!(["one"]));
    assert_eq!(
        eval(r#"{"Fn::Split": [".", {"Ref": "Fqdn"}]}"#, &[]),
        json!(["dev42", "plant7", "example", "com"])
    );
}

#[test]
fn find_in_map() {
    assert_eq!(
        eval(
            r#"{"Fn::FindInMap": ["Regions", {"Ref": "Region"}, "Url"]}"#,
            &[]
        ),
        "https://eu.example"
    );
    assert_eq!(
        eval(
            r#"{"Fn::FindInMap": ["Regions", {"Ref": "Region"}, "Url"]}"#,
            &[("Region", "us")]
        ),
        "https://us.example"
    );
    assert_eq!(
        eval(r#"{"Fn::FindInMap": ["Regions", "eu", "Groups"]}"#, &[]),
        json!(["eu-devices", "all-devices"])
    );
    // Keys computed by other functions.
    assert_eq!(
        eval(
            r#"{"Fn::FindInMap": ["Regions", {"Fn::Select": [0, {"Fn::Split": ["-", "us-east"]}]}, {"Fn::Sub": ["U${R}", {"R": "rl"}]}]}"#,
            &[]
        ),
        "https://us.example"
    );
}

#[test]
fn nested_functions_in_thing_properties() {
    let body = thing_body(
        r#"{
            "ThingName": {"Fn::Join": ["-", [
                {"Fn::Select": [0, {"Fn::Split": [".", {"Ref": "Fqdn"}]}]},
                {"Fn::Select": [1, {"Fn::Split": [".", {"Ref": "Fqdn"}]}]},
                {"Fn::Sub": ["${R}_${B}", {"R": {"Ref": "Region"}}]}
            ]]},
            "ThingGroups": {"Fn::FindInMap": ["Regions", {"Ref": "Region"}, "Groups"]},
            "ThingTypeName": {"Fn::Sub": "type-${B}"},
            "BillingGroup": {"Fn::Select": [1, {"Fn::Split": ["/", "a/billing_1/c"]}]},
            "AttributePayload": {
                "site": {"Fn::Select": [1, {"Fn::Split": [".", {"Ref": "Fqdn"}]}]},
                "url": {"Fn::FindInMap": ["Regions", {"Ref": "Region"}, "Url"]}
            }
        }"#,
    );
    let template = Template::parse(&body).unwrap();
    assert_eq!(
        template
            .referenced_parameters()
            .into_iter()
            .collect::<Vec<_>>(),
        ["B", "Fqdn", "Region"]
    );
    assert_eq!(
        template
            .required_parameters()
            .into_iter()
            .collect::<Vec<_>>(),
        ["B"]
    );
    let thing = template
        .render(&params(&[("B", "b7")]))
        .unwrap()
        .thing
        .unwrap();
    assert_eq!(thing.name, "dev42-plant7-eu_b7");
    assert_eq!(thing.thing_groups, ["eu-devices", "all-devices"]);
    assert_eq!(thing.thing_type.as_deref(), Some("type-b7"));
    assert_eq!(thing.billing_group.as_deref(), Some("billing_1"));
    assert_eq!(
        thing.attributes,
        params(&[("site", "plant7"), ("url", "https://eu.example")])
    );
}

#[test]
fn thing_groups_are_deduplicated_in_order() {
    let template = Template::parse(&thing_body(
        r#"{"ThingName": "t", "ThingGroups": ["b", {"Ref": "A"}, "b", "a"]}"#,
    ))
    .unwrap();
    let thing = template
        .render(&params(&[("A", "a")]))
        .unwrap()
        .thing
        .unwrap();
    assert_eq!(thing.thing_groups, ["b", "a"]);
}

#[test]
fn policy_document_object_with_functions() {
    let body = format!(
        r#"{{"Parameters": {PARAMETERS}, "Resources": {{
            "thing": {{"Type": "AWS::IoT::Thing", "Properties": {{"ThingName": {{"Ref": "B"}}}}}},
            "policy": {{"Type": "AWS::IoT::Policy", "Properties": {{"PolicyDocument": {{
                "Version": "2012-10-17",
                "Statement": [{{"Effect": "Allow", "Action": "iot:Publish",
                    "Resource": {{"Fn::Sub": "arn:aws:iot:eu-west-1:1:topic/d/${{B}}/*"}},
                    "Condition": {{"Bool": {{"iot:Connection.Thing.IsAttached": "true"}}}}}}]
            }}}}}},
            "named": {{"Type": "AWS::IoT::Policy", "Properties": {{"PolicyName": {{"Fn::Sub": "${{A}}-policy"}}}}}},
            "sub": {{"Type": "AWS::IoT::Policy", "Properties": {{"PolicyDocument":
                {{"Fn::Sub": "{{\"Version\": \"2012-10-17\", \"Statement\": [{{\"Effect\": \"Allow\", \"Action\": \"iot:Connect\", \"Resource\": \"arn:aws:iot:*:*:client/${{B}}\"}}]}}"}}}}}}
        }}}}"#
    );
    let template = Template::parse(&body).unwrap();
    let out = template.render(&params(&[("B", "dev-9")])).unwrap();
    // Policies come in logical-name order: named, policy, sub.
    assert_eq!(out.policies.len(), 3);
    assert_eq!(out.policies[0].name.as_deref(), Some("alpha-policy"));
    assert_eq!(out.policies[0].document, None);
    let document: Value =
        serde_json::from_str(out.policies[1].document.as_deref().unwrap()).unwrap();
    assert_eq!(
        document["Statement"][0]["Resource"],
        "arn:aws:iot:eu-west-1:1:topic/d/dev-9/*"
    );
    assert_eq!(
        document["Statement"][0]["Condition"],
        json!({"Bool": {"iot:Connection.Thing.IsAttached": "true"}})
    );
    let document: Value =
        serde_json::from_str(out.policies[2].document.as_deref().unwrap()).unwrap();
    assert_eq!(
        document["Statement"][0]["Resource"],
        "arn:aws:iot:*:*:client/dev-9"
    );
}

#[test]
fn certificate_sources_status_and_overrides() {
    let cert = |properties: &str, overrides: &str| {
        let body = format!(
            r#"{{"Parameters": {PARAMETERS}, "Resources": {{"cert": {{"Type": "AWS::IoT::Certificate",
                "Properties": {properties} {overrides}}}}}}}"#
        );
        Template::parse(&body)
            .unwrap()
            .render(&params(&[("B", "INACTIVE")]))
            .unwrap()
            .certificate
            .unwrap()
    };
    let spec = cert(r#"{"CertificateId": "abc"}"#, "");
    assert_eq!(spec.source, CertificateSource::Id("abc".into()));
    assert_eq!(spec.status, CertificateStatus::Active);
    let spec = cert(
        r#"{"CertificateID": "abc", "Status": "inactive"}"#,
        r#", "OverrideSettings": {"Status": "REPLACE"}"#,
    );
    assert_eq!(spec.source, CertificateSource::Id("abc".into()));
    assert_eq!(spec.status, CertificateStatus::Inactive);
    assert_eq!(
        spec.overrides,
        BTreeMap::from([("Status".to_string(), OverrideSetting::Replace)])
    );
    let spec = cert(
        r#"{"CertificatePem": "P", "CACertificatePem": "CA", "Status": {"Ref": "B"}}"#,
        "",
    );
    assert_eq!(
        spec.source,
        CertificateSource::Pem {
            certificate_pem: "P".into(),
            ca_certificate_pem: Some("CA".into())
        }
    );
    assert_eq!(spec.status, CertificateStatus::Inactive);
}

#[test]
fn thing_override_aliases_and_settings() {
    let body = r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "t"},
            "OverrideSettings": {"ATTRIBUTE_PAYLOAD": "MERGE", "THING_GROUPS": "MERGE",
                                  "BillingGroup": "FAIL", "THING_TYPE_NAME": "DO_NOTHING"}}}}"#;
    let thing = Template::parse(body)
        .unwrap()
        .render(&BTreeMap::new())
        .unwrap()
        .thing
        .unwrap();
    assert_eq!(
        thing.overrides,
        BTreeMap::from([
            ("AttributePayload".to_string(), OverrideSetting::Merge),
            ("BillingGroup".to_string(), OverrideSetting::Fail),
            ("ThingGroups".to_string(), OverrideSetting::Merge),
            ("ThingTypeName".to_string(), OverrideSetting::DoNothing),
        ])
    );
}

#[test]
fn device_configuration_values() {
    let body = r#"{"Parameters": {"A": {"Type": "String"}},
        "Resources": {"p": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "P"}}},
        "DeviceConfiguration": {"s": "x", "n": 5, "b": true, "z": null,
            "l": ["a", {"Ref": "A"}], "r": {"Ref": "A"}}}"#;
    let out = Template::parse(body)
        .unwrap()
        .render(&params(&[("A", "v")]))
        .unwrap();
    assert_eq!(
        Value::Object(out.device_configuration),
        json!({"s": "x", "n": 5, "b": true, "z": null, "l": ["a", "v"], "r": "v"})
    );
}

#[test]
fn template_names() {
    assert!(valid_template_name("FleetTemplate-1_a"));
    assert!(!valid_template_name(""));
    assert!(!valid_template_name(&"n".repeat(37)));
    assert!(!valid_template_name("has.dot"));
}

// ---- refusals at creation ----

#[test]
fn refuses_bad_json_and_bad_shapes() {
    assert!(matches!(
        Template::parse("{"),
        Err(TemplateError::Json { .. })
    ));
    assert!(matches!(
        Template::parse(""),
        Err(TemplateError::Json { .. })
    ));
    let err = refuse_body(
        r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "a"}},
            "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "b"}}}}"#,
    );
    assert!(err.contains("duplicate key \"thing\""), "{err}");
    assert_eq!(
        refuse_body("[]"),
        "(root): expected a JSON object, found a list"
    );
    assert_eq!(refuse_body("{}"), "(root): missing Resources");
    assert_eq!(
        refuse_body(r#"{"Resources": {}}"#),
        "Resources: a template declares at least one resource"
    );
    assert_eq!(
        refuse_body(r#"{"Resources": [], "Outputs": {}}"#),
        "Outputs: unknown key (expected Parameters, Mappings, Resources or DeviceConfiguration)"
    );
    assert_eq!(
        refuse_body(r#"{"Resources": {"thing": "AWS::IoT::Thing"}}"#),
        "Resources.thing: expected a resource object, found a string"
    );
    assert_eq!(
        refuse_body(r#"{"Resources": {"thing": {"Properties": {}}}}"#),
        "Resources.thing: missing Type"
    );
    assert_eq!(
        refuse_body(r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing"}}}"#),
        "Resources.thing: missing Properties"
    );
    assert_eq!(
        refuse_body(
            r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {}, "DependsOn": "x"}}}"#
        ),
        "Resources.thing.DependsOn: unknown key (expected Type, Properties or OverrideSettings)"
    );
}

#[test]
fn refuses_long_bodies_by_characters() {
    let err = Template::parse(&" ".repeat(MAX_BODY_CHARS + 1)).unwrap_err();
    assert_eq!(
        err,
        TemplateError::TooLong {
            chars: MAX_BODY_CHARS + 1,
            max: MAX_BODY_CHARS
        }
    );
    assert_eq!(
        err.to_string(),
        "template body is 10241 characters long; the limit is 10240"
    );
    // 10,240 characters of which many are two bytes long is still fine.
    let base = r#"{"Resources": {"p": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "P"}}}, "DeviceConfiguration": {"pad": ""}}"#;
    let pad = "é".repeat(MAX_BODY_CHARS - base.chars().count());
    let body = base.replace(r#""pad": """#, &format!(r#""pad": "{pad}""#));
    assert_eq!(body.chars().count(), MAX_BODY_CHARS);
    assert!(body.len() > MAX_BODY_CHARS);
    Template::parse(&body).unwrap();
}

#[test]
fn refuses_unknown_resource_types() {
    let err = refuse_body(
        r#"{"Resources": {"thing": {"Type": "AWS::IoT::ThingGroup", "Properties": {}}}}"#,
    );
    assert_eq!(
        err,
        "Resources.thing.Type: unknown resource type \"AWS::IoT::ThingGroup\" \
         (expected AWS::IoT::Thing, AWS::IoT::Certificate or AWS::IoT::Policy)"
    );
    assert_eq!(
        refuse_body(r#"{"Resources": {"thing": {"Type": 7, "Properties": {}}}}"#),
        "Resources.thing.Type: expected a resource type name, found a number"
    );
}

#[test]
fn refuses_unknown_intrinsic_functions() {
    let err = refuse_body(&thing_body(r#"{"ThingName": {"Fn::If": ["c", "a", "b"]}}"#));
    assert_eq!(
        err,
        "Resources.thing.Properties.ThingName: unknown intrinsic function Fn::If \
         (supported: Ref, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::FindInMap)"
    );
    let err = refuse_body(&thing_body(
        r#"{"ThingName": {"Fn::Join": ["", ["a", {"Fn::GetAtt": ["thing", "Arn"]}]]}}"#,
    ));
    assert!(
        err.starts_with(
            "Resources.thing.Properties.ThingName.Fn::Join[1][1]: unknown intrinsic function Fn::GetAtt"
        ),
        "{err}"
    );
    assert_eq!(
        refuse(r#"{"Ref": "A", "Other": 1}"#).to_string(),
        "DeviceConfiguration.v: an intrinsic function object has exactly one key, \
         but Ref comes with 1 others"
    );
}

#[test]
fn refuses_malformed_function_arguments() {
    let cases = [
        (
            r#"{"Fn::Join": ["-"]}"#,
            "DeviceConfiguration.v: Fn::Join expects [delimiter, [values]]",
        ),
        (
            r#"{"Fn::Join": [0, ["a"]]}"#,
            "DeviceConfiguration.v: Fn::Join expects [delimiter, [values]]",
        ),
        (
            r#"{"Fn::Join": ["-", {"Ref": "A"}]}"#,
            "DeviceConfiguration.v: Fn::Join expects [delimiter, [values]]",
        ),
        (
            r#"{"Fn::Join": ["-", ["a", 7]]}"#,
            "DeviceConfiguration.v.Fn::Join[1][1]: expected a string, found a number",
        ),
        (
            r#"{"Fn::Join": ["-", ["a", {"Fn::Split": [",", "b"]}]]}"#,
            "DeviceConfiguration.v.Fn::Join[1][1]: expected a string, found a list",
        ),
        (
            r#"{"Ref": ["A"]}"#,
            "DeviceConfiguration.v: Ref expects a parameter name",
        ),
        (
            r#"{"Fn::Sub": 5}"#,
            "DeviceConfiguration.v: Fn::Sub expects \"string\" or [\"string\", {variables}]",
        ),
        (
            r#"{"Fn::Sub": ["${X}", ["X", "y"]]}"#,
            "DeviceConfiguration.v: Fn::Sub expects \"string\" or [\"string\", {variables}]",
        ),
        (
            r#"{"Fn::Sub": "a-${A"}"#,
            "DeviceConfiguration.v: Fn::Sub: \"${\" without a closing \"}\"",
        ),
        (
            r#"{"Fn::Sub": "a-${}"}"#,
            "DeviceConfiguration.v: Fn::Sub: empty variable \"${}\"",
        ),
        (
            r#"{"Fn::Sub": ["${X}", {"X": ["list"]}]}"#,
            "DeviceConfiguration.v.Fn::Sub[1].X: expected a string, found a list",
        ),
        (
            r#"{"Fn::Select": [0]}"#,
            "DeviceConfiguration.v: Fn::Select expects [index, [values]]",
        ),
        (
            r#"{"Fn::Select": [0, "abc"]}"#,
            "DeviceConfiguration.v: Fn::Select expects [index, [values]]",
        ),
        (
            r#"{"Fn::Select": [-1, ["a"]]}"#,
            "DeviceConfiguration.v.Fn::Select[0]: Fn::Select index \"-1\" is not a non-negative integer",
        ),
        (
            r#"{"Fn::Select": ["first", ["a"]]}"#,
            "DeviceConfiguration.v.Fn::Select[0]: Fn::Select index \"first\" is not a non-negative integer",
        ),
        (
            r#"{"Fn::Select": [3, ["a", "b"]]}"#,
            "DeviceConfiguration.v: Fn::Select index 3 is out of range for a list of 2",
        ),
        (
            r#"{"Fn::Split": ["", "abc"]}"#,
            "DeviceConfiguration.v: Fn::Split expects [delimiter, string] with a non-empty delimiter",
        ),
        (
            r#"{"Fn::Split": [",", ["a"]]}"#,
            "DeviceConfiguration.v.Fn::Split[1]: expected a string, found a list",
        ),
        (
            r#"{"Fn::FindInMap": ["Regions", "eu"]}"#,
            "DeviceConfiguration.v: Fn::FindInMap expects [MapName, TopLevelKey, SecondLevelKey]",
        ),
        (
            r#"{"Fn::FindInMap": ["Regions", "eu", 1]}"#,
            "DeviceConfiguration.v.Fn::FindInMap[2]: expected a string, found a number",
        ),
    ];
    for (expr, message) in cases {
        assert_eq!(refuse(expr).to_string(), message, "for {expr}");
    }
}

#[test]
fn refuses_references_to_undeclared_parameters() {
    let err = refuse_body(&thing_body(r#"{"ThingName": {"Ref": "Serial"}}"#));
    assert_eq!(
        err,
        "Resources.thing.Properties.ThingName: reference to undeclared parameter \"Serial\""
    );
    assert_eq!(
        refuse(r#"{"Fn::Sub": "${A}-${Serial}"}"#).to_string(),
        "DeviceConfiguration.v: reference to undeclared parameter \"Serial\""
    );
    // Sub's own variables are not parameters, but only inside that Sub.
    assert_eq!(
        refuse(r#"{"Fn::Join": ["", [{"Fn::Sub": ["${X}", {"X": "1"}]}, {"Ref": "X"}]]}"#)
            .to_string(),
        "DeviceConfiguration.v.Fn::Join[1][1]: reference to undeclared parameter \"X\""
    );
    // Pseudo parameters are always allowed; other AWS:: names are not.
    assert_eq!(
        refuse(r#"{"Ref": "AWS::IoT::Certificate::Email"}"#).to_string(),
        "DeviceConfiguration.v: reference to undeclared parameter \"AWS::IoT::Certificate::Email\""
    );
    let err = refuse_body(
        r#"{"Parameters": {"AWS::IoT::Certificate::Commonname": {"Type": "String"}},
            "Resources": {"p": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "P"}}}}"#,
    );
    assert!(
        err.starts_with(
            "Parameters.AWS::IoT::Certificate::Commonname: \"AWS::IoT::Certificate::Commonname\" \
             is not an AWS IoT pseudo parameter"
        ),
        "{err}"
    );
}

#[test]
fn refuses_bad_parameter_declarations() {
    let with = |parameters: &str| {
        refuse_body(&format!(
            r#"{{"Parameters": {parameters},
                "Resources": {{"p": {{"Type": "AWS::IoT::Policy", "Properties": {{"PolicyName": "P"}}}}}}}}"#
        ))
    };
    assert_eq!(
        with(r#"{"N": {"Type": "Number"}}"#),
        "Parameters.N.Type: parameter Type must be \"String\", not \"Number\""
    );
    assert_eq!(with(r#"{"N": {}}"#), "Parameters.N: missing Type");
    assert_eq!(
        with(r#"{"N": {"Type": "String", "Default": 5}}"#),
        "Parameters.N.Default: expected a string, found a number"
    );
    assert_eq!(
        with(r#"{"N": {"Type": "String", "AllowedValues": ["a"]}}"#),
        "Parameters.N.AllowedValues: unknown key (expected Type, Default or Description)"
    );
    assert_eq!(
        with(r#"{"N": "String"}"#),
        "Parameters.N: expected a parameter object, found a string"
    );
    assert!(with(r#"{"Bad Name": {"Type": "String"}}"#)
        .starts_with("Parameters.Bad Name: \"Bad Name\" is not a valid parameter name"));
}

#[test]
fn refuses_find_in_map_of_missing_mappings() {
    assert_eq!(
        refuse(r#"{"Fn::FindInMap": ["Zones", {"Ref": "Region"}, "Url"]}"#).to_string(),
        "DeviceConfiguration.v: Fn::FindInMap of missing mapping \"Zones\""
    );
    assert_eq!(
        refuse(r#"{"Fn::FindInMap": ["Regions", "ap", "Url"]}"#).to_string(),
        "DeviceConfiguration.v: Fn::FindInMap: mapping \"Regions\" has no key \"ap\""
    );
    assert_eq!(
        refuse(r#"{"Fn::FindInMap": ["Regions", "us", "Groups"]}"#).to_string(),
        "DeviceConfiguration.v: Fn::FindInMap: mapping \"Regions\" has no key \"Groups\""
    );
}

#[test]
fn refuses_functions_and_odd_values_in_mappings() {
    let with = |mappings: &str| {
        refuse_body(&format!(
            r#"{{"Mappings": {mappings},
                "Resources": {{"p": {{"Type": "AWS::IoT::Policy", "Properties": {{"PolicyName": "P"}}}}}}}}"#
        ))
    };
    assert_eq!(
        with(r#"{"M": {"k": {"v": {"Ref": "A"}}}}"#),
        "Mappings.M.k.v: Mappings cannot contain intrinsic functions"
    );
    assert_eq!(
        with(r#"{"M": {"k": {"v": ["a", {"Fn::Sub": "x"}]}}}"#),
        "Mappings.M.k.v[1]: Mappings cannot contain intrinsic functions"
    );
    assert_eq!(
        with(r#"{"M": {"Fn::FindInMap": ["a", "b", "c"]}}"#),
        "Mappings.M: Mappings cannot contain intrinsic functions"
    );
    assert_eq!(
        with(r#"{"M": {"k": {"v": 5}}}"#),
        "Mappings.M.k.v: expected a string or a list of strings, found a number"
    );
    assert_eq!(
        with(r#"{"M": {"k": {"v": [["a"]]}}}"#),
        "Mappings.M.k.v[0]: expected a string, found a list"
    );
}

#[test]
fn refuses_merge_where_aws_does_not_allow_it() {
    let err = refuse_body(
        r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "t"},
            "OverrideSettings": {"ThingTypeName": "MERGE"}}}}"#,
    );
    assert_eq!(
        err,
        "Resources.thing.OverrideSettings.ThingTypeName: MERGE is only allowed for AttributePayload and ThingGroups"
    );
    let err = refuse_body(
        r#"{"Resources": {"cert": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": "x"},
            "OverrideSettings": {"Status": "MERGE"}}}}"#,
    );
    assert_eq!(
        err,
        "Resources.cert.OverrideSettings.Status: MERGE is only allowed for AttributePayload and ThingGroups"
    );
    let err = refuse_body(
        r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "t"},
            "OverrideSettings": {"ThingGroups": "merge"}}}}"#,
    );
    assert_eq!(
        err,
        "Resources.thing.OverrideSettings.ThingGroups: \"merge\" is not an override setting \
         (expected DO_NOTHING, REPLACE, FAIL or MERGE)"
    );
    let err = refuse_body(
        r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "t"},
            "OverrideSettings": {"ThingName": "REPLACE"}}}}"#,
    );
    assert_eq!(
        err,
        "Resources.thing.OverrideSettings.ThingName: unknown key \
         (expected AttributePayload, ThingTypeName, ThingGroups or BillingGroup)"
    );
    let err = refuse_body(
        r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "t"},
            "OverrideSettings": {"ThingGroups": "MERGE", "THING_GROUPS": "FAIL"}}}}"#,
    );
    assert!(
        err.contains("the override setting for ThingGroups is given twice"),
        "{err}"
    );
    let err = refuse_body(
        r#"{"Resources": {"p": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "P"},
            "OverrideSettings": {"PolicyName": "REPLACE"}}}}"#,
    );
    assert_eq!(
        err,
        "Resources.p.OverrideSettings: OverrideSettings are not available for AWS::IoT::Policy"
    );
}

#[test]
fn refuses_policies_without_exactly_one_of_name_and_document() {
    assert_eq!(
        refuse_body(
            r#"{"Resources": {"p": {"Type": "AWS::IoT::Policy",
                "Properties": {"PolicyName": "P", "PolicyDocument": "{}"}}}}"#
        ),
        "Resources.p.Properties: PolicyName and PolicyDocument are both set; set exactly one"
    );
    assert_eq!(
        refuse_body(r#"{"Resources": {"p": {"Type": "AWS::IoT::Policy", "Properties": {}}}}"#),
        "Resources.p.Properties: neither PolicyName nor PolicyDocument is set; set exactly one"
    );
    assert!(refuse_body(
        r#"{"Resources": {"p": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": "{not json"}}}}"#
    )
    .starts_with("Resources.p.Properties.PolicyDocument: the policy document is not JSON"));
    assert_eq!(
        refuse_body(
            r#"{"Resources": {"p": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": "[1]"}}}}"#
        ),
        "Resources.p.Properties.PolicyDocument: the policy document is a list, not a JSON object"
    );
    assert!(refuse_body(
        r#"{"Resources": {"p": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "no/slash"}}}}"#
    )
    .starts_with("Resources.p.Properties.PolicyName: \"no/slash\" is not a valid policy name"));
}

#[test]
fn refuses_a_second_thing_or_certificate() {
    assert_eq!(
        refuse_body(
            r#"{"Resources": {
                "a": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "a"}},
                "b": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "b"}}}}"#
        ),
        "Resources.b: a template declares at most one AWS::IoT::Thing (already declared as \"a\")"
    );
    assert_eq!(
        refuse_body(
            r#"{"Resources": {
                "c1": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": "x"}},
                "c2": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": "y"}}}}"#
        ),
        "Resources.c2: a template declares at most one AWS::IoT::Certificate (already declared as \"c1\")"
    );
    // Several policies are fine.
    Template::parse(
        r#"{"Resources": {
            "p1": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "a"}},
            "p2": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "b"}}}}"#,
    )
    .unwrap();
}

#[test]
fn refuses_bad_thing_properties() {
    assert_eq!(
        refuse_body(&thing_body(r#"{"AttributePayload": {}}"#)),
        "Resources.thing.Properties: missing ThingName"
    );
    assert_eq!(
        refuse_body(&thing_body(r#"{"ThingName": "t", "PackageVersions": {}}"#)),
        "Resources.thing.Properties.PackageVersions: unknown key \
         (expected ThingName, AttributePayload, ThingTypeName, ThingGroups or BillingGroup)"
    );
    assert_eq!(
        refuse_body(&thing_body(r#"{"ThingName": "has space"}"#)),
        "Resources.thing.Properties.ThingName: \"has space\" is not a valid thing name \
         (1 to 128 of [a-zA-Z0-9:_-])"
    );
    assert_eq!(
        refuse_body(&thing_body(r#"{"ThingName": ["a"]}"#)),
        "Resources.thing.Properties.ThingName: expected a string, found a list"
    );
    assert_eq!(
        refuse_body(&thing_body(r#"{"ThingName": {"Fn::Split": [",", "a,b"]}}"#)),
        "Resources.thing.Properties.ThingName: expected a string, found a list"
    );
    assert_eq!(
        refuse_body(&thing_body(
            r#"{"ThingName": "t", "AttributePayload": {"v": 1}}"#
        )),
        "Resources.thing.Properties.AttributePayload.v: expected a string, found a number"
    );
    assert!(refuse_body(&thing_body(
        r#"{"ThingName": "t", "AttributePayload": {"bad key": "v"}}"#
    ))
    .starts_with("Resources.thing.Properties.AttributePayload.bad key: \"bad key\" is not a valid attribute name"));
    assert!(refuse_body(&thing_body(
        r#"{"ThingName": "t", "AttributePayload": {"k": "New York"}}"#
    ))
    .starts_with("Resources.thing.Properties.AttributePayload.k: \"New York\" is not a valid attribute value"));
    assert_eq!(
        refuse_body(&thing_body(
            r#"{"ThingName": "t", "AttributePayload": {"Ref": "A"}}"#
        )),
        "Resources.thing.Properties.AttributePayload: expected an object of attribute names to values, \
         found an intrinsic function"
    );
    assert_eq!(
        refuse_body(&thing_body(r#"{"ThingName": "t", "ThingGroups": "g"}"#)),
        "Resources.thing.Properties.ThingGroups: expected a list, found a string"
    );
    assert!(refuse_body(&thing_body(
        r#"{"ThingName": "t", "ThingGroups": ["ok", "not ok"]}"#
    ))
    .starts_with(
        "Resources.thing.Properties.ThingGroups[1]: \"not ok\" is not a valid thing group name"
    ));
    assert!(
        refuse_body(&thing_body(r#"{"ThingName": "t", "ThingTypeName": "a/b"}"#)).starts_with(
            "Resources.thing.Properties.ThingTypeName: \"a/b\" is not a valid thing type name"
        )
    );
}

#[test]
fn refuses_bad_certificate_properties() {
    let with = |properties: &str| {
        refuse_body(&format!(
            r#"{{"Resources": {{"cert": {{"Type": "AWS::IoT::Certificate", "Properties": {properties}}}}}}}"#
        ))
    };
    assert_eq!(
        with(r#"{"Status": "ACTIVE"}"#),
        "Resources.cert.Properties: set exactly one of CertificateId, CertificateSigningRequest or CertificatePem"
    );
    assert_eq!(
        with(r#"{"CertificateId": "a", "CertificateSigningRequest": "b"}"#),
        "Resources.cert.Properties: set exactly one of CertificateId, CertificateSigningRequest or CertificatePem"
    );
    assert_eq!(
        with(r#"{"CertificateId": "a", "CertificateID": "b"}"#),
        "Resources.cert.Properties: CertificateId is given twice (as CertificateId and CertificateID)"
    );
    assert_eq!(
        with(r#"{"CertificateId": "a", "CACertificatePem": "b"}"#),
        "Resources.cert.Properties.CACertificatePem: CACertificatePem goes only with CertificatePem"
    );
    assert_eq!(
        with(r#"{"CertificateId": "a", "Status": "ENABLED"}"#),
        "Resources.cert.Properties.Status: certificate Status \"ENABLED\" is neither ACTIVE nor INACTIVE"
    );
    assert!(
        with(r#"{"CertificateId": "a", "ThingPrincipalType": "EXCLUSIVE_THING"}"#)
            .starts_with("Resources.cert.Properties.ThingPrincipalType: unknown key")
    );
}

#[test]
fn refuses_nested_objects_in_device_configuration() {
    assert_eq!(
        refuse(r#"{"nested": "object"}"#).to_string(),
        "DeviceConfiguration.v: expected a string, number, boolean, list or intrinsic function \
         (DeviceConfiguration does not support nested objects), found an object"
    );
    assert_eq!(
        refuse(r#"["a", {"b": 1}]"#).to_string(),
        "DeviceConfiguration.v[1]: expected a string, number, boolean, list or intrinsic function \
         (DeviceConfiguration does not support nested objects), found an object"
    );
}

#[test]
fn refuses_nesting_deeper_than_the_limit() {
    let mut expr = r#"{"Ref": "A"}"#.to_string();
    for _ in 0..20 {
        expr = format!(r#"{{"Fn::Join": ["", [{expr}]]}}"#);
    }
    // 20 nested functions (40 levels of JSON) are refused...
    let err = refuse(&expr);
    assert!(
        matches!(err, TemplateError::TooDeep { max: 32, .. }),
        "{err}"
    );
    assert!(err
        .path()
        .unwrap()
        .starts_with("DeviceConfiguration.v.Fn::Join[1][0]"));
    // ...15 are fine.
    let mut expr = r#"{"Ref": "A"}"#.to_string();
    for _ in 0..15 {
        expr = format!(r#"{{"Fn::Join": ["", [{expr}]]}}"#);
    }
    assert_eq!(eval(&expr, &[]), "alpha");
    // Far deeper than serde_json's own limit: an error, not a stack overflow.
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        Template::parse(&body_with(&deep)),
        Err(TemplateError::TooLong { .. })
    ));
    let deep = format!("{}1{}", "[".repeat(3_000), "]".repeat(3_000));
    assert!(matches!(
        Template::parse(&body_with(&deep)),
        Err(TemplateError::Json { .. })
    ));
}

// ---- faults at render ----

#[test]
fn render_fails_on_a_missing_required_parameter() {
    let err = try_eval(r#"{"Fn::Sub": "${A}/${B}"}"#, &[]).unwrap_err();
    assert_eq!(
        err,
        RenderError::MissingParameter {
            path: "DeviceConfiguration.v".into(),
            name: "B".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "DeviceConfiguration.v: parameter \"B\" has no value and no default"
    );
    let err = try_eval(r#"{"Ref": "AWS::IoT::Certificate::StateName"}"#, &[]).unwrap_err();
    assert_eq!(
        err.missing_parameter(),
        Some("AWS::IoT::Certificate::StateName")
    );
}

#[test]
fn render_fails_on_select_out_of_range() {
    let expr = r#"{"Fn::Select": [{"Ref": "Index"}, {"Fn::Split": [",", {"Ref": "List"}]}]}"#;
    let err = try_eval(expr, &[("Index", "3")]).unwrap_err();
    assert_eq!(
        err,
        RenderError::SelectOutOfRange {
            path: "DeviceConfiguration.v".into(),
            index: 3,
            len: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "DeviceConfiguration.v: Fn::Select index 3 is out of range for a list of 3"
    );
    let err = try_eval(expr, &[("Index", "-1")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DeviceConfiguration.v: Fn::Select index \"-1\" is not a non-negative integer"
    );
    let err = try_eval(r#"{"Fn::Select": [0, [null]]}"#, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DeviceConfiguration.v: expected a non-null value, found null"
    );
    // The error points at the innermost failing function.
    let err = try_eval(
        &format!(r#"{{"Fn::Join": ["-", ["a", {expr}]]}}"#),
        &[("Index", "9")],
    )
    .unwrap_err();
    assert_eq!(err.path(), "DeviceConfiguration.v.Fn::Join[1][1]");
}

#[test]
fn render_fails_on_find_in_map_keys_missing_at_render() {
    let err = try_eval(
        r#"{"Fn::FindInMap": ["Regions", {"Ref": "Region"}, "Url"]}"#,
        &[("Region", "ap")],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "DeviceConfiguration.v: Fn::FindInMap: mapping \"Regions\" has no key \"ap\""
    );
    let err = try_eval(
        r#"{"Fn::FindInMap": [{"Ref": "B"}, "eu", "Url"]}"#,
        &[("B", "Nope")],
    )
    .unwrap_err();
    assert_eq!(
        err,
        RenderError::MissingMapping {
            path: "DeviceConfiguration.v".into(),
            mapping: "Nope".into()
        }
    );
    let err = try_eval(
        r#"{"Fn::FindInMap": ["Regions", "eu", {"Ref": "B"}]}"#,
        &[("B", "Port")],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "DeviceConfiguration.v: Fn::FindInMap: mapping \"Regions\" has no key \"Port\""
    );
}

#[test]
fn render_fails_on_invalid_thing_names() {
    let template = Template::parse(&thing_body(
        r#"{"ThingName": {"Fn::Sub": "${B}"}, "AttributePayload": {"a": {"Ref": "A"}}}"#,
    ))
    .unwrap();
    for bad in ["", "has space", "slash/not", &"x".repeat(129)] {
        let err = template.render(&params(&[("B", bad)])).unwrap_err();
        assert!(
            matches!(&err, RenderError::InvalidThingName { path, .. }
                if path == "Resources.thing.Properties.ThingName"),
            "{bad:?}: {err}"
        );
    }
    let err = template.render(&params(&[("B", "")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Resources.thing.Properties.ThingName: \"\" is not a valid thing name (1 to 128 of [a-zA-Z0-9:_-])"
    );
    template.render(&params(&[("B", "ok:name_1-2")])).unwrap();
    // Attribute values are checked too.
    let err = template
        .render(&params(&[("B", "ok"), ("A", "two words")]))
        .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("Resources.thing.Properties.AttributePayload.a: \"two words\" is not a valid attribute value"));
}

#[test]
fn render_fails_on_wrong_types_and_bad_values() {
    // A mapping list where the thing name wants a string.
    let template = Template::parse(&thing_body(
        r#"{"ThingName": {"Fn::FindInMap": ["Regions", "eu", {"Ref": "B"}]}, "ThingGroups": [{"Ref": "A"}]}"#,
    ))
    .unwrap();
    let err = template.render(&params(&[("B", "Groups")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Resources.thing.Properties.ThingName: expected a string, found a list"
    );
    let err = template.render(&params(&[("B", "Url")])).unwrap_err();
    assert!(matches!(err, RenderError::InvalidThingName { .. }), "{err}");
    // A group name from a parameter.
    let template = Template::parse(&thing_body(
        r#"{"ThingName": "t", "ThingGroups": [{"Ref": "A"}]}"#,
    ))
    .unwrap();
    let err = template.render(&params(&[("A", "no good")])).unwrap_err();
    assert!(err.to_string().starts_with(
        "Resources.thing.Properties.ThingGroups: \"no good\" is not a valid thing group name"
    ));
    // A status from a parameter.
    let body = format!(
        r#"{{"Parameters": {PARAMETERS}, "Resources": {{"c": {{"Type": "AWS::IoT::Certificate",
            "Properties": {{"CertificateId": "x", "Status": {{"Ref": "B"}}}}}}}}}}"#
    );
    let err = Template::parse(&body)
        .unwrap()
        .render(&params(&[("B", "REVOKED")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Resources.c.Properties.Status: certificate Status \"REVOKED\" is neither ACTIVE nor INACTIVE"
    );
    // A policy document built by Fn::Sub that is not JSON.
    let body = format!(
        r#"{{"Parameters": {PARAMETERS}, "Resources": {{"p": {{"Type": "AWS::IoT::Policy",
            "Properties": {{"PolicyDocument": {{"Fn::Sub": "{{\"Resource\": \"${{B}}\"}}"}}}}}}}}}}"#
    );
    let template = Template::parse(&body).unwrap();
    template.render(&params(&[("B", "fine")])).unwrap();
    let err = template
        .render(&params(&[("B", "quote\" breaks it")]))
        .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("Resources.p.Properties.PolicyDocument: the policy document is not JSON"));
}

#[test]
fn render_output_is_bounded() {
    // Each level repeats the one below 16 times: 16^8 copies of "x" if
    // nothing stopped it.
    let mut expr = r#""x""#.to_string();
    for _ in 0..8 {
        let uses = "${v}".repeat(16);
        expr = format!(r#"{{"Fn::Sub": ["{uses}", {{"v": {expr}}}]}}"#);
    }
    let err = try_eval(&expr, &[]).unwrap_err();
    assert!(
        matches!(err, RenderError::TooLarge { max, .. } if max == MAX_RENDER_BYTES),
        "{err}"
    );
    // A large parameter referenced many times hits the same limit.
    let big = "b".repeat(200_000);
    let err = try_eval(
        r#"{"Fn::Join": ["", [{"Ref": "B"}, {"Ref": "B"}, {"Ref": "B"}, {"Ref": "B"}, {"Ref": "B"}, {"Ref": "B"}]]}"#,
        &[("B", &big)],
    )
    .unwrap_err();
    assert!(matches!(err, RenderError::TooLarge { .. }), "{err}");
}
