//! The node's store identity, for the Kubo RPC `id` command.
//!
//! Kubo clients parse `ID` as a libp2p PeerId, so this node needs one. It is
//! **the node's store identity; this node does not speak libp2p**: 32 random
//! bytes, made once and kept in `<store dir>/identity`, wrapped as if they
//! were an ed25519 public key (protobuf `PublicKey{Type: Ed25519, Data}`)
//! and hashed with the identity multihash, which is how libp2p spells an
//! ed25519 peer id (`12D3KooW…`). There is no private key: nothing can sign
//! for this id, and no libp2p peer can dial it.

use std::io::{Read, Write};
use std::path::Path;

use cid::multibase::{self, Base};

/// File in the store directory that holds the 32 identity bytes.
const FILE: &str = "identity";

/// A PeerId-shaped identity of this node.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Base58btc PeerId (`12D3KooW…`).
    pub(crate) peer_id: String,
    /// The protobuf-encoded "public key", base64 as kubo prints it.
    pub(crate) public_key: String,
}

impl Identity {
    fn from_bytes(raw: &[u8; 32]) -> Self {
        // PublicKey { Type: Ed25519 (1), Data: raw }
        let mut key = vec![0x08, 0x01, 0x12, 0x20];
        key.extend_from_slice(raw);
        // identity multihash: code 0x00, length, digest = the key itself
        let mut mh = vec![0x00, key.len() as u8];
        mh.extend_from_slice(&key);
        let peer_id = multibase::encode(Base::Base58Btc, &mh);
        let public_key = multibase::encode(Base::Base64Pad, &key);
        Self {
            // Drop the multibase prefix characters ('z', 'M'): kubo prints
            // bare base58btc and bare base64.
            peer_id: peer_id.get(1..).unwrap_or_default().to_string(),
            public_key: public_key.get(1..).unwrap_or_default().to_string(),
        }
    }

    /// Loads the identity of the store in `dir`, creating it on first use.
    pub(crate) fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} holds {} bytes, not 32", path.display(), bytes.len()),
                    )
                })?;
                return Ok(Self::from_bytes(&raw));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut raw = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&raw)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(Self::from_bytes(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_like_an_ed25519_peer_id() {
        let id = Identity::from_bytes(&[7u8; 32]);
        assert!(id.peer_id.starts_with("12D3KooW"), "{}", id.peer_id);
        assert!(id.public_key.starts_with("CAESI"), "{}", id.public_key);
    }

    #[test]
    fn made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Identity::load_or_create(dir.path()).expect("create");
        let again = Identity::load_or_create(dir.path()).expect("load");
        assert_eq!(first.peer_id, again.peer_id);
        assert_eq!(
            std::fs::read(dir.path().join(FILE))
                .expect("identity file")
                .len(),
            32
        );
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(
            Identity::load_or_create(other.path())
                .expect("create")
                .peer_id,
            first.peer_id
        );
    }
}
