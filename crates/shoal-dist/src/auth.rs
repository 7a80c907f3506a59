//! The shared token every call carries (`authorization: Bearer <token>`), and the server's
//! check of it. A run's processes share one token; a caller without it is refused before any
//! handler runs.

use std::path::Path;

use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::error::{DistError, Result};

/// The environment variable a token is read from.
pub const TOKEN_ENV: &str = "SHOAL_TOKEN";

/// A run's shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// A token of at least 16 visible ASCII characters (it travels in an HTTP header).
    pub fn new(secret: impl Into<String>) -> Result<Token> {
        let secret = secret.into();
        let secret = secret.trim();
        if secret.len() < 16 || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DistError::Setup(format!(
                "a token must be at least 16 visible ASCII characters without spaces (got {} characters)",
                secret.len()
            )));
        }
        Ok(Token(secret.to_string()))
    }

    /// The token from `file` if given, else from `$SHOAL_TOKEN`.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Token> {
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| DistError::Setup(format!("cannot read the token file {}: {e}", file.display())))?;
            return Token::new(text);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(secret) => Token::new(secret),
            Err(_) => Err(DistError::Setup(format!(
                "no token: set {TOKEN_ENV} or pass --token-file (every process of a run needs the same token)"
            ))),
        }
    }

    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, compared in constant time (the data plane's handshake
    /// and `shoal dashboard`'s pages carry it bare).
    pub fn matches(&self, given: &[u8]) -> bool {
        constant_time_eq(given, self.0.as_bytes())
    }

    fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Adds the token to an outgoing request.
    pub(crate) fn attach<T>(&self, request: &mut Request<T>) {
        if let Ok(value) = MetadataValue::try_from(self.header()) {
            request.metadata_mut().insert("authorization", value);
        }
    }

    /// The server-side check: refuses a call without the right token.
    pub(crate) fn check<T>(&self, request: &Request<T>) -> std::result::Result<(), Status> {
        let given = request.metadata().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
        if constant_time_eq(given, self.header().as_bytes()) {
            Ok(())
        } else if given.is_empty() {
            Err(Status::unauthenticated(format!("no token: set {TOKEN_ENV} to the run's token")))
        } else {
            Err(Status::unauthenticated(format!("wrong token: set {TOKEN_ENV} to the run's token")))
        }
    }
}

/// Compares without an early exit, so response time does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_exactly() {
        let token = Token::new("0123456789abcdef").unwrap();
        let mut good = Request::new(());
        token.attach(&mut good);
        assert!(token.check(&good).is_ok());
        let mut wrong = Request::new(());
        Token::new("0123456789abcdeX").unwrap().attach(&mut wrong);
        assert!(token.check(&wrong).unwrap_err().message().contains("wrong token"));
        assert!(token.check(&Request::new(())).unwrap_err().message().contains("no token"));
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in it!!").is_err());
    }
}
