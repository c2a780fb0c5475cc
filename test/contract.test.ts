/**
 * SpareChannels on a real anvil chain: money moves to the wei, and every attack on
 * settlement (replay, other payee / token / deployment / chain, above deposit, high-s,
 * wrong or unrecoverable signer, after withdraw, reentrancy) is skipped or reverted.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { invert, mod } from '@noble/curves/abstract/modular.js'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import {
  concatHex,
  defineChain,
  domainSeparator,
  encodeAbiParameters,
  getAddress,
  hashTypedData,
  isAddressEqual,
  keccak256,
  maxUint256,
  numberToHex,
  parseEventLogs,
  recoverAddress,
  toFunctionSelector,
  toHex,
  zeroAddress,
  type Abi,
  type Address,
  type Hex,
  type TransactionReceipt
} from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { spareChannelsAbi, spareChannelsBytecode } from '../protocol/contract/artifact.ts'
import { NATIVE_TOKEN, VOUCHER_SKIP_REASONS, channelIdOf } from '../protocol/contract/channels.ts'
import {
  encodeVoucherRecord,
  encodeVoucherRecords,
  signVoucher,
  voucherDomain,
  voucherTypedData,
  type SignedVoucher,
  type VoucherDomain
} from '../protocol/voucher.ts'
import {
  falseReturnTokenAbi,
  falseReturnTokenBytecode,
  feeOnTransferTokenAbi,
  feeOnTransferTokenBytecode,
  noReturnTokenAbi,
  noReturnTokenBytecode,
  reentrantPayeeAbi,
  reentrantPayeeBytecode,
  standardTokenAbi,
  standardTokenBytecode
} from './fixtures/contracts/artifacts.ts'
import { expectRevert, gasCost, startTestChain, type TestChain } from './helpers/anvil.ts'

const CHALLENGE_PERIOD = 3600n
const AUDIT_HEAD = keccak256(toHex('audit head'))
const TOKEN_SUPPLY = 10n ** 30n
const FLAG_OPEN = 1n << 232n
const MAX_DEPOSIT = (1n << 96n) - 1n

type Wallet = ReturnType<TestChain['wallet']>

interface OpenChannel {
  id: Hex
  signer: PrivateKeyAccount
  receipt: TransactionReceipt
}

interface SettleResult {
  receipt: TransactionReceipt
  skipped: Array<{ channelId: Hex, reason: number }>
  settledCount: bigint
  paidOut: Array<{ token: Address, amount: bigint }>
}

let chain: TestChain
let contract: Address
let domain: VoucherDomain
let payer: Wallet
let stranger: Wallet
let settler: Wallet
let deployer: Wallet
let payee: Address
let otherPayee: Address
let token: Address
let noReturnToken: Address
let salts = 0

before(async () => {
  chain = await startTestChain({ challengePeriod: CHALLENGE_PERIOD })
  const keys = chain.devnet.accounts
  contract = chain.devnet.contract
  domain = { chainId: chain.devnet.chainId, verifyingContract: contract }
  deployer = chain.wallet(keys[0])
  payer = chain.wallet(keys[1])
  payee = privateKeyToAccount(keys[2]).address
  settler = chain.wallet(keys[3])
  otherPayee = privateKeyToAccount(keys[4]).address
  stranger = chain.wallet(keys[5])
  token = await deployToken(standardTokenAbi, standardTokenBytecode)
  noReturnToken = await deployToken(noReturnTokenAbi, noReturnTokenBytecode)
})

after(async () => {
  await chain?.stop()
})

/** Deploys a fixture token, mints to the payer and approves the channel contract. */
async function deployToken (abi: Abi, bytecode: Hex): Promise<Address> {
  const address = await deploy(abi, bytecode, [])
  await chain.mined(deployer.writeContract({ address, abi: standardTokenAbi, functionName: 'mint', args: [payer.account.address, TOKEN_SUPPLY] }))
  await chain.mined(payer.writeContract({ address, abi: standardTokenAbi, functionName: 'approve', args: [contract, maxUint256] }))
  return address
}

async function deploy (abi: Abi, bytecode: Hex, args: readonly unknown[]): Promise<Address> {
  const receipt = await chain.mined(deployer.deployContract({ abi, bytecode, args }))
  assert.ok(receipt.contractAddress)
  return getAddress(receipt.contractAddress)
}

