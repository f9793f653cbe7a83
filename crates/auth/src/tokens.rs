//! HS256 JSON Web Tokens with the original's claims, plus `sid` (the session, revocable
//! server-side) and `nbf`. Only HS256 is accepted on decode, so `alg: none` and algorithm
//! confusion are rejected; expiry and not-before are checked with zero leeway.

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use ghostworks_domain::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenant_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<Role>,
    pub token_type: TokenType,
    pub sid: Uuid,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: Uuid,
}

pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Could not validate credentials")]
    Invalid,
    #[error("Invalid token type. Expected {}, got {}", expected.as_str(), got.as_str())]
    WrongType { expected: TokenType, got: TokenType },
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &self,
        token_type: TokenType,
        user: Uuid,
        email: &str,
        session: Uuid,
        workspace: Option<(Uuid, Role)>,
        lifetime: std::time::Duration,
    ) -> (String, Uuid) {
        let now = Utc::now().timestamp();
        let jti = Uuid::new_v4();
        let claims = Claims {
            sub: user,
            email: email.to_string(),
            tenant_id: workspace.map(|w| w.0),
            role: workspace.map(|w| w.1),
            token_type,
            sid: session,
            exp: now + lifetime.as_secs() as i64,
            iat: now,
            nbf: now,
            jti,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail");
        (token, jti)
    }

    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenError> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.token_type != expected {
            return Err(TokenError::WrongType {
                expected,
                got: claims.token_type,
            });
        }
        Ok(claims)
    }
}

/// The server-side form of a token identifier: its SHA-256.
pub fn hash_id(id: &[u8]) -> Vec<u8> {
    Sha256::digest(id).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64_like::b64;
    use std::time::Duration;

    mod base64_like {
        pub fn b64(s: &str) -> String {
            use std::fmt::Write;
            // Minimal URL-safe base64 (no padding) for crafting a hostile header in tests.
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let b = s.as_bytes();
            let mut out = String::new();
            for c in b.chunks(3) {
                let n = (u32::from(c[0]) << 16)
                    | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*c.get(2).unwrap_or(&0));
                for i in 0..=c.len() {
                    out.write_char(A[((n >> (18 - 6 * i)) & 63) as usize] as char)
                        .unwrap();
                }
            }
            out
        }
    }

    #[test]
    fn round_trip_and_type_check() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef");
        let (t, _) = k.issue(
            TokenType::Access,
            Uuid::new_v4(),
            "a@b.com",
            Uuid::new_v4(),
            None,
            Duration::from_secs(60),
        );
        assert!(k.verify(&t, TokenType::Access).is_ok());
        assert!(matches!(
            k.verify(&t, TokenType::Refresh),
            Err(TokenError::WrongType { .. })
        ));
        assert_eq!(
            Keys::new(b"another-key-another-key-another!!")
                .verify(&t, TokenType::Access)
                .unwrap_err(),
            TokenError::Invalid
        );
    }

    #[test]
    fn alg_none_is_rejected() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef");
        let (t, _) = k.issue(
            TokenType::Access,
            Uuid::new_v4(),
            "a@b.com",
            Uuid::new_v4(),
            None,
            Duration::from_secs(60),
        );
        let payload = t.split('.').nth(1).unwrap();
        let forged = format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(
            k.verify(&forged, TokenType::Access).unwrap_err(),
            TokenError::Invalid
        );
    }
}
