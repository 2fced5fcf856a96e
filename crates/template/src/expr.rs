//! The intrinsic functions (`Ref`, `Fn::Join`, `Fn::Sub`, `Fn::Select`,
//! `Fn::Split`, `Fn::FindInMap`): compiled once from JSON into an [`Expr`]
//! tree, with every check that does not need a device's parameters done
//! then, and evaluated per device by an [`Evaluator`] that bounds its output.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Number, Value};

use crate::error::{RenderError, TemplateError};
use crate::model::ParameterSpec;
use crate::names::shorten;
use crate::{is_pseudo_parameter, MAX_RENDER_BYTES};

/// How deep objects, lists and functions may nest inside one property.
pub(crate) const MAX_NESTING: usize = 32;

/// `Mappings`: mapping name -> top-level key -> second-level key -> a
/// string or a list of strings.
pub(crate) type Mappings = BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>;

/// A compiled template value: JSON with intrinsic functions in it.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Null,
    Bool(bool),
    Number(Number),
    Str(String),
    Array(Vec<Expr>),
    /// A plain object (only inside a `PolicyDocument`).
    Object(Vec<(String, Expr)>),
    Func(Box<Func>),
}

/// An intrinsic function call and the JSON path where it appears.
#[derive(Debug, Clone)]
pub(crate) struct Func {
    path: String,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Ref(String),
    Join {
        delimiter: String,
        values: Expr,
    },
    Sub {
        parts: Vec<SubPart>,
        vars: BTreeMap<String, Expr>,
    },
    Select {
        index: Expr,
        list: Expr,
    },
    Split {
        delimiter: String,
        source: Expr,
    },
    FindInMap {
        map: Expr,
        top: Expr,
        second: Expr,
    },
}

/// A piece of an `Fn::Sub` string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubPart {
    Text(String),
    Var(String),
}

/// What an expression evaluates to, as far as is known before rendering.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    List,
    /// `Fn::Select` and `Fn::FindInMap`: known only when rendered.
    Any,
    Other(&'static str),
}

impl Expr {
    fn kind(&self) -> Kind {
        match self {
            Expr::Null => Kind::Other("null"),
            Expr::Bool(_) => Kind::Other("a boolean"),
            Expr::Number(_) => Kind::Other("a number"),
            Expr::Str(_) => Kind::Str,
            Expr::Array(_) => Kind::List,
            Expr::Object(_) => Kind::Other("an object"),
            Expr::Func(func) => match func.op {
                Op::Ref(_) | Op::Join { .. } | Op::Sub { .. } => Kind::Str,
                Op::Split { .. } => Kind::List,
                Op::Select { .. } | Op::FindInMap { .. } => Kind::Any,
            },
        }
    }

    /// The string, if this is a literal string.
    pub(crate) fn literal_str(&self) -> Option<&str> {
        match self {
            Expr::Str(s) => Some(s),
            _ => None,
        }
    }

    /// True if this is exactly `{"Ref": name}`.
    pub(crate) fn is_ref_to(&self, name: &str) -> bool {
        matches!(self, Expr::Func(func) if matches!(&func.op, Op::Ref(n) if n == name))
    }
}

/// A short description of a JSON value's type, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// If `map` is an intrinsic function object, its one key. An object that
/// mixes a function key with other keys is an error.
pub(crate) fn function_key<'m>(
    map: &'m Map<String, Value>,
    path: &str,
) -> Result<Option<&'m str>, TemplateError> {
    let Some(key) = map.keys().find(|k| is_function_key(k)) else {
        return Ok(None);
    };
    if map.len() != 1 {
        return Err(TemplateError::Invalid {
            path: path.to_owned(),
            reason: format!(
                "an intrinsic function object has exactly one key, but {key} comes with {} others",
                map.len() - 1
            ),
        });
    }
    Ok(Some(key))
}

fn is_function_key(key: &str) -> bool {
    key == "Ref" || key.starts_with("Fn::")
}

/// Whether a plain (non-function) object may appear in a position.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Objects {
    Allowed,
    /// Refused; the string says what is expected instead.
    Refused(&'static str),
}

const IN_FUNCTION: Objects = Objects::Refused("a string, a list or an intrinsic function");

