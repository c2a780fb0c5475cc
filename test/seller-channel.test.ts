import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { keccak256, toHex, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import type { ChannelTerms } from '../protocol/channel-terms.ts'
import { amountForBytes, bytesForAmount, DEFAULT_CREDIT_WINDOW_BYTES } from '../protocol/pricing.ts'
import { SellerChannel, VoucherRejectedError, type CheckedVoucher, type SellerChannelInit, type VoucherRejectionCode } from '../protocol/seller-channel.ts'
import { MAX_VOUCHER_AMOUNT, signVoucher, voucherTypedData, type SignedVoucher, type VoucherDomain } from '../protocol/voucher.ts'
import { VoucherVerifier } from '../protocol/voucher-verify.ts'
import { SeededRandom } from './helpers/seeded-random.ts'

const MiB = 1n << 20n
const GiB = 1n << 30n
const NOW = 1_700_000_000
const DOMAIN: VoucherDomain = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }
/** 10^15 base units per GiB: not a divisor of 2^30, so every amount is rounded. */
const PRICE = 10n ** 15n

const verifier = new VoucherVerifier(DOMAIN)

function channelId (label: string): Hex {
  return keccak256(toHex(label))
}

interface Fixture {
  signer: PrivateKeyAccount
  terms: ChannelTerms
  channel: SellerChannel
  sign: (cumulativeAmount: bigint, cumulativeBytes: bigint) => Promise<SignedVoucher>
}

function fixture (overrides: Partial<ChannelTerms> = {}, init: Partial<SellerChannelInit> = {}): Fixture {
  const signer = privateKeyToAccount(generatePrivateKey())
  const terms: ChannelTerms = {
    chainId: DOMAIN.chainId,
    contract: DOMAIN.verifyingContract,
    channelId: channelId('seller-test'),
    payer: privateKeyToAccount(generatePrivateKey()).address,
    payee: privateKeyToAccount(generatePrivateKey()).address,
    token: '0x0000000000000000000000000000000000000000',
    signer: signer.address,
    deposit: 10n ** 18n,
    closeDeadline: null,
    pricePerGiB: PRICE,
    ...overrides
  }
  const channel = new SellerChannel({ terms, verifier, ...init })
  const sign = async (cumulativeAmount: bigint, cumulativeBytes: bigint): Promise<SignedVoucher> =>
    await signVoucher(signer, DOMAIN, { channelId: terms.channelId, cumulativeAmount, cumulativeBytes })
  return { signer, terms, channel, sign }
}

/** Signs a voucher for the delivered usage at full price. */
async function payInFull (f: Fixture): Promise<SignedVoucher> {
  const report = f.channel.usageReport()
  return await f.sign(report.amountDue, report.cumulativeBytes)
}

function rejects (fn: () => unknown, code: VoucherRejectionCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof VoucherRejectedError, `expected VoucherRejectedError, got ${String(err)}`)
    assert.equal(err.code, code)
    return true
  })
}

function accept (channel: SellerChannel, sv: SignedVoucher, nowSec = NOW): void {
  channel.commitVoucher(channel.checkVoucher(sv, nowSec))
}

