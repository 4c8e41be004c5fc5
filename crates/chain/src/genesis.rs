//! The dev chain's genesis: the dev accounts and the system contracts at
//! their fixed addresses.

use alloy_primitives::{Address, Bytes};
use alloy_sol_types::{SolCall, SolConstructor};
use lattice_contracts::{IPFSIncentives, ModelRegistry};
use lattice_evm::{DEV_ACCOUNTS, Genesis, IPFS_INCENTIVES_ADDRESS, MODEL_REGISTRY_ADDRESS};

/// Chain id of `lattice devnet` unless told otherwise: anvil's and
/// hardhat's, so that tools and tutorials configured for a local chain work.
pub const DEV_CHAIN_ID: u64 = 31337;

/// Genesis of a dev chain: [`Genesis::dev`] (the 10 dev accounts with
/// 10,000 ETH each) with blocks of `gas_limit`, `ModelRegistry` at
/// [`MODEL_REGISTRY_ADDRESS`] and `IPFSIncentives` at
/// [`IPFS_INCENTIVES_ADDRESS`], both administered by dev account 0, which is
/// also the registry's treasury and the incentives' root publisher; the
/// registry's pinning pool is the incentives contract. Dev account
/// [`DEV_EXECUTOR`] holds the registry's `EXECUTOR_ROLE` (the dev node's
/// executor signs with it).
pub fn dev_genesis(chain_id: u64, gas_limit: u64) -> Genesis {
    let admin = DEV_ACCOUNTS[0].address;
    let mut genesis = Genesis::dev(chain_id);
    genesis.gas_limit = gas_limit;
    with_system_contracts(
        genesis,
        &Roles {
            admin,
            treasury: admin,
            publisher: admin,
            executors: vec![DEV_ACCOUNTS[DEV_EXECUTOR].address],
        },
    )
}

/// Who runs a network's system contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// `DEFAULT_ADMIN_ROLE` of both contracts (grants every other role).
    pub admin: Address,
    /// Receives the registry's protocol share of inference fees.
    pub treasury: Address,
    /// Publishes the incentives' reward Merkle roots.
    pub publisher: Address,
    /// Accounts granted the registry's `EXECUTOR_ROLE` at genesis.
    pub executors: Vec<Address>,
}

/// `genesis` with `ModelRegistry` at [`MODEL_REGISTRY_ADDRESS`] and `IPFSIncentives` at
/// [`IPFS_INCENTIVES_ADDRESS`] (the registry's pinning pool) deployed and `roles` granted:
/// what every Lattice chain starts with, dev or not.
pub fn with_system_contracts(genesis: Genesis, roles: &Roles) -> Genesis {
    let mut genesis = genesis
        .with_deployment(
            MODEL_REGISTRY_ADDRESS,
            registry_init_code(roles.admin, roles.treasury),
        )
        .with_deployment(
            IPFS_INCENTIVES_ADDRESS,
            incentives_init_code(roles.admin, roles.publisher),
        );
    for executor in &roles.executors {
        let grant = ModelRegistry::grantRoleCall {
            role: lattice_contracts::EXECUTOR_ROLE,
            account: *executor,
        };
        genesis = genesis.with_call(
            roles.admin,
            MODEL_REGISTRY_ADDRESS,
            grant.abi_encode().into(),
        );
    }
    genesis
}

/// Index in [`DEV_ACCOUNTS`] of the dev chain's executor (the last account, so that the
/// ones tools use first stay plain users).
pub const DEV_EXECUTOR: usize = 9;

/// `ModelRegistry` creation code with its constructor arguments.
pub fn registry_init_code(admin: Address, treasury: Address) -> Bytes {
    let mut code = ModelRegistry::BYTECODE.to_vec();
    code.extend(
        ModelRegistry::constructorCall {
            admin,
            pinningPool_: IPFS_INCENTIVES_ADDRESS,
            treasury_: treasury,
        }
        .abi_encode(),
    );
    code.into()
}

/// `IPFSIncentives` creation code with its constructor arguments.
pub fn incentives_init_code(admin: Address, publisher: Address) -> Bytes {
    let mut code = IPFSIncentives::BYTECODE.to_vec();
    code.extend(IPFSIncentives::constructorCall { admin, publisher }.abi_encode());
    code.into()
}
