// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title ModelRegistry
/// @notice Registry of AI models addressed by content, with paid inference requests.
/// @dev A model's id is `keccak256(rootCid)` of its first version's root CID bytes; every root
/// CID (of any version of any model) can be used once. Versions are append-only. Fees are
/// escrowed at request time and split on fulfilment between the model (its owner), the
/// executor, the pinning reward pool and the protocol treasury by basis points; the model's
/// share is the remainder, so the four parts always sum to the fee. Shares are credited and
/// withdrawn pull-style (`withdraw`, `withdrawBalance`). `ModelRegistered` is followed by
/// `VersionAdded(modelId, 0, rootCid, manifestCid)`.
/// Roles: `DEFAULT_ADMIN_ROLE` sets the split, recipients, timeout and pause;
/// `EXECUTOR_ROLE` fulfils requests. No immutables: the runtime code is address-independent.
contract ModelRegistry is AccessControl, Pausable, ReentrancyGuard {
    /// @notice Role allowed to fulfil inference requests.
    bytes32 public constant EXECUTOR_ROLE = keccak256("EXECUTOR_ROLE");
    /// @notice Basis-point denominator (100%).
    uint256 public constant BPS = 10_000;

    /// @notice One immutable version of a model.
    struct Version {
        bytes rootCid;
        bytes manifestCid;
        uint64 addedAt;
    }

    struct Model {
        address owner;
        bool active;
        bool isPrivate;
        uint64 createdAt;
        uint256 price;
        uint256 revenue;
        string name;
        string format;
        string architecture;
        Version[] versions;
    }

    /// @notice A model as returned by the views. `rootCid` is the identifying (first) root CID;
    /// `latest` is the index of the newest version, whose CIDs are `latestRootCid`/`latestManifestCid`.
    struct ModelView {
        bytes32 id;
        address owner;
        string name;
        string format;
        string architecture;
        bytes rootCid;
        bytes latestRootCid;
        bytes latestManifestCid;
        uint256 latest;
        uint256 price;
        uint256 revenue;
        uint64 createdAt;
        bool active;
        bool isPrivate;
    }

    /// @notice Access grant for a private model; `expiresAt == 0` means no expiry.
    struct Grant {
        bool granted;
        uint64 expiresAt;
    }

    /// @notice Lifecycle of an inference request.
    enum Status {
        None,
        Pending,
        Fulfilled,
        Refunded
    }

    /// @notice An inference request; `fee` is escrowed until fulfilment or refund.
    struct Request {
        bytes32 modelId;
        address requester;
        uint64 deadline;
        Status status;
        bytes32 inputHash;
        uint256 fee;
        address executor;
        bytes32 outputHash;
    }

    mapping(bytes32 => Model) private _models;
    bytes32[] private _modelIds;
    mapping(address => bytes32[]) private _ownerModels;
    mapping(bytes32 => bool) private _cidUsed;
    mapping(bytes32 => mapping(address => Grant)) private _grants;
    mapping(uint256 => Request) private _requests;

    /// @notice Credited, not yet withdrawn balances of executors, the pool and the treasury.
    mapping(address => uint256) public balanceOf;
    /// @notice Number of inference requests made; request ids are 1..requestCount.
    uint256 public requestCount;
    /// @notice Executor share of each fee, in basis points.
    uint16 public executorBps;
    /// @notice Pinning reward pool share of each fee, in basis points.
    uint16 public poolBps;
    /// @notice Protocol share of each fee, in basis points.
    uint16 public protocolBps;
    /// @notice Seconds after a request before it can be refunded (and no longer fulfilled).
    uint64 public requestTimeout;
    /// @notice Receives the pool share (e.g. the IPFSIncentives contract).
    address public pinningPool;
    /// @notice Receives the protocol share.
    address public treasury;

    event ModelRegistered(
        bytes32 indexed modelId,
        address indexed owner,
        string name,
        string format,
        string architecture,
        uint256 price,
        bool isPrivate
    );
    event VersionAdded(bytes32 indexed modelId, uint256 indexed version, bytes rootCid, bytes manifestCid);
    event PriceChanged(bytes32 indexed modelId, uint256 oldPrice, uint256 newPrice);
    event ActiveChanged(bytes32 indexed modelId, bool active);
    event VisibilityChanged(bytes32 indexed modelId, bool isPrivate);
    event AccessGranted(bytes32 indexed modelId, address indexed account, uint64 expiresAt);
    event AccessRevoked(bytes32 indexed modelId, address indexed account);
    event InferenceRequested(
        uint256 indexed requestId,
        bytes32 indexed modelId,
        address indexed requester,
        bytes32 inputHash,
        uint256 fee,
        uint64 deadline
    );
    event InferenceFulfilled(
        uint256 indexed requestId,
        bytes32 indexed modelId,
        address indexed executor,
        bytes32 outputHash,
        bytes outputCid,
        bytes receipt
    );
    event FeeDistributed(
        uint256 indexed requestId,
        uint256 ownerAmount,
        uint256 executorAmount,
        uint256 poolAmount,
        uint256 protocolAmount
    );
    event InferenceRejected(uint256 indexed requestId, bytes32 indexed modelId, address indexed executor, string reason);
    event Refunded(uint256 indexed requestId, address indexed requester, uint256 amount);
    event Withdrawn(bytes32 indexed modelId, address indexed to, uint256 amount);
    event BalanceWithdrawn(address indexed account, uint256 amount);
    event FeeSplitChanged(uint16 executorBps, uint16 poolBps, uint16 protocolBps);
    event FeeRecipientsChanged(address pinningPool, address treasury);
    event RequestTimeoutChanged(uint64 requestTimeout);

    error EmptyCid();
    error CidAlreadyUsed(bytes32 cidHash);
    error UnknownModel(bytes32 modelId);
    error UnknownVersion(bytes32 modelId, uint256 version);
    error NotModelOwner(bytes32 modelId, address caller);
    error ModelInactive(bytes32 modelId);
    error NoAccess(bytes32 modelId, address account);
    error AccessExpired(bytes32 modelId, address account, uint64 expiresAt);
    error InvalidExpiry(uint64 expiresAt);
    error FeeAboveMax(uint256 price, uint256 maxFee);
    error Underpayment(uint256 price, uint256 paid);
    error UnknownRequest(uint256 requestId);
    error RequestNotPending(uint256 requestId, Status status);
    error RequestExpired(uint256 requestId, uint64 deadline);
    error RequestNotExpired(uint256 requestId, uint64 deadline);
    error NotRequester(uint256 requestId, address caller);
    error InvalidSplit(uint256 totalBps);
    error InvalidTimeout();
    error ZeroAddress();
    error NothingToWithdraw();
    error TransferFailed(address to, uint256 amount);

    /// @param admin Gets `DEFAULT_ADMIN_ROLE`.
    /// @param pinningPool_ Credited the pool share (e.g. the IPFSIncentives contract).
    /// @param treasury_ Credited the protocol share.
    /// @dev Defaults: executor 1000 bps, pool 500 bps, protocol 250 bps (owner 8250), timeout 1 hour.
    constructor(address admin, address pinningPool_, address treasury_) {
        if (admin == address(0) || pinningPool_ == address(0) || treasury_ == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        pinningPool = pinningPool_;
        treasury = treasury_;
        executorBps = 1000;
        poolBps = 500;
        protocolBps = 250;
        requestTimeout = 1 hours;
        emit FeeRecipientsChanged(pinningPool_, treasury_);
        emit FeeSplitChanged(1000, 500, 250);
        emit RequestTimeoutChanged(1 hours);
    }

    modifier onlyModelOwner(bytes32 modelId) {
        address owner = _models[modelId].owner;
        if (owner == address(0)) revert UnknownModel(modelId);
        if (owner != msg.sender) revert NotModelOwner(modelId, msg.sender);
        _;
    }

    // ---------------------------------------------------------------- models

    /// @notice Registers a model owned by the caller; its id is `keccak256(rootCid)`.
    function registerModel(
        bytes memory rootCid,
        bytes memory manifestCid,
        string memory name,
        string memory format,
        string memory architecture,
        uint256 price,
        bool isPrivate
    ) external whenNotPaused returns (bytes32 modelId) {
        modelId = _useCid(rootCid);
        Model storage m = _models[modelId];
        m.owner = msg.sender;
        m.active = true;
        m.isPrivate = isPrivate;
        m.createdAt = uint64(block.timestamp);
        m.price = price;
        m.name = name;
        m.format = format;
        m.architecture = architecture;
        _modelIds.push(modelId);
        _ownerModels[msg.sender].push(modelId);
        emit ModelRegistered(modelId, msg.sender, name, format, architecture, price, isPrivate);
        _pushVersion(modelId, m, rootCid, manifestCid);
    }

    /// @notice Appends a new version (never overwrites); it becomes `latest`.
    function addVersion(bytes32 modelId, bytes memory rootCid, bytes memory manifestCid)
        external
        whenNotPaused
        onlyModelOwner(modelId)
        returns (uint256 version)
    {
        _useCid(rootCid);
        version = _pushVersion(modelId, _models[modelId], rootCid, manifestCid);
    }

    /// @notice Sets the price per inference in wei (0 = free).
    function setPrice(bytes32 modelId, uint256 price) external onlyModelOwner(modelId) {
        Model storage m = _models[modelId];
        emit PriceChanged(modelId, m.price, price);
        m.price = price;
    }

    /// @notice Enables or disables new inference requests for a model.
    function setActive(bytes32 modelId, bool active) external onlyModelOwner(modelId) {
        _models[modelId].active = active;
        emit ActiveChanged(modelId, active);
    }

    /// @notice Makes a model private (grants needed) or public.
    function setPrivate(bytes32 modelId, bool isPrivate) external onlyModelOwner(modelId) {
        _models[modelId].isPrivate = isPrivate;
        emit VisibilityChanged(modelId, isPrivate);
    }

    /// @notice Grants `account` inference access until `expiresAt` (unix seconds, 0 = forever).
    function grantAccess(bytes32 modelId, address account, uint64 expiresAt) external onlyModelOwner(modelId) {
        if (expiresAt != 0 && expiresAt <= block.timestamp) revert InvalidExpiry(expiresAt);
        _grants[modelId][account] = Grant(true, expiresAt);
        emit AccessGranted(modelId, account, expiresAt);
    }

    /// @notice Removes `account`'s grant.
    function revokeAccess(bytes32 modelId, address account) external onlyModelOwner(modelId) {
        delete _grants[modelId][account];
        emit AccessRevoked(modelId, account);
    }

    // ------------------------------------------------------------- inference

    /// @notice Requests an inference, escrowing the model's current price (≤ `maxFee`).
    /// @dev Any `msg.value` above the price is sent back to the caller.
    function requestInference(bytes32 modelId, bytes32 inputHash, uint256 maxFee)
        external
        payable
        whenNotPaused
        nonReentrant
        returns (uint256 requestId)
    {
        Model storage m = _models[modelId];
        if (m.owner == address(0)) revert UnknownModel(modelId);
        if (!m.active) revert ModelInactive(modelId);
        if (m.isPrivate && msg.sender != m.owner) {
            Grant memory g = _grants[modelId][msg.sender];
            if (!g.granted) revert NoAccess(modelId, msg.sender);
            if (g.expiresAt != 0 && block.timestamp >= g.expiresAt) {
                revert AccessExpired(modelId, msg.sender, g.expiresAt);
            }
        }
        uint256 fee = m.price;
        if (fee > maxFee) revert FeeAboveMax(fee, maxFee);
        if (msg.value < fee) revert Underpayment(fee, msg.value);
        requestId = ++requestCount;
        uint64 deadline = uint64(block.timestamp) + requestTimeout;
        _requests[requestId] = Request({
            modelId: modelId,
            requester: msg.sender,
            deadline: deadline,
            status: Status.Pending,
            inputHash: inputHash,
            fee: fee,
            executor: address(0),
            outputHash: bytes32(0)
        });
        emit InferenceRequested(requestId, modelId, msg.sender, inputHash, fee, deadline);
        if (msg.value > fee) _send(msg.sender, msg.value - fee);
    }

    /// @notice Posts a request's result and pays the fee out (credited, pull-style).
    /// @param receipt The executor's signed receipt, recorded in the event (not verified here).
    function fulfillInference(uint256 requestId, bytes32 outputHash, bytes calldata outputCid, bytes calldata receipt)
        external
        whenNotPaused
        onlyRole(EXECUTOR_ROLE)
    {
        Request storage r = _pending(requestId);
        if (block.timestamp >= r.deadline) revert RequestExpired(requestId, r.deadline);
        r.status = Status.Fulfilled;
        r.executor = msg.sender;
        r.outputHash = outputHash;
        bytes32 modelId = r.modelId;
        (uint256 toOwner, uint256 toExecutor, uint256 toPool, uint256 toProtocol) = computeSplit(r.fee);
        _models[modelId].revenue += toOwner;
        balanceOf[msg.sender] += toExecutor;
        balanceOf[pinningPool] += toPool;
        balanceOf[treasury] += toProtocol;
        emit InferenceFulfilled(requestId, modelId, msg.sender, outputHash, outputCid, receipt);
        emit FeeDistributed(requestId, toOwner, toExecutor, toPool, toProtocol);
    }

    /// @notice Turns a request down (its input cannot be run by the model: malformed, wrong kind,
    /// too large) and returns the whole escrowed fee to the requester at once.
    /// @dev An executor earns nothing by rejecting, so rejecting is no way to game fees; the
    /// reason is recorded in the event for the requester.
    function rejectInference(uint256 requestId, string calldata reason)
        external
        whenNotPaused
        nonReentrant
        onlyRole(EXECUTOR_ROLE)
    {
        Request storage r = _pending(requestId);
        if (block.timestamp >= r.deadline) revert RequestExpired(requestId, r.deadline);
        r.status = Status.Refunded;
        r.executor = msg.sender;
        uint256 amount = r.fee;
        address requester = r.requester;
        emit InferenceRejected(requestId, r.modelId, msg.sender, reason);
        emit Refunded(requestId, requester, amount);
        if (amount != 0) _send(requester, amount);
    }

    /// @notice Returns the escrowed fee of an unfulfilled request to its requester after the deadline.
    function refund(uint256 requestId) external nonReentrant {
        Request storage r = _pending(requestId);
        if (msg.sender != r.requester) revert NotRequester(requestId, msg.sender);
        if (block.timestamp < r.deadline) revert RequestNotExpired(requestId, r.deadline);
        r.status = Status.Refunded;
        uint256 amount = r.fee;
        emit Refunded(requestId, msg.sender, amount);
        if (amount != 0) _send(msg.sender, amount);
    }

    /// @notice Splits `fee` as fulfilment would: the owner gets what the other three shares leave.
    function computeSplit(uint256 fee)
        public
        view
        returns (uint256 toOwner, uint256 toExecutor, uint256 toPool, uint256 toProtocol)
    {
        toExecutor = fee * executorBps / BPS;
        toPool = fee * poolBps / BPS;
        toProtocol = fee * protocolBps / BPS;
        toOwner = fee - toExecutor - toPool - toProtocol;
    }

    // ------------------------------------------------------------- payouts

    /// @notice Sends a model's accrued revenue to its owner (the caller).
    function withdraw(bytes32 modelId) external nonReentrant onlyModelOwner(modelId) {
        uint256 amount = _models[modelId].revenue;
        if (amount == 0) revert NothingToWithdraw();
        _models[modelId].revenue = 0;
        emit Withdrawn(modelId, msg.sender, amount);
        _send(msg.sender, amount);
    }

    /// @notice Sends `account`'s credited balance (executor, pool or treasury share) to `account`.
    /// @dev Anyone may trigger it; the funds only ever go to `account`.
    function withdrawBalance(address account) external nonReentrant {
        uint256 amount = balanceOf[account];
        if (amount == 0) revert NothingToWithdraw();
        balanceOf[account] = 0;
        emit BalanceWithdrawn(account, amount);
        _send(account, amount);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Sets the executor, pool and protocol shares; their sum must be ≤ 10000.
    function setFeeSplit(uint16 executorBps_, uint16 poolBps_, uint16 protocolBps_)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        uint256 total = uint256(executorBps_) + poolBps_ + protocolBps_;
        if (total > BPS) revert InvalidSplit(total);
        executorBps = executorBps_;
        poolBps = poolBps_;
        protocolBps = protocolBps_;
        emit FeeSplitChanged(executorBps_, poolBps_, protocolBps_);
    }

    /// @notice Sets who is credited the pool and protocol shares of future fees.
    function setFeeRecipients(address pinningPool_, address treasury_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (pinningPool_ == address(0) || treasury_ == address(0)) revert ZeroAddress();
        pinningPool = pinningPool_;
        treasury = treasury_;
        emit FeeRecipientsChanged(pinningPool_, treasury_);
    }

    /// @notice Sets the refund timeout for future requests (seconds, > 0).
    function setRequestTimeout(uint64 timeout) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (timeout == 0) revert InvalidTimeout();
        requestTimeout = timeout;
        emit RequestTimeoutChanged(timeout);
    }

    /// @notice Stops registrations, new versions, requests and fulfilments (payouts stay open).
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts `pause`.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ---------------------------------------------------------------- views

    /// @notice Number of registered models.
    function modelCount() external view returns (uint256) {
        return _modelIds.length;
    }

    /// @notice One model; reverts `UnknownModel` if absent.
    function getModel(bytes32 modelId) public view returns (ModelView memory v) {
        Model storage m = _models[modelId];
        if (m.owner == address(0)) revert UnknownModel(modelId);
        uint256 latest = m.versions.length - 1;
        v.id = modelId;
        v.owner = m.owner;
        v.name = m.name;
        v.format = m.format;
        v.architecture = m.architecture;
        v.rootCid = m.versions[0].rootCid;
        v.latestRootCid = m.versions[latest].rootCid;
        v.latestManifestCid = m.versions[latest].manifestCid;
        v.latest = latest;
        v.price = m.price;
        v.revenue = m.revenue;
        v.createdAt = m.createdAt;
        v.active = m.active;
        v.isPrivate = m.isPrivate;
    }

    /// @notice Models in registration order, `limit` at most from `offset`.
    function listModels(uint256 offset, uint256 limit) external view returns (ModelView[] memory page) {
        uint256 n = _pageLen(_modelIds.length, offset, limit);
        page = new ModelView[](n);
        for (uint256 i = 0; i < n; ++i) {
            page[i] = getModel(_modelIds[offset + i]);
        }
    }

    /// @notice Number of models registered by `owner`.
    function ownerModelCount(address owner) external view returns (uint256) {
        return _ownerModels[owner].length;
    }

    /// @notice Ids of `owner`'s models in registration order, `limit` at most from `offset`.
    function modelsByOwner(address owner, uint256 offset, uint256 limit) external view returns (bytes32[] memory ids) {
        bytes32[] storage all = _ownerModels[owner];
        uint256 n = _pageLen(all.length, offset, limit);
        ids = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            ids[i] = all[offset + i];
        }
    }

    /// @notice Number of versions of a model (`latest` is this minus one).
    function versionCount(bytes32 modelId) external view returns (uint256) {
        return _models[modelId].versions.length;
    }

    /// @notice One version of a model.
    function getVersion(bytes32 modelId, uint256 version) external view returns (Version memory) {
        Model storage m = _models[modelId];
        if (m.owner == address(0)) revert UnknownModel(modelId);
        if (version >= m.versions.length) revert UnknownVersion(modelId, version);
        return m.versions[version];
    }

    /// @notice Whether `account` may request inferences from `modelId` now.
    function hasAccess(bytes32 modelId, address account) external view returns (bool) {
        Model storage m = _models[modelId];
        if (m.owner == address(0)) return false;
        if (!m.isPrivate || account == m.owner) return true;
        Grant memory g = _grants[modelId][account];
        return g.granted && (g.expiresAt == 0 || block.timestamp < g.expiresAt);
    }

    /// @notice The grant of `account` on `modelId`.
    function getGrant(bytes32 modelId, address account) external view returns (Grant memory) {
        return _grants[modelId][account];
    }

    /// @notice One inference request.
    function getRequest(uint256 requestId) external view returns (Request memory) {
        return _requests[requestId];
    }

    // ------------------------------------------------------------- internal

    function _useCid(bytes memory cid) private returns (bytes32 h) {
        if (cid.length == 0) revert EmptyCid();
        h = keccak256(cid);
        if (_cidUsed[h]) revert CidAlreadyUsed(h);
        _cidUsed[h] = true;
    }

    function _pushVersion(bytes32 modelId, Model storage m, bytes memory rootCid, bytes memory manifestCid)
        private
        returns (uint256 version)
    {
        version = m.versions.length;
        m.versions.push(Version(rootCid, manifestCid, uint64(block.timestamp)));
        emit VersionAdded(modelId, version, rootCid, manifestCid);
    }

    /// @dev The request `requestId`, which must be pending.
    function _pending(uint256 requestId) private view returns (Request storage r) {
        r = _requests[requestId];
        if (r.status != Status.Pending) {
            if (r.status == Status.None) revert UnknownRequest(requestId);
            revert RequestNotPending(requestId, r.status);
        }
    }

    function _pageLen(uint256 total, uint256 offset, uint256 limit) private pure returns (uint256) {
        if (offset >= total) return 0;
        uint256 left = total - offset;
        return left < limit ? left : limit;
    }

    function _send(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
