//! The admin listener's optional bearer token.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq as _;

/// A secret the `Authorization: Bearer <token>` header must carry.
#[derive(Clone)]
pub(super) struct BearerToken {
    token: Box<[u8]>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    pub(super) fn new(token: &str) -> Self {
        Self {
            token: token.as_bytes().into(),
        }
    }

    /// Whether `headers` carry the token. The comparison takes the same time
    /// wherever the first difference is, so timing does not leak the token
    /// (only its length, as any comparison must).
    pub(super) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(scheme_end) = value.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, rest) = value.split_at(scheme_end);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return false;
        }
        let presented = rest.trim_ascii();
        bool::from(presented.ct_eq(&self.token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn admits_only_the_token() {
        let token = BearerToken::new("s3cret");
        assert!(token.admits(&with("Bearer s3cret")));
        assert!(token.admits(&with("bearer  s3cret ")));
        assert!(!token.admits(&with("Bearer s3cre")));
        assert!(!token.admits(&with("Bearer s3cret2")));
        assert!(!token.admits(&with("Basic s3cret")));
        assert!(!token.admits(&with("s3cret")));
        assert!(!token.admits(&HeaderMap::new()));
        assert_eq!(format!("{token:?}"), "BearerToken(..)");
    }
}
