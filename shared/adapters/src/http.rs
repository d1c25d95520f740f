//! HTTP plumbing shared by the functions: who is calling, strict JSON bodies, and
//! RFC 9457 problem responses.

use std::collections::BTreeMap;

use fintx_domain::auth::Principal;
use fintx_domain::{DomainError, Problem};
use lambda_http::http::header::{HeaderValue, CONTENT_TYPE};
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value};

pub const DEV_TENANT_HEADER: &str = "x-fintx-tenant";
pub const DEV_SCOPES_HEADER: &str = "x-fintx-scopes";

/// The verified caller. Claims come from the API Gateway JWT authorizer; with
/// `dev_headers` (local development only) a request without claims may name its tenant
/// and scopes in `x-fintx-*` headers instead.
pub fn principal(request: &Request, dev_headers: bool) -> Result<Principal, DomainError> {
    let claims = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims)
            .filter(|claims| !claims.is_empty()),
        _ => None,
    };
    if let Some(claims) = claims {
        return Principal::from_claims(
            claims.get("tenant_id").map(String::as_str),
            claims.get("scope").map(String::as_str),
            claims.get("sub").map(String::as_str),
        );
    }
    if dev_headers {
        let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
        return Principal::from_claims(
            header(DEV_TENANT_HEADER),
            header(DEV_SCOPES_HEADER),
            Some("dev-headers"),
        );
    }
    Err(DomainError::Unauthenticated)
}

/// The API route below `/v1`, whatever prefix the front end adds (a stage, or the
/// `/lambda-url/<function>` of the local runner).
pub fn route_path(request: &Request) -> &str {
    let path = request.uri().path();
    match path.find("/v1/") {
        Some(start) => &path[start..],
        None => path,
    }
}

pub fn query_param(request: &Request, name: &str) -> Option<String> {
    request
        .query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

/// The body of a JWT API request: at most `max_bytes`, and sent as `application/json`
/// when it is not blank (SPEC §4), so a form or text body is never read as JSON.
pub fn json_body(request: &Request, max_bytes: usize) -> Result<&[u8], DomainError> {
    let bytes = body_bytes(request, max_bytes)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(bytes);
    }
    let media_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match media_type {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(bytes),
        _ => Err(DomainError::invalid_request(
            "the body must be sent with Content-Type: application/json",
        )),
    }
}

/// The raw body, refused when larger than `max_bytes`.
pub fn body_bytes(request: &Request, max_bytes: usize) -> Result<&[u8], DomainError> {
    let bytes: &[u8] = request.body().as_ref();
    if bytes.len() > max_bytes {
        return Err(DomainError::PayloadTooLarge(max_bytes));
    }
    Ok(bytes)
}

pub fn json_response<T: serde::Serialize>(status: u16, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => respond(status, "application/json", bytes),
        Err(error) => {
            tracing::error!(%error, "response serialisation failed");
            problem_response(&DomainError::Unavailable)
        }
    }
}

pub fn problem_response(error: &DomainError) -> Response<Body> {
    let problem = Problem::from(error);
    let bytes = serde_json::to_vec(&problem).unwrap_or_default();
    respond(problem.status, "application/problem+json", bytes)
}

