//! How the clients talk to the brokers: `security.protocol` and SASL mechanism.
//!
//! The choices are Kafka's own (`security.protocol` and `sasl.mechanism` of the Java
//! client, KIP-43 for SASL mechanisms, KIP-84 for SCRAM). Values are read
//! case-insensitively and kept in Kafka's spelling: `sasl_ssl` is [`SecurityProtocol::SaslSsl`],
//! shown as `SASL_SSL`. [`KafkaSettings::client_config`](super::KafkaSettings::client_config) turns them into librdkafka properties;
//! [`KafkaSettings::validate`](super::KafkaSettings::validate) checks that they fit together.
//!
//! PLAIN and SCRAM are built into librdkafka (SCRAM and TLS need the `ssl` feature of
//! rdkafka, which links the system's OpenSSL); Kerberos (GSSAPI) and OAUTHBEARER are not
//! offered.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer};

/// `KAFKA_SECURITY_PROTOCOL`: whether the connection is encrypted (TLS) and whether the
/// client authenticates (SASL). Default [`SecurityProtocol::Plaintext`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// `PLAINTEXT`: neither TLS nor SASL (a local or private broker).
    #[default]
    Plaintext,
    /// `SSL`: TLS, no SASL (the broker may still ask for a client certificate).
    Ssl,
    /// `SASL_PLAINTEXT`: SASL without TLS; the credentials cross the network in clear
    /// with PLAIN.
    SaslPlaintext,
    /// `SASL_SSL`: SASL over TLS, what managed clusters (Amazon MSK, Confluent Cloud) use.
    SaslSsl,
}

impl SecurityProtocol {
    /// Every protocol, in Kafka's spelling order.
    pub const ALL: [Self; 4] = [
        Self::Plaintext,
        Self::Ssl,
        Self::SaslPlaintext,
        Self::SaslSsl,
    ];

    /// Kafka's name: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// The client authenticates with SASL (`SASL_PLAINTEXT`, `SASL_SSL`).
    pub fn is_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// The connection is TLS (`SSL`, `SASL_SSL`).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// `KAFKA_SASL_MECHANISM`: how a SASL client proves who it is. Default
/// [`SaslMechanism::ScramSha512`]: Amazon MSK's SASL/SCRAM offers only SCRAM-SHA-512,
/// and SCRAM never sends the password itself; Confluent Cloud users set `PLAIN`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): username and password as they are; use it over TLS only.
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677, KIP-84).
    ScramSha256,
    /// `SCRAM-SHA-512` (KIP-84).
    #[default]
    ScramSha512,
}

impl SaslMechanism {
    /// Every mechanism.
    pub const ALL: [Self; 3] = [Self::Plain, Self::ScramSha256, Self::ScramSha512];

    /// Kafka's name: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// An unknown protocol or mechanism; the message lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of {choices}, not `{given}`")]
pub struct UnknownChoice {
    given: String,
    choices: String,
}

fn parse_choice<T: Copy>(
    given: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, UnknownChoice> {
    all.iter()
        .copied()
        .find(|choice| name(*choice).eq_ignore_ascii_case(given.trim()))
        .ok_or_else(|| UnknownChoice {
            given: given.to_owned(),
            choices: all.iter().map(|c| name(*c)).collect::<Vec<_>>().join(", "),
        })
}

impl FromStr for SecurityProtocol {
    type Err = UnknownChoice;

    /// Case-insensitive: `sasl_ssl` and `SASL_SSL` are the same.
    fn from_str(given: &str) -> Result<Self, Self::Err> {
        parse_choice(given, &Self::ALL, Self::as_str)
    }
}

impl FromStr for SaslMechanism {
    type Err = UnknownChoice;

    /// Case-insensitive: `scram-sha-512` and `SCRAM-SHA-512` are the same.
    fn from_str(given: &str) -> Result<Self, Self::Err> {
        parse_choice(given, &Self::ALL, Self::as_str)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SecurityProtocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for SaslMechanism {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_in_any_case_and_kept_in_kafkas_spelling() {
        for (given, protocol) in [
            ("PLAINTEXT", SecurityProtocol::Plaintext),
            ("ssl", SecurityProtocol::Ssl),
            ("Sasl_Plaintext", SecurityProtocol::SaslPlaintext),
            (" sasl_ssl ", SecurityProtocol::SaslSsl),
        ] {
            assert_eq!(given.parse(), Ok(protocol), "{given}");
        }
        for (given, mechanism) in [
            ("plain", SaslMechanism::Plain),
            ("scram-sha-256", SaslMechanism::ScramSha256),
            ("SCRAM-SHA-512", SaslMechanism::ScramSha512),
        ] {
            assert_eq!(given.parse(), Ok(mechanism), "{given}");
        }
        assert_eq!(SecurityProtocol::SaslSsl.to_string(), "SASL_SSL");
        assert_eq!(SaslMechanism::ScramSha256.to_string(), "SCRAM-SHA-256");
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = "TLS"
            .parse::<SecurityProtocol>()
            .expect_err("not Kafka's name");
        assert_eq!(
            err.to_string(),
            "must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, not `TLS`"
        );
        let err = "GSSAPI".parse::<SaslMechanism>().expect_err("not offered");
        assert_eq!(
            err.to_string(),
            "must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, not `GSSAPI`"
        );
        assert!("SCRAM_SHA_512".parse::<SaslMechanism>().is_err());
    }

    #[test]
    fn sasl_and_tls_follow_the_name() {
        let sasl: Vec<_> = SecurityProtocol::ALL
            .into_iter()
            .filter(|p| p.is_sasl())
            .collect();
        let tls: Vec<_> = SecurityProtocol::ALL
            .into_iter()
            .filter(|p| p.is_tls())
            .collect();
        assert_eq!(
            sasl,
            [SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl]
        );
        assert_eq!(tls, [SecurityProtocol::Ssl, SecurityProtocol::SaslSsl]);
    }
}