describe('seller channel: voucher acceptance rules', () => {
  it('accepts a correctly signed voucher for the delivered usage and commits it', async () => {
    const f = fixture()
    f.channel.recordDelivered(5n * MiB)
    const sv = await payInFull(f)
    accept(f.channel, sv)
    assert.deepEqual(f.channel.lastVoucher, sv)
    assert.equal(f.channel.paidAmount, amountForBytes(5n * MiB, PRICE))
    assert.equal(f.channel.unpaidBytes, 0n)
    assert.equal(f.channel.unpaidAmount, 0n)
  })

  it('refuses a voucher for another channel id', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const other = await signVoucher(f.signer, DOMAIN, { channelId: channelId('another channel'), cumulativeAmount: 1n, cumulativeBytes: 1n })
    rejects(() => f.channel.checkVoucher(other, NOW), 'ERR_VOUCHER_WRONG_CHANNEL')
  })

  it('refuses a voucher whose amount does not rise above the last accepted one, and a zero first voucher', async () => {
    const f = fixture()
    f.channel.recordDelivered(2n * MiB)
    const zero = await f.sign(0n, 0n)
    rejects(() => f.channel.checkVoucher(zero, NOW), 'ERR_VOUCHER_NOT_MONOTONIC')
    accept(f.channel, await f.sign(1000n, MiB))
    const same = await f.sign(1000n, 2n * MiB)
    const lower = await f.sign(999n, 2n * MiB)
    rejects(() => f.channel.checkVoucher(same, NOW), 'ERR_VOUCHER_NOT_MONOTONIC')
    rejects(() => f.channel.checkVoucher(lower, NOW), 'ERR_VOUCHER_NOT_MONOTONIC')
    accept(f.channel, await f.sign(1001n, MiB))
  })

  it('refuses a voucher whose cumulative bytes go down, even with a higher amount', async () => {
    const f = fixture()
    f.channel.recordDelivered(2n * MiB)
    accept(f.channel, await f.sign(1000n, MiB))
    const lessBytes = await f.sign(2000n, MiB - 1n)
    rejects(() => f.channel.checkVoucher(lessBytes, NOW), 'ERR_VOUCHER_BYTES_DECREASED')
    accept(f.channel, await f.sign(1001n, MiB))
  })

  it('refuses a voucher above the on-chain deposit and accepts it after a top-up', async () => {
    const deposit = amountForBytes(MiB, PRICE)
    const f = fixture({ deposit })
    f.channel.recordDelivered(MiB)
    f.channel.onDepositChanged(deposit - 1n)
    const sv = await f.sign(deposit, MiB)
    rejects(() => f.channel.checkVoucher(sv, NOW), 'ERR_VOUCHER_ABOVE_DEPOSIT')
    f.channel.onDepositChanged(deposit)
    accept(f.channel, sv)
  })

  it('refuses an amount above the value of delivered usage; the rounded-up value itself is accepted', async () => {
    const f = fixture()
    const delivered = 3n * MiB + 7n
    f.channel.recordDelivered(delivered)
    const due = amountForBytes(delivered, PRICE)
    assert.ok(due * GiB > delivered * PRICE, 'the price rounds, so the rounding edge is exercised')
    const over = await f.sign(due + 1n, delivered)
    rejects(() => f.channel.checkVoucher(over, NOW), 'ERR_VOUCHER_AMOUNT_ABOVE_USAGE')
    accept(f.channel, await f.sign(due, delivered))
  })

  it('refuses a voucher claiming more bytes than were delivered', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const sv = await f.sign(1n, MiB + 1n)
    rejects(() => f.channel.checkVoucher(sv, NOW), 'ERR_VOUCHER_BYTES_ABOVE_USAGE')
    accept(f.channel, await f.sign(1n, MiB))
  })

  it('refuses a voucher signed by another key (the payer, a stranger)', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const stranger = privateKeyToAccount(generatePrivateKey())
    const sv = await signVoucher(stranger, DOMAIN, { channelId: f.terms.channelId, cumulativeAmount: 10n, cumulativeBytes: 10n })
    rejects(() => f.channel.checkVoucher(sv, NOW), 'ERR_VOUCHER_WRONG_SIGNER')
  })

  it('refuses a voucher signed by the right key for another chain or another contract (no replay)', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const voucher = { channelId: f.terms.channelId, cumulativeAmount: 10n, cumulativeBytes: 10n }
    const otherChain = await signVoucher(f.signer, { ...DOMAIN, chainId: 1 }, voucher)
    const otherContract = await signVoucher(f.signer, { ...DOMAIN, verifyingContract: '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512' }, voucher)
    rejects(() => f.channel.checkVoucher(otherChain, NOW), 'ERR_VOUCHER_WRONG_SIGNER')
    rejects(() => f.channel.checkVoucher(otherContract, NOW), 'ERR_VOUCHER_WRONG_SIGNER')
  })

  it('refuses unrecoverable signatures: garbage, truncated, and the high-s twin of a valid one', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const good = await f.sign(10n, 10n)
    const garbage: SignedVoucher = { ...good, signature: `0x${'00'.repeat(65)}` }
    const truncated: SignedVoucher = { ...good, signature: good.signature.slice(0, 130) as Hex }
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
    const s = BigInt(`0x${good.signature.slice(66, 130)}`)
    const v = Number.parseInt(good.signature.slice(130), 16)
    const highS: SignedVoucher = { ...good, signature: `${good.signature.slice(0, 66)}${(n - s).toString(16).padStart(64, '0')}${(v === 27 ? 28 : 27).toString(16)}` as Hex }
    for (const sv of [garbage, truncated, highS]) rejects(() => f.channel.checkVoucher(sv, NOW), 'ERR_VOUCHER_BAD_SIGNATURE')
    accept(f.channel, good)
  })

  it('refuses vouchers (and grants no credit) once the close deadline is nearer than the margin', async () => {
    const f = fixture({}, { config: { minSecondsBeforeDeadline: 600 } })
    f.channel.recordDelivered(1000n)
    const sv = await f.sign(10n, 10n)
    f.channel.onCloseRequested(NOW + 600)
    assert.equal(f.channel.status(NOW), 'open')
    assert.ok(f.channel.creditRemainingBytes(NOW) > 0n)
    f.channel.checkVoucher(sv, NOW)
    assert.equal(f.channel.status(NOW + 1), 'closing')
    assert.equal(f.channel.creditRemainingBytes(NOW + 1), 0n)
    assert.equal(f.channel.mayForward(1n, NOW + 1), false)
    rejects(() => f.channel.checkVoucher(sv, NOW + 1), 'ERR_VOUCHER_CHANNEL_CLOSING')
  })

  it('refuses vouchers (and grants no credit) after the channel was withdrawn', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const sv = await f.sign(10n, 10n)
    f.channel.onWithdrawn()
    assert.equal(f.channel.status(NOW), 'withdrawn')
    assert.equal(f.channel.creditRemainingBytes(NOW), 0n)
    rejects(() => f.channel.checkVoucher(sv, NOW), 'ERR_VOUCHER_CHANNEL_WITHDRAWN')
  })

  it('refuses an amount above 2^96-1 even when deposit and usage would allow it', async () => {
    const f = fixture({ deposit: MAX_VOUCHER_AMOUNT * 4n, pricePerGiB: MAX_VOUCHER_AMOUNT })
    f.channel.recordDelivered(4n * GiB)
    const voucher = { channelId: f.terms.channelId, cumulativeAmount: MAX_VOUCHER_AMOUNT + 1n, cumulativeBytes: GiB }
    const sv: SignedVoucher = { ...voucher, signature: await f.signer.signTypedData(voucherTypedData(DOMAIN, voucher)) }
    rejects(() => f.channel.checkVoucher(sv, NOW), 'ERR_VOUCHER_AMOUNT_TOO_LARGE')
    accept(f.channel, await f.sign(MAX_VOUCHER_AMOUNT, GiB))
  })

  it('refuses malformed vouchers: short channel id, negative bytes, non-bigint amount', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const good = await f.sign(10n, 10n)
    const malformed: SignedVoucher[] = [
      { ...good, channelId: '0x1234' },
      { ...good, cumulativeBytes: -1n },
      { ...good, cumulativeAmount: 10 as unknown as bigint }
    ]
    for (const sv of malformed) rejects(() => f.channel.checkVoucher(sv, NOW), 'ERR_VOUCHER_MALFORMED')
  })
})