fn respond(status: u16, content_type: &'static str, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::Binary(bytes));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON object read field by field. Each accessor removes the field it reads, and
/// [`JsonObject::finish`] refuses whatever is left, so unknown fields never pass silently.
/// Errors name the field but never echo its value.
pub struct JsonObject {
    fields: Map<String, Value>,
    path: String,
}

impl JsonObject {
    /// Parses a request body that must be a JSON object with unique keys at every level
    /// (a repeated key must never be read as either of its values).
    pub fn parse(bytes: &[u8]) -> Result<Self, DomainError> {
        let value = strict::parse(bytes)?;
        match value {
            Value::Object(fields) => Ok(Self {
                fields,
                path: String::new(),
            }),
            _ => Err(DomainError::invalid_request("the body must be a JSON object")),
        }
    }

    /// The canonical form of the object as parsed, equal to `canonical_json` of its body:
    /// lets a route fingerprint its body without parsing it twice. Call before reading
    /// any field.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        write_canonical_object(&self.fields, &mut out);
        out
    }

    /// Whether the object has no fields (left to read).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// An empty body reads as `{}`: routes whose fields are all optional accept it.
    pub fn parse_optional(bytes: &[u8]) -> Result<Self, DomainError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(Self {
                fields: Map::new(),
                path: String::new(),
            })
        } else {
            Self::parse(bytes)
        }
    }

    fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// Takes a field; JSON `null` reads as absent.
    fn take(&mut self, field: &str) -> Option<Value> {
        self.fields.remove(field).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, field: &str) -> Result<Option<String>, DomainError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(DomainError::invalid_request(format!(
                "`{}` must be a string",
                self.name(field)
            ))),
        }
    }

    pub fn required_string(&mut self, field: &str) -> Result<String, DomainError> {
        self.string(field)?
            .ok_or_else(|| DomainError::invalid_request(format!("`{}` is required", self.name(field))))
    }

    /// An amount field: a decimal *string*. A JSON number is refused as
    /// `invalid_amount`, since it may already have lost precision in the client.
    pub fn amount(&mut self, field: &str) -> Result<Option<String>, DomainError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(Value::Number(_)) => Err(DomainError::InvalidAmount(
                "amounts are decimal strings such as \"12.34\", not JSON numbers",
            )),
            Some(_) => Err(DomainError::InvalidAmount(
                "amounts are decimal strings such as \"12.34\"",
            )),
        }
    }

    /// A whole number from 1 up (a record's `version`).
    pub fn positive_integer(&mut self, field: &str) -> Result<Option<u64>, DomainError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > 0) => Ok(n.as_u64()),
            Some(_) => Err(DomainError::invalid_request(format!(
                "`{}` must be a whole number from 1",
                self.name(field)
            ))),
        }
    }

    pub fn boolean(&mut self, field: &str) -> Result<Option<bool>, DomainError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(DomainError::invalid_request(format!(
                "`{}` must be true or false",
                self.name(field)
            ))),
        }
    }

    pub fn object(&mut self, field: &str) -> Result<Option<JsonObject>, DomainError> {
        let path = self.name(field);
        match self.take(field) {
            None => Ok(None),
            Some(Value::Object(fields)) => Ok(Some(JsonObject { fields, path })),
            Some(_) => Err(DomainError::invalid_request(format!("`{path}` must be an object"))),
        }
    }

    /// An array of objects (a batch's transfers), each named `field[i]` in errors.
    pub fn objects(&mut self, field: &str) -> Result<Option<Vec<JsonObject>>, DomainError> {
        let path = self.name(field);
        match self.take(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(fields) => Ok(JsonObject {
                        fields,
                        path: format!("{path}[{i}]"),
                    }),
                    _ => Err(DomainError::invalid_request(format!("`{path}[{i}]` must be an object"))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(DomainError::invalid_request(format!("`{path}` must be an array"))),
        }
    }

    /// An object whose values are all strings (metadata).
    pub fn string_map(&mut self, field: &str) -> Result<Option<BTreeMap<String, String>>, DomainError> {
        let path = self.name(field);
        match self.take(field) {
            None => Ok(None),
            Some(Value::Object(fields)) => fields
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(v) => Ok((k, v)),
                    _ => Err(DomainError::invalid_request(format!(
                        "values of `{path}` must be strings"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(DomainError::invalid_request(format!("`{path}` must be an object"))),
        }
    }

    /// Refuses any field no accessor took.
    pub fn finish(self) -> Result<(), DomainError> {
        match self.fields.keys().next() {
            None => Ok(()),
            Some(field) => {
                // Field names come from the client; keep what is echoed short and plain.
                let shown: String = field.chars().filter(|c| !c.is_control()).take(64).collect();
                let name = if self.path.is_empty() {
                    shown
                } else {
                    format!("{}.{shown}", self.path)
                };
                Err(DomainError::UnknownField(name))
            }
        }
    }
}

/// Strict JSON: unique keys, and numbers of any size.
mod strict {
    use std::fmt;

    use fintx_domain::DomainError;
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    /// Parses `bytes` as JSON whose objects have unique keys. A number too large for
    /// `f64` (`1e309`, a 400-digit integer) reads as the largest finite `f64` of its
    /// sign: every field that takes a number refuses a float, and an amount refuses every
    /// number, so it is refused by the field it stands in, with that field's code.
    pub(super) fn parse(bytes: &[u8]) -> Result<Value, DomainError> {
        match serde_json::from_slice::<Strict>(bytes) {
            Ok(Strict(value)) => Ok(value),
            Err(error) if error.to_string().starts_with(DUPLICATE) => {
                Err(DomainError::invalid_request("the body repeats a key"))
            }
            Err(error) if error.to_string().starts_with("number out of range") => {
                let clamped = clamp_huge_numbers(bytes).ok_or_else(not_json)?;
                serde_json::from_slice::<Strict>(&clamped)
                    .map(|Strict(value)| value)
                    .map_err(|e| {
                        if e.to_string().starts_with(DUPLICATE) {
                            DomainError::invalid_request("the body repeats a key")
                        } else {
                            not_json()
                        }
                    })
            }
            Err(_) => Err(not_json()),
        }
    }

    fn not_json() -> DomainError {
        DomainError::invalid_request("the body is not valid JSON")
    }

    const DUPLICATE: &str = "duplicate key";

    /// Rewrites every number literal outside strings whose value overflows `f64` as
    /// `±1.7976931348623157e308`. `None` when the text is not UTF-8.
    fn clamp_huge_numbers(bytes: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut in_string = false;
        while let Some(c) = rest.chars().next() {
            if in_string {
                let end = rest.find(['"', '\\']).unwrap_or(rest.len());
                out.push_str(&rest[..end]);
                rest = &rest[end..];
                match rest.as_bytes().first() {
                    Some(b'"') => {
                        in_string = false;
                        out.push('"');
                        rest = &rest[1..];
                    }
                    Some(b'\\') => {
                        let escaped = rest.get(..2).unwrap_or(rest);
                        out.push_str(escaped);
                        rest = &rest[escaped.len()..];
                    }
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
                out.push('"');
                rest = &rest[1..];
            } else if c == '-' || c.is_ascii_digit() {
                let end = rest
                    .find(|ch: char| !(ch.is_ascii_digit() || matches!(ch, '-' | '+' | '.' | 'e' | 'E')))
                    .unwrap_or(rest.len());
                let literal = &rest[..end];
                match literal.parse::<f64>() {
                    Ok(value) if value.is_infinite() && value.is_sign_negative() => {
                        out.push_str("-1.7976931348623157e308")
                    }
                    Ok(value) if value.is_infinite() => out.push_str("1.7976931348623157e308"),
                    _ => out.push_str(literal),
                }
                rest = &rest[end..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        Some(out.into_bytes())
    }

    /// A `Value` whose objects were read with unique keys.
    struct Strict(Value);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(StrictVisitor).map(Strict)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON")
        }

        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }

        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }

        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(Strict(item)) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut fields = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let Strict(value) = map.next_value()?;
                if fields.insert(key, value).is_some() {
                    return Err(de::Error::custom(DUPLICATE));
                }
            }
            Ok(Value::Object(fields))
        }
    }
}

/// A body's canonical form for idempotency fingerprints: JSON with object keys sorted
/// and no insignificant whitespace, so the same request always fingerprints the same.
/// A body that is not JSON is fingerprinted as its raw bytes.
pub fn canonical_json(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let mut out = Vec::with_capacity(body.len());
            write_canonical(&value, &mut out);
            out
        }
        Err(_) => body.to_vec(),
    }
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            // Writing a scalar into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_canonical_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        write_canonical(item, out);
    }
    out.push(b'}');
}

