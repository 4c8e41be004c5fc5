//! The bindings match the committed artifacts, and every ABI function is exercised by a test.

use alloy_primitives::hex;
use lattice_contracts::{ARTIFACTS, IPFSIncentives, ModelRegistry, ReentrantWithdrawer};

fn artifact(name: &str) -> serde_json::Value {
    let a = ARTIFACTS.iter().find(|a| a.name == name).expect("artifact");
    serde_json::from_str(a.json).expect("artifact is JSON")
}

#[test]
fn bytecode_statics_are_the_artifacts() {
    for (name, code, deployed) in [
        (
            "ModelRegistry",
            &ModelRegistry::BYTECODE,
            &ModelRegistry::DEPLOYED_BYTECODE,
        ),
        (
            "IPFSIncentives",
            &IPFSIncentives::BYTECODE,
            &IPFSIncentives::DEPLOYED_BYTECODE,
        ),
        (
            "ReentrantWithdrawer",
            &ReentrantWithdrawer::BYTECODE,
            &ReentrantWithdrawer::DEPLOYED_BYTECODE,
        ),
    ] {
        let a = artifact(name);
        assert_eq!(a["contractName"], name);
        assert_eq!(
            a["bytecode"].as_str(),
            Some(format!("0x{}", hex::encode(&code[..])).as_str())
        );
        assert_eq!(
            a["deployedBytecode"].as_str(),
            Some(format!("0x{}", hex::encode(&deployed[..])).as_str())
        );
        // EIP-170: runtime code fits in 24 KiB.
        assert!(
            deployed.len() <= 24_576,
            "{name} runtime is {} bytes",
            deployed.len()
        );
        assert!(
            a["compiler"]["version"]
                .as_str()
                .is_some_and(|v| v.starts_with("0.8.37+"))
        );
        assert_eq!(a["settings"]["evmVersion"], "cancun");
        assert_eq!(a["settings"]["optimizer"]["runs"], 200);
    }
}

/// Each function in the two production ABIs appears as `<Contract>::<name>Call` in the tests.
#[test]
fn every_abi_function_is_exercised() {
    let tests = [
        include_str!("model_registry.rs"),
        include_str!("ipfs_incentives.rs"),
        include_str!("properties.rs"),
        include_str!("common/mod.rs"),
    ]
    .concat();
    let mut missing = Vec::new();
    for name in ["ModelRegistry", "IPFSIncentives"] {
        for item in artifact(name)["abi"].as_array().expect("abi array") {
            if item["type"] == "function" {
                let f = item["name"].as_str().expect("name");
                if !tests.contains(&format!("{name}::{f}Call")) {
                    missing.push(format!("{name}.{f}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "functions without a test: {missing:?}");
}

/// Each custom error and event of the two production ABIs is matched (`::Name(`) by a test,
/// except the few that cannot occur or are outside the brief (listed).
#[test]
fn every_error_and_event_is_exercised() {
    const NOT_REACHED: [&str; 3] = [
        // No role admin is ever changed by these contracts.
        "ModelRegistry.RoleAdminChanged",
        "IPFSIncentives.RoleAdminChanged",
        // `claim` is guarded too, but no re-entering pinner is tested (only `withdraw` is).
        "IPFSIncentives.ReentrancyGuardReentrantCall",
    ];
    let mut missing = Vec::new();
    for (name, tests) in [
        (
            "ModelRegistry",
            [
                include_str!("model_registry.rs"),
                include_str!("properties.rs"),
            ]
            .concat(),
        ),
        (
            "IPFSIncentives",
            [
                include_str!("ipfs_incentives.rs"),
                include_str!("properties.rs"),
            ]
            .concat(),
        ),
    ] {
        for item in artifact(name)["abi"].as_array().expect("abi array") {
            if item["type"] == "error" || item["type"] == "event" {
                let e = item["name"].as_str().expect("name");
                let id = format!("{name}.{e}");
                if !tests.contains(&format!("::{e}(")) && !NOT_REACHED.contains(&id.as_str()) {
                    missing.push(id);
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "errors/events without a test: {missing:?}"
    );
}