async function open (opts: { token?: Address, deposit: bigint, to?: Address, signer?: PrivateKeyAccount, salt?: Hex }): Promise<OpenChannel> {
  const channelToken = opts.token ?? NATIVE_TOKEN
  const signer = opts.signer ?? privateKeyToAccount(generatePrivateKey())
  const salt = opts.salt ?? numberToHex(++salts, { size: 32 })
  const to = opts.to ?? payee
  const receipt = await chain.mined(payer.writeContract({
    address: contract,
    abi: spareChannelsAbi,
    functionName: 'open',
    args: [to, channelToken, signer.address, salt, opts.deposit],
    value: channelToken === NATIVE_TOKEN ? opts.deposit : 0n
  }))
  const id = channelIdOf({ chainId: chain.devnet.chainId, contract, payer: payer.account.address, payee: to, token: channelToken, signer: signer.address, salt })
  const [opened] = parseEventLogs({ abi: spareChannelsAbi, logs: receipt.logs, eventName: 'ChannelOpened' })
  assert.equal(opened.args.id, id, 'channelIdOf must match the id the contract assigns')
  return { id, signer, receipt }
}

function voucher (channel: OpenChannel, cumulativeAmount: bigint, onDomain: VoucherDomain = domain): Promise<SignedVoucher> {
  return signVoucher(channel.signer, onDomain, { channelId: channel.id, cumulativeAmount, cumulativeBytes: 4096n })
}

async function settle (
  batches: Array<{ token: Address, vouchers: SignedVoucher[] | Hex }>,
  opts: { payee?: Address, on?: Address, from?: Wallet } = {}
): Promise<SettleResult> {
  const on = opts.on ?? contract
  const receipt = await chain.mined((opts.from ?? settler).writeContract({
    address: on,
    abi: spareChannelsAbi,
    functionName: 'settleBatch',
    args: [
      opts.payee ?? payee,
      batches.map((b) => ({ token: b.token, vouchers: typeof b.vouchers === 'string' ? b.vouchers : encodeVoucherRecords(b.vouchers) })),
      AUDIT_HEAD
    ]
  }))
  const logs = parseEventLogs({ abi: spareChannelsAbi, logs: receipt.logs }).filter((l) => isAddressEqual(l.address, on))
  const skipped = logs.flatMap((l) => l.eventName === 'VoucherSkipped' ? [{ channelId: l.args.channelId, reason: l.args.reason }] : [])
  const paidOut = logs.flatMap((l) => l.eventName === 'PaidOut' ? [{ token: l.args.token, amount: l.args.amount }] : [])
  const batch = logs.filter((l) => l.eventName === 'BatchSettled')
  assert.equal(batch.length, 1, 'one BatchSettled per call')
  const { args } = batch[0] as Extract<(typeof logs)[number], { eventName: 'BatchSettled' }>
  assert.equal(args.auditHead, AUDIT_HEAD)
  assert.equal(args.skippedCount, BigInt(skipped.length))
  return { receipt, skipped, settledCount: args.settledCount, paidOut }
}

function balance (address: Address): Promise<bigint> {
  return chain.client.getBalance({ address })
}

function tokenBalance (tokenAddress: Address, owner: Address): Promise<bigint> {
  return chain.client.readContract({ address: tokenAddress, abi: standardTokenAbi, functionName: 'balanceOf', args: [owner] })
}

function getChannel (id: Hex, on: Address = contract) {
  return chain.client.readContract({ address: on, abi: spareChannelsAbi, functionName: 'getChannel', args: [id] })
}

function topUp (id: Hex, amount: bigint, value: bigint, from: Wallet = payer): Promise<Hex> {
  return from.writeContract({ address: contract, abi: spareChannelsAbi, functionName: 'topUp', args: [id, amount], value })
}

function requestClose (id: Hex, from: Wallet = payer): Promise<Hex> {
  return from.writeContract({ address: contract, abi: spareChannelsAbi, functionName: 'requestClose', args: [id] })
}

function withdraw (id: Hex, from: Wallet = payer): Promise<Hex> {
  return from.writeContract({ address: contract, abi: spareChannelsAbi, functionName: 'withdraw', args: [id] })
}

async function passChallengePeriod (): Promise<void> {
  await chain.test.increaseTime({ seconds: Number(CHALLENGE_PERIOD) })
  await chain.test.mine({ blocks: 1 })
}

