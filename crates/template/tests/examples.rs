//! The AWS IoT documentation's example templates (fleet provisioning, JITP,
//! bulk registration), written out, parsed and rendered.

use std::collections::BTreeMap;

use idmint_template::{
    CertificateSource, CertificateStatus, OverrideSetting, RenderError, Template, TemplateError,
    TemplateType,
};
use serde_json::json;

/// The fleet provisioning template example of the AWS IoT Developer Guide
/// ("Provisioning templates", "Fleet provisioning template example"), with
/// one fix: the guide declares the parameter as `"ThingName "` (trailing
/// space) but references `ThingName`; see `aws_fleet_example_verbatim_typo`.
const AWS_FLEET: &str = include_str!("data/aws_fleet.json");

/// The JITP template example of the AWS IoT Developer Guide
/// ("Just-in-time provisioning"), the `templateBody` unescaped.
const AWS_JITP: &str = include_str!("data/aws_jitp.json");

/// The bulk registration example of the AWS IoT Developer Guide ("Template
/// example for JITP and bulk registration", certificate from a CSR), with
/// the same `"ThingName "` fix.
const AWS_BULK: &str = include_str!("data/aws_bulk.json");

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn aws_fleet_example_renders() {
    let template = Template::parse(AWS_FLEET).unwrap();
    assert_eq!(template.body(), AWS_FLEET);
    assert_eq!(
        template.parameters().keys().collect::<Vec<_>>(),
        ["DeviceLocation", "SerialNumber", "ThingName"]
    );
    assert!(template.parameters().values().all(|p| p.default.is_none()));
    assert_eq!(
        template
            .referenced_parameters()
            .into_iter()
            .collect::<Vec<_>>(),
        [
            "AWS::IoT::Certificate::Id",
            "DeviceLocation",
            "SerialNumber",
            "ThingName"
        ]
    );
    template.check_type(TemplateType::Fleet).unwrap();

    let out = template
        .render(&params(&[
            ("ThingName", "lightbulb-0042"),
            ("SerialNumber", "0042"),
            ("DeviceLocation", "Seattle"),
            ("AWS::IoT::Certificate::Id", "9f2c"),
            ("Unrelated", "ignored"),
        ]))
        .unwrap();

    let thing = out.thing.unwrap();
    assert_eq!(thing.name, "lightbulb-0042");
    assert_eq!(
        thing.attributes,
        params(&[("serialNumber", "serialNumber"), ("version", "v1")])
    );
    assert_eq!(thing.thing_type.as_deref(), Some("ThingPrefix_0042"));
    assert_eq!(thing.thing_groups, ["v1-lightbulbs", "WA"]);
    assert_eq!(
        thing.billing_group.as_deref(),
        Some("LightBulbBillingGroup")
    );
    assert_eq!(
        thing.overrides,
        BTreeMap::from([
            ("AttributePayload".to_string(), OverrideSetting::Merge),
            ("ThingGroups".to_string(), OverrideSetting::DoNothing),
            ("ThingTypeName".to_string(), OverrideSetting::Replace),
        ])
    );

    let cert = out.certificate.unwrap();
    assert_eq!(cert.source, CertificateSource::Id("9f2c".into()));
    assert_eq!(cert.status, CertificateStatus::Active);
    assert!(cert.overrides.is_empty());

    assert_eq!(out.policies.len(), 1);
    assert_eq!(out.policies[0].name, None);
    let document: serde_json::Value =
        serde_json::from_str(out.policies[0].document.as_deref().unwrap()).unwrap();
    assert_eq!(
        document,
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["iot:Publish"],
            "Resource": ["arn:aws:iot:us-east-1:123456789012:topic/foo/bar"]}]})
    );

    assert_eq!(
        serde_json::Value::Object(out.device_configuration),
        json!({"FallbackUrl": "https://www.example.com/test-site",
               "LocationUrl": "https://example.aws"})
    );
}

