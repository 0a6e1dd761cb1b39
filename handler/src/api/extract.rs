//! Request body and query extractors that answer bad input with a JSON error naming the field,
//! without echoing the rejected value (it may be patient data).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{self, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// Size limit for JSON bodies, set once in app data.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimit(pub usize);

/// Field names that must never be accepted: identity comes from Entra ID.
fn is_password_field(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("passwd") || k == "pwd" || k == "pin"
}

/// A JSON body, parsed strictly into `T` (whose fields should be plain strings, numbers and
/// booleans; domain parsing happens afterwards with our own messages).
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<JsonLimit>().map_or(64 * 1024, |l| l.0);
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType { expected: "JSON with Content-Type: application/json" });
            }
            if declared_len.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(ValidJson)
        })
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; send a JSON object"));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the request body is not valid JSON (line {}, column {})", e.line(), e.column()))
    })?;
    let serde_json::Value::Object(map) = &value else {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    };
    if let Some(key) = map.keys().find(|k| is_password_field(k)) {
        return Err(ApiError::bad_field(
            key.clone(),
            "passwords are not accepted: sign-in is handled by Microsoft Entra ID",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        field_error(if path == "." { "" } else { &path }, &e.into_inner().to_string())
    })
}

/// Turns a serde message into a field error with our own wording.
fn field_error(path: &str, message: &str) -> ApiError {
    let join = |name: &str| {
        if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
    };
    let quoted = |m: &str| m.split('`').nth(1).map(str::to_owned);
    let (field, text) = if message.starts_with("missing field") {
        (quoted(message).map_or_else(|| path.to_owned(), |f| join(&f)), "is required".to_owned())
    } else if message.starts_with("unknown field") {
        // serde_path_to_error already ends the path with the unknown key.
        let name = quoted(message).unwrap_or_default();
        let field = if path == name || path.ends_with(&format!(".{name}")) { path.to_owned() } else { join(&name) };
        (field, "is not a field of this resource".to_owned())
    } else if let Some((_, expected)) = message.split_once(", expected ") {
        let expected = expected.split(" at line").next().unwrap_or(expected);
        (path.to_owned(), format!("must be {expected}"))
    } else {
        (path.to_owned(), "is invalid".to_owned())
    };
    let field = if field.is_empty() { "body".to_owned() } else { field };
    ApiError::BadRequest { message: format!("{field}: {text}"), fields: vec![FieldError::new(field, text)] }
}

/// A query string parsed strictly into `T` (unknown parameters are refused).
pub struct ValidQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequest for ValidQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(ValidQuery))
    }
}

/// The function key's query parameter: checked by the key middleware (or the host, which
/// forwards the query as the caller sent it), never a parameter of the resource.
const KEY_PARAMETER: &str = "code";

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    let without_key = if pairs.clone().any(|(k, _)| k == KEY_PARAMETER) {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.filter(|(k, _)| k != KEY_PARAMETER)).finish()
    } else {
        query.to_owned()
    };
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(without_key.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        field_error(if path == "." { "" } else { &path }, &e.into_inner().to_string())
    })
}

/// A nullable field in a PATCH body: absent → `None`, `null` → `Some(None)`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// Path ids: anything that is not one of our ids is simply not found.
pub fn path_id<T>(req: &HttpRequest, parse: fn(&str) -> Option<T>) -> Result<T, ApiError> {
    req.match_info().get("id").and_then(parse).ok_or(ApiError::NotFound)
}

pub type Json<T> = web::Json<T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        age: Option<i64>,
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::BadRequest { fields, .. } => {
                fields.into_iter().map(|f| format!("{}|{}", f.field, f.message)).collect()
            }
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn names_missing_unknown_and_mistyped_fields() {
        assert_eq!(fields(parse_json::<Body>(b"{}").err().unwrap()), ["name|is required"]);
        assert_eq!(
            fields(parse_json::<Body>(br#"{"name":"a","nickname":"b"}"#).err().unwrap()),
            ["nickname|is not a field of this resource"]
        );
        let typed = fields(parse_json::<Body>(br#"{"name":"a","age":"secret-value"}"#).err().unwrap());
        assert_eq!(typed.len(), 1);
        assert!(typed[0].starts_with("age|must be"), "{typed:?}");
        assert!(!typed[0].contains("secret-value"));
        assert_eq!(
            fields(parse_json::<Body>(br#"{"name":"a","Password":"x"}"#).err().unwrap())[0],
            "Password|passwords are not accepted: sign-in is handled by Microsoft Entra ID"
        );
    }

    #[test]
    fn rejects_non_objects_and_bad_json() {
        for body in [&b""[..], b"[]", b"\"x\"", b"{", b"null"] {
            assert!(matches!(parse_json::<Body>(body), Err(ApiError::BadRequest { .. })), "{body:?}");
        }
    }

    #[test]
    fn query_errors_name_the_parameter() {
        #[derive(serde::Deserialize, Debug, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Q {
            limit: Option<String>,
        }
        assert!(parse_query::<Q>("limit=5").is_ok());
        assert_eq!(fields(parse_query::<Q>("sort=name").err().unwrap()), ["sort|is not a field of this resource"]);
        // The function key may ride along in the query; it is not a resource parameter.
        assert!(parse_query::<Q>("code=some-key&limit=5").is_ok());
        assert!(parse_query::<Q>("limit=5&code=a%26b").is_ok());
    }
}
