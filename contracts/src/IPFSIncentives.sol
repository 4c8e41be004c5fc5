// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title IPFSIncentives
/// @notice Epoch-based native-token rewards for pinning model data, claimed with Merkle proofs.
/// @dev Per epoch, a `PUBLISHER_ROLE` holder posts one Merkle root and a budget that must fit in
/// the unallocated balance (balance minus budgets still reserved for unclaimed leaves).
/// Leaf encoding (OpenZeppelin StandardMerkleTree, double-hashed against second-preimage attacks):
/// `leaf = keccak256(bytes.concat(keccak256(abi.encode(uint256 epoch, address pinner, uint256 amount))))`;
/// inner nodes hash the sorted pair (`MerkleProof.verify`). Each leaf can be claimed once
/// (a per-epoch claimed set keyed by leaf); epochs cannot be re-posted; claims in an epoch never
/// exceed its budget. `DEFAULT_ADMIN_ROLE` pauses posting and claiming.
/// No immutables: the runtime code is address-independent.
contract IPFSIncentives is AccessControl, Pausable, ReentrancyGuard {
    /// @notice Role allowed to post epoch roots (validators).
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");

    /// @notice A posted epoch.
    struct Epoch {
        bytes32 root;
        uint256 budget;
        uint256 claimed;
    }

    mapping(uint256 => Epoch) private _epochs;
    mapping(uint256 => mapping(bytes32 => bool)) private _claimed;

    /// @notice Sum over epochs of `budget - claimed`: funds promised to unclaimed leaves.
    uint256 public totalReserved;

    /// @notice Accounts that announced they pin a CID, by `keccak256(cid bytes)`.
    mapping(bytes32 => mapping(address => bool)) public isPinning;
    /// @notice How many accounts announce pinning a CID, by `keccak256(cid bytes)`.
    mapping(bytes32 => uint256) public pinCount;

    event Funded(address indexed from, uint256 amount);
    event RootPosted(uint256 indexed epoch, bytes32 root, uint256 budget);
    event Claimed(uint256 indexed epoch, address indexed pinner, uint256 amount);
    event PinAnnounced(bytes32 indexed cidHash, address indexed pinner, bytes cid);
    event PinWithdrawn(bytes32 indexed cidHash, address indexed pinner);

    error ZeroRoot();
    error EpochAlreadyPosted(uint256 epoch);
    error BudgetExceedsBalance(uint256 budget, uint256 available);
    error UnknownEpoch(uint256 epoch);
    error AlreadyClaimed(uint256 epoch, address pinner, uint256 amount);
    error InvalidProof();
    error EpochBudgetExceeded(uint256 epoch, uint256 budget, uint256 claimed, uint256 amount);
    error TransferFailed(address to, uint256 amount);
    error EmptyCid();
    error AlreadyPinning(bytes32 cidHash, address pinner);
    error NotPinning(bytes32 cidHash, address pinner);

    /// @param admin Gets `DEFAULT_ADMIN_ROLE`.
    /// @param publisher Gets `PUBLISHER_ROLE` unless it is the zero address.
    constructor(address admin, address publisher) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        if (publisher != address(0)) _grantRole(PUBLISHER_ROLE, publisher);
    }

    /// @notice Funds the reward pool.
    receive() external payable {
        emit Funded(msg.sender, msg.value);
    }

    /// @notice Posts the Merkle root of `epoch`'s (epoch, pinner, amount) leaves, reserving `budget`.
    function postRoot(uint256 epoch, bytes32 root, uint256 budget) external whenNotPaused onlyRole(PUBLISHER_ROLE) {
        if (root == bytes32(0)) revert ZeroRoot();
        if (_epochs[epoch].root != bytes32(0)) revert EpochAlreadyPosted(epoch);
        uint256 available = unallocated();
        if (budget > available) revert BudgetExceedsBalance(budget, available);
        _epochs[epoch] = Epoch(root, budget, 0);
        totalReserved += budget;
        emit RootPosted(epoch, root, budget);
    }

    /// @notice Pays `amount` to `pinner` for `epoch` if the leaf is in the posted tree and unclaimed.
    /// @dev Anyone may submit the claim; the funds only ever go to `pinner`.
    function claim(uint256 epoch, address pinner, uint256 amount, bytes32[] calldata proof)
        external
        whenNotPaused
        nonReentrant
    {
        Epoch storage e = _epochs[epoch];
        if (e.root == bytes32(0)) revert UnknownEpoch(epoch);
        bytes32 leaf = leafHash(epoch, pinner, amount);
        if (_claimed[epoch][leaf]) revert AlreadyClaimed(epoch, pinner, amount);
        if (!MerkleProof.verifyCalldata(proof, e.root, leaf)) revert InvalidProof();
        if (e.claimed + amount > e.budget) revert EpochBudgetExceeded(epoch, e.budget, e.claimed, amount);
        _claimed[epoch][leaf] = true;
        e.claimed += amount;
        totalReserved -= amount;
        emit Claimed(epoch, pinner, amount);
        (bool ok,) = pinner.call{value: amount}("");
        if (!ok) revert TransferFailed(pinner, amount);
    }

    /// @notice Announces that the caller keeps (pins) `cid` and serves it. Announcements are
    /// claims, not proofs: the publisher checks availability before it rewards anyone, so an
    /// announcement alone earns nothing. One per account and CID.
    function announcePin(bytes calldata cid) external whenNotPaused {
        if (cid.length == 0) revert EmptyCid();
        bytes32 h = keccak256(cid);
        if (isPinning[h][msg.sender]) revert AlreadyPinning(h, msg.sender);
        isPinning[h][msg.sender] = true;
        pinCount[h] += 1;
        emit PinAnnounced(h, msg.sender, cid);
    }

    /// @notice Withdraws the caller's pin announcement for the CID hashing to `cidHash`.
    function withdrawPin(bytes32 cidHash) external {
        if (!isPinning[cidHash][msg.sender]) revert NotPinning(cidHash, msg.sender);
        isPinning[cidHash][msg.sender] = false;
        pinCount[cidHash] -= 1;
        emit PinWithdrawn(cidHash, msg.sender);
    }

    /// @notice Stops posting and claiming.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts `pause`.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @notice The leaf for (epoch, pinner, amount), as documented on the contract.
    function leafHash(uint256 epoch, address pinner, uint256 amount) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(epoch, pinner, amount))));
    }

    /// @notice A posted epoch (all zero if not posted).
    function getEpoch(uint256 epoch) external view returns (Epoch memory) {
        return _epochs[epoch];
    }

    /// @notice Whether the leaf (epoch, pinner, amount) has been claimed.
    function isClaimed(uint256 epoch, address pinner, uint256 amount) external view returns (bool) {
        return _claimed[epoch][leafHash(epoch, pinner, amount)];
    }

    /// @notice Balance not reserved by any epoch; the most a new epoch's budget can be.
    function unallocated() public view returns (uint256) {
        return address(this).balance - totalReserved;
    }
}