#[test]
fn aws_fleet_example_faults_per_device() {
    let template = Template::parse(AWS_FLEET).unwrap();
    // A location the mapping does not know fails that device only.
    let err = template
        .render(&params(&[
            ("ThingName", "lightbulb-1"),
            ("SerialNumber", "1"),
            ("DeviceLocation", "Portland"),
            ("AWS::IoT::Certificate::Id", "9f2c"),
        ]))
        .unwrap_err();
    assert_eq!(
        err,
        RenderError::MissingMappingKey {
            path: "DeviceConfiguration.LocationUrl".into(),
            mapping: "LocationTable".into(),
            key: "Portland".into(),
        }
    );
    // A device that sends no thing name.
    let err = template
        .render(&params(&[
            ("SerialNumber", "1"),
            ("DeviceLocation", "Seattle"),
            ("AWS::IoT::Certificate::Id", "9f2c"),
        ]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Resources.thing.Properties.ThingName: parameter \"ThingName\" has no value and no default"
    );
    assert_eq!(err.missing_parameter(), Some("ThingName"));
}

#[test]
fn aws_fleet_example_verbatim_typo_is_caught_at_creation() {
    // Verbatim, the guide declares "ThingName " and references "ThingName":
    // refused at creation rather than failing every device.
    let verbatim = AWS_FLEET.replacen("\"ThingName\" : {\n", "\"ThingName \" : {\n", 1);
    assert_ne!(verbatim, AWS_FLEET);
    let err = Template::parse(&verbatim).unwrap_err();
    assert_eq!(err.path(), Some("Parameters.ThingName "));
    assert!(
        err.to_string()
            .contains("\"ThingName \" is not a valid parameter name"),
        "{err}"
    );
}

#[test]
fn aws_fleet_example_of_the_fleet_provisioning_page() {
    // The hook example of "Provisioning devices that don't have device
    // certificates using fleet provisioning" references SerialNumber
    // without declaring it.
    let undeclared = r#"{
        "Parameters" : {"DeviceLocation": {"Type": "String"}},
        "Mappings": {"LocationTable": {"Seattle": {"LocationUrl": "https://example.aws"}}},
        "Resources" : {
            "thing" : {
                "Type" : "AWS::IoT::Thing",
                "Properties" : {
                    "AttributePayload" : {"version" : "v1", "serialNumber" : "serialNumber"},
                    "ThingName" : {"Fn::Join":["",["ThingPrefix_",{"Ref":"SerialNumber"}]]},
                    "ThingTypeName" : {"Fn::Join":["",["ThingTypePrefix_",{"Ref":"SerialNumber"}]]},
                    "ThingGroups" : ["widgets", "WA"],
                    "BillingGroup": "BillingGroup"
                },
                "OverrideSettings" : {
                    "AttributePayload" : "MERGE",
                    "ThingTypeName" : "REPLACE",
                    "ThingGroups" : "DO_NOTHING"
                }
            }
        }
    }"#;
    let err = Template::parse(undeclared).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Resources.thing.Properties.ThingName.Fn::Join[1][1]: reference to undeclared parameter \"SerialNumber\""
    );
    let declared = undeclared.replace(
        r#""Parameters" : {"#,
        r#""Parameters" : {"SerialNumber": {"Type": "String"}, "#,
    );
    let template = Template::parse(&declared).unwrap();
    let out = template
        .render(&params(&[("SerialNumber", "77"), ("DeviceLocation", "x")]))
        .unwrap();
    let thing = out.thing.unwrap();
    assert_eq!(thing.name, "ThingPrefix_77");
    assert_eq!(thing.thing_type.as_deref(), Some("ThingTypePrefix_77"));
    assert_eq!(thing.billing_group.as_deref(), Some("BillingGroup"));
}

#[test]
fn aws_jitp_example_renders() {
    let template = Template::parse(AWS_JITP).unwrap();
    template.check_type(TemplateType::Jitp).unwrap();
    template.check_type(TemplateType::Fleet).unwrap();
    assert_eq!(
        template
            .referenced_parameters()
            .into_iter()
            .collect::<Vec<_>>(),
        [
            "AWS::IoT::Certificate::CommonName",
            "AWS::IoT::Certificate::Country",
            "AWS::IoT::Certificate::Id"
        ]
    );
    let out = template
        .render(&params(&[
            ("AWS::IoT::Certificate::CommonName", "sensor-0001"),
            ("AWS::IoT::Certificate::Country", "US"),
            ("AWS::IoT::Certificate::Id", "c0ffee"),
        ]))
        .unwrap();
    let thing = out.thing.unwrap();
    assert_eq!(thing.name, "sensor-0001");
    assert_eq!(
        thing.attributes,
        params(&[("country", "US"), ("version", "v1")])
    );
    assert!(thing.thing_groups.is_empty());
    assert_eq!(thing.thing_type, None);
    assert!(thing.overrides.is_empty());
    let cert = out.certificate.unwrap();
    assert_eq!(cert.source, CertificateSource::Id("c0ffee".into()));
    assert_eq!(cert.status, CertificateStatus::Active);
    // A document given as a string is passed on as written.
    assert_eq!(
        out.policies[0].document.as_deref(),
        Some(
            "{\"Version\": \"2012-10-17\",\"Statement\": [{\"Effect\":\"Allow\",\
             \"Action\": [\"iot:Connect\",\"iot:Publish\"],\"Resource\" : [\"*\"]}]}"
        )
    );
    assert!(out.device_configuration.is_empty());
}