/// The response of a handled request: the route's answer, or its problem document. 5xx
/// outcomes are logged as errors (their cause was logged where it happened); refusals
/// as information with their code.
pub fn respond_or_problem(outcome: Result<Response<Body>, DomainError>) -> Response<Body> {
    match outcome {
        Ok(response) => response,
        Err(error) => {
            let code = error.code();
            if code.status() >= 500 {
                tracing::error!(code = code.as_str(), "request failed");
            } else {
                tracing::info!(code = code.as_str(), status = code.status(), "request refused");
            }
            crate::metrics::count("Rejections", Some(("Code", code.as_str())));
            problem_response(&error)
        }
    }
}

/// The `limit` query parameter of a listing: 1 to 100, default 25.
pub fn page_limit(request: &Request) -> Result<usize, DomainError> {
    const DEFAULT: usize = 25;
    let max = fintx_domain::ports::PAGE_LIMIT_MAX;
    match query_param(request, "limit") {
        None => Ok(DEFAULT),
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
            _ => Err(DomainError::invalid_request(format!(
                "limit must be an integer from 1 to {max}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fintx_domain::ErrorCode;

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let mut o = JsonObject::parse(br#"{"a":"x","nested":{"b":"y","c":1}}"#).unwrap();
        assert_eq!(o.string("a").unwrap().as_deref(), Some("x"));
        let mut nested = o.object("nested").unwrap().unwrap();
        nested.string("b").unwrap();
        assert_eq!(nested.finish(), Err(DomainError::UnknownField("nested.c".into())));
        assert!(o.finish().is_ok());
    }

    #[test]
    fn amounts_must_be_strings() {
        let mut o = JsonObject::parse(br#"{"amount": 12.5}"#).unwrap();
        assert_eq!(o.amount("amount").unwrap_err().code(), ErrorCode::InvalidAmount);
    }

    #[test]
    fn garbage_and_non_objects_are_invalid_requests() {
        for body in [&b"{"[..], b"[]", b"\"x\"", b"\xff\xfe", b""] {
            assert_eq!(
                JsonObject::parse(body).err().map(|e| e.code()),
                Some(ErrorCode::InvalidRequest)
            );
        }
    }

    #[test]
    fn type_errors_never_echo_the_value() {
        let mut o = JsonObject::parse(br#"{"name": {"secret": "4111111111111111"}}"#).unwrap();
        let err = o.string("name").unwrap_err();
        assert!(!err.to_string().contains("4111"));
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::canonical_json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_canonical_form() {
        assert_eq!(
            canonical_json(br#"{"b":1, "a":{"y":2,"x":[1, 2]}}"#),
            canonical_json(br#"{"a":{"x":[1,2],"y":2},"b":1}"#)
        );
        assert_ne!(canonical_json(br#"{"a":"1"}"#), canonical_json(br#"{"a":"2"}"#));
    }

    /// The exact bytes matter: stored fingerprints were computed from them, so a change of
    /// form would turn every retry across a deployment into `idempotency_key_reused`.
    #[test]
    fn the_canonical_form_is_compact_sorted_json() {
        assert_eq!(
            String::from_utf8(canonical_json(
                "{ \"z\": [1, 2.5, null, true, {\"b\": \"\u{e9}\\n\", \"a\": -0.0}], \"\u{e4}\": {}, \"a\": \"x\\\"y\" }".as_bytes()
            ))
            .unwrap(),
            "{\"a\":\"x\\\"y\",\"z\":[1,2.5,null,true,{\"a\":-0.0,\"b\":\"\u{e9}\\n\"}],\"\u{e4}\":{}}"
        );
        assert_eq!(canonical_json(b"not json"), b"not json");
    }

    #[test]
    fn a_parsed_object_fingerprints_as_its_body() {
        for body in [
            &br#"{"b":1, "a":{"y":2,"x":[1, 2]}}"#[..],
            br#"{}"#,
            br#"{"amount":"1.25","metadata":{"k":"v\u00e9"},"n":[null,{"z":false,"a":1e3}]}"#,
        ] {
            assert_eq!(
                super::JsonObject::parse(body).unwrap().canonical(),
                canonical_json(body)
            );
        }
    }
}