describe('SpareChannels on anvil', () => {
  it('native coin: open, topUp and settle move exact amounts', async () => {
    const payerBefore = await balance(payer.account.address)
    const contractBefore = await balance(contract)
    const payeeBefore = await balance(payee)

    const channel = await open({ deposit: 1000n })
    const topped = await chain.mined(topUp(channel.id, 500n, 500n))
    assert.equal(await balance(payer.account.address), payerBefore - 1500n - gasCost(channel.receipt) - gasCost(topped))
    assert.equal(await balance(contract), contractBefore + 1500n)

    const result = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 1200n)] }])
    assert.equal(result.settledCount, 1n)
    assert.deepEqual(result.skipped, [])
    assert.equal(await balance(payee), payeeBefore + 1200n)
    assert.equal(await balance(contract), contractBefore + 300n)
    const state = await getChannel(channel.id)
    assert.equal(state.deposit, 1500n)
    assert.equal(state.settled, 1200n)
    assert.equal(state.payer, payer.account.address)
    assert.equal(state.signer, channel.signer.address)
  })

  it('ERC-20: open, topUp and settle move exact token amounts', async () => {
    const payerBefore = await tokenBalance(token, payer.account.address)
    const payeeNativeBefore = await balance(payee)
    const payeeBefore = await tokenBalance(token, payee)
    const contractBefore = await tokenBalance(token, contract)

    const channel = await open({ token, deposit: 10n ** 18n })
    await chain.mined(topUp(channel.id, 5n * 10n ** 17n, 0n))
    assert.equal(await tokenBalance(token, payer.account.address), payerBefore - 15n * 10n ** 17n)
    assert.equal(await tokenBalance(token, contract), contractBefore + 15n * 10n ** 17n)

    await settle([{ token, vouchers: [await voucher(channel, 7n * 10n ** 17n)] }])
    assert.equal(await tokenBalance(token, payee), payeeBefore + 7n * 10n ** 17n)
    assert.equal(await tokenBalance(token, contract), contractBefore + 8n * 10n ** 17n)
    assert.equal(await balance(payee), payeeNativeBefore, 'an ERC-20 batch pays no native coin')
  })

  it('a USDT-like token that returns no bool opens, settles and withdraws', async () => {
    const payerBefore = await tokenBalance(noReturnToken, payer.account.address)
    const payeeBefore = await tokenBalance(noReturnToken, payee)
    const channel = await open({ token: noReturnToken, deposit: 1000n })
    await settle([{ token: noReturnToken, vouchers: [await voucher(channel, 400n)] }])
    assert.equal(await tokenBalance(noReturnToken, payee), payeeBefore + 400n)
    await chain.mined(requestClose(channel.id))
    await passChallengePeriod()
    await chain.mined(withdraw(channel.id))
    assert.equal(await tokenBalance(noReturnToken, payer.account.address), payerBefore - 400n)
    assert.equal(await tokenBalance(noReturnToken, contract), 0n)
  })

  it('signs under the EIP-712 domain viem computes for this chain and contract', async () => {
    const onChain = await chain.client.readContract({ address: contract, abi: spareChannelsAbi, functionName: 'domainSeparator' })
    assert.equal(onChain, domainSeparator({ domain: voucherDomain(domain) }))
  })

  it('a replayed or stale voucher is skipped: the same voucher pays once', async () => {
    const channel = await open({ deposit: 1000n })
    const v10 = await voucher(channel, 100n)
    const payeeBefore = await balance(payee)

    assert.equal((await settle([{ token: NATIVE_TOKEN, vouchers: [v10] }])).settledCount, 1n)
    const replay = await settle([{ token: NATIVE_TOKEN, vouchers: [v10] }])
    assert.equal(replay.settledCount, 0n)
    assert.deepEqual(replay.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.notIncreasing }])
    const stale = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 50n)] }])
    assert.deepEqual(stale.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.notIncreasing }])
    assert.equal(await balance(payee), payeeBefore + 100n)

    // A higher voucher pays only the difference.
    await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 150n)] }])
    assert.equal(await balance(payee), payeeBefore + 150n)
  })

  it("another payee's voucher is skipped and pays nobody", async () => {
    const channel = await open({ deposit: 1000n })
    const v = await voucher(channel, 300n)
    const otherBefore = await balance(otherPayee)
    const result = await settle([{ token: NATIVE_TOKEN, vouchers: [v] }], { payee: otherPayee })
    assert.deepEqual(result.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.noChannel }])
    assert.equal(await balance(otherPayee), otherBefore)
    assert.equal((await getChannel(channel.id)).settled, 0n)
  })

  it('a voucher submitted under another token is skipped', async () => {
    const channel = await open({ token, deposit: 1000n })
    const payeeBefore = await balance(payee)
    const result = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 300n)] }])
    assert.deepEqual(result.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.noChannel }])
    assert.equal(await balance(payee), payeeBefore)
  })

  it('a voucher signed for another deployment is skipped', async () => {
    const second = await deploy(spareChannelsAbi, spareChannelsBytecode, [CHALLENGE_PERIOD])
    const channel = await open({ deposit: 1000n })
    const result = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 300n, { ...domain, verifyingContract: second })] }])
    assert.deepEqual(result.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.noChannel }])
    assert.equal((await getChannel(channel.id)).settled, 0n)
  })

  it('a voucher signed for another chain id is skipped', async () => {
    const channel = await open({ deposit: 1000n })
    const result = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 300n, { ...domain, chainId: 1 })] }])
    assert.deepEqual(result.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.noChannel }])
    assert.equal((await getChannel(channel.id)).settled, 0n)
  })

  it('a voucher above the deposit is skipped; one at the deposit settles', async () => {
    const channel = await open({ deposit: 1000n })
    const payeeBefore = await balance(payee)
    const above = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 1001n)] }])
    assert.deepEqual(above.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.aboveDeposit }])
    assert.equal(await balance(payee), payeeBefore)
    await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 1000n)] }])
    assert.equal(await balance(payee), payeeBefore + 1000n)
  })

  it('a high-s signature is skipped although it recovers the signer', async () => {
    // A channel id commits to its signer, so no key can be found whose voucher for an opened
    // channel has a high-s twin that fits the compact record (s < 2^255). Instead a fresh
    // deployment gets a hot slot planted for a key built so that its twin does fit.
    const second = await deploy(spareChannelsAbi, spareChannelsBytecode, [CHALLENGE_PERIOD])
    const onSecond = { ...domain, verifyingContract: second }
    const fields = { channelId: keccak256(toHex('planted channel')), cumulativeAmount: 700n, cumulativeBytes: 1n }
    const digest = hashTypedData(voucherTypedData(onSecond, fields))
    const { signer, lowS, highS } = keyWithHighSTwin(digest)
    assert.equal(await recoverAddress({ hash: digest, signature: lowS }), signer)
    const hotKey = keccak256(encodeAbiParameters(
      [{ type: 'bytes32' }, { type: 'address' }, { type: 'address' }, { type: 'address' }],
      [fields.channelId, signer, payee, NATIVE_TOKEN]
    ))
    await chain.test.setStorageAt({ address: second, index: hotKey, value: numberToHex(FLAG_OPEN | 1000n, { size: 32 }) })
    await chain.test.setBalance({ address: second, value: 1000n })
    const payeeBefore = await balance(payee)

    const high = await settle([{ token: NATIVE_TOKEN, vouchers: encodeVoucherRecord({ ...fields, signature: highS }) }], { on: second })
    assert.deepEqual(high.skipped, [{ channelId: fields.channelId, reason: VOUCHER_SKIP_REASONS.badSignature }])
    assert.equal(await balance(payee), payeeBefore)

    const low = await settle([{ token: NATIVE_TOKEN, vouchers: encodeVoucherRecord({ ...fields, signature: lowS }) }], { on: second })
    assert.equal(low.settledCount, 1n)
    assert.equal(await balance(payee), payeeBefore + 700n)
  })

  it('a voucher signed by the funder instead of the session key is skipped', async () => {
    const channel = await open({ deposit: 1000n })
    const byFunder = await signVoucher(payer.account, domain, { channelId: channel.id, cumulativeAmount: 300n, cumulativeBytes: 1n })
    const result = await settle([{ token: NATIVE_TOKEN, vouchers: [byFunder] }])
    assert.deepEqual(result.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.noChannel }])
    assert.equal((await getChannel(channel.id)).settled, 0n)
  })

  it('an unrecoverable signature is skipped, not credited to the previous record\'s signer', async () => {
    const channel = await open({ deposit: 1000n })
    const valid = encodeVoucherRecord(await voucher(channel, 100n))
    // r = 0: the precompile returns nothing and leaves the previous signer in its output slot.
    const bogus = concatHex([channel.id, numberToHex(900n, { size: 12 }), numberToHex(1n, { size: 8 }), numberToHex(0n, { size: 32 }), numberToHex(1n, { size: 32 })])
    const payeeBefore = await balance(payee)
    const result = await settle([{ token: NATIVE_TOKEN, vouchers: concatHex([valid, bogus]) }])
    assert.deepEqual(result.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.badSignature }])
    assert.equal(await balance(payee), payeeBefore + 100n)
  })

  it('open rejects a signer equal to the funder or zero', async () => {
    await expectRevert(open({ deposit: 1n, signer: payer.account }), 'InvalidSigner')
    await expectRevert(payer.writeContract({
      address: contract, abi: spareChannelsAbi, functionName: 'open', args: [payee, NATIVE_TOKEN, zeroAddress, numberToHex(++salts, { size: 32 }), 1n], value: 1n
    }), 'InvalidSigner')
  })

  it('open checks the payee, the native value, the 96-bit deposit and duplicate ids', async () => {
    const openWith = (to: Address, channelToken: Address, amount: bigint, value: bigint) => payer.writeContract({
      address: contract, abi: spareChannelsAbi, functionName: 'open', args: [to, channelToken, privateKeyToAccount(generatePrivateKey()).address, numberToHex(++salts, { size: 32 }), amount], value
    })
    await expectRevert(openWith(zeroAddress, NATIVE_TOKEN, 1n, 1n), 'InvalidPayee')
    await expectRevert(openWith(payee, NATIVE_TOKEN, 2n, 1n), 'WrongNativeValue')
    await expectRevert(openWith(payee, token, 2n, 1n), 'WrongNativeValue')
    await expectRevert(openWith(payee, token, MAX_DEPOSIT + 1n, 0n), 'DepositTooLarge')
    const first = await open({ deposit: 1n })
    const salt = numberToHex(salts, { size: 32 })
    await expectRevert(open({ deposit: 1n, signer: first.signer, salt }), 'ChannelExists')
  })

  it('topUp: only the payer, only before requestClose, within 96 bits', async () => {
    const channel = await open({ token, deposit: 1000n })
    await expectRevert(topUp(channel.id, 1n, 0n, stranger), 'NotPayer')
    await expectRevert(topUp(keccak256(toHex('no such channel')), 1n, 0n), 'UnknownChannel')
    await expectRevert(topUp(channel.id, MAX_DEPOSIT - 999n, 0n), 'DepositTooLarge')
    await chain.mined(topUp(channel.id, MAX_DEPOSIT - 1000n, 0n))
    assert.equal((await getChannel(channel.id)).deposit, MAX_DEPOSIT)

    const closing = await open({ deposit: 10n })
    await chain.mined(requestClose(closing.id))
    await expectRevert(topUp(closing.id, 1n, 1n), 'ChannelClosing')
  })

  it('withdraw before the challenge period ends reverts; after it refunds deposit - settled to the wei', async () => {
    const channel = await open({ deposit: 1000n })
    await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 250n)] }])
    const payerBefore = await balance(payer.account.address)
    const closed = await chain.mined(requestClose(channel.id))
    const [event] = parseEventLogs({ abi: spareChannelsAbi, logs: closed.logs, eventName: 'CloseRequested' })
    const block = await chain.client.getBlock({ blockNumber: closed.blockNumber })
    assert.equal(event.args.closeDeadline, block.timestamp + CHALLENGE_PERIOD)

    await expectRevert(withdraw(channel.id), 'ChallengePeriodActive')
    await passChallengePeriod()
    const withdrawn = await chain.mined(withdraw(channel.id))
    assert.equal(await balance(payer.account.address), payerBefore - gasCost(closed) - gasCost(withdrawn) + 750n)
    const state = await getChannel(channel.id)
    assert.equal(state.withdrawn, true)
    assert.equal(state.settled, 250n)
  })

  it('settling during the challenge period works', async () => {
    const channel = await open({ deposit: 1000n })
    await chain.mined(requestClose(channel.id))
    const payeeBefore = await balance(payee)
    const result = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 600n)] }])
    assert.equal(result.settledCount, 1n)
    assert.equal(await balance(payee), payeeBefore + 600n)
  })

  it('a voucher after withdraw is skipped', async () => {
    const channel = await open({ deposit: 1000n })
    await chain.mined(requestClose(channel.id))
    await passChallengePeriod()
    await chain.mined(withdraw(channel.id))
    const payeeBefore = await balance(payee)
    const result = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 500n)] }])
    assert.deepEqual(result.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.withdrawn }])
    assert.equal(await balance(payee), payeeBefore)
  })

  it('requestClose and withdraw are payer-only and happen once', async () => {
    const channel = await open({ deposit: 1000n })
    await expectRevert(requestClose(channel.id, stranger), 'NotPayer')
    await expectRevert(withdraw(channel.id), 'CloseNotRequested')
    await chain.mined(requestClose(channel.id))
    await expectRevert(requestClose(channel.id), 'CloseAlreadyRequested')
    await passChallengePeriod()
    await expectRevert(withdraw(channel.id, stranger), 'NotPayer')
    await chain.mined(withdraw(channel.id))
    await expectRevert(withdraw(channel.id), 'ChannelWithdrawn')
    await expectRevert(requestClose(channel.id), 'ChannelWithdrawn')
  })

  it('pays exactly one aggregated transfer per token', async () => {
    const native = [await open({ deposit: 1000n }), await open({ deposit: 1000n }), await open({ deposit: 1000n })]
    const erc20 = [await open({ token, deposit: 1000n }), await open({ token, deposit: 1000n }), await open({ token, deposit: 1000n })]
    const payeeBefore = await balance(payee)
    const payeeTokenBefore = await tokenBalance(token, payee)

    const result = await settle([
      { token: NATIVE_TOKEN, vouchers: [await voucher(native[0], 10n), await voucher(native[1], 20n), await voucher(native[2], 30n)] },
      { token, vouchers: [await voucher(erc20[0], 100n), await voucher(erc20[1], 200n), await voucher(erc20[2], 300n)] }
    ])
    assert.equal(result.settledCount, 6n)
    assert.equal(await balance(payee), payeeBefore + 60n)
    assert.equal(await tokenBalance(token, payee), payeeTokenBefore + 600n)
    assert.deepEqual(result.paidOut, [{ token: NATIVE_TOKEN, amount: 60n }, { token, amount: 600n }])
    const transfers = parseEventLogs({ abi: standardTokenAbi, logs: result.receipt.logs, eventName: 'Transfer' })
    assert.equal(transfers.length, 1)
    assert.deepEqual([transfers[0].args.to, transfers[0].args.value], [payee, 600n])

    // The call trace is the ground truth: one value call to the payee, one token transfer.
    const trace = await chain.rpc('debug_traceTransaction', [result.receipt.transactionHash, { tracer: 'callTracer' }]) as TraceCall
    const calls = flatten(trace).filter((c) => isAddressEqual(c.from, contract))
    assert.equal(calls.filter((c) => isAddressEqual(c.to, payee) && BigInt(c.value ?? '0x0') > 0n).length, 1)
    assert.equal(calls.filter((c) => isAddressEqual(c.to, token) && c.input.startsWith(toFunctionSelector('transfer(address,uint256)'))).length, 1)
  })

  it('settling 100 vouchers of distinct channels costs at most 11,000 gas each (tx total / n)', async () => {
    const n = 100
    const channels: OpenChannel[] = []
    for (let i = 0; i < n; i++) channels.push(await open({ deposit: 10n ** 15n }))
    const vouchers = await Promise.all(channels.map((c, i) => voucher(c, 5n * 10n ** 14n + BigInt(i))))
    const result = await settle([{ token: NATIVE_TOKEN, vouchers }])
    assert.equal(result.settledCount, BigInt(n))
    const perVoucher = result.receipt.gasUsed / BigInt(n)
    assert.ok(perVoucher <= 11_000n, `settleBatch used ${perVoucher} gas per voucher`)
  })

  it('a batch whose voucher bytes are not whole 116-byte records reverts', async () => {
    const channel = await open({ deposit: 1000n })
    const record = encodeVoucherRecord(await voucher(channel, 1n))
    await expectRevert(settler.writeContract({
      address: contract, abi: spareChannelsAbi, functionName: 'settleBatch', args: [payee, [{ token: NATIVE_TOKEN, vouchers: concatHex([record, '0x00']) }], AUDIT_HEAD]
    }), 'MalformedVouchers')
  })

  it('rejects tokens without code, returning false, or delivering less than asked', async () => {
    await expectRevert(open({ token: otherPayee, deposit: 1n }), 'NotAContract')
    const falseToken = await deployToken(falseReturnTokenAbi, falseReturnTokenBytecode)
    await expectRevert(open({ token: falseToken, deposit: 1n }), 'TokenTransferFailed')
    const feeToken = await deployToken(feeOnTransferTokenAbi, feeOnTransferTokenBytecode)
    await expectRevert(open({ token: feeToken, deposit: 1000n }), 'UnsupportedToken')
  })

  it('a payee that re-enters settleBatch from its receive hook hits Reentrancy', async () => {
    const reentrant = await deploy(reentrantPayeeAbi, reentrantPayeeBytecode, [contract])
    const channel = await open({ deposit: 1000n, to: reentrant })
    await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 100n)] }], { payee: reentrant })
    const read = (functionName: 'reentered' | 'reentryError') => chain.client.readContract({ address: reentrant, abi: reentrantPayeeAbi, functionName })
    assert.equal(await read('reentered'), true)
    assert.equal(await read('reentryError'), toFunctionSelector('Reentrancy()'))
    assert.equal(await balance(reentrant), 100n)
  })

  it('the constructor rejects a zero challenge period', async () => {
    await assert.rejects(deploy(spareChannelsAbi, spareChannelsBytecode, [0n]))
  })

  // Last: it changes the chain id of the shared devnet (and restores it).
  it('follows a chain id change: vouchers for the old id are skipped, for the new id paid', async () => {
    const channel = await open({ deposit: 1000n })
    const newChainId = 4242
    const forked = defineChain({ ...chain.devnet.chain, id: newChainId })
    await chain.rpc('anvil_setChainId', [newChainId])
    try {
      const forkedSettler = chain.wallet(chain.devnet.accounts[3], forked)
      const onFork = { ...domain, chainId: newChainId }
      const separator = await chain.client.readContract({ address: contract, abi: spareChannelsAbi, functionName: 'domainSeparator' })
      assert.equal(separator, domainSeparator({ domain: voucherDomain(onFork) }))
      const payeeBefore = await balance(payee)
      const result = await settle([{ token: NATIVE_TOKEN, vouchers: [await voucher(channel, 100n), await voucher(channel, 200n, onFork)] }], { from: forkedSettler })
      assert.deepEqual(result.skipped, [{ channelId: channel.id, reason: VOUCHER_SKIP_REASONS.noChannel }])
      assert.equal(await balance(payee), payeeBefore + 200n)
    } finally {
      await chain.rpc('anvil_setChainId', [chain.devnet.chainId])
    }
  })
})

