//! A validator on a real network: commonware's authenticated `lookup` p2p
//! (ed25519 identities, encrypted streams, peers at known addresses) carrying
//! the five channels, and simplex plus the application on top.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::{
    ChaCha20Poly1305, Signer as _,
    ed25519::{PrivateKey, PublicKey},
};
use commonware_p2p::{
    Address, AddressableManager as _,
    authenticated::lookup::{self, Network},
};
use commonware_runtime::{
    Clock, Handle, Metrics, Network as RuntimeNetwork, Quota, Resolver, Spawner, Storage,
};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use lattice_chain::Node;
use rand_core::CryptoRng;

use crate::{Channels, ConfigError, ConsensusConfig, Validator, ValidatorSet, channel, start};

/// Most bytes in one p2p message: a full block (its transactions) plus framing.
pub const MAX_MESSAGE_SIZE: u32 = 8 * 1024 * 1024;
/// Namespace binding p2p handshakes to Lattice (and to nothing else signed with the key).
pub const P2P_NAMESPACE: &[u8] = b"lattice-p2p-v1";

/// Where this validator listens and where every validator is.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The p2p listening address.
    pub listen: SocketAddr,
    /// Every validator's p2p address (this one's included or not).
    pub peers: Vec<(PublicKey, SocketAddr)>,
    /// Loopback / private-network settings (private IPs allowed, fast redials); off for
    /// public deployments.
    pub local: bool,
}

/// Messages a peer may send on one channel at once (beyond the steady rate).
pub(crate) const MAX_BURST: u32 = 1024;

/// Starts the p2p network and the validator on it. The network's task and the
/// validator's run until the context stops.
pub fn start_validator<E>(
    context: E,
    node: Arc<Node>,
    key: PrivateKey,
    validators: &ValidatorSet,
    config: &ConsensusConfig,
    net: &NetworkConfig,
) -> Result<(Validator, Handle<()>), ConfigError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics + RuntimeNetwork + Resolver,
{
    if !validators.keys().contains(&key.public_key()) {
        return Err(ConfigError::NotAValidator);
    }
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: key.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let max_peers = NZUsize!(validators.keys().len().max(1));
    let mailbox = NZUsize!(4096);
    let settings = if net.local {
        lookup::Config::local
    } else {
        lookup::Config::recommended
    };
    let cfg = settings(
        handshake,
        P2P_NAMESPACE,
        net.listen,
        max_peers,
        MAX_MESSAGE_SIZE,
        mailbox,
    );
    let (mut network, mut oracle) = Network::new(context.child("network"), cfg);
    let mut peers = Vec::new();
    for k in validators.keys() {
        let addr = net
            .peers
            .iter()
            .find(|(p, _)| p == k)
            .map(|(_, a)| *a)
            .or_else(|| (*k == key.public_key()).then_some(net.listen))
            .ok_or_else(|| ConfigError::NoAddress(hex(k.as_ref())))?;
        peers.push((k.clone(), Address::from(addr)));
    }
    let peers: Map<PublicKey, Address> = peers.try_into().map_err(|_| ConfigError::BadSet)?;
    let _ = oracle.track(0, peers);
    // Generous per-peer rates (a loopback testnet moves thousands of messages a second) with
    // a bounded burst: commonware sizes each channel's inbound queue, and the router's
    // outbound one, as peers × burst slots, allocated up front. A burst equal to the rate
    // (governor's default) made that 4 GB resident per validator.
    let quota = Quota::per_second(NZU32!(100_000)).allow_burst(NZU32!(MAX_BURST));
    let mut register = |id| network.register(id, quota);
    let channels = Channels {
        votes: register(channel::VOTES),
        certificates: register(channel::CERTIFICATES),
        resolver: register(channel::RESOLVER),
        blocks: register(channel::BLOCKS),
        txs: register(channel::TXS),
    };
    let network = network.start();
    let validator = start(
        context.child("validator"),
        node,
        key,
        validators,
        oracle,
        config,
        channels,
    )?;
    Ok((validator, network))
}

fn hex(bytes: &[u8]) -> String {
    alloy_primitives::hex::encode_prefixed(bytes)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    alloy_primitives::hex::decode(s.trim()).ok()
}

/// A validator key as text: `0x` and 64 hex digits (the ed25519 secret seed).
pub fn private_key_hex(key: &PrivateKey) -> String {
    hex(&key.encode())
}

/// A validator's public key as text: `0x` and 64 hex digits.
pub fn public_key_hex(key: &PublicKey) -> String {
    hex(key.as_ref())
}

/// Parses [`private_key_hex`]'s form.
pub fn parse_private_key(s: &str) -> Result<PrivateKey, ConfigError> {
    let bytes = unhex(s).ok_or(ConfigError::BadKey("a validator private key"))?;
    PrivateKey::decode(commonware_codec::Copying(bytes.as_slice()))
        .map_err(|_| ConfigError::BadKey("a validator private key"))
}

/// Parses [`public_key_hex`]'s form.
pub fn parse_public_key(s: &str) -> Result<PublicKey, ConfigError> {
    public_key_from(&unhex(s).ok_or(ConfigError::BadKey("a validator public key"))?)
}

/// A validator public key from its 32 bytes (checked to be a curve point).
pub(crate) fn public_key_from(bytes: &[u8]) -> Result<PublicKey, ConfigError> {
    PublicKey::decode(commonware_codec::Copying(bytes))
        .map_err(|_| ConfigError::BadKey("a validator public key"))
}

/// A new random validator key (from the operating system's randomness).
pub fn generate_key() -> PrivateKey {
    use rand_core::Rng as _;
    // An ed25519 secret key is any 32 bytes (its seed).
    let mut seed = [0u8; 32];
    commonware_utils::sys_rng().fill_bytes(&mut seed);
    let key = PrivateKey::decode(commonware_codec::Copying(&seed[..]));
    key.unwrap_or_else(|_| unreachable!("every 32 bytes are an ed25519 seed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex_and_bad_ones_are_named() {
        let key = generate_key();
        let text = private_key_hex(&key);
        assert_eq!(text.len(), 66);
        let back = parse_private_key(&text).expect("parses");
        assert_eq!(back.public_key(), key.public_key());
        let public = public_key_hex(&key.public_key());
        assert_eq!(parse_public_key(&public).expect("parses"), key.public_key());
        assert_ne!(generate_key().public_key(), key.public_key());
        for bad in ["", "0x12", "zz", &text[..64]] {
            let e = parse_private_key(bad).expect_err("refused");
            assert!(e.to_string().contains("private key"), "{e}");
        }
    }
}
