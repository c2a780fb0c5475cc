import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { keccak256, toHex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { BuyerChannel, DEFAULT_METER_TOLERANCE, toleranceBytes, UsageReportRejectedError, type BuyerChannelInit, type UsageReportRejectionCode } from '../protocol/buyer-channel.ts'
import type { ChannelTerms } from '../protocol/channel-terms.ts'
import { amountForBytes } from '../protocol/pricing.ts'
import { SellerChannel } from '../protocol/seller-channel.ts'
import { signVoucher, type VoucherDomain } from '../protocol/voucher.ts'
import { VoucherVerifier } from '../protocol/voucher-verify.ts'
import { SeededRandom } from './helpers/seeded-random.ts'

const KiB = 1024n
const MiB = 1n << 20n
const DOMAIN: VoucherDomain = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }
const PRICE = 10n ** 15n
const CHANNEL_ID = keccak256(toHex('buyer-test'))
const NOW = 1_700_000_000

function buyer (init: Partial<BuyerChannelInit> = {}): BuyerChannel {
  return new BuyerChannel({
    terms: { channelId: CHANNEL_ID, pricePerGiB: PRICE, deposit: 10n ** 18n },
    spendCap: 10n ** 18n,
    ...init
  })
}

function rejects (fn: () => unknown, code: UsageReportRejectionCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageReportRejectedError, `expected UsageReportRejectedError, got ${String(err)}`)
    assert.equal(err.code, code)
    return true
  })
}

function honest (bytes: bigint) {
  return { cumulativeBytes: bytes, amountDue: amountForBytes(bytes, PRICE) }
}

