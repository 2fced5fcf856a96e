//! AWS IoT policies: documents in AWS's policy language, parsed and
//! checked once (a bad document is refused naming the JSON path of the
//! fault), and the one evaluator that decides `iot:Connect`,
//! `iot:Publish`, `iot:Subscribe` and `iot:Receive` for a certificate's
//! session: explicit Deny wins, then any Allow, and no matching statement
//! (or no policy at all) is no access.
//!
//! Resources are matched on the part after the ARN's account field
//! (`client/…`, `topic/…`, `topicfilter/…`); region and account are
//! checked for form only, as idmint is one account. `*` matches any run of
//! characters, `?` one character; `+` and `#` in a `topicfilter/`
//! resource are literal, as in AWS. Policy variables are substituted as
//! literal text, so a client id of `*` is the character `*`, never a
//! wildcard; a variable without a value (no thing, no such attribute)
//! makes its resource match nothing.

use std::collections::BTreeMap;

use serde_json::Value;

/// Largest policy document accepted, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 20 * 1024;

/// An action the MQTT endpoint (and the broker integrations) decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IotAction {
    /// `iot:Connect`, on `client/<client id>`.
    Connect,
    /// `iot:Publish`, on `topic/<topic>`.
    Publish,
    /// `iot:Subscribe`, on `topicfilter/<topic filter>`.
    Subscribe,
    /// `iot:Receive`, on `topic/<topic>` of each delivered message.
    Receive,
}

impl IotAction {
    /// The AWS name, e.g. `iot:Publish`.
    pub fn name(self) -> &'static str {
        match self {
            IotAction::Connect => "iot:Connect",
            IotAction::Publish => "iot:Publish",
            IotAction::Subscribe => "iot:Subscribe",
            IotAction::Receive => "iot:Receive",
        }
    }

    /// The resource kind this action is decided on.
    pub fn resource_kind(self) -> ResourceKind {
        match self {
            IotAction::Connect => ResourceKind::Client,
            IotAction::Publish | IotAction::Receive => ResourceKind::Topic,
            IotAction::Subscribe => ResourceKind::TopicFilter,
        }
    }
}

impl std::fmt::Display for IotAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Actions of AWS IoT's policy language that idmint accepts in documents
/// but does not decide (shadows, jobs, retained messages): a statement
/// naming only these grants nothing here.
const OTHER_ACTIONS: &[&str] = &[
    "iot:RetainPublish",
    "iot:GetRetainedMessage",
    "iot:ListRetainedMessages",
    "iot:DeleteConnection",
    "iot:GetThingShadow",
    "iot:UpdateThingShadow",
    "iot:DeleteThingShadow",
    "iot:ListNamedShadowsForThing",
    "iot:DescribeJobExecution",
    "iot:GetPendingJobExecutions",
    "iot:StartNextPendingJobExecution",
    "iot:UpdateJobExecution",
    "iot:AssumeRoleWithCertificate",
];

const DECIDED_ACTIONS: [IotAction; 4] = [
    IotAction::Connect,
    IotAction::Publish,
    IotAction::Subscribe,
    IotAction::Receive,
];

/// A statement's `Effect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `Allow`.
    Allow,
    /// `Deny`: wins over every Allow.
    Deny,
}

/// What an ARN names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    /// `client/…`: an MQTT client id.
    Client,
    /// `topic/…`: a topic name.
    Topic,
    /// `topicfilter/…`: a topic filter.
    TopicFilter,
    /// `*` (or an ARN whose resource part is `*`): everything.
    Any,
    /// Another AWS IoT resource type (`thing/…`, `cert/…`, …): matches no
    /// action idmint decides.
    Other,
}

/// One `${…}` policy variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Variable {
    /// `${iot:ClientId}`.
    ClientId,
    /// `${iot:Connection.Thing.ThingName}`.
    ThingName,
    /// `${iot:Connection.Thing.ThingTypeName}`.
    ThingTypeName,
    /// `${iot:Connection.Thing.Attributes[NAME]}`.
    ThingAttribute(String),
    /// `${iot:Certificate.Subject.CommonName}`.
    CommonName,
}

/// A piece of a resource pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Variable(Variable),
    Star,
    Question,
}

