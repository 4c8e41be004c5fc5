// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {ModelRegistry} from "../src/ModelRegistry.sol";

/// @notice Test-only model owner whose `receive` tries to re-enter `ModelRegistry.withdraw`.
/// @dev The re-entry's revert data is recorded in `reentryError`; the outer withdraw goes on.
contract ReentrantWithdrawer {
    ModelRegistry public immutable registry;
    bytes32 public modelId;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(ModelRegistry registry_) {
        registry = registry_;
    }

    /// @notice Registers a model owned by this contract.
    function register(bytes calldata rootCid, uint256 price) external {
        modelId = registry.registerModel(rootCid, "", "attacker", "gguf", "llama", price, false);
    }

    /// @notice Withdraws the model's revenue; `receive` re-enters once.
    function attack() external {
        registry.withdraw(modelId);
    }

    receive() external payable {
        if (reentryAttempts == 0) {
            reentryAttempts = 1;
            try registry.withdraw(modelId) {
                reentrySucceeded = true;
            } catch (bytes memory err) {
                reentryError = err;
            }
        }
    }
}
