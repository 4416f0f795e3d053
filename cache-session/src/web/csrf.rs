//! CSRF tokens bound to the session: a keyed hash of the session token, so that any instance
//! checks them without the store and a page's scripts can hold one without the session token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

use crate::token::SessionToken;

/// The request header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

const CONTEXT: &[u8] = b"cachemere csrf v1";

/// HMAC-SHA-256 keyed by the session token (its SHA-256, as HMAC does with long keys).
fn mac(token: &SessionToken) -> Hmac<Sha256> {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(&Sha256::digest(token.expose()));
    let mut mac = Hmac::<Sha256>::new(&key.into());
    mac.update(CONTEXT);
    mac
}

/// The CSRF token of the session `token` names.
pub(super) fn token_for(token: &SessionToken) -> String {
    URL_SAFE_NO_PAD.encode(mac(token).finalize().into_bytes())
}

/// Whether the request's CSRF header matches `token` (compared in constant time).
pub(super) fn verify(token: &SessionToken, headers: &HeaderMap) -> bool {
    let Some(sent) = headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    match URL_SAFE_NO_PAD.decode(sent.trim()) {
        Ok(bytes) => mac(token).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// Whether a request with this method may change state (anything but `GET`, `HEAD`,
/// `OPTIONS` and `TRACE`), so that a cookie-borne session needs the CSRF header.
pub(super) fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_session() {
        let one = SessionToken::generate("00112233445566778899aabbccddeeff").unwrap();
        let two = SessionToken::generate("00112233445566778899aabbccddeeff").unwrap();
        let mut headers = HeaderMap::new();
        assert!(!verify(&one, &headers), "missing");
        headers.insert(CSRF_HEADER, token_for(&one).parse().unwrap());
        assert!(verify(&one, &headers));
        assert!(!verify(&two, &headers), "another session's token");
        headers.insert(CSRF_HEADER, "not base64 !".parse().unwrap());
        assert!(!verify(&one, &headers));
        assert_ne!(token_for(&one), token_for(&two));
        assert!(changes_state(&Method::POST) && changes_state(&Method::DELETE));
        assert!(!changes_state(&Method::GET) && !changes_state(&Method::HEAD));
    }
}
