//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw body with the webhook secret, compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Does `header` (`sha256=<hex>`) sign `body` with `secret`?
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// The header value for `body` (tests and the load script sign with it).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented example (docs: "Validating webhook deliveries").
    #[test]
    fn github_test_vector() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, body), expected);
        assert!(verify(secret, body, Some(expected)));
    }

    #[test]
    fn rejects_wrong_missing_and_malformed() {
        let secret = b"s3cret";
        let good = sign(secret, b"{}");
        assert!(verify(secret, b"{}", Some(&good)));
        assert!(
            !verify(secret, b"{ }", Some(&good)),
            "signature for another body"
        );
        assert!(!verify(b"other", b"{}", Some(&good)), "another secret");
        assert!(!verify(secret, b"{}", None));
        assert!(!verify(secret, b"{}", Some("sha1=abc")));
        assert!(!verify(secret, b"{}", Some("sha256=zz")));
        assert!(!verify(secret, b"{}", Some("sha256=")));
    }
}