describe('seller channel: two-phase acceptance', () => {
  it('grants no credit on check, only on commit', async () => {
    const f = fixture()
    f.channel.recordDelivered(DEFAULT_CREDIT_WINDOW_BYTES)
    assert.equal(f.channel.creditRemainingBytes(NOW), 0n)
    const checked = f.channel.checkVoucher(await payInFull(f), NOW)
    assert.equal(f.channel.creditRemainingBytes(NOW), 0n)
    assert.equal(f.channel.lastVoucher, null)
    f.channel.commitVoucher(checked)
    assert.ok(f.channel.creditRemainingBytes(NOW) >= DEFAULT_CREDIT_WINDOW_BYTES)
  })

  it('commits only what checkVoucher returned, and only once', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const sv = await payInFull(f)
    const forged: CheckedVoucher = { voucher: sv }
    rejects(() => f.channel.commitVoucher(forged), 'ERR_VOUCHER_NOT_CHECKED')
    const checked = f.channel.checkVoucher(sv, NOW)
    f.channel.commitVoucher(checked)
    rejects(() => f.channel.commitVoucher(checked), 'ERR_VOUCHER_NOT_CHECKED')
  })

  it('refuses to commit a checked voucher overtaken by a higher commit', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const lower = f.channel.checkVoucher(await f.sign(10n, 10n), NOW)
    const higher = f.channel.checkVoucher(await f.sign(20n, 20n), NOW)
    f.channel.commitVoucher(higher)
    rejects(() => f.channel.commitVoucher(lower), 'ERR_VOUCHER_NOT_MONOTONIC')
    assert.equal(f.channel.paidAmount, 20n)
  })

  it('commits the voucher as checked, not as later mutated by the caller', async () => {
    const f = fixture()
    f.channel.recordDelivered(MiB)
    const sv = await f.sign(10n, 10n)
    const checked = f.channel.checkVoucher(sv, NOW)
    sv.cumulativeAmount = 10n ** 17n
    assert.throws(() => { (checked.voucher as SignedVoucher).cumulativeAmount = 10n ** 17n }, TypeError)
    f.channel.commitVoucher(checked)
    assert.equal(f.channel.paidAmount, 10n)
  })
})

