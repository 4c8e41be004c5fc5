//! Merkle-Patricia roots over hashed keys (alloy-trie's `HashBuilder`).

use alloy_primitives::{B256, U256};
use alloy_trie::{HashBuilder, Nibbles, TrieAccount};
use std::{cmp::Ordering, iter::Peekable};

use crate::db::Account;

/// Root of one account's storage trie; `slots` ascending by hashed slot,
/// zero values skipped.
pub(crate) fn storage_root(slots: impl IntoIterator<Item = (B256, U256)>) -> B256 {
    let mut hb = HashBuilder::default();
    for (slot, value) in slots {
        if value.is_zero() {
            continue;
        }
        hb.add_leaf(
            Nibbles::unpack(slot),
            alloy_rlp::encode_fixed_size(&value).as_ref(),
        );
    }
    hb.root()
}

/// State root; `accounts` ascending by hashed address.
pub(crate) fn state_root(accounts: impl IntoIterator<Item = (B256, Account)>) -> B256 {
    let mut hb = HashBuilder::default();
    let mut buf = Vec::with_capacity(110);
    for (key, account) in accounts {
        buf.clear();
        alloy_rlp::Encodable::encode(&TrieAccount::from(account), &mut buf);
        hb.add_leaf(Nibbles::unpack(key), &buf);
    }
    hb.root()
}

/// Merges an ascending stored stream with an ascending stream of changes; a
/// change replaces the stored entry of the same key, `None` deletes it.
pub(crate) struct Merge<
    K,
    V,
    E,
    A: Iterator<Item = Result<(K, V), E>>,
    B: Iterator<Item = (K, Option<V>)>,
> {
    stored: Peekable<A>,
    changes: Peekable<B>,
}

impl<K, V, E, A, B> Merge<K, V, E, A, B>
where
    A: Iterator<Item = Result<(K, V), E>>,
    B: Iterator<Item = (K, Option<V>)>,
{
    pub(crate) fn new(stored: A, changes: B) -> Self {
        Self {
            stored: stored.peekable(),
            changes: changes.peekable(),
        }
    }
}

impl<K: Ord, V, E, A, B> Iterator for Merge<K, V, E, A, B>
where
    A: Iterator<Item = Result<(K, V), E>>,
    B: Iterator<Item = (K, Option<V>)>,
{
    type Item = Result<(K, V), E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.stored.peek(), self.changes.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.stored.next(),
                (Some(Ok(_)), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(Ok((a, _))), Some((b, _))) => a.cmp(b),
            };
            match order {
                Ordering::Less => return self.stored.next(),
                Ordering::Equal => {
                    self.stored.next();
                }
                Ordering::Greater => {}
            }
            if let Some((key, Some(value))) = self.changes.next() {
                return Some(Ok((key, value)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    #[test]
    fn merge_replaces_inserts_and_deletes() {
        let stored = vec![Ok::<_, ()>((1, 'a')), Ok((3, 'c')), Ok((5, 'e'))];
        let changes = vec![(0, Some('z')), (3, None), (5, Some('E')), (6, Some('f'))];
        let out: Vec<_> = Merge::new(stored.into_iter(), changes.into_iter())
            .collect::<Result<_, _>>()
            .expect("no errors");
        assert_eq!(out, vec![(0, 'z'), (1, 'a'), (5, 'E'), (6, 'f')]);
    }

    proptest::proptest! {
        /// Merging equals applying the changes to a map.
        #[test]
        fn merge_matches_a_map(
            stored in proptest::collection::btree_map(0u8..64, 0u32..9, 0..40),
            changes in proptest::collection::btree_map(0u8..64, proptest::option::of(0u32..9), 0..40),
        ) {
            let mut model = stored.clone();
            for (k, v) in &changes {
                match v {
                    Some(v) => { model.insert(*k, *v); }
                    None => { model.remove(k); }
                }
            }
            let merged: Vec<(u8, u32)> = Merge::new(
                stored.into_iter().map(Ok::<_, ()>),
                changes.into_iter(),
            )
            .collect::<Result<_, _>>()
            .expect("no errors");
            proptest::prop_assert_eq!(merged, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn empty_roots_are_the_empty_trie() {
        assert_eq!(storage_root([]), alloy_trie::EMPTY_ROOT_HASH);
        assert_eq!(state_root([]), alloy_trie::EMPTY_ROOT_HASH);
        assert_eq!(
            storage_root([(keccak256([1u8]), U256::ZERO)]),
            alloy_trie::EMPTY_ROOT_HASH
        );
    }

    /// Single-leaf storage trie: root = keccak(rlp([hp(path), rlp(value)])).
    #[test]
    fn single_slot_storage_root_matches_hand_computed_leaf() {
        let key = keccak256(B256::ZERO);
        let value = U256::from(1);
        let mut leaf_path = vec![0x20];
        leaf_path.extend_from_slice(key.as_slice());
        let value_rlp = alloy_rlp::encode(value);
        let mut list = Vec::new();
        let payload =
            alloy_rlp::encode(&leaf_path[..]).len() + alloy_rlp::encode(&value_rlp[..]).len();
        alloy_rlp::Header {
            list: true,
            payload_length: payload,
        }
        .encode(&mut list);
        list.extend(alloy_rlp::encode(&leaf_path[..]));
        list.extend(alloy_rlp::encode(&value_rlp[..]));
        assert_eq!(storage_root([(key, value)]), keccak256(&list));
    }
}