describe('buyer channel: signing rules', () => {
  it('proposes a voucher for an honest report and records the signed one', async () => {
    const b = buyer()
    const signer = privateKeyToAccount(generatePrivateKey())
    b.recordUsage(3n * MiB)
    const voucher = b.nextVoucher(honest(3n * MiB))
    assert.deepEqual(voucher, { channelId: CHANNEL_ID, cumulativeAmount: amountForBytes(3n * MiB, PRICE), cumulativeBytes: 3n * MiB })
    b.commitSigned(await signVoucher(signer, DOMAIN, voucher))
    assert.deepEqual(b.lastSigned, voucher)
    assert.equal(b.signedAmount, voucher.cumulativeAmount)
  })

  it('tolerance is max(64 KiB, 1 %) of the meter by default', () => {
    assert.equal(toleranceBytes(0n, DEFAULT_METER_TOLERANCE), 64n * KiB)
    assert.equal(toleranceBytes(100n * MiB, DEFAULT_METER_TOLERANCE), 100n * MiB / 100n)
  })

  it('refuses a report above the meter plus the absolute tolerance (small meter)', () => {
    const b = buyer()
    b.recordUsage(100n * KiB)
    rejects(() => b.nextVoucher(honest(100n * KiB + 64n * KiB + 1n)), 'ERR_USAGE_ABOVE_METER')
    b.nextVoucher(honest(100n * KiB + 64n * KiB))
  })

  it('refuses a report above the meter plus the relative tolerance (large meter)', () => {
    const b = buyer()
    b.recordUsage(100n * MiB)
    const slack = 100n * MiB / 100n
    rejects(() => b.nextVoucher(honest(100n * MiB + slack + 1n)), 'ERR_USAGE_ABOVE_METER')
    b.nextVoucher(honest(100n * MiB + slack))
  })

  it('refuses a report charging above the agreed price; exact (rounded up) and discounted prices pass', () => {
    const b = buyer()
    b.recordUsage(MiB)
    const due = amountForBytes(MiB - 3n, PRICE)
    rejects(() => b.nextVoucher({ cumulativeBytes: MiB - 3n, amountDue: due + 1n }), 'ERR_PRICE_MISMATCH')
    b.nextVoucher({ cumulativeBytes: MiB - 3n, amountDue: due - 5n })
    b.nextVoucher({ cumulativeBytes: MiB - 3n, amountDue: due })
  })

  it('refuses a report that does not advance past the last signed voucher', async () => {
    const b = buyer()
    const signer = privateKeyToAccount(generatePrivateKey())
    b.recordUsage(2n * MiB)
    const half = amountForBytes(MiB, PRICE) / 2n
    b.commitSigned(await signVoucher(signer, DOMAIN, b.nextVoucher({ cumulativeBytes: MiB, amountDue: half })))
    rejects(() => b.nextVoucher({ cumulativeBytes: 2n * MiB, amountDue: half }), 'ERR_NOT_MONOTONIC')
    rejects(() => b.nextVoucher({ cumulativeBytes: 2n * MiB, amountDue: 0n }), 'ERR_NOT_MONOTONIC')
    rejects(() => b.nextVoucher({ cumulativeBytes: MiB - 1n, amountDue: half + 1n }), 'ERR_NOT_MONOTONIC')
    b.nextVoucher(honest(2n * MiB))
  })

  it('refuses to exceed the spend cap', () => {
    const cap = amountForBytes(MiB, PRICE)
    const b = buyer({ spendCap: cap })
    b.recordUsage(2n * MiB)
    rejects(() => b.nextVoucher({ cumulativeBytes: 2n * MiB, amountDue: cap + 1n }), 'ERR_SPEND_CAP')
    b.nextVoucher({ cumulativeBytes: 2n * MiB, amountDue: cap })
  })

  it('refuses to exceed the deposit, and signs again after a top-up', () => {
    const deposit = amountForBytes(MiB, PRICE)
    const b = buyer({ terms: { channelId: CHANNEL_ID, pricePerGiB: PRICE, deposit } })
    b.recordUsage(2n * MiB)
    rejects(() => b.nextVoucher(honest(2n * MiB)), 'ERR_DEPOSIT_EXHAUSTED')
    b.onDepositChanged(deposit * 2n)
    b.nextVoucher(honest(2n * MiB))
  })

  it('commits only the voucher it last proposed', async () => {
    const b = buyer()
    const signer = privateKeyToAccount(generatePrivateKey())
    b.recordUsage(MiB)
    const before = await signVoucher(signer, DOMAIN, { channelId: CHANNEL_ID, cumulativeAmount: 1n, cumulativeBytes: 1n })
    rejects(() => b.commitSigned(before), 'ERR_VOUCHER_NOT_PROPOSED')
    const proposed = b.nextVoucher(honest(MiB))
    const altered = await signVoucher(signer, DOMAIN, { ...proposed, cumulativeAmount: proposed.cumulativeAmount + 1n })
    rejects(() => b.commitSigned(altered), 'ERR_VOUCHER_NOT_PROPOSED')
    const signed = await signVoucher(signer, DOMAIN, proposed)
    b.commitSigned(signed)
    rejects(() => b.commitSigned(signed), 'ERR_VOUCHER_NOT_PROPOSED')
  })

  it('restarts from the last signed voucher and the persisted meter', () => {
    const last = { channelId: CHANNEL_ID, cumulativeAmount: amountForBytes(MiB, PRICE), cumulativeBytes: MiB }
    const b = buyer({ lastSigned: last, meteredBytes: 2n * MiB })
    assert.equal(b.meteredBytes, 2n * MiB)
    rejects(() => b.nextVoucher(honest(MiB)), 'ERR_NOT_MONOTONIC')
    b.nextVoucher(honest(2n * MiB))
  })

  it('pays a seller end to end: report, voucher, real signature, seller check and commit', async () => {
    const signer = privateKeyToAccount(generatePrivateKey())
    const terms: ChannelTerms = {
      chainId: DOMAIN.chainId,
      contract: DOMAIN.verifyingContract,
      channelId: CHANNEL_ID,
      payer: privateKeyToAccount(generatePrivateKey()).address,
      payee: privateKeyToAccount(generatePrivateKey()).address,
      token: '0x0000000000000000000000000000000000000000',
      signer: signer.address,
      deposit: 10n ** 18n,
      closeDeadline: null,
      pricePerGiB: PRICE
    }
    const seller = new SellerChannel({ terms, verifier: new VoucherVerifier(DOMAIN) })
    const b = buyer()
    for (let round = 0; round < 5; round++) {
      const bytes = seller.creditRemainingBytes(NOW)
      seller.recordDelivered(bytes)
      b.recordUsage(bytes)
      const sv = await signVoucher(signer, DOMAIN, b.nextVoucher(seller.usageReport()))
      seller.commitVoucher(seller.checkVoucher(sv, NOW))
      b.commitSigned(sv)
      assert.equal(seller.unpaidBytes, 0n)
    }
    assert.equal(seller.paidAmount, b.signedAmount)
    assert.equal(seller.deliveredBytes, 5n * MiB)
  })
})