#[test]
fn aws_jitp_example_certificate_without_country_fails_clearly() {
    let template = Template::parse(AWS_JITP).unwrap();
    let err = template
        .render(&params(&[
            ("AWS::IoT::Certificate::CommonName", "sensor-0001"),
            ("AWS::IoT::Certificate::Id", "c0ffee"),
        ]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Resources.thing.Properties.AttributePayload.country: parameter \
         \"AWS::IoT::Certificate::Country\" has no value and no default"
    );
    assert_eq!(
        err.missing_parameter(),
        Some("AWS::IoT::Certificate::Country")
    );
}

#[test]
fn jitp_template_with_undeclared_pseudo_parameters() {
    // Pseudo parameters need no declaration; a certificate without an OU
    // names the missing field.
    let template = Template::parse(
        r#"{"Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {
            "ThingName": {"Fn::Sub": "${AWS::IoT::Certificate::OrganizationalUnit}-${AWS::IoT::Certificate::CommonName}"}}}}}"#,
    )
    .unwrap();
    assert_eq!(
        template
            .required_parameters()
            .into_iter()
            .collect::<Vec<_>>(),
        [
            "AWS::IoT::Certificate::CommonName",
            "AWS::IoT::Certificate::OrganizationalUnit"
        ]
    );
    let err = template
        .render(&params(&[("AWS::IoT::Certificate::CommonName", "dev1")]))
        .unwrap_err();
    assert_eq!(
        err.missing_parameter(),
        Some("AWS::IoT::Certificate::OrganizationalUnit")
    );
    assert!(err
        .to_string()
        .contains("\"AWS::IoT::Certificate::OrganizationalUnit\" has no value"));
    let out = template
        .render(&params(&[
            ("AWS::IoT::Certificate::CommonName", "dev1"),
            ("AWS::IoT::Certificate::OrganizationalUnit", "Plant7"),
        ]))
        .unwrap();
    assert_eq!(out.thing.unwrap().name, "Plant7-dev1");
}

#[test]
fn aws_bulk_example_renders_with_a_csr() {
    let template = Template::parse(AWS_BULK).unwrap();
    assert_eq!(
        template.parameters()["Location"].default.as_deref(),
        Some("WA")
    );
    let out = template
        .render(&params(&[
            ("ThingName", "bulb-7"),
            ("SerialNumber", "7"),
            ("CSR", "-----BEGIN CERTIFICATE REQUEST-----"),
        ]))
        .unwrap();
    let thing = out.thing.unwrap();
    assert_eq!(thing.thing_groups, ["v1-lightbulbs", "WA"]);
    assert_eq!(thing.thing_type.as_deref(), Some("lightBulb-versionA"));
    assert_eq!(
        out.certificate.unwrap().source,
        CertificateSource::SigningRequest("-----BEGIN CERTIFICATE REQUEST-----".into())
    );
    // A CSR template is neither a fleet nor a JITP template.
    let err = template.check_type(TemplateType::Fleet).unwrap_err();
    assert!(matches!(err, TemplateError::WrongTemplateType { .. }));
    assert_eq!(err.path(), Some("Resources.certificate.Properties"));
}

#[test]
fn device_configuration_is_for_fleet_templates_only() {
    let template = Template::parse(AWS_FLEET).unwrap();
    assert!(template.has_device_configuration());
    let err = template.check_type(TemplateType::Jitp).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DeviceConfiguration: only fleet provisioning templates return a DeviceConfiguration"
    );
}

#[test]
fn devices_cannot_supply_pseudo_parameters() {
    let template = Template::parse(AWS_FLEET).unwrap();
    let device = params(&[
        ("ThingName", "lightbulb-9"),
        ("SerialNumber", "9"),
        ("DeviceLocation", "Seattle"),
        ("AWS::IoT::Certificate::Id", "someone-elses-certificate"),
    ]);
    // Without idmint's own value, the device's is not used.
    let err = template
        .render_device(&device, &BTreeMap::new())
        .unwrap_err();
    assert_eq!(err.missing_parameter(), Some("AWS::IoT::Certificate::Id"));
    let out = template
        .render_device(&device, &params(&[("AWS::IoT::Certificate::Id", "mine")]))
        .unwrap();
    assert_eq!(
        out.certificate.unwrap().source,
        CertificateSource::Id("mine".into())
    );
    assert_eq!(out.thing.unwrap().name, "lightbulb-9");
}
