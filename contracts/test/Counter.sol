// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

/// @notice Test-only counter driven by the client test scripts (tests/clients).
contract Counter {
    uint256 public number;

    event Incremented(address indexed by, uint256 value);

    /// @notice Adds one and emits the new value.
    function increment() external {
        number += 1;
        emit Incremented(msg.sender, number);
    }

    /// @notice Sets the counter.
    function set(uint256 value) external {
        number = value;
    }

    /// @notice Always reverts with the reason string "counter: nope".
    function fail() external pure {
        require(false, "counter: nope");
    }
}