/// One resource of a statement: its kind and the pattern after
/// `client/`, `topic/` or `topicfilter/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePattern {
    /// What the ARN names.
    pub kind: ResourceKind,
    /// The pattern as written (wildcards and variables unexpanded).
    pub pattern: String,
    pieces: Vec<Piece>,
    /// Precompiled when the pattern has no variables.
    fixed: Option<Vec<Token>>,
}

impl ResourcePattern {
    /// Whether the pattern names `variable` (an outside broker's ACL,
    /// compiled ahead of any session, cannot know `${iot:ClientId}`).
    pub fn uses(&self, variable: &Variable) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Variable(v) if v == variable))
    }
}

/// A condition idmint evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `"Bool": {"iot:Connection.Thing.IsAttached": "true"|"false"}`.
    ThingAttached(bool),
}

/// One statement of a policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// `Sid`, if given.
    pub sid: Option<String>,
    /// `Allow` or `Deny`.
    pub effect: Effect,
    /// The decided actions it names (expanded from wildcards such as
    /// `iot:*`); may be empty when it names only other actions.
    pub actions: Vec<IotAction>,
    /// Its resources.
    pub resources: Vec<ResourcePattern>,
    /// Its conditions (all must hold).
    pub conditions: Vec<Condition>,
}

/// A parsed, checked policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    statements: Vec<Statement>,
}

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy document: {path}: {reason}")]
pub struct PolicyError {
    /// The JSON path of the fault (`Statement[1].Resource[0]`).
    pub path: String,
    /// What is wrong, and what would be right.
    pub reason: String,
}

fn fault(path: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.into(),
        reason: reason.into(),
    }
}

/// The values of the policy variables for one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyVariables {
    /// The MQTT client id.
    pub client_id: String,
    /// The certificate's thing.
    pub thing_name: Option<String>,
    /// Its thing type.
    pub thing_type: Option<String>,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// The certificate subject's common name.
    pub common_name: Option<String>,
}

impl PolicyVariables {
    fn value(&self, variable: &Variable) -> Option<&str> {
        match variable {
            Variable::ClientId => Some(self.client_id.as_str()),
            Variable::ThingName => self.thing_name.as_deref(),
            Variable::ThingTypeName => self.thing_type.as_deref(),
            Variable::ThingAttribute(name) => self.attributes.get(name).map(String::as_str),
            Variable::CommonName => self.common_name.as_deref(),
        }
    }

    /// `pattern` (a resource pattern as written in a document) with its
    /// variables replaced by their values; `None` when one has no value.
    /// Wildcards stay as written.
    pub fn substitute(&self, pattern: &str) -> Option<String> {
        let pieces = parse_pattern(pattern).ok()?;
        let mut out = String::with_capacity(pattern.len());
        for piece in &pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Variable(v) => out.push_str(self.value(v)?),
                Piece::Star => out.push('*'),
                Piece::Question => out.push('?'),
            }
        }
        Some(out)
    }
}

/// The outcome of evaluating policies for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An Allow statement matched and no Deny did.
    Allow,
    /// A Deny statement matched.
    ExplicitDeny,
    /// No statement matched: no access.
    NoMatch,
}

impl Decision {
    /// Whether the request may go ahead.
    pub fn allowed(self) -> bool {
        self == Decision::Allow
    }
}

impl PolicyDocument {
    /// Parses and checks a document; every fault names its JSON path.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(fault(
                "$",
                format!(
                    "the document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted",
                    text.len()
                ),
            ));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            fault(
                format!("line {} column {}", e.line(), e.column()),
                format!("not JSON: {e}"),
            )
        })?;
        let Value::Object(top) = value else {
            return Err(fault("$", "a policy document is a JSON object"));
        };
        for key in top.keys() {
            if key != "Version" && key != "Statement" && key != "Id" {
                return Err(fault(
                    key.as_str(),
                    "unknown key; a policy document has Version and Statement",
                ));
            }
        }
        match top.get("Version") {
            Some(Value::String(v)) if v == "2012-10-17" => {}
            Some(_) => {
                return Err(fault("Version", "must be \"2012-10-17\""));
            }
            None => return Err(fault("Version", "missing; set \"2012-10-17\"")),
        }
        let statements = match top.get("Statement") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, s)| parse_statement(&format!("Statement[{i}]"), s))
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Array(_)) => return Err(fault("Statement", "is empty")),
            Some(s @ Value::Object(_)) => vec![parse_statement("Statement", s)?],
            Some(_) => {
                return Err(fault(
                    "Statement",
                    "must be a statement object or an array of them",
                ))
            }
            None => return Err(fault("Statement", "missing")),
        };
        Ok(PolicyDocument { statements })
    }

    /// Its statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Whether a resource names the thing's type or an attribute, values
    /// only the thing record holds (its name is on the certificate).
    pub fn names_thing_record(&self) -> bool {
        self.statements.iter().any(|s| {
            s.resources.iter().any(|r| {
                r.pieces.iter().any(|p| {
                    matches!(
                        p,
                        Piece::Variable(Variable::ThingTypeName | Variable::ThingAttribute(_))
                    )
                })
            })
        })
    }
}

