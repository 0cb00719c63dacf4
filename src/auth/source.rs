//! Where a token is found, in the documented order (`docs/protocol.md` section 2): the
//! Socket.IO auth object, then the
//! `Authorization: Bearer` header, then the `token` query parameter.

use axum::http::{HeaderMap, header::AUTHORIZATION};

use super::AuthError;

/// Finds the token a caller presented. `auth_object` is the Socket.IO `auth.token` (plain
/// WebSocket and REST callers pass `None`); `query_token` is the decoded `?token=` value.
pub fn find_token(
    auth_object: Option<&str>,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<String, AuthError> {
    if let Some(token) = auth_object.filter(|t| !t.is_empty()) {
        return Ok(token.to_owned());
    }
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::MalformedHeader)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthError::MalformedHeader);
        }
        return Ok(token.to_owned());
    }
    match query_token.filter(|t| !t.is_empty()) {
        Some(token) => Ok(token.to_owned()),
        None => Err(AuthError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(
                AUTHORIZATION,
                HeaderValue::from_str(a).expect("valid header"),
            );
        }
        h
    }

    #[test]
    fn the_auth_object_wins_then_the_header_then_the_query() {
        let h = headers(Some("Bearer from-header"));
        assert_eq!(find_token(Some("obj"), &h, Some("q")), Ok("obj".into()));
        assert_eq!(find_token(None, &h, Some("q")), Ok("from-header".into()));
        assert_eq!(find_token(None, &headers(None), Some("q")), Ok("q".into()));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert_eq!(
            find_token(None, &headers(None), None),
            Err(AuthError::Missing)
        );
        assert_eq!(
            find_token(None, &headers(Some("Basic abc")), None),
            Err(AuthError::MalformedHeader)
        );
        assert_eq!(
            find_token(None, &headers(Some("Bearer ")), None),
            Err(AuthError::MalformedHeader)
        );
        assert_eq!(
            find_token(Some(""), &headers(None), Some("")),
            Err(AuthError::Missing)
        );
    }
}
