//! Identifiers a client names, validated once where they enter: a
//! `SessionId`, `PoolName` or `ClientMsgId` is known to follow its rule
//! (`validate`), so nothing past the edge checks it again. Each reads as
//! `&str` and is written as a plain JSON string; deserialising one checks
//! the rule and reports the same message as `validate`.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::validate;
use crate::ChatError;

/// Defines a string newtype whose every value passed `$rule`.
macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `raw` against the rule.
            pub fn parse(raw: impl Into<String>) -> Result<Self, ChatError> {
                let raw = raw.into();
                let rule: fn(&str) -> Result<(), ChatError> = $rule;
                rule(&raw)?;
                Ok($name(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(raw: String) -> Result<Self, String> {
                $name::parse(raw).map_err(|error| error.message)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_string!(
    /// A session's id as a client names it: 1 to 128 characters, no NUL.
    SessionId,
    validate::session_id
);

validated_string!(
    /// A pool's name: it appears in channel names and metric labels, so it
    /// is 1 to 64 of letters, digits, `-`, `_` and `.`.
    PoolName,
    validate::pool
);

validated_string!(
    /// The sender's idempotency key for a message: 1 to 64 characters,
    /// no NUL.
    ClientMsgId,
    validate::client_msg_id
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_id_reads_as_its_string() {
        let id = SessionId::parse("s-1").expect("valid");
        assert_eq!(&*id, "s-1");
        assert_eq!(serde_json::to_value(&id).expect("encodes"), json!("s-1"));
    }

    #[test]
    fn deserialising_checks_the_rule_with_its_message() {
        let refused = serde_json::from_value::<PoolName>(json!("no spaces"))
            .expect_err("an invalid pool is refused");
        let rule = validate::pool("no spaces").expect_err("the rule refuses it");
        assert!(refused.to_string().contains(&rule.message));
        assert!(serde_json::from_value::<SessionId>(json!("")).is_err());
        assert!(serde_json::from_value::<ClientMsgId>(json!("x".repeat(65))).is_err());
        assert_eq!(
            serde_json::from_value::<ClientMsgId>(json!("m-1")).expect("valid"),
            ClientMsgId::parse("m-1").expect("valid")
        );
    }
}