fn strings<'a>(path: &str, value: &'a Value) -> Result<Vec<(String, &'a str)>, PolicyError> {
    match value {
        Value::String(s) => Ok(vec![(path.to_string(), s.as_str())]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok((format!("{path}[{i}]"), s.as_str())),
                _ => Err(fault(format!("{path}[{i}]"), "must be a string")),
            })
            .collect(),
        Value::Array(_) => Err(fault(path, "is empty")),
        _ => Err(fault(path, "must be a string or an array of strings")),
    }
}

fn parse_statement(path: &str, value: &Value) -> Result<Statement, PolicyError> {
    let Value::Object(fields) = value else {
        return Err(fault(path, "a statement is a JSON object"));
    };
    for key in fields.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Action" | "Resource" | "Condition" => {}
            "NotAction" | "NotResource" => {
                return Err(fault(
                    format!("{path}.{key}"),
                    "is not supported; list the actions and resources the statement covers",
                ))
            }
            _ => {
                return Err(fault(
                    format!("{path}.{key}"),
                    "unknown key; a statement has Sid, Effect, Action, Resource and Condition",
                ))
            }
        }
    }
    let sid = match fields.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(fault(format!("{path}.Sid"), "must be a string")),
    };
    let effect = match fields.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(_) => {
            return Err(fault(
                format!("{path}.Effect"),
                "must be \"Allow\" or \"Deny\"",
            ))
        }
        None => return Err(fault(format!("{path}.Effect"), "missing")),
    };
    let action_path = format!("{path}.Action");
    let actions_value = fields
        .get("Action")
        .ok_or_else(|| fault(&action_path, "missing"))?;
    let mut actions = Vec::new();
    for (at, name) in strings(&action_path, actions_value)? {
        for action in parse_action(&at, name)? {
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
    }
    let resource_path = format!("{path}.Resource");
    let resources_value = fields
        .get("Resource")
        .ok_or_else(|| fault(&resource_path, "missing"))?;
    let resources = strings(&resource_path, resources_value)?
        .into_iter()
        .map(|(at, arn)| parse_resource(&at, arn))
        .collect::<Result<Vec<_>, _>>()?;
    let conditions = match fields.get("Condition") {
        None => Vec::new(),
        Some(c) => parse_conditions(&format!("{path}.Condition"), c)?,
    };
    Ok(Statement {
        sid,
        effect,
        actions,
        resources,
        conditions,
    })
}

/// The decided actions `name` covers (none for a known other action).
fn parse_action(path: &str, name: &str) -> Result<Vec<IotAction>, PolicyError> {
    let pattern = if name == "*" { "iot:*" } else { name };
    if !pattern.starts_with("iot:") {
        return Err(fault(
            path,
            format!("unknown action {name:?}: AWS IoT actions start with \"iot:\" (iot:Connect, iot:Publish, iot:Subscribe, iot:Receive)"),
        ));
    }
    let tokens = literal_tokens(pattern);
    let decided: Vec<IotAction> = DECIDED_ACTIONS
        .into_iter()
        .filter(|a| glob(&tokens, a.name().as_bytes()))
        .collect();
    let other = OTHER_ACTIONS.iter().any(|a| glob(&tokens, a.as_bytes()));
    if decided.is_empty() && !other {
        return Err(fault(
            path,
            format!("unknown action {name:?}: idmint decides iot:Connect, iot:Publish, iot:Subscribe and iot:Receive"),
        ));
    }
    Ok(decided)
}