interface TraceCall {
  from: Address
  to: Address
  value?: Hex
  input: Hex
  calls?: TraceCall[]
}

function flatten (call: TraceCall): TraceCall[] {
  return [call, ...(call.calls ?? []).flatMap(flatten)]
}

/**
 * Builds a key whose signature over `digest` has s = floor(n/2): then its malleated twin
 * (n - s, flipped parity) is just above n/2 yet below 2^255, so it fits the compact record
 * and the precompile would recover the same key from it. Solves s = k⁻¹(z + r·d) for d.
 */
function keyWithHighSTwin (digest: Hex): { signer: Address, lowS: Hex, highS: Hex } {
  const { n } = secp256k1.Point.CURVE()
  const sLow = n >> 1n
  const z = mod(BigInt(digest), n)
  for (let attempt = 0; attempt < 8; attempt++) {
    const k = mod(BigInt(generatePrivateKey()), n)
    if (k === 0n) continue
    const point = secp256k1.Point.BASE.multiply(k).toAffine()
    if (point.x >= n) continue
    const r = point.x
    const d = mod((sLow * k - z) * invert(r, n), n)
    if (d === 0n) continue
    const yParity = Number(point.y & 1n)
    const sig = (s: bigint, parity: number): Hex => concatHex([numberToHex(r, { size: 32 }), numberToHex(s, { size: 32 }), numberToHex(27 + parity, { size: 1 })])
    return {
      signer: privateKeyToAccount(numberToHex(d, { size: 32 })).address,
      lowS: sig(sLow, yParity),
      highS: sig(n - sLow, 1 - yParity)
    }
  }
  throw new Error('could not build a key (8 unlucky nonces)')
}
