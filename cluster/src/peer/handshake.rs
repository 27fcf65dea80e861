//! Mutual shared-secret authentication at connect.
//!
//! ```text
//! dialer                                   listener
//!   ClientHello{v, id_c, nonce_c}  ───────►
//!                                  ◄───────  ServerHello{v, id_s, nonce_s, HMAC(k, "server"|transcript)}
//!   verify server proof
//!   ClientProof{HMAC(k, "client"|transcript)} ─►  verify; only now are requests read
//! transcript = v | id_c | id_s | nonce_c | nonce_s
//! ```
//! Each side signs the other side's fresh nonce, so proofs cannot be replayed; comparison is
//! constant-time (`Mac::verify_slice`). A failing peer is disconnected before it can send a
//! Raft RPC.

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::Wire;
use super::frame::{Frame, NONCE_LEN, PROTOCOL_VERSION};
use crate::error::LinkError;

type HmacSha256 = Hmac<Sha256>;

struct Transcript {
    client: u64,
    server: u64,
    client_nonce: [u8; NONCE_LEN],
    server_nonce: [u8; NONCE_LEN],
}

impl Transcript {
    fn mac(&self, secret: &[u8], label: &[u8]) -> Result<HmacSha256, LinkError> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
            .map_err(|_| LinkError::Handshake("invalid secret".into()))?;
        mac.update(b"starling-cluster/");
        mac.update(label);
        mac.update(&[PROTOCOL_VERSION]);
        mac.update(&self.client.to_be_bytes());
        mac.update(&self.server.to_be_bytes());
        mac.update(&self.client_nonce);
        mac.update(&self.server_nonce);
        Ok(mac)
    }

    fn prove(&self, secret: &[u8], label: &[u8]) -> Result<[u8; NONCE_LEN], LinkError> {
        let tag = self.mac(secret, label)?.finalize().into_bytes();
        let mut out = [0u8; NONCE_LEN];
        out.copy_from_slice(tag.as_slice());
        Ok(out)
    }

    fn verify(
        &self,
        secret: &[u8],
        label: &[u8],
        proof: &[u8; NONCE_LEN],
    ) -> Result<(), LinkError> {
        self.mac(secret, label)?.verify_slice(proof).map_err(|_| {
            LinkError::Handshake(format!(
                "bad {} proof (wrong shared secret?)",
                String::from_utf8_lossy(label)
            ))
        })
    }
}

async fn next_frame(wire: &mut Wire) -> Result<Frame, LinkError> {
    match wire.next().await {
        Some(Ok(b)) => Frame::decode(b.freeze()),
        Some(Err(e)) => Err(LinkError::Handshake(format!("read: {e}"))),
        None => Err(LinkError::Handshake("closed during handshake".into())),
    }
}

async fn send(wire: &mut Wire, frame: Frame) -> Result<(), LinkError> {
    wire.send(frame.encode())
        .await
        .map_err(|e| LinkError::Handshake(format!("write: {e}")))
}

/// Dialer side: proves itself to `expect` and checks that the listener is `expect`.
pub(crate) async fn dial(
    wire: &mut Wire,
    me: u64,
    expect: u64,
    secret: &[u8],
) -> Result<(), LinkError> {
    let client_nonce: [u8; NONCE_LEN] = rand::random();
    send(
        wire,
        Frame::ClientHello {
            version: PROTOCOL_VERSION,
            node_id: me,
            nonce: client_nonce,
        },
    )
    .await?;
    let Frame::ServerHello {
        version,
        node_id,
        nonce,
        proof,
    } = next_frame(wire).await?
    else {
        return Err(LinkError::Handshake("expected ServerHello".into()));
    };
    if version != PROTOCOL_VERSION {
        return Err(LinkError::Handshake(format!(
            "protocol version {version} (want {PROTOCOL_VERSION})"
        )));
    }
    if node_id != expect {
        return Err(LinkError::Handshake(format!(
            "dialed node {expect} but node {node_id} answered"
        )));
    }
    let t = Transcript {
        client: me,
        server: node_id,
        client_nonce,
        server_nonce: nonce,
    };
    t.verify(secret, b"server", &proof)?;
    send(
        wire,
        Frame::ClientProof {
            proof: t.prove(secret, b"client")?,
        },
    )
    .await
}

/// Listener side: returns the authenticated id of the dialer.
pub(crate) async fn accept(wire: &mut Wire, me: u64, secret: &[u8]) -> Result<u64, LinkError> {
    let Frame::ClientHello {
        version,
        node_id,
        nonce,
    } = next_frame(wire).await?
    else {
        return Err(LinkError::Handshake("expected ClientHello".into()));
    };
    if version != PROTOCOL_VERSION {
        return Err(LinkError::Handshake(format!(
            "protocol version {version} (want {PROTOCOL_VERSION})"
        )));
    }
    if node_id == me {
        return Err(LinkError::Handshake("peer claims this node's id".into()));
    }
    let server_nonce: [u8; NONCE_LEN] = rand::random();
    let t = Transcript {
        client: node_id,
        server: me,
        client_nonce: nonce,
        server_nonce,
    };
    send(
        wire,
        Frame::ServerHello {
            version: PROTOCOL_VERSION,
            node_id: me,
            nonce: server_nonce,
            proof: t.prove(secret, b"server")?,
        },
    )
    .await?;
    let Frame::ClientProof { proof } = next_frame(wire).await? else {
        return Err(LinkError::Handshake("expected ClientProof".into()));
    };
    t.verify(secret, b"client", &proof)?;
    Ok(node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Transcript {
        Transcript {
            client: 1,
            server: 2,
            client_nonce: [1; NONCE_LEN],
            server_nonce: [2; NONCE_LEN],
        }
    }

    #[test]
    fn proofs_verify_only_with_same_secret_and_label() {
        let secret = b"0123456789abcdef";
        let p = t().prove(secret, b"client").unwrap();
        assert!(t().verify(secret, b"client", &p).is_ok());
        assert!(t().verify(secret, b"server", &p).is_err());
        assert!(t().verify(b"0123456789abcdeX", b"client", &p).is_err());
        let mut other = t();
        other.server_nonce = [3; NONCE_LEN];
        assert!(other.verify(secret, b"client", &p).is_err());
    }
}
