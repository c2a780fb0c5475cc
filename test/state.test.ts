import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { keccak256, toHex, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { signVoucher, MAX_VOUCHER_AMOUNT, type SignedVoucher } from '../protocol/voucher.ts'
import { SellerStore, StoreOpenError, VoucherNotMonotonicError, UnknownChannelError } from '../daemon/state/store.ts'
import { AUDIT_GENESIS_HASH, auditEntryHash } from '../daemon/state/audit-log.ts'
import type { ChannelRecord } from '../daemon/state/codec.ts'

const signer = privateKeyToAccount(generatePrivateKey())
const domain = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' as const }

function channelId (n: number): Hex {
  return keccak256(toHex(`channel-${n}`))
}

async function voucher (n: number, amount: bigint, bytes = amount * 10n): Promise<SignedVoucher> {
  return await signVoucher(signer, domain, { channelId: channelId(n), cumulativeAmount: amount, cumulativeBytes: bytes })
}

function channel (n: number): ChannelRecord {
  return {
    chainId: 31337,
    contract: domain.verifyingContract,
    channelId: channelId(n),
    payer: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
    payee: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC',
    token: '0x0000000000000000000000000000000000000000',
    signer: signer.address,
    deposit: 10n ** 18n,
    closeDeadline: 0n,
    pricePerGiB: 10n ** 15n,
    settled: 0n,
    openedAt: 1_700_000_000_000,
    lastSeenAt: 1_700_000_000_000
  }
}

describe('SellerStore', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'spareband-state-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('keeps channels, vouchers, sessions, meters and the audit head across a restart', async () => {
    const dataDir = join(dir, 'restart')
    let store = await SellerStore.open({ dataDir })
    assert.equal(store.auditHead(), AUDIT_GENESIS_HASH)
    await store.putChannel(channel(1))
    const v = await voucher(1, MAX_VOUCHER_AMOUNT, 123n)
    await store.persistVoucher(v)
    await store.putSession({ id: 's1', peer: '12D3KooWtest', channelId: channelId(1), deliveredBytes: 5n, unpaid: 1n, maxExposure: 2n, state: 'ended', startedAt: 1, endedAt: 2 })
    await store.putMeterSnapshot('relay', { at: 3, counters: { rx: 2n ** 70n, tx: 0n } })
    const head = store.auditHead()
    await store.close()

    store = await SellerStore.open({ dataDir })
    try {
      assert.equal(store.auditHead(), head)
      assert.deepEqual(await store.getChannel(channelId(1)), channel(1))
      const stored = await store.getVoucher(channelId(1))
      assert.equal(stored?.cumulativeAmount, MAX_VOUCHER_AMOUNT)
      assert.equal(stored?.cumulativeBytes, 123n)
      assert.equal(stored?.signature, v.signature)
      assert.equal((await store.getSession('s1'))?.unpaid, 1n)
      assert.equal((await store.getMeterSnapshot('relay'))?.counters.rx, 2n ** 70n)
      const verified = await store.verifyAudit()
      assert.equal(verified.hash, head)
      assert.equal(verified.nextSeq, 3) // channel, voucher, session-end
    } finally {
      await store.close()
    }
  })

  it('only lets a higher amount replace the stored voucher', async () => {
    const store = await SellerStore.open({ dataDir: join(dir, 'monotonic') })
    try {
      await store.persistVoucher(await voucher(2, 100n))
      await assert.rejects(store.persistVoucher(await voucher(2, 99n)), VoucherNotMonotonicError)
      await assert.rejects(store.persistVoucher(await voucher(2, 100n, 9999n)), VoucherNotMonotonicError)
      assert.equal((await store.getVoucher(channelId(2)))?.cumulativeAmount, 100n)
      const next = await store.persistVoucher(await voucher(2, 101n))
      assert.equal(next.cumulativeAmount, 101n)
      assert.equal((await store.getVoucher(channelId(2)))?.cumulativeAmount, 101n)
      // the rejected vouchers left no audit entries
      const kinds: string[] = []
      for await (const e of store.readAudit()) kinds.push(e.kind)
      assert.deepEqual(kinds, ['voucher', 'voucher'])
    } finally {
      await store.close()
    }
  })

  it('serialises concurrent writes into one unbroken hash chain', async () => {
    const store = await SellerStore.open({ dataDir: join(dir, 'concurrent') })
    try {
      const vouchers = await Promise.all(Array.from({ length: 40 }, async (_, i) => await voucher(100 + (i % 8), BigInt(1 + i))))
      const results = await Promise.allSettled(vouchers.map(async (v) => await store.persistVoucher(v)))
      assert.ok(results.every((r) => r.status === 'fulfilled'), 'increasing amounts per channel are all accepted in order')
      const head = await store.verifyAudit()
      assert.equal(head.nextSeq, 40)
      for (let c = 0; c < 8; c++) {
        assert.equal((await store.getVoucher(channelId(100 + c)))?.cumulativeAmount, BigInt(33 + c))
      }
    } finally {
      await store.close()
    }
  })

  it('detects an altered audit entry', async () => {
    const dataDir = join(dir, 'tamper')
    let store = await SellerStore.open({ dataDir })
    await store.persistVoucher(await voucher(3, 10n))
    await store.persistVoucher(await voucher(3, 20n))
    await store.persistVoucher(await voucher(3, 30n))
    await store.close()

    // Rewrite the middle entry's amount with a raw LevelDB handle, keeping its stored hash.
    const raw = new Level<string, string>(dataDir)
    const audit = raw.sublevel<string, string>('audit', { valueEncoding: 'utf8' })
    const key = '0000000000000001'
    const entry = JSON.parse(await audit.get(key) as string)
    entry.data.cumulativeAmount = '25'
    await audit.put(key, JSON.stringify(entry))
    await raw.close()

    store = await SellerStore.open({ dataDir })
    try {
      await assert.rejects(store.verifyAudit(), { code: 'ERR_AUDIT_CHAIN' })
    } finally {
      await store.close()
    }
  })

  it('computes each hash over the entry content and the previous hash', async () => {
    const store = await SellerStore.open({ dataDir: join(dir, 'hash') })
    try {
      await store.persistVoucher(await voucher(4, 1n))
      await store.persistVoucher(await voucher(4, 2n))
      const entries = []
      for await (const e of store.readAudit()) entries.push(e)
      assert.equal(entries[0].prevHash, AUDIT_GENESIS_HASH)
      assert.equal(entries[1].prevHash, entries[0].hash)
      for (const e of entries) assert.equal(auditEntryHash(e), e.hash)
      assert.equal(store.auditHead(), entries[1].hash)
    } finally {
      await store.close()
    }
  })

  it('keys channels and vouchers by channel id whatever its hex case', async () => {
    const store = await SellerStore.open({ dataDir: join(dir, 'case') })
    try {
      const upper = `0x${channelId(7).slice(2).toUpperCase()}` as Hex
      await store.putChannel({ ...channel(7), channelId: upper })
      await store.persistVoucher({ ...(await voucher(7, 5n)), channelId: upper })
      assert.equal((await store.getChannel(channelId(7)))?.channelId, channelId(7))
      assert.equal((await store.getVoucher(channelId(7)))?.cumulativeAmount, 5n)
      await assert.rejects(store.persistVoucher(await voucher(7, 4n)), VoucherNotMonotonicError)
      assert.equal((await store.updateChannel(upper, { settled: 5n })).settled, 5n)
    } finally {
      await store.close()
    }
  })

  it('refuses a second process-level open of the same directory', async () => {
    const dataDir = join(dir, 'locked')
    const store = await SellerStore.open({ dataDir })
    try {
      await assert.rejects(SellerStore.open({ dataDir }), StoreOpenError)
    } finally {
      await store.close()
    }
  })

  it('tracks channel updates and settlement batches durably', async () => {
    const dataDir = join(dir, 'outbox')
    let store = await SellerStore.open({ dataDir })
    await store.putChannel(channel(5))
    await assert.rejects(store.updateChannel(channelId(6), { settled: 1n }), UnknownChannelError)
    await store.updateChannel(channelId(5), { closeDeadline: 1_800_000_000n }, 'close-requested')
    const entry = await store.queueBatch({
      reason: 'test',
      payee: channel(5).payee,
      forced: false,
      tokens: [{ token: channel(5).token, items: [{ channelId: channelId(5), cumulativeAmount: 7n, cumulativeBytes: 70n, signature: '0x01', settledBefore: 0n }] }]
    })
    assert.equal(entry.state, 'pending')
    assert.equal(entry.auditHead, store.auditHead(), 'the anchored head is the batch-intent entry itself')
    const txHash = keccak256('0x1234')
    await store.updateOutbox(entry.id, { state: 'submitted', txHash, rawTx: '0xabcd', nonce: 3, submittedAt: 9 })
    await store.close()

    store = await SellerStore.open({ dataDir })
    try {
      assert.equal((await store.getOutbox(entry.id))?.txHash, txHash)
      await store.completeBatch(entry.id, {
        outboxId: entry.id,
        txHash,
        blockNumber: 12n,
        status: 'success',
        gasUsed: 60_000n,
        effectiveGasPrice: 10n ** 9n,
        auditHead: entry.auditHead,
        paid: [{ channelId: channelId(5), token: channel(5).token, cumulativeAmount: 7n, paid: 7n }],
        skipped: [],
        confirmedAt: 10
      }, new Map([[channelId(5), 7n]]))
      assert.equal((await store.getOutbox(entry.id))?.state, 'confirmed')
      const ch = await store.getChannel(channelId(5))
      assert.equal(ch?.settled, 7n)
      assert.equal(ch?.closeDeadline, 1_800_000_000n)
      assert.equal((await store.getBatch(txHash))?.gasUsed, 60_000n)
      const kinds: string[] = []
      for await (const e of store.readAudit()) kinds.push(e.kind)
      assert.deepEqual(kinds, ['channel', 'close-requested', 'batch-intent', 'batch-submitted', 'batch-settled'])
      await store.verifyAudit()
    } finally {
      await store.close()
    }
  })
})