describe('buyer channel: invariant 3 (never signs for more than its meter plus the tolerance)', () => {
  it('holds over seeded random usage and honest, inflated and overpriced reports', async () => {
    const signer = privateKeyToAccount(generatePrivateKey())
    for (let seed = 1; seed <= 12; seed++) {
      const rng = new SeededRandom(seed)
      const tolerance = { bytes: BigInt(rng.int(256 * 1024)), basisPoints: BigInt(rng.int(500)) }
      const price = 10n ** 12n + rng.bigint(10n ** 16n)
      const spendCap = amountForBytes(BigInt(50 + rng.int(200)) * MiB, price)
      const deposit = amountForBytes(BigInt(50 + rng.int(200)) * MiB, price)
      const b = new BuyerChannel({ terms: { channelId: CHANNEL_ID, pricePerGiB: price, deposit }, spendCap, tolerance })
      let meter = 0n
      let lastAmount = 0n
      let lastBytes = 0n
      const signedByCause = { honest: 0, inflated: 0, overpriced: 0 }
      for (let step = 0; step < 200; step++) {
        const used = rng.bigint(2n * MiB)
        b.recordUsage(used)
        meter += used
        const allowedBytes = meter + toleranceBytes(meter, tolerance)
        const kind = rng.int(3)
        const cause = (['honest', 'inflated', 'overpriced'] as const)[kind]
        // honest: within the tolerance; inflated: beyond it; overpriced: honest bytes, a higher price.
        const bytes = kind === 1
          ? allowedBytes + 1n + rng.bigint(4n * MiB)
          : meter - rng.bigint(meter / 50n) + rng.bigint(allowedBytes - meter)
        const priced = amountForBytes(bytes, price)
        const amountDue = kind === 2 ? priced + 1n + rng.bigint(priced / 10n) : priced - rng.bigint(priced / 100n)
        let voucher
        try {
          voucher = b.nextVoucher({ cumulativeBytes: bytes, amountDue })
        } catch (err) {
          assert.ok(err instanceof UsageReportRejectedError, String(err))
          continue
        }
        signedByCause[cause]++
        assert.ok(voucher.cumulativeBytes <= allowedBytes, `seed ${seed} step ${step}: signed ${voucher.cumulativeBytes} bytes, meter ${meter} + tolerance allows ${allowedBytes}`)
        assert.ok(voucher.cumulativeAmount <= amountForBytes(allowedBytes, price), `seed ${seed} step ${step}: signed ${voucher.cumulativeAmount}, above the value of meter + tolerance`)
        assert.ok(voucher.cumulativeAmount <= amountForBytes(voucher.cumulativeBytes, price), `seed ${seed} step ${step}: signed above the agreed price`)
        assert.ok(voucher.cumulativeAmount <= spendCap && voucher.cumulativeAmount <= deposit)
        assert.ok(voucher.cumulativeAmount > lastAmount && voucher.cumulativeBytes >= lastBytes)
        if (rng.chance(0.7)) {
          b.commitSigned(await signVoucher(signer, DOMAIN, voucher))
          lastAmount = voucher.cumulativeAmount
          lastBytes = voucher.cumulativeBytes
        }
      }
      assert.ok(signedByCause.honest > 0, `seed ${seed}: no honest report was signed, the test exercised nothing`)
      assert.equal(signedByCause.inflated, 0, `seed ${seed}: signed inflated reports`)
      assert.equal(signedByCause.overpriced, 0, `seed ${seed}: signed overpriced reports`)
    }
  })
})
