//! Enhanced authentication hook (MQTT 5 AUTH, §4.12).
//!
//! CONNECT packets naming an Authentication Method, and AUTH packets, are
//! routed to an [`Authenticator`]. The broker installs [`NoEnhancedAuth`],
//! which answers "bad authentication method" (0x8C) to every method: why
//! there is no SCRAM is in ADR 0007. Whatever a method decides, the policy's
//! own authentication and `connect` decision still apply.

use bytes::Bytes;

/// The authenticator's answer to one step of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Authenticated; the CONNACK may carry final authentication data.
    Success {
        /// Data for the client's verification of the server, if any.
        data: Option<Bytes>,
    },
    /// Refused with a v5 reason code (0x8C bad method, 0x87 not authorized…).
    Fail {
        /// Reason code for CONNACK / DISCONNECT.
        reason: u8,
    },
}

/// Decides enhanced-authentication exchanges.
pub trait Authenticator: Send + Sync + 'static {
    /// First step: the CONNECT's Authentication Method and Data.
    fn start(&self, method: &str, data: Option<&[u8]>) -> AuthStep;
}

/// No enhanced authentication method is available.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEnhancedAuth;

/// v5 reason code: Bad authentication method.
const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;

impl Authenticator for NoEnhancedAuth {
    fn start(&self, _method: &str, _data: Option<&[u8]>) -> AuthStep {
        AuthStep::Fail {
            reason: BAD_AUTHENTICATION_METHOD,
        }
    }
}