fn parse_resource(path: &str, arn: &str) -> Result<ResourcePattern, PolicyError> {
    if arn == "*" {
        return Ok(ResourcePattern {
            kind: ResourceKind::Any,
            pattern: "*".into(),
            pieces: vec![Piece::Star],
            fixed: Some(vec![Token::Star]),
        });
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" {
        return Err(fault(
            path,
            format!("{arn:?} is not an ARN: write arn:aws:iot:REGION:ACCOUNT:topic/NAME (or client/, topicfilter/), or \"*\""),
        ));
    }
    if !matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov" | "*") {
        return Err(fault(
            path,
            format!("unknown partition {:?} in {arn:?}", parts[1]),
        ));
    }
    if parts[2] != "iot" {
        return Err(fault(
            path,
            format!(
                "{arn:?} names service {:?}; AWS IoT resources are arn:aws:iot:…",
                parts[2]
            ),
        ));
    }
    for (field, value) in [("region", parts[3]), ("account", parts[4])] {
        if value.is_empty()
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-*?".contains(c))
        {
            return Err(fault(path, format!("bad {field} {value:?} in {arn:?}")));
        }
    }
    let rest = parts[5];
    let (kind, pattern) = if rest == "*" {
        (ResourceKind::Any, "*")
    } else {
        let Some((kind, pattern)) = rest.split_once('/') else {
            return Err(fault(
                path,
                format!("{rest:?} in {arn:?} names no resource: write client/ID, topic/NAME or topicfilter/FILTER"),
            ));
        };
        let kind = match kind {
            "client" => ResourceKind::Client,
            "topic" => ResourceKind::Topic,
            "topicfilter" => ResourceKind::TopicFilter,
            "thing"
            | "thinggroup"
            | "thingtype"
            | "cert"
            | "cacert"
            | "rolealias"
            | "job"
            | "jobtemplate"
            | "policy"
            | "provisioningtemplate" => ResourceKind::Other,
            _ => {
                return Err(fault(
                    path,
                    format!(
                        "unknown resource type {kind:?} in {arn:?}: client, topic or topicfilter"
                    ),
                ))
            }
        };
        (kind, pattern)
    };
    if pattern.is_empty() {
        return Err(fault(path, format!("{arn:?} names an empty resource")));
    }
    let pieces = parse_pattern(pattern).map_err(|reason| fault(path, reason))?;
    let fixed = if pieces.iter().any(|p| matches!(p, Piece::Variable(_))) {
        None
    } else {
        Some(tokens(&pieces, &PolicyVariables::default()).unwrap_or_default())
    };
    Ok(ResourcePattern {
        kind,
        pattern: pattern.to_string(),
        pieces,
        fixed,
    })
}

fn parse_pattern(pattern: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated variable in {pattern:?}"))?;
            let name = &after[..end];
            rest = &after[end + 1..];
            match name {
                "*" | "?" | "$" => literal.push_str(name),
                _ => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Variable(parse_variable(name)?));
                }
            }
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '*' | '?' => {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(if c == '*' {
                    Piece::Star
                } else {
                    Piece::Question
                });
            }
            c if c.is_control() => {
                return Err(format!("control character in {pattern:?}"));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

fn parse_variable(name: &str) -> Result<Variable, String> {
    Ok(match name {
        "iot:ClientId" => Variable::ClientId,
        "iot:Connection.Thing.ThingName" => Variable::ThingName,
        "iot:Connection.Thing.ThingTypeName" => Variable::ThingTypeName,
        "iot:Certificate.Subject.CommonName" => Variable::CommonName,
        _ => {
            if let Some(attribute) = name
                .strip_prefix("iot:Connection.Thing.Attributes[")
                .and_then(|a| a.strip_suffix(']'))
                .filter(|a| !a.is_empty())
            {
                Variable::ThingAttribute(attribute.to_string())
            } else {
                return Err(format!(
                    "unknown policy variable ${{{name}}}: idmint knows ${{iot:ClientId}}, ${{iot:Connection.Thing.ThingName}}, ${{iot:Connection.Thing.ThingTypeName}}, ${{iot:Connection.Thing.Attributes[NAME]}} and ${{iot:Certificate.Subject.CommonName}}"
                ));
            }
        }
    })
}

fn parse_conditions(path: &str, value: &Value) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(operators) = value else {
        return Err(fault(path, "must be an object of condition operators"));
    };
    let mut conditions = Vec::new();
    for (operator, keys) in operators {
        let at = format!("{path}.{operator}");
        if operator != "Bool" {
            return Err(fault(
                at,
                "unsupported condition operator; idmint supports Bool with iot:Connection.Thing.IsAttached",
            ));
        }
        let Value::Object(keys) = keys else {
            return Err(fault(at, "must be an object"));
        };
        for (key, expected) in keys {
            let at = format!("{at}.{key}");
            if key != "iot:Connection.Thing.IsAttached" {
                return Err(fault(
                    at,
                    "unsupported condition key; idmint supports iot:Connection.Thing.IsAttached",
                ));
            }
            let attached = match expected {
                Value::Bool(b) => *b,
                Value::String(s) if s == "true" => true,
                Value::String(s) if s == "false" => false,
                _ => return Err(fault(at, "must be \"true\" or \"false\"")),
            };
            conditions.push(Condition::ThingAttached(attached));
        }
    }
    Ok(conditions)
}