describe('seller channel: credit, exposure and usage reports', () => {
  it('pauses after one credit window of unpaid bytes and resumes after a committed voucher', async () => {
    const window = 256n * 1024n
    const f = fixture({}, { config: { creditWindowBytes: window } })
    assert.equal(f.channel.creditRemainingBytes(NOW), window)
    assert.equal(f.channel.mayForward(window, NOW), true)
    assert.equal(f.channel.mayForward(window + 1n, NOW), false)
    f.channel.recordDelivered(window)
    assert.equal(f.channel.unpaidBytes, window)
    assert.equal(f.channel.mayForward(1n, NOW), false)
    accept(f.channel, await payInFull(f))
    assert.equal(f.channel.unpaidBytes, 0n)
    assert.equal(f.channel.creditRemainingBytes(NOW), f.channel.paidBytes + window - window)
  })

  it('never grants credit past what the deposit can pay for, and grants more after a top-up', () => {
    const deposit = amountForBytes(100n * 1024n, PRICE)
    const f = fixture({ deposit })
    assert.equal(f.channel.creditRemainingBytes(NOW), bytesForAmount(deposit, PRICE))
    assert.ok(f.channel.creditRemainingBytes(NOW) < DEFAULT_CREDIT_WINDOW_BYTES)
    f.channel.onDepositChanged(deposit * 100n)
    assert.equal(f.channel.creditRemainingBytes(NOW), DEFAULT_CREDIT_WINDOW_BYTES)
  })

  it('reports usage priced and rounded up, capped at the deposit', () => {
    const deposit = amountForBytes(MiB, PRICE)
    const f = fixture({ deposit })
    f.channel.recordDelivered(1000n)
    assert.deepEqual(f.channel.usageReport(), { cumulativeBytes: 1000n, amountDue: (1000n * PRICE + GiB - 1n) / GiB })
    f.channel.recordDelivered(2n * MiB)
    assert.deepEqual(f.channel.usageReport(), { cumulativeBytes: 2n * MiB + 1000n, amountDue: deposit })
    assert.equal(f.channel.unpaidAmount, amountForBytes(2n * MiB + 1000n, PRICE))
  })

  it('restarts from the persisted voucher and meter', async () => {
    const f = fixture()
    f.channel.recordDelivered(3n * MiB)
    const sv = await f.sign(amountForBytes(2n * MiB, PRICE), 2n * MiB)
    const fromVoucher = new SellerChannel({ terms: f.terms, verifier, lastVoucher: sv })
    assert.equal(fromVoucher.deliveredBytes, 2n * MiB)
    assert.equal(fromVoucher.paidAmount, sv.cumulativeAmount)
    rejects(() => fromVoucher.checkVoucher(sv, NOW), 'ERR_VOUCHER_NOT_MONOTONIC')
    const fromMeter = new SellerChannel({ terms: f.terms, verifier, lastVoucher: sv, deliveredBytes: 3n * MiB })
    assert.equal(fromMeter.deliveredBytes, 3n * MiB)
    assert.equal(fromMeter.unpaidBytes, 3n * MiB - bytesForAmount(sv.cumulativeAmount, PRICE))
    const foreign = { ...sv, channelId: channelId('another channel') }
    assert.throws(() => new SellerChannel({ terms: f.terms, verifier, lastVoucher: foreign }), { code: 'ERR_INVALID_CHANNEL_STATE' })
  })

  it('refuses a non-positive price', () => {
    assert.throws(() => fixture({ pricePerGiB: 0n }), { code: 'ERR_INVALID_PRICE' })
  })
})

