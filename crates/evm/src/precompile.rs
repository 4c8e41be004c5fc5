//! The hook for Lattice's own precompiles.
//!
//! Addresses [`LATTICE_PRECOMPILE_FIRST`]..=[`LATTICE_PRECOMPILE_LAST`]
//! (`0x…1000`–`0x…10ff`) are reserved for them. The range stays clear of
//! Ethereum's precompiles (`0x01`–`0x11` today) and of `0x100`
//! (P256VERIFY, EIP-7951). No Lattice precompile exists yet; blocks execute
//! with [`LatticePrecompiles::new`], which is exactly Ethereum's set.

use alloy_primitives::{Address, Bytes, address};
use revm::{
    context::Cfg,
    context_interface::ContextTr,
    handler::{EthPrecompiles, PrecompileProvider, precompile_output_to_interpreter_result},
    interpreter::{CallInputs, InterpreterResult},
    precompile::{PrecompileOutput, PrecompileStatus},
    primitives::{AddressMap, AddressSet, hardfork::SpecId},
};

use crate::execute::SPEC;

/// First address reserved for Lattice precompiles.
pub const LATTICE_PRECOMPILE_FIRST: Address =
    address!("0x0000000000000000000000000000000000001000");
/// Last address reserved for Lattice precompiles.
pub const LATTICE_PRECOMPILE_LAST: Address = address!("0x00000000000000000000000000000000000010ff");

/// A Lattice precompile: `(input, gas_limit)` → `Ok((gas_used, output))`, or
/// `Err(revert_data)` to revert. Using more gas than `gas_limit` halts the
/// call out of gas.
pub type LatticePrecompileFn = fn(input: &[u8], gas_limit: u64) -> Result<(u64, Bytes), Bytes>;

/// Registering a precompile outside the reserved range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is outside the Lattice precompile range 0x…1000–0x…10ff")]
pub struct PrecompileRangeError(pub Address);

/// Ethereum's precompiles plus the registered Lattice ones; the revm
/// [`PrecompileProvider`] every block executes with.
#[derive(Debug, Clone)]
pub struct LatticePrecompiles {
    eth: EthPrecompiles,
    lattice: AddressMap<LatticePrecompileFn>,
    warm: AddressSet,
}

impl Default for LatticePrecompiles {
    fn default() -> Self {
        Self::new()
    }
}

impl LatticePrecompiles {
    /// Ethereum's precompiles for [`SPEC`], no Lattice ones.
    pub fn new() -> Self {
        let eth = EthPrecompiles::new(SPEC);
        let warm = eth.warm_addresses().clone();
        Self {
            eth,
            lattice: AddressMap::default(),
            warm,
        }
    }

    /// Adds (or replaces) a Lattice precompile at `address`, which must lie in
    /// the reserved range.
    pub fn register(
        &mut self,
        address: Address,
        run: LatticePrecompileFn,
    ) -> Result<(), PrecompileRangeError> {
        if !(LATTICE_PRECOMPILE_FIRST..=LATTICE_PRECOMPILE_LAST).contains(&address) {
            return Err(PrecompileRangeError(address));
        }
        self.lattice.insert(address, run);
        self.warm.insert(address);
        Ok(())
    }

    fn rebuild_warm(&mut self) {
        self.warm.clone_from(self.eth.warm_addresses());
        self.warm.extend(self.lattice.keys().copied());
    }
}

impl<CTX> PrecompileProvider<CTX> for LatticePrecompiles
where
    CTX: ContextTr<Cfg: Cfg<Spec = SpecId>>,
{
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: SpecId) -> bool {
        let changed = <EthPrecompiles as PrecompileProvider<CTX>>::set_spec(&mut self.eth, spec);
        if changed {
            self.rebuild_warm();
        }
        changed
    }

    fn run(
        &mut self,
        context: &mut CTX,
        inputs: &CallInputs,
    ) -> Result<Option<InterpreterResult>, String> {
        let Some(run) = self.lattice.get(&inputs.bytecode_address).copied() else {
            return <EthPrecompiles as PrecompileProvider<CTX>>::run(
                &mut self.eth,
                context,
                inputs,
            );
        };
        let input = inputs.input.as_bytes(context);
        let (status, gas_used, bytes) = match run(&input, inputs.gas_limit) {
            Ok((gas_used, bytes)) => (PrecompileStatus::Success, gas_used, bytes),
            Err(bytes) => (PrecompileStatus::Revert, 0, bytes),
        };
        let output = PrecompileOutput {
            status,
            gas_used,
            gas_refunded: 0,
            state_gas_used: 0,
            state_gas_spilled: 0,
            reservoir: inputs.reservoir,
            bytes,
        };
        Ok(Some(precompile_output_to_interpreter_result(
            output,
            inputs.gas_limit,
        )))
    }

    fn warm_addresses(&self) -> &AddressSet {
        &self.warm
    }

    fn contains(&self, address: &Address) -> bool {
        self.warm.contains(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(input: &[u8], _gas: u64) -> Result<(u64, Bytes), Bytes> {
        Ok((15, Bytes::copy_from_slice(input)))
    }

    #[test]
    fn register_checks_the_reserved_range() {
        let mut p = LatticePrecompiles::new();
        assert!(p.register(LATTICE_PRECOMPILE_FIRST, echo).is_ok());
        assert!(p.register(LATTICE_PRECOMPILE_LAST, echo).is_ok());
        let below = address!("0x0000000000000000000000000000000000000fff");
        let above = address!("0x0000000000000000000000000000000000001100");
        assert_eq!(p.register(below, echo), Err(PrecompileRangeError(below)));
        assert_eq!(p.register(above, echo), Err(PrecompileRangeError(above)));
        assert!(p.warm.contains(&LATTICE_PRECOMPILE_FIRST));
        // Ethereum's ecrecover stays.
        assert!(
            p.warm
                .contains(&address!("0x0000000000000000000000000000000000000001"))
        );
    }
}