/// A matching token: one byte of literal text, or a wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    Star,
    Question,
}

fn literal_tokens(pattern: &str) -> Vec<Token> {
    pattern
        .bytes()
        .map(|b| match b {
            b'*' => Token::Star,
            b'?' => Token::Question,
            b => Token::Byte(b),
        })
        .collect()
}

/// The tokens of `pieces` with `vars` substituted as literal text.
fn tokens(pieces: &[Piece], vars: &PolicyVariables) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.extend(text.bytes().map(Token::Byte)),
            Piece::Variable(v) => out.extend(vars.value(v)?.bytes().map(Token::Byte)),
            Piece::Star => out.push(Token::Star),
            Piece::Question => out.push(Token::Question),
        }
    }
    Some(out)
}

/// Length of the UTF-8 character starting with `b` (1 for a stray byte).
fn char_len(b: u8) -> usize {
    match b {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Wildcard match: `*` any run of characters, `?` exactly one.
fn glob(pattern: &[Token], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(Token::Question) => {
                t = (t + char_len(text[t])).min(text.len());
                p += 1;
                continue;
            }
            Some(Token::Byte(b)) if *b == text[t] => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                let next = (st + char_len(text[st])).min(text.len());
                star = Some((sp, next));
                p = sp + 1;
                t = next;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|tok| *tok == Token::Star)
}

impl ResourcePattern {
    fn matches(&self, kind: ResourceKind, resource: &str, vars: &PolicyVariables) -> bool {
        if self.kind != kind && self.kind != ResourceKind::Any {
            return false;
        }
        match &self.fixed {
            Some(tokens) => glob(tokens, resource.as_bytes()),
            None => match tokens(&self.pieces, vars) {
                Some(tokens) => glob(&tokens, resource.as_bytes()),
                None => false,
            },
        }
    }
}

impl Statement {
    fn applies(&self, action: IotAction, resource: &str, vars: &PolicyVariables) -> bool {
        self.actions.contains(&action)
            && self.conditions.iter().all(|c| match c {
                Condition::ThingAttached(attached) => vars.thing_name.is_some() == *attached,
            })
            && self
                .resources
                .iter()
                .any(|r| r.matches(action.resource_kind(), resource, vars))
    }
}

/// Decides `action` on `resource` (a client id, topic or topic filter)
/// under `policies`: an explicit Deny wins, then any Allow; nothing
/// matching is no access.
pub fn evaluate(
    policies: &[PolicyDocument],
    action: IotAction,
    resource: &str,
    vars: &PolicyVariables,
) -> Decision {
    let mut allowed = false;
    for statement in policies.iter().flat_map(|p| p.statements.iter()) {
        if statement.applies(action, resource, vars) {
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::NoMatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(statements: &str) -> PolicyDocument {
        PolicyDocument::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#
        ))
        .expect("valid document")
    }

    fn vars(client: &str, thing: Option<&str>) -> PolicyVariables {
        PolicyVariables {
            client_id: client.into(),
            thing_name: thing.map(str::to_string),
            thing_type: Some("sensor".into()),
            attributes: BTreeMap::from([("site".to_string(), "berlin".to_string())]),
            common_name: Some("dev-1".into()),
        }
    }

    const ARN: &str = "arn:aws:iot:us-east-1:123456789012";

    #[test]
    fn allow_and_no_policy() {
        let p = doc(&format!(
            r#"{{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"{ARN}:topic/dev/1/*"}}"#
        ));
        let v = vars("c", Some("t"));
        assert_eq!(
            evaluate(std::slice::from_ref(&p), IotAction::Publish, "dev/1/x", &v),
            Decision::Allow
        );
        assert_eq!(
            evaluate(
                std::slice::from_ref(&p),
                IotAction::Receive,
                "dev/1/x/y",
                &v
            ),
            Decision::Allow
        );
        assert_eq!(
            evaluate(std::slice::from_ref(&p), IotAction::Publish, "dev/2/x", &v),
            Decision::NoMatch
        );
        assert_eq!(
            evaluate(&[p], IotAction::Subscribe, "dev/1/x", &v),
            Decision::NoMatch
        );
        assert_eq!(
            evaluate(&[], IotAction::Connect, "c", &v),
            Decision::NoMatch
        );
    }

    #[test]
    fn deny_wins_across_policies() {
        let allow = doc(r#"{"Effect":"Allow","Action":"iot:*","Resource":"*"}"#);
        let deny = doc(&format!(
            r#"{{"Effect":"Deny","Action":"iot:Publish","Resource":"{ARN}:topic/admin/*"}}"#
        ));
        let v = vars("c", None);
        let both = [allow, deny];
        assert_eq!(
            evaluate(&both, IotAction::Publish, "admin/reboot", &v),
            Decision::ExplicitDeny
        );
        assert_eq!(
            evaluate(&both, IotAction::Publish, "other", &v),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&both, IotAction::Connect, "anything", &v),
            Decision::Allow
        );
    }

    #[test]
    fn variables_are_literal_text() {
        let p = doc(&format!(
            r#"{{"Effect":"Allow","Action":"iot:Connect","Resource":"{ARN}:client/${{iot:Connection.Thing.ThingName}}"}},
               {{"Effect":"Allow","Action":"iot:Publish","Resource":["{ARN}:topic/d/${{iot:ClientId}}/*","{ARN}:topic/site/${{iot:Connection.Thing.Attributes[site]}}","{ARN}:topic/type/${{iot:Connection.Thing.ThingTypeName}}","{ARN}:topic/cn/${{iot:Certificate.Subject.CommonName}}"]}}"#
        ));
        let v = vars("t1", Some("t1"));
        assert!(evaluate(std::slice::from_ref(&p), IotAction::Connect, "t1", &v).allowed());
        assert!(!evaluate(std::slice::from_ref(&p), IotAction::Connect, "t2", &v).allowed());
        assert!(evaluate(std::slice::from_ref(&p), IotAction::Publish, "d/t1/x", &v).allowed());
        assert!(evaluate(
            std::slice::from_ref(&p),
            IotAction::Publish,
            "site/berlin",
            &v
        )
        .allowed());
        assert!(evaluate(
            std::slice::from_ref(&p),
            IotAction::Publish,
            "type/sensor",
            &v
        )
        .allowed());
        assert!(evaluate(std::slice::from_ref(&p), IotAction::Publish, "cn/dev-1", &v).allowed());
        // A client id of "*" is the character, not a wildcard.
        let star = vars("*", Some("t1"));
        assert!(!evaluate(
            std::slice::from_ref(&p),
            IotAction::Publish,
            "d/other/x",
            &star
        )
        .allowed());
        assert!(evaluate(std::slice::from_ref(&p), IotAction::Publish, "d/*/x", &star).allowed());
        // No thing: the thing-name resource matches nothing.
        let lone = vars("t1", None);
        assert!(!evaluate(&[p], IotAction::Connect, "t1", &lone).allowed());
    }

    #[test]
    fn wildcards_and_literal_mqtt_wildcards() {
        let p = doc(&format!(
            r#"{{"Effect":"Allow","Action":"iot:Subscribe","Resource":["{ARN}:topicfilter/a/#","{ARN}:topicfilter/b/?/c"]}}"#
        ));
        let v = vars("c", None);
        assert!(evaluate(std::slice::from_ref(&p), IotAction::Subscribe, "a/#", &v).allowed());
        // `#` in the resource is literal: it does not allow other filters.
        assert!(!evaluate(std::slice::from_ref(&p), IotAction::Subscribe, "a/b", &v).allowed());
        assert!(!evaluate(std::slice::from_ref(&p), IotAction::Subscribe, "#", &v).allowed());
        assert!(evaluate(std::slice::from_ref(&p), IotAction::Subscribe, "b/x/c", &v).allowed());
        assert!(evaluate(std::slice::from_ref(&p), IotAction::Subscribe, "b/é/c", &v).allowed());
        assert!(!evaluate(&[p], IotAction::Subscribe, "b/xy/c", &v).allowed());
    }

    #[test]
    fn glob_cases() {
        let g = |p: &str, t: &str| glob(&literal_tokens(p), t.as_bytes());
        assert!(g("*", ""));
        assert!(g("a*b*c", "aXbYc"));
        assert!(g("a*b*c", "abbbc"));
        assert!(!g("a*b*c", "acb"));
        assert!(g("??", "éa"));
        assert!(!g("???", "éa"));
        assert!(g("*?", "é"));
        assert!(!g("a", "ab"));
    }

    #[test]
    fn conditions() {
        let p = doc(
            r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}}"#,
        );
        assert!(evaluate(
            std::slice::from_ref(&p),
            IotAction::Connect,
            "c",
            &vars("c", Some("t"))
        )
        .allowed());
        assert!(!evaluate(&[p], IotAction::Connect, "c", &vars("c", None)).allowed());
    }

    #[test]
    fn faults_name_their_path() {
        let bad = |text: &str| PolicyDocument::parse(text).expect_err("refused");
        let wrap = |s: &str| format!(r#"{{"Version":"2012-10-17","Statement":[{s}]}}"#);
        let e = bad(&wrap(
            r#"{"Effect":"Allow","Action":["iot:Connect","iot:Fly"],"Resource":"*"}"#,
        ));
        assert_eq!(e.path, "Statement[0].Action[1]");
        let e = bad(&wrap(
            r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"*"},{"Effect":"Allow","Action":"iot:Publish","Resource":["*","topic/x"]}"#,
        ));
        assert_eq!(e.path, "Statement[1].Resource[1]");
        let e = bad(&wrap(
            r#"{"Effect":"Maybe","Action":"iot:Connect","Resource":"*"}"#,
        ));
        assert_eq!(e.path, "Statement[0].Effect");
        let e = bad(&wrap(&format!(
            r#"{{"Effect":"Allow","Action":"iot:Connect","Resource":"{ARN}:device/x"}}"#
        )));
        assert_eq!(e.path, "Statement[0].Resource");
        let e = bad(&wrap(&format!(
            r#"{{"Effect":"Allow","Action":"iot:Connect","Resource":"{ARN}:client/${{iot:Nope}}"}}"#
        )));
        assert!(e.reason.contains("unknown policy variable"), "{e}");
        let e = bad(&wrap(
            r#"{"Effect":"Allow","NotAction":"iot:Connect","Resource":"*"}"#,
        ));
        assert_eq!(e.path, "Statement[0].NotAction");
        assert_eq!(bad(r#"{"Statement":[]}"#).path, "Version");
        assert_eq!(
            bad(r#"{"Version":"2012-10-17","Statement":[]}"#).path,
            "Statement"
        );
        assert!(bad("[1,2").path.starts_with("line 1"));
        assert_eq!(bad(&"x".repeat(MAX_DOCUMENT_BYTES + 1)).path, "$");
    }

    #[test]
    fn other_actions_grant_nothing_here() {
        let p = doc(
            r#"{"Effect":"Allow","Action":["iot:GetThingShadow","iot:Update*"],"Resource":"*"}"#,
        );
        assert!(p.statements()[0].actions.is_empty());
        assert!(!evaluate(&[p], IotAction::Publish, "x", &vars("c", None)).allowed());
    }

    #[test]
    fn substitute_keeps_wildcards() {
        let v = vars("c1", Some("t"));
        assert_eq!(
            v.substitute("d/${iot:ClientId}/*").as_deref(),
            Some("d/c1/*")
        );
        assert_eq!(
            v.substitute("a/${iot:Connection.Thing.Attributes[none]}"),
            None
        );
    }

    #[test]
    fn thing_record_needed_only_for_type_and_attributes() {
        let by_name = doc(&format!(
            r#"{{"Effect":"Allow","Action":"iot:Publish","Resource":["{ARN}:topic/d/${{iot:ClientId}}/${{iot:Connection.Thing.ThingName}}/${{iot:Certificate.Subject.CommonName}}"]}}"#
        ));
        assert!(!by_name.names_thing_record());
        for variable in ["ThingTypeName", "Attributes[site]"] {
            let p = doc(&format!(
                r#"{{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}},
                   {{"Effect":"Deny","Action":"iot:Publish","Resource":"{ARN}:topic/x/${{iot:Connection.Thing.{variable}}}"}}"#
            ));
            assert!(p.names_thing_record(), "{variable}");
        }
    }
}