/// Compiles template JSON into [`Expr`]s against the declared parameters
/// and mappings, and records every parameter referenced.
pub(crate) struct Compiler<'a> {
    parameters: &'a BTreeMap<String, ParameterSpec>,
    mappings: &'a Mappings,
    referenced: BTreeSet<String>,
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(
        parameters: &'a BTreeMap<String, ParameterSpec>,
        mappings: &'a Mappings,
    ) -> Self {
        Compiler {
            parameters,
            mappings,
            referenced: BTreeSet::new(),
        }
    }

    /// The parameters referenced by everything compiled so far.
    pub(crate) fn into_referenced(self) -> BTreeSet<String> {
        self.referenced
    }

    /// Compiles any value; plain objects as `objects` says.
    pub(crate) fn value(
        &mut self,
        value: &Value,
        path: &str,
        objects: Objects,
    ) -> Result<Expr, TemplateError> {
        self.compile(value, path, 0, objects)
    }

    /// Compiles a value that must evaluate to a string.
    pub(crate) fn string(&mut self, value: &Value, path: &str) -> Result<Expr, TemplateError> {
        let expr = self.compile(value, path, 0, IN_FUNCTION)?;
        expect_string(&expr, path)?;
        Ok(expr)
    }

    /// Compiles a value that must evaluate to a list of strings.
    pub(crate) fn string_list(&mut self, value: &Value, path: &str) -> Result<Expr, TemplateError> {
        let expr = self.compile(value, path, 0, IN_FUNCTION)?;
        expect_string_list(&expr, path)?;
        Ok(expr)
    }

    fn compile(
        &mut self,
        value: &Value,
        path: &str,
        depth: usize,
        objects: Objects,
    ) -> Result<Expr, TemplateError> {
        if depth > MAX_NESTING {
            return Err(TemplateError::TooDeep {
                path: path.to_owned(),
                max: MAX_NESTING,
            });
        }
        Ok(match value {
            Value::Null => Expr::Null,
            Value::Bool(b) => Expr::Bool(*b),
            Value::Number(n) => Expr::Number(n.clone()),
            Value::String(s) => Expr::Str(s.clone()),
            Value::Array(items) => {
                let mut exprs = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    exprs.push(self.compile(item, &format!("{path}[{i}]"), depth + 1, objects)?);
                }
                Expr::Array(exprs)
            }
            Value::Object(map) => {
                if let Some(name) = function_key(map, path)? {
                    let arg = map.get(name).unwrap_or(&Value::Null);
                    let op = self.function(name, arg, path, depth)?;
                    return Ok(Expr::Func(Box::new(Func {
                        path: path.to_owned(),
                        op,
                    })));
                }
                if let Objects::Refused(expected) = objects {
                    return Err(TemplateError::WrongType {
                        path: path.to_owned(),
                        expected,
                        found: "an object",
                    });
                }
                let mut fields = Vec::with_capacity(map.len());
                for (key, item) in map {
                    let expr = self.compile(item, &format!("{path}.{key}"), depth + 1, objects)?;
                    fields.push((key.clone(), expr));
                }
                Expr::Object(fields)
            }
        })
    }

    fn function(
        &mut self,
        name: &str,
        arg: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Op, TemplateError> {
        let bad = |function: &'static str, expected: &'static str| TemplateError::BadArguments {
            path: path.to_owned(),
            function,
            expected,
        };
        let args: &[Value] = match arg {
            Value::Array(items) => items,
            _ => &[],
        };
        match name {
            "Ref" => {
                let Value::String(parameter) = arg else {
                    return Err(bad("Ref", "a parameter name"));
                };
                self.reference(parameter, path)?;
                Ok(Op::Ref(parameter.clone()))
            }
            "Fn::Join" => {
                const EXPECTED: &str = "[delimiter, [values]]";
                let [Value::String(delimiter), values] = args else {
                    return Err(bad("Fn::Join", EXPECTED));
                };
                let vpath = format!("{path}.Fn::Join[1]");
                let values = self.compile(values, &vpath, depth + 1, IN_FUNCTION)?;
                match values.kind() {
                    Kind::List | Kind::Any => {}
                    Kind::Str | Kind::Other(_) => return Err(bad("Fn::Join", EXPECTED)),
                }
                expect_string_list(&values, &vpath)?;
                Ok(Op::Join {
                    delimiter: delimiter.clone(),
                    values,
                })
            }
            "Fn::Sub" => {
                const EXPECTED: &str = "\"string\" or [\"string\", {variables}]";
                let (text, var_map) = match (arg, args) {
                    (Value::String(text), _) => (text, None),
                    (_, [Value::String(text), Value::Object(vars)]) => (text, Some(vars)),
                    _ => return Err(bad("Fn::Sub", EXPECTED)),
                };
                let parts = parse_sub(text).map_err(|reason| TemplateError::Invalid {
                    path: path.to_owned(),
                    reason: format!("Fn::Sub: {reason}"),
                })?;
                let mut vars = BTreeMap::new();
                if let Some(var_map) = var_map {
                    if function_key(var_map, path)?.is_some() {
                        return Err(bad("Fn::Sub", EXPECTED));
                    }
                    for (var, value) in var_map {
                        let vpath = format!("{path}.Fn::Sub[1].{var}");
                        let expr = self.compile(value, &vpath, depth + 1, IN_FUNCTION)?;
                        expect_string(&expr, &vpath)?;
                        vars.insert(var.clone(), expr);
                    }
                }
                for part in &parts {
                    if let SubPart::Var(var) = part {
                        if !vars.contains_key(var) {
                            self.reference(var, path)?;
                        }
                    }
                }
                Ok(Op::Sub { parts, vars })
            }
            "Fn::Select" => {
                const EXPECTED: &str = "[index, [values]]";
                let [index, list] = args else {
                    return Err(bad("Fn::Select", EXPECTED));
                };
                let ipath = format!("{path}.Fn::Select[0]");
                let index = match index {
                    Value::Number(n) => match n.as_u64() {
                        Some(_) => Expr::Number(n.clone()),
                        None => return Err(select_index_error(&ipath, &n.to_string())),
                    },
                    Value::String(s) => match s.parse::<usize>() {
                        Ok(_) => Expr::Str(s.clone()),
                        Err(_) => return Err(select_index_error(&ipath, s)),
                    },
                    Value::Object(_) => {
                        let expr = self.compile(index, &ipath, depth + 1, IN_FUNCTION)?;
                        expect_string(&expr, &ipath)?;
                        expr
                    }
                    _ => return Err(bad("Fn::Select", EXPECTED)),
                };
                let lpath = format!("{path}.Fn::Select[1]");
                let list = self.compile(list, &lpath, depth + 1, IN_FUNCTION)?;
                match list.kind() {
                    Kind::List | Kind::Any => {}
                    Kind::Str | Kind::Other(_) => return Err(bad("Fn::Select", EXPECTED)),
                }
                if let (Some(i), Expr::Array(items)) = (literal_index(&index), &list) {
                    if i >= items.len() {
                        return Err(TemplateError::SelectOutOfRange {
                            path: path.to_owned(),
                            index: i,
                            len: items.len(),
                        });
                    }
                }
                Ok(Op::Select { index, list })
            }
            "Fn::Split" => {
                const EXPECTED: &str = "[delimiter, string] with a non-empty delimiter";
                let [Value::String(delimiter), source] = args else {
                    return Err(bad("Fn::Split", EXPECTED));
                };
                if delimiter.is_empty() {
                    return Err(bad("Fn::Split", EXPECTED));
                }
                let spath = format!("{path}.Fn::Split[1]");
                let source = self.compile(source, &spath, depth + 1, IN_FUNCTION)?;
                expect_string(&source, &spath)?;
                Ok(Op::Split {
                    delimiter: delimiter.clone(),
                    source,
                })
            }
            "Fn::FindInMap" => {
                let [map, top, second] = args else {
                    return Err(bad(
                        "Fn::FindInMap",
                        "[MapName, TopLevelKey, SecondLevelKey]",
                    ));
                };
                let mut compiled = Vec::with_capacity(3);
                for (i, value) in [map, top, second].into_iter().enumerate() {
                    let apath = format!("{path}.Fn::FindInMap[{i}]");
                    let expr = self.compile(value, &apath, depth + 1, IN_FUNCTION)?;
                    expect_string(&expr, &apath)?;
                    compiled.push(expr);
                }
                let [map, top, second]: [Expr; 3] = compiled
                    .try_into()
                    .map_err(|_| bad("Fn::FindInMap", "[MapName, TopLevelKey, SecondLevelKey]"))?;
                self.check_literal_lookup(&map, &top, &second, path)?;
                Ok(Op::FindInMap { map, top, second })
            }
            _ => Err(TemplateError::UnknownFunction {
                path: path.to_owned(),
                name: name.to_owned(),
            }),
        }
    }

    /// Refuses, at creation, `Fn::FindInMap` lookups whose literal names are
    /// not in `Mappings`.
    fn check_literal_lookup(
        &self,
        map: &Expr,
        top: &Expr,
        second: &Expr,
        path: &str,
    ) -> Result<(), TemplateError> {
        let Some(map_name) = map.literal_str() else {
            return Ok(());
        };
        let Some(mapping) = self.mappings.get(map_name) else {
            return Err(TemplateError::MissingMapping {
                path: path.to_owned(),
                mapping: map_name.to_owned(),
            });
        };
        let Some(top_key) = top.literal_str() else {
            return Ok(());
        };
        let Some(entry) = mapping.get(top_key) else {
            return Err(TemplateError::MissingMappingKey {
                path: path.to_owned(),
                mapping: map_name.to_owned(),
                key: top_key.to_owned(),
            });
        };
        match second.literal_str() {
            Some(key) if !entry.contains_key(key) => Err(TemplateError::MissingMappingKey {
                path: path.to_owned(),
                mapping: map_name.to_owned(),
                key: key.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Records a reference to `name`, which must be declared or a pseudo
    /// parameter.
    fn reference(&mut self, name: &str, path: &str) -> Result<(), TemplateError> {
        if self.parameters.contains_key(name) || is_pseudo_parameter(name) {
            self.referenced.insert(name.to_owned());
            Ok(())
        } else {
            Err(TemplateError::UndeclaredParameter {
                path: path.to_owned(),
                name: name.to_owned(),
            })
        }
    }
}

fn select_index_error(path: &str, index: &str) -> TemplateError {
    TemplateError::Invalid {
        path: path.to_owned(),
        reason: format!("Fn::Select index {index:?} is not a non-negative integer"),
    }
}

fn literal_index(index: &Expr) -> Option<usize> {
    match index {
        Expr::Number(n) => n.as_u64().and_then(|i| usize::try_from(i).ok()),
        Expr::Str(s) => s.parse().ok(),
        _ => None,
    }
}

fn expect_string(expr: &Expr, path: &str) -> Result<(), TemplateError> {
    let found = match expr.kind() {
        Kind::Str | Kind::Any => return Ok(()),
        Kind::List => "a list",
        Kind::Other(found) => found,
    };
    Err(TemplateError::WrongType {
        path: path.to_owned(),
        expected: "a string",
        found,
    })
}

fn expect_string_list(expr: &Expr, path: &str) -> Result<(), TemplateError> {
    match (expr, expr.kind()) {
        (Expr::Array(items), _) => {
            for (i, item) in items.iter().enumerate() {
                expect_string(item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (_, Kind::List | Kind::Any) => Ok(()),
        (_, Kind::Str) => Err(TemplateError::WrongType {
            path: path.to_owned(),
            expected: "a list",
            found: "a string",
        }),
        (_, Kind::Other(found)) => Err(TemplateError::WrongType {
            path: path.to_owned(),
            expected: "a list",
            found,
        }),
    }
}

/// Splits an `Fn::Sub` string into text and `${Name}` variables;
/// `${!Literal}` stands for the text `${Literal}`.
fn parse_sub(text: &str) -> Result<Vec<SubPart>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("\"${\" without a closing \"}\"".to_owned());
        };
        let inner = &after[..end];
        if let Some(escaped) = inner.strip_prefix('!') {
            literal.push_str("${");
            literal.push_str(escaped);
            literal.push('}');
        } else if inner.is_empty() {
            return Err("empty variable \"${}\"".to_owned());
        } else {
            if !literal.is_empty() {
                parts.push(SubPart::Text(std::mem::take(&mut literal)));
            }
            parts.push(SubPart::Var(inner.to_owned()));
        }
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(SubPart::Text(literal));
    }
    Ok(parts)
}

/// Evaluates compiled expressions with one device's parameters.
///
/// Every string it produces counts against [`MAX_RENDER_BYTES`], so a
/// template whose `Fn::Sub` variables expand into each other cannot grow
/// without bound.
pub(crate) struct Evaluator<'a> {
    parameters: &'a BTreeMap<String, ParameterSpec>,
    mappings: &'a Mappings,
    values: &'a BTreeMap<String, String>,
    spent: usize,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        parameters: &'a BTreeMap<String, ParameterSpec>,
        mappings: &'a Mappings,
        values: &'a BTreeMap<String, String>,
    ) -> Self {
        Evaluator {
            parameters,
            mappings,
            values,
            spent: 0,
        }
    }

    /// Evaluates `expr`, found at `path`, to JSON.
    pub(crate) fn eval(&mut self, expr: &Expr, path: &str) -> Result<Value, RenderError> {
        Ok(match expr {
            Expr::Null => Value::Null,
            Expr::Bool(b) => Value::Bool(*b),
            Expr::Number(n) => Value::Number(n.clone()),
            Expr::Str(s) => {
                self.charge(s.len(), path)?;
                Value::String(s.clone())
            }
            Expr::Array(items) => {
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    values.push(self.eval(item, path)?);
                }
                Value::Array(values)
            }
            Expr::Object(fields) => {
                let mut map = Map::new();
                for (key, item) in fields {
                    self.charge(key.len(), path)?;
                    map.insert(key.clone(), self.eval(item, path)?);
                }
                Value::Object(map)
            }
            Expr::Func(func) => self.func(func)?,
        })
    }

    /// Evaluates `expr`, which must produce a string.
    pub(crate) fn eval_string(&mut self, expr: &Expr, path: &str) -> Result<String, RenderError> {
        let path = expr_path(expr, path);
        match self.eval(expr, path)? {
            Value::String(s) => Ok(s),
            other => Err(wrong_type(path, "a string", &other)),
        }
    }

    /// Evaluates `expr`, which must produce a list of strings.
    pub(crate) fn eval_string_list(
        &mut self,
        expr: &Expr,
        path: &str,
    ) -> Result<Vec<String>, RenderError> {
        let path = expr_path(expr, path);
        let Value::Array(items) = self.eval(expr, path)? else {
            return Err(RenderError::WrongType {
                path: path.to_owned(),
                expected: "a list",
                found: "a string",
            });
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                other => Err(wrong_type(path, "a list of strings", &other)),
            })
            .collect()
    }

    fn func(&mut self, func: &Func) -> Result<Value, RenderError> {
        let path = func.path.as_str();
        match &func.op {
            Op::Ref(name) => self.parameter(name, path).map(Value::String),
            Op::Join { delimiter, values } => {
                let values = self.eval_string_list(values, path)?;
                let joined = values.join(delimiter);
                self.charge(joined.len(), path)?;
                Ok(Value::String(joined))
            }
            Op::Sub { parts, vars } => {
                let mut resolved: BTreeMap<&str, String> = BTreeMap::new();
                let mut out = String::new();
                for part in parts {
                    match part {
                        SubPart::Text(text) => out.push_str(text),
                        SubPart::Var(var) => {
                            if !resolved.contains_key(var.as_str()) {
                                let value = match vars.get(var) {
                                    Some(expr) => self.eval_string(expr, path)?,
                                    None => self.parameter(var, path)?,
                                };
                                resolved.insert(var, value);
                            }
                            if let Some(value) = resolved.get(var.as_str()) {
                                self.charge(value.len(), path)?;
                                out.push_str(value);
                            }
                        }
                    }
                }
                self.charge(out.len(), path)?;
                Ok(Value::String(out))
            }
            Op::Select { index, list } => {
                let index_value = self.eval(index, path)?;
                let parsed = match &index_value {
                    Value::Number(n) => n.as_u64().and_then(|i| usize::try_from(i).ok()),
                    Value::String(s) => s.parse::<usize>().ok(),
                    _ => None,
                };
                let Some(index) = parsed else {
                    let shown = match index_value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    return Err(RenderError::SelectIndex {
                        path: path.to_owned(),
                        index: shorten(&shown),
                    });
                };
                let Value::Array(mut items) = self.eval(list, path)? else {
                    return Err(RenderError::WrongType {
                        path: path.to_owned(),
                        expected: "a list to select from",
                        found: "a string",
                    });
                };
                let len = items.len();
                if index >= len {
                    return Err(RenderError::SelectOutOfRange {
                        path: path.to_owned(),
                        index,
                        len,
                    });
                }
                match items.swap_remove(index) {
                    Value::Null => Err(RenderError::WrongType {
                        path: path.to_owned(),
                        expected: "a non-null value",
                        found: "null",
                    }),
                    value => Ok(value),
                }
            }
            Op::Split { delimiter, source } => {
                let source = self.eval_string(source, path)?;
                let items: Vec<Value> = source
                    .split(delimiter.as_str())
                    .map(|s| Value::String(s.to_owned()))
                    .collect();
                self.charge(source.len() + items.len(), path)?;
                Ok(Value::Array(items))
            }
            Op::FindInMap { map, top, second } => {
                let map_name = self.eval_string(map, path)?;
                let top_key = self.eval_string(top, path)?;
                let second_key = self.eval_string(second, path)?;
                let Some(mapping) = self.mappings.get(&map_name) else {
                    return Err(RenderError::MissingMapping {
                        path: path.to_owned(),
                        mapping: map_name,
                    });
                };
                let Some(entry) = mapping.get(&top_key) else {
                    return Err(RenderError::MissingMappingKey {
                        path: path.to_owned(),
                        mapping: map_name,
                        key: top_key,
                    });
                };
                let Some(value) = entry.get(&second_key) else {
                    return Err(RenderError::MissingMappingKey {
                        path: path.to_owned(),
                        mapping: map_name,
                        key: second_key,
                    });
                };
                self.charge(value.to_string().len(), path)?;
                Ok(value.clone())
            }
        }
    }

    /// The value of a parameter: the caller's, else the declared default.
    fn parameter(&mut self, name: &str, path: &str) -> Result<String, RenderError> {
        let value = self
            .values
            .get(name)
            .or_else(|| self.parameters.get(name).and_then(|p| p.default.as_ref()));
        let Some(value) = value else {
            return Err(RenderError::MissingParameter {
                path: path.to_owned(),
                name: name.to_owned(),
            });
        };
        self.charge(value.len(), path)?;
        Ok(value.clone())
    }

    fn charge(&mut self, bytes: usize, path: &str) -> Result<(), RenderError> {
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > MAX_RENDER_BYTES {
            return Err(RenderError::TooLarge {
                path: path.to_owned(),
                max: MAX_RENDER_BYTES,
            });
        }
        Ok(())
    }
}