describe('seller channel: invariant 2 (unpaid exposure never exceeds the credit window)', () => {
  it('holds over seeded random deliveries, payments, lost writes, top-ups and hostile vouchers', async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const rng = new SeededRandom(seed)
      const window = BigInt(64 * 1024 + rng.int(2 * 1024 * 1024))
      const price = 10n ** 12n + rng.bigint(10n ** 16n)
      const deposit = amountForBytes(BigInt(20 + rng.int(60)) * MiB, price)
      const f = fixture({ pricePerGiB: price, deposit }, { config: { creditWindowBytes: window } })
      const stranger = privateKeyToAccount(generatePrivateKey())
      // The test's own record of what was delivered and what was durably persisted.
      let delivered = 0n
      let persistedAmount = 0n
      let pausedSteps = 0
      for (let step = 0; step < 150; step++) {
        const action = rng.next()
        if (action < 0.55) {
          // The daemon wants to forward a chunk; it forwards only what the credit allows.
          const wanted = BigInt(1 + rng.int(Number(window)))
          const credit = f.channel.creditRemainingBytes(NOW)
          const forwarded = wanted < credit ? wanted : credit
          if (forwarded === 0n) pausedSteps++
          f.channel.recordDelivered(forwarded)
          delivered += forwarded
        } else if (action < 0.85) {
          // The buyer pays part or all of the report, honestly signed.
          const report = f.channel.usageReport()
          const amount = report.amountDue - rng.bigint(report.amountDue / 4n)
          const sv = await f.sign(amount, report.cumulativeBytes)
          let checked: CheckedVoucher | null = null
          try {
            checked = f.channel.checkVoucher(sv, NOW)
          } catch (err) {
            assert.ok(err instanceof VoucherRejectedError)
            assert.equal(err.code, 'ERR_VOUCHER_NOT_MONOTONIC')
          }
          // Sometimes the synced write fails (or the process dies) before the commit.
          if (checked !== null && rng.chance(0.8)) {
            persistedAmount = checked.voucher.cumulativeAmount
            f.channel.commitVoucher(checked)
          }
        } else if (action < 0.95) {
          // A hostile voucher: inflated, foreign-signed, or for more bytes than delivered.
          const report = f.channel.usageReport()
          const kind = rng.int(3)
          const sv = kind === 0
            ? await f.sign(report.amountDue + 1n + rng.bigint(10n ** 15n), report.cumulativeBytes)
            : kind === 1
              ? await signVoucher(stranger, DOMAIN, { channelId: f.terms.channelId, cumulativeAmount: report.amountDue, cumulativeBytes: report.cumulativeBytes })
              : await f.sign(report.amountDue, report.cumulativeBytes + 1n)
          assert.throws(() => f.channel.checkVoucher(sv, NOW), VoucherRejectedError)
        } else {
          const topUp = rng.bigint(amountForBytes(8n * MiB, price))
          f.terms.deposit += topUp
          f.channel.onDepositChanged(f.terms.deposit)
        }
        const paidBytes = bytesForAmount(persistedAmount, price)
        const exposure = delivered > paidBytes ? delivered - paidBytes : 0n
        assert.ok(exposure <= window, `seed ${seed} step ${step}: exposure ${exposure} > window ${window}`)
        const exposureAmount = amountForBytes(delivered, price) - persistedAmount
        assert.ok(exposureAmount <= amountForBytes(window, price), `seed ${seed} step ${step}: unpaid amount ${exposureAmount} above the window's value`)
        assert.ok(persistedAmount <= f.terms.deposit)
        assert.equal(f.channel.unpaidBytes, exposure)
        assert.equal(f.channel.deliveredBytes, delivered)
      }
      assert.ok(pausedSteps > 0, `seed ${seed}: the window was never reached, the test exercised nothing`)
    }
  })
})
