//! GitHub App authentication: an RS256 JWT for the App (issued 60 s in the past, valid 9 minutes) exchanged for
//! installation tokens, cached per installation and refreshed well before their hour ends.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::collections::HashMap;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the App private key is not a usable RSA PEM key: {0}")]
    Key(String),
    #[error("cannot sign the App JWT: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// The App's identity.
pub struct AppAuth {
    app_id: u64,
    key: EncodingKey,
    tokens: Mutex<HashMap<i64, CachedToken>>,
}

/// An installation token and when it expires.
#[derive(Clone)]
pub struct CachedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Tokens are refreshed when they have less than this left.
const REFRESH_MARGIN_MINUTES: i64 = 10;

impl AppAuth {
    pub fn new(app_id: u64, pem: &str) -> Result<Self, AuthError> {
        let key =
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(AppAuth {
            app_id,
            key,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// A JWT for the App itself: `iat` 60 s in the past (clock drift), `exp` 9 minutes ahead (GitHub allows 10).
    pub fn jwt(&self, now: DateTime<Utc>) -> Result<String, AuthError> {
        let claims = Claims {
            iat: (now - ChronoDuration::seconds(60)).timestamp(),
            exp: (now + ChronoDuration::minutes(9)).timestamp(),
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// A cached installation token that is still good for a while.
    pub async fn cached(&self, installation: i64, now: DateTime<Utc>) -> Option<String> {
        let tokens = self.tokens.lock().await;
        tokens
            .get(&installation)
            .filter(|t| t.expires_at - now > ChronoDuration::minutes(REFRESH_MARGIN_MINUTES))
            .map(|t| t.token.clone())
    }

    pub async fn store(&self, installation: i64, token: CachedToken) {
        self.tokens.lock().await.insert(installation, token);
    }

    /// Forget a token GitHub refused (401), so the next call fetches a new one.
    pub async fn invalidate(&self, installation: i64) {
        self.tokens.lock().await.remove(&installation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const KEY: &str = include_str!("../../tests/fixtures/test-app-key.pem");

    #[derive(serde::Deserialize)]
    struct Decoded {
        iat: i64,
        exp: i64,
        iss: String,
    }

    #[test]
    fn jwt_claims_follow_github_rules() {
        let auth = match AppAuth::new(1234, KEY) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let now = Utc::now();
        let token = match auth.jwt(now) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let header = match jsonwebtoken::decode_header(&token) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(header.alg, Algorithm::RS256);
        // The signature verifies with the public half of the key.
        let public = match DecodingKey::from_rsa_pem(include_bytes!(
            "../../tests/fixtures/test-app-key.pub.pem"
        )) {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        };
        let mut v = Validation::new(Algorithm::RS256);
        v.required_spec_claims.clear();
        let data = match jsonwebtoken::decode::<Decoded>(&token, &public, &v) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(data.claims.iss, "1234");
        assert_eq!(data.claims.iat, now.timestamp() - 60);
        assert!(data.claims.exp - now.timestamp() <= 600);
        assert!(data.claims.exp > now.timestamp());
    }

    #[tokio::test]
    async fn tokens_are_refreshed_before_they_run_out() {
        let auth = match AppAuth::new(1, KEY) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let now = Utc::now();
        auth.store(
            5,
            CachedToken {
                token: "t1".into(),
                expires_at: now + ChronoDuration::minutes(60),
            },
        )
        .await;
        assert_eq!(auth.cached(5, now).await.as_deref(), Some("t1"));
        assert_eq!(
            auth.cached(5, now + ChronoDuration::minutes(55)).await,
            None,
            "refreshed in its last minutes"
        );
        assert_eq!(auth.cached(6, now).await, None);
        auth.invalidate(5).await;
        assert_eq!(auth.cached(5, now).await, None);
    }
}