/// The path to report for `expr`: its own for a function, else `path`.
fn expr_path<'p>(expr: &'p Expr, path: &'p str) -> &'p str {
    match expr {
        Expr::Func(func) => &func.path,
        _ => path,
    }
}

fn wrong_type(path: &str, expected: &'static str, found: &Value) -> RenderError {
    RenderError::WrongType {
        path: path.to_owned(),
        expected,
        found: json_type(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> SubPart {
        SubPart::Text(s.to_owned())
    }

    fn var(s: &str) -> SubPart {
        SubPart::Var(s.to_owned())
    }

    #[test]
    fn sub_strings() {
        assert_eq!(parse_sub("").unwrap(), vec![]);
        assert_eq!(
            parse_sub("plain $ text }").unwrap(),
            vec![text("plain $ text }")]
        );
        assert_eq!(
            parse_sub("a-${X}-${AWS::IoT::Certificate::Id}").unwrap(),
            vec![
                text("a-"),
                var("X"),
                text("-"),
                var("AWS::IoT::Certificate::Id")
            ]
        );
        assert_eq!(
            parse_sub("${!Literal}${X}${!}").unwrap(),
            vec![text("${Literal}"), var("X"), text("${}")]
        );
        assert!(parse_sub("a ${X").is_err());
        assert!(parse_sub("${}").is_err());
        assert_eq!(
            parse_sub("é${é}é").unwrap(),
            vec![text("é"), var("é"), text("é")]
        );
    }
}
