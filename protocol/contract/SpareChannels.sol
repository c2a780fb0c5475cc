// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @notice The part of ERC-20 this contract calls. Return values are checked by hand,
/// so tokens that return nothing (USDT-like) work too.
interface IERC20Minimal {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function balanceOf(address owner) external view returns (uint256);
}

/// @title SpareChannels
/// @notice Unidirectional payment channels for spareband. A buyer (payer) opens a channel
/// to a seller (payee) with a deposit in the native coin or an ERC-20 token and names a hot
/// session key (signer) that signs EIP-712 vouchers. Anyone may redeem the latest voucher of
/// many channels in one `settleBatch`; the payee receives one transfer per token. The payer
/// can request a close and, after the challenge period, withdraw what was not settled.
/// @dev Storage is split so that settlement touches one slot per voucher: a cold record per
/// channel id (payer, payee, token, signer) and a hot slot at the raw storage key
/// `keccak256(abi.encode(id, signer, payee, token))` packing
/// `deposit (bits 0-95) | settled (96-191) | closeDeadline (192-231) | flags (232-239)`.
/// A hot key is the hash of a 128-byte preimage and a mapping slot of a 64-byte one, so the
/// two cannot collide short of a keccak256 collision.
contract SpareChannels {
    /// @notice The vouchers of one token: back-to-back 116-byte records
    /// `channelId (32) | cumulativeAmount (12) | cumulativeBytes (8) | r (32) | vs (32)`,
    /// where `vs` is the EIP-2098 compact form (top bit = yParity, the rest = s).
    struct TokenBatch {
        address token;
        bytes vouchers;
    }

    /// @notice Everything known about a channel, as returned by `getChannel`.
    struct ChannelView {
        address payer;
        address payee;
        address token;
        address signer;
        uint256 deposit;
        uint256 settled;
        uint256 closeDeadline;
        bool withdrawn;
    }

    struct Channel {
        address payer;
        address payee;
        address token;
        address signer;
    }

    /// @dev Reason codes of `VoucherSkipped` (mirrored by VOUCHER_SKIP_REASONS in protocol/contract/channels.ts).
    uint8 private constant SKIP_NO_CHANNEL = 1; // unknown id, wrong signer, other payee or other token
    uint8 private constant SKIP_WITHDRAWN = 2;
    uint8 private constant SKIP_NOT_INCREASING = 3; // replayed or stale: cumulative <= settled
    uint8 private constant SKIP_ABOVE_DEPOSIT = 4;
    uint8 private constant SKIP_BAD_SIGNATURE = 5; // high-s or unrecoverable

    uint256 private constant RECORD_BYTES = 116;
    uint256 private constant MASK_96 = (1 << 96) - 1;
    uint256 private constant SETTLED_SHIFT = 96;
    uint256 private constant DEADLINE_SHIFT = 192;
    uint256 private constant MASK_40 = (1 << 40) - 1;
    /// @dev Set in every opened channel's hot slot, so a zero-deposit channel is not an empty slot.
    uint256 private constant FLAG_OPEN = 1 << 232;
    uint256 private constant FLAG_WITHDRAWN = 2 << 232;
    uint256 private constant MAX_CHALLENGE_PERIOD = 1 << 32;
    /// @dev secp256k1 group order / 2: signatures with a larger s are malleable copies.
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 private constant LOW_255 = (1 << 255) - 1;

    bytes32 private constant VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount,uint256 cumulativeBytes)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("spareband");
    bytes32 private constant VERSION_HASH = keccak256("1");
    bytes32 private constant VOUCHER_SKIPPED_TOPIC = keccak256("VoucherSkipped(bytes32,uint8)");

    /// @notice Seconds between `requestClose` and the earliest `withdraw`.
    uint256 public immutable challengePeriod;
    uint256 private immutable cachedChainId;
    bytes32 private immutable cachedDomainSeparator;

    mapping(bytes32 id => Channel) private channels;
    bool private transient locked;

    event ChannelOpened(
        bytes32 indexed id,
        address indexed payer,
        address indexed payee,
        address token,
        address signer,
        bytes32 salt,
        uint256 deposit
    );
    event ToppedUp(bytes32 indexed id, uint256 amount, uint256 deposit);
    event CloseRequested(bytes32 indexed id, uint256 closeDeadline);
    event Withdrawn(bytes32 indexed id, address indexed payer, uint256 amount);
    event VoucherSkipped(bytes32 indexed channelId, uint8 reason);
    event PaidOut(address indexed payee, address indexed token, uint256 amount);
    event BatchSettled(address indexed payee, bytes32 auditHead, uint256 settledCount, uint256 skippedCount);

    error InvalidChallengePeriod(uint256 challengePeriod);
    error InvalidPayee();
    error InvalidSigner();
    error ChannelExists(bytes32 id);
    error UnknownChannel(bytes32 id);
    error NotPayer(bytes32 id);
    error DepositTooLarge(uint256 deposit);
    error WrongNativeValue(uint256 expected, uint256 sent);
    error ChannelClosing(bytes32 id);
    error ChannelWithdrawn(bytes32 id);
    error CloseAlreadyRequested(bytes32 id, uint256 closeDeadline);
    error CloseNotRequested(bytes32 id);
    error ChallengePeriodActive(bytes32 id, uint256 closeDeadline);
    error MalformedVouchers(uint256 batchIndex, uint256 length);
    error NotAContract(address token);
    error TokenTransferFailed(address token);
    error UnsupportedToken(address token, uint256 expected, uint256 received);
    error NativeTransferFailed(address to);
    error Reentrancy();

    modifier nonReentrant() {
        if (locked) revert Reentrancy();
        locked = true;
        _;
        locked = false;
    }

    /// @param challengePeriod_ seconds a payer waits between `requestClose` and `withdraw`;
    /// must exceed the payee's settlement interval.
    constructor(uint256 challengePeriod_) {
        if (challengePeriod_ == 0 || challengePeriod_ > MAX_CHALLENGE_PERIOD) {
            revert InvalidChallengePeriod(challengePeriod_);
        }
        challengePeriod = challengePeriod_;
        cachedChainId = block.chainid;
        cachedDomainSeparator = _buildDomainSeparator();
    }

    /// @notice Opens a channel from `msg.sender` to `payee` funded with `amount` of `token`
    /// (`address(0)` = native coin, sent as `msg.value`; an ERC-20 is pulled with `transferFrom`).
    /// @param signer the hot key that signs vouchers; non-zero and not the funder.
    /// @param salt makes the id unique among channels with the same parties.
    function open(address payee, address token, address signer, bytes32 salt, uint256 amount)
        external
        payable
        nonReentrant
        returns (bytes32 id)
    {
        if (payee == address(0)) revert InvalidPayee();
        if (signer == address(0) || signer == msg.sender) revert InvalidSigner();
        if (amount > MASK_96) revert DepositTooLarge(amount);
        id = keccak256(abi.encode(block.chainid, address(this), msg.sender, payee, token, signer, salt));
        if (channels[id].payer != address(0)) revert ChannelExists(id);
        channels[id] = Channel(msg.sender, payee, token, signer);
        _storeHot(_hotKey(id, signer, payee, token), FLAG_OPEN | amount);
        emit ChannelOpened(id, msg.sender, payee, token, signer, salt, amount);
        _pull(token, amount);
    }

    /// @notice Adds `amount` to the deposit of channel `id`. Only the payer, and only before
    /// `requestClose`.
    function topUp(bytes32 id, uint256 amount) external payable nonReentrant {
        Channel storage c = _payerChannel(id);
        address token = c.token;
        bytes32 key = _hotKey(id, c.signer, c.payee, token);
        uint256 hot = _loadHot(key);
        if (hot & FLAG_WITHDRAWN != 0) revert ChannelWithdrawn(id);
        if (_closeDeadline(hot) != 0) revert ChannelClosing(id);
        uint256 deposit = (hot & MASK_96) + amount;
        if (deposit > MASK_96) revert DepositTooLarge(deposit);
        _storeHot(key, (hot & ~MASK_96) | deposit);
        emit ToppedUp(id, amount, deposit);
        _pull(token, amount);
    }

    /// @notice Starts the challenge period of channel `id`. Only the payer. The payee can
    /// still settle until `withdraw`.
    function requestClose(bytes32 id) external nonReentrant {
        Channel storage c = _payerChannel(id);
        bytes32 key = _hotKey(id, c.signer, c.payee, c.token);
        uint256 hot = _loadHot(key);
        if (hot & FLAG_WITHDRAWN != 0) revert ChannelWithdrawn(id);
        uint256 deadline = _closeDeadline(hot);
        if (deadline != 0) revert CloseAlreadyRequested(id, deadline);
        deadline = block.timestamp + challengePeriod;
        _storeHot(key, hot | (deadline << DEADLINE_SHIFT));
        emit CloseRequested(id, deadline);
    }

    /// @notice Returns `deposit - settled` of channel `id` to the payer once the challenge
    /// period is over, and ends the channel. Only the payer.
    function withdraw(bytes32 id) external nonReentrant {
        Channel storage c = _payerChannel(id);
        address token = c.token;
        bytes32 key = _hotKey(id, c.signer, c.payee, token);
        uint256 hot = _loadHot(key);
        if (hot & FLAG_WITHDRAWN != 0) revert ChannelWithdrawn(id);
        uint256 deadline = _closeDeadline(hot);
        if (deadline == 0) revert CloseNotRequested(id);
        if (block.timestamp < deadline) revert ChallengePeriodActive(id, deadline);
        uint256 refund = (hot & MASK_96) - ((hot >> SETTLED_SHIFT) & MASK_96);
        _storeHot(key, hot | FLAG_WITHDRAWN);
        emit Withdrawn(id, msg.sender, refund);
        if (refund != 0) _pay(token, msg.sender, refund);
    }

    /// @notice Redeems vouchers for `payee`, one batch per token, and pays the payee one
    /// transfer per batch. A voucher that cannot be paid (unknown channel, wrong signer,
    /// payee or token, withdrawn, not above the settled amount, above the deposit, bad
    /// signature) is skipped with `VoucherSkipped`, never reverted. Permissionless: money only
    /// goes to `payee`. `auditHead` anchors the payee's audit log and is emitted once.
    function settleBatch(address payee, TokenBatch[] calldata batches, bytes32 auditHead) external nonReentrant {
        bytes32 separator = _domainSeparator();
        uint256 skippedCount;
        uint256 recordCount;
        for (uint256 i; i < batches.length; ++i) {
            address token = batches[i].token;
            bytes calldata vouchers = batches[i].vouchers;
            if (vouchers.length % RECORD_BYTES != 0) revert MalformedVouchers(i, vouchers.length);
            (uint256 total, uint256 skipped) = _settleRecords(payee, token, vouchers, separator);
            skippedCount += skipped;
            recordCount += vouchers.length / RECORD_BYTES;
            if (total != 0) {
                emit PaidOut(payee, token, total);
                _pay(token, payee, total);
            }
        }
        emit BatchSettled(payee, auditHead, recordCount - skippedCount, skippedCount);
    }

    /// @notice The cold record and the hot state of channel `id`; all zero if unknown.
    function getChannel(bytes32 id) external view returns (ChannelView memory v) {
        Channel storage c = channels[id];
        v.payer = c.payer;
        v.payee = c.payee;
        v.token = c.token;
        v.signer = c.signer;
        if (v.payer == address(0)) return v;
        uint256 hot = _loadHot(_hotKey(id, v.signer, v.payee, v.token));
        v.deposit = hot & MASK_96;
        v.settled = (hot >> SETTLED_SHIFT) & MASK_96;
        v.closeDeadline = _closeDeadline(hot);
        v.withdrawn = hot & FLAG_WITHDRAWN != 0;
    }

    /// @notice The EIP-712 domain separator vouchers for this contract and chain are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparator();
    }

    /// @dev The record loop: per voucher one keccak for the struct hash, one for the digest,
    /// one ecrecover, one for the hot key, one SLOAD and one SSTORE, and a single branch on
    /// the paying path. Scratch memory (nothing is allocated; the free memory pointer at 0x40
    /// and the zero slot at 0x60 are restored before returning):
    /// 0x00   [typehash, channelId, amount, bytes]      struct hash preimage, then
    /// 0x00   [digest, v, r, s]                         ecrecover input
    /// m+0x00 0x1901 | domainSeparator | structHash     digest preimage (66 bytes)
    /// m+0x60 [channelId, signer, payee, token]         hot key preimage; ecrecover writes the signer
    /// where m is the free memory pointer. Returns the amount to pay and the number of skipped records.
    function _settleRecords(address payee, address token, bytes calldata vouchers, bytes32 separator)
        private
        returns (uint256 total, uint256 skipped)
    {
        bytes32 typehash = VOUCHER_TYPEHASH;
        bytes32 skippedTopic = VOUCHER_SKIPPED_TOPIC;
        assembly ("memory-safe") {
            function skip(topic, id, reason) {
                mstore(0x00, reason)
                log2(0x00, 0x20, topic, id)
            }
            let m := mload(0x40)
            mstore(m, shl(240, 0x1901))
            mstore(add(m, 0x02), separator)
            mstore(add(m, 0xa0), payee)
            mstore(add(m, 0xc0), token)
            let p := vouchers.offset
            for { let end := add(p, vouchers.length) } lt(p, end) { p := add(p, RECORD_BYTES) } {
                let id := calldataload(p)
                let w := calldataload(add(p, 32))
                let vs := calldataload(add(p, 84))
                let amount := shr(160, w)
                mstore(0x00, typehash)
                mstore(0x20, id)
                mstore(0x40, amount)
                mstore(0x60, and(shr(96, w), 0xffffffffffffffff))
                mstore(add(m, 0x22), keccak256(0x00, 0x80))
                mstore(0x00, keccak256(m, 0x42))
                mstore(0x20, add(27, shr(255, vs)))
                mstore(0x40, calldataload(add(p, 52)))
                let s := and(vs, LOW_255)
                mstore(0x60, s)
                pop(staticcall(gas(), 0x01, 0x00, 0x80, add(m, 0x80), 0x20))
                // High s is the malleated twin of a valid signature. No return data means the
                // precompile could not recover (and left the previous signer in place).
                if or(gt(s, HALF_ORDER), iszero(returndatasize())) {
                    skip(skippedTopic, id, SKIP_BAD_SIGNATURE)
                    skipped := add(skipped, 1)
                    continue
                }
                mstore(add(m, 0x60), id)
                let key := keccak256(add(m, 0x60), 0x80)
                let hot := sload(key)
                let settled := and(shr(SETTLED_SHIFT, hot), MASK_96)
                // An empty slot has deposit 0, so the deposit test also rejects unknown channels,
                // wrong signers, other payees and other tokens.
                if iszero(and(and(gt(amount, settled), iszero(gt(amount, and(hot, MASK_96)))), iszero(and(hot, FLAG_WITHDRAWN)))) {
                    let reason := SKIP_ABOVE_DEPOSIT
                    if iszero(gt(amount, settled)) { reason := SKIP_NOT_INCREASING }
                    if and(hot, FLAG_WITHDRAWN) { reason := SKIP_WITHDRAWN }
                    if iszero(hot) { reason := SKIP_NO_CHANNEL }
                    skip(skippedTopic, id, reason)
                    skipped := add(skipped, 1)
                    continue
                }
                sstore(key, xor(hot, shl(SETTLED_SHIFT, xor(settled, amount))))
                total := add(total, sub(amount, settled))
            }
            mstore(0x40, m)
            mstore(0x60, 0)
        }
    }

    function _payerChannel(bytes32 id) private view returns (Channel storage c) {
        c = channels[id];
        address payer = c.payer;
        if (payer == address(0)) revert UnknownChannel(id);
        if (payer != msg.sender) revert NotPayer(id);
    }

    /// @dev Takes `amount` of `token` from `msg.sender`. Rejects tokens that deliver less
    /// than asked (fee-on-transfer), which would leave other channels underfunded.
    function _pull(address token, uint256 amount) private {
        if (token == address(0)) {
            if (msg.value != amount) revert WrongNativeValue(amount, msg.value);
            return;
        }
        if (msg.value != 0) revert WrongNativeValue(0, msg.value);
        if (amount == 0) return;
        if (token.code.length == 0) revert NotAContract(token);
        uint256 before = _balanceOf(token);
        _callToken(token, abi.encodeCall(IERC20Minimal.transferFrom, (msg.sender, address(this), amount)));
        uint256 received = _balanceOf(token) - before;
        if (received != amount) revert UnsupportedToken(token, amount, received);
    }

    function _pay(address token, address to, uint256 amount) private {
        if (token == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert NativeTransferFailed(to);
        } else {
            _callToken(token, abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
        }
    }

    /// @dev Calls `token` and accepts success with no return data or a returned `true`.
    function _callToken(address token, bytes memory data) private {
        if (token.code.length == 0) revert NotAContract(token);
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && (ret.length < 32 || uint256(bytes32(ret)) != 1))) {
            revert TokenTransferFailed(token);
        }
    }

    function _balanceOf(address token) private view returns (uint256) {
        return IERC20Minimal(token).balanceOf(address(this));
    }

    function _domainSeparator() private view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _buildDomainSeparator();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _hotKey(bytes32 id, address signer, address payee, address token) private pure returns (bytes32) {
        return keccak256(abi.encode(id, signer, payee, token));
    }

    function _loadHot(bytes32 key) private view returns (uint256 hot) {
        assembly ("memory-safe") {
            hot := sload(key)
        }
    }

    function _storeHot(bytes32 key, uint256 hot) private {
        assembly ("memory-safe") {
            sstore(key, hot)
        }
    }

    function _closeDeadline(uint256 hot) private pure returns (uint256) {
        return (hot >> DEADLINE_SHIFT) & MASK_40;
    }
}
