/**
 * Batch settlement on a real anvil chain with a real LevelDB store: one transaction
 * for many channels, exactly-once payment across crashes, restarts and RPC outages
 * (invariant 4), close-deadline settlement through the chain watcher, gas price cap.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPublicClient, http, parseEther, parseEventLogs, parseGwei, type Address } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import { ChainWatcher } from '../daemon/chain/watcher.ts'
import { Settler, type SettlerInit } from '../daemon/settlement/settler.ts'
import { SellerStore } from '../daemon/state/store.ts'
import { spareChannelsAbi } from '../protocol/contract/artifact.ts'
import {
  deployToken, devClient, freshAddress, openChannel, payVoucher, recordChannel, silentLogger, tokenBalance, type TestChannel
} from './helpers/settlement-fixtures.ts'

const CHILD = join(import.meta.dirname, 'fixtures', 'settlement', 'settle-child.ts')
/** Dev account that pays settlement gas (the seller's hot key); the payees are fresh cold addresses. */
const HOT = 1
const CHALLENGE_PERIOD = 86_400n

describe('settlement', () => {
  let devnet: Devnet
  let dir: string
  let stores = 0

  before(async () => {
    devnet = await startDevnet({ challengePeriod: CHALLENGE_PERIOD })
    dir = await mkdtemp(join(tmpdir(), 'spareband-settle-'))
  })
  after(async () => {
    await devnet?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const chainReader = () => createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl) })
  const hotAddress = (): Address => privateKeyToAccount(devnet.accounts[HOT]).address
  const hotNonce = async (): Promise<number> => await chainReader().getTransactionCount({ address: hotAddress() })
  const balance = async (a: Address): Promise<bigint> => await chainReader().getBalance({ address: a })
  const newStore = async (): Promise<{ store: SellerStore, dataDir: string }> => {
    const dataDir = join(dir, `store-${++stores}`)
    return { store: await SellerStore.open({ dataDir }), dataDir }
  }
  const settler = (store: SellerStore, init: Partial<SettlerInit> = {}, rpcUrl?: string): Settler =>
    new Settler({ store, chain: devClient(devnet, HOT, rpcUrl), logger: silentLogger, ...init })

  /** Opens `n` native channels to `payee`, records them and persists a few vouchers each; returns the latest amounts. */
  async function channelsWithVouchers (store: SellerStore, payee: Address, n: number, payerBase = 2): Promise<Map<TestChannel, bigint>> {
    const latest = new Map<TestChannel, bigint>()
    for (let i = 0; i < n; i++) {
      const ch = await openChannel(devnet, payerBase + (i % 4), payee, parseEther('1'))
      await recordChannel(store, devnet, ch)
      let amount = 0n
      for (let k = 1; k <= 3; k++) {
        amount = BigInt(k) * 10n ** 15n + BigInt(i * 1000 + k)
        await payVoucher(store, devnet, ch, amount)
      }
      latest.set(ch, amount)
    }
    return latest
  }

  async function assertSettledOnChain (latest: Map<TestChannel, bigint>): Promise<void> {
    const reader = devClient(devnet, HOT)
    for (const [ch, amount] of latest) assert.equal((await reader.getChannel(ch.channelId)).settled, amount, `channel ${ch.channelId}`)
  }

  const sum = (xs: Iterable<bigint>): bigint => [...xs].reduce((a, b) => a + b, 0n)

  it('settles many channels in several tokens with one transaction, to the wei', async () => {
    const { store } = await newStore()
    const payee = freshAddress()
    try {
      const native = await channelsWithVouchers(store, payee, 8)
      const token = await deployToken(devnet, [6, 7], 10n ** 24n)
      const erc20 = new Map<TestChannel, bigint>()
      for (let i = 0; i < 4; i++) {
        const ch = await openChannel(devnet, 6 + (i % 2), payee, 10n ** 21n, token)
        await recordChannel(store, devnet, ch)
        await payVoucher(store, devnet, ch, 5n * 10n ** 18n + BigInt(i))
        erc20.set(ch, await payVoucher(store, devnet, ch, 7n * 10n ** 18n + BigInt(i)).then((v) => v.cumulativeAmount))
      }
      const nonceBefore = await hotNonce()

      const result = await settler(store).settleNow()

      assert.equal(result.batches.length, 1, 'one transaction')
      assert.equal(await hotNonce(), nonceBefore + 1)
      assert.equal(await balance(payee), sum(native.values()))
      assert.equal(await tokenBalance(devnet, token, payee), sum(erc20.values()))
      await assertSettledOnChain(native)
      await assertSettledOnChain(erc20)

      const [batch] = result.batches
      assert.equal(batch.status, 'success')
      assert.equal(batch.paid.length, 12)
      assert.deepEqual(batch.skipped, [])
      assert.ok(batch.gasUsed > 0n)
      const receipt = await chainReader().getTransactionReceipt({ hash: batch.txHash })
      const [settled] = parseEventLogs({ abi: spareChannelsAbi, logs: receipt.logs, eventName: 'BatchSettled' })
      assert.equal(settled.args.settledCount, 12n)
      assert.equal(settled.args.auditHead, batch.auditHead, 'the audit head is anchored on chain')
      const anchored = []
      for await (const e of store.readAudit()) if (e.hash === batch.auditHead) anchored.push(e.kind)
      assert.deepEqual(anchored, ['batch-intent'])
      await store.verifyAudit()
      for (const ch of native.keys()) assert.equal((await store.getChannel(ch.channelId))?.settled, native.get(ch))
      assert.equal((await store.getBatch(batch.txHash))?.paid.length, 12)

      const again = await settler(store).settleNow()
      assert.equal(again.batches.length, 0, 'nothing left to settle')
      assert.equal(await hotNonce(), nonceBefore + 1, 'no second transaction')
    } finally {
      await store.close()
    }
  })

  for (const crashAt of ['queued', 'signed', 'sent'] as const) {
    it(`pays exactly once when killed after the batch was ${crashAt} (invariant 4)`, async () => {
      const { store, dataDir } = await newStore()
      const payee = freshAddress()
      const latest = await channelsWithVouchers(store, payee, 3)
      await store.close()
      const nonceBefore = await hotNonce()

      const child = spawn(process.execPath, [CHILD, dataDir, devnet.rpcUrl, String(devnet.chainId), devnet.contract, devnet.accounts[HOT], crashAt], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      const watchdog = setTimeout(() => child.kill('SIGKILL'), 30_000)
      const [code, signal] = await once(child, 'exit') as [number | null, NodeJS.Signals | null]
      clearTimeout(watchdog)
      assert.equal(signal, 'SIGKILL', `child should kill itself at ${crashAt} (exit ${code}): ${stderr}`)

      const reopened = await SellerStore.open({ dataDir })
      try {
        const open = (await reopened.listOutbox()).filter((e) => e.state !== 'confirmed' && e.state !== 'failed')
        assert.equal(open.length, 1, 'the crashed batch is in the outbox')
        assert.equal(open[0].state, crashAt === 'queued' ? 'pending' : 'submitted')
        const result = await settler(reopened).settleNow()
        assert.equal(await balance(payee), sum(latest.values()), 'paid exactly the latest vouchers')
        await assertSettledOnChain(latest)
        assert.equal(await hotNonce(), nonceBefore + 1, 'exactly one settlement transaction in total')
        assert.equal(result.batches.length, 1)
        if (crashAt !== 'queued') assert.equal(result.batches[0].txHash, open[0].txHash, 'the recorded transaction is the one that was mined')
        const states = (await reopened.listOutbox()).map((e) => e.state)
        assert.deepEqual(states.sort(), crashAt === 'queued' ? ['confirmed', 'failed'] : ['confirmed'])

        // A store that forgot the settlement (settled reset to 0) must not make the settler pay again.
        for (const ch of latest.keys()) await reopened.updateChannel(ch.channelId, { settled: 0n })
        const replay = await settler(reopened).settleNow()
        assert.equal(replay.batches.length, 0)
        assert.equal(await hotNonce(), nonceBefore + 1)
        assert.equal(await balance(payee), sum(latest.values()))
        for (const ch of latest.keys()) assert.equal((await reopened.getChannel(ch.channelId))?.settled, latest.get(ch), 'settled re-read from chain')
      } finally {
        await reopened.close()
      }
    })
  }

  it('rides out an RPC outage and settles once when the node is back', async () => {
    const { store } = await newStore()
    const payee = freshAddress()
    const latest = await channelsWithVouchers(store, payee, 2)
    // A loopback proxy to anvil that the test takes down and brings back.
    const proxy: Server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        fetch(devnet.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) })
          .then(async (r) => { res.writeHead(r.status, { 'content-type': 'application/json' }).end(Buffer.from(await r.arrayBuffer())) })
          .catch(() => res.destroy())
      })
    })
    proxy.listen(0, '127.0.0.1')
    await once(proxy, 'listening')
    const port = (proxy.address() as { port: number }).port
    const s = settler(store, { checkIntervalMs: 20, intervalMs: 20, baseBackoffMs: 20, maxBackoffMs: 200, receiptTimeoutMs: 2000 }, `http://127.0.0.1:${port}`)
    const nonceBefore = await hotNonce()
    let failures = 0
    let outageStarted = false
    s.addEventListener('queued', () => {
      // Down between writing the intent and signing: the intent must be rebuilt, never sent twice.
      if (outageStarted) return
      outageStarted = true
      proxy.close()
      proxy.closeAllConnections()
    })
    const settled = new Promise<void>((resolve) => s.addEventListener('settled', () => resolve(), { once: true }))
    const enoughFailures = new Promise<void>((resolve) => s.addEventListener('failed', () => { if (++failures === 3) resolve() }))
    try {
      await s.start()
      await within(enoughFailures, 10_000, 'settler never failed')
      assert.equal(await hotNonce(), nonceBefore, 'nothing sent during the outage')
      proxy.listen(port, '127.0.0.1')
      await once(proxy, 'listening')
      await within(settled, 15_000, 'not settled after the outage')
      await s.stop()
      assert.equal(await balance(payee), sum(latest.values()))
      assert.equal(await hotNonce(), nonceBefore + 1, 'settled once')
      await assertSettledOnChain(latest)
      const states = (await store.listOutbox()).map((e) => e.state).sort()
      assert.deepEqual(states, ['confirmed', 'failed'])
    } finally {
      await s.stop()
      proxy.close()
      proxy.closeAllConnections()
      await store.close()
    }
  })

  it('settles a closing channel through the chain watcher before its deadline', async () => {
    const { store } = await newStore()
    const payee = freshAddress()
    const latest = await channelsWithVouchers(store, payee, 2)
    const [closing] = latest.keys()
    // Long interval, no threshold: only the close request can start this round.
    const s = settler(store, { intervalMs: 3_600_000, checkIntervalMs: 3_600_000 })
    const watcher = new ChainWatcher({ store, chain: devClient(devnet, HOT), logger: silentLogger, settler: s, pollIntervalMs: 50 })
    const settled = new Promise<import('../daemon/state/codec.ts').BatchRecord>((resolve) => s.addEventListener('settled', (e) => resolve(e.detail), { once: true }))
    try {
      await s.start()
      await watcher.start()
      await waitFor(async () => (await watcher.cursor()) !== undefined, 'watcher started')
      assert.equal(await s.dueReason(), undefined, 'nothing is due before the close request')

      const deadline = await devClient(devnet, 2 + 0).requestClose(closing.channelId)
      const batch = await within(settled, 10_000, 'close request did not trigger settlement')

      assert.equal((await store.getChannel(closing.channelId))?.closeDeadline, deadline)
      const block = await chainReader().getBlock({ blockNumber: batch.blockNumber })
      assert.ok(block.timestamp < deadline, 'settled before the close deadline')
      assert.equal(await balance(payee), sum(latest.values()), 'the batch carried every owed channel')
      await assertSettledOnChain(latest)
      const kinds = []
      for await (const e of store.readAudit()) kinds.push(e.kind)
      assert.ok(kinds.includes('close-requested'))
    } finally {
      await watcher.stop()
      await s.stop()
      await store.close()
    }
  })

  it('records top-ups of known channels', async () => {
    const { store } = await newStore()
    const payee = freshAddress()
    const [ch] = (await channelsWithVouchers(store, payee, 1)).keys()
    const watcher = new ChainWatcher({ store, chain: devClient(devnet, HOT), logger: silentLogger })
    try {
      await watcher.poll()
      await devClient(devnet, 2).topUp(ch.channelId, parseEther('0.5'))
      assert.equal(await watcher.poll(), 1)
      assert.equal((await store.getChannel(ch.channelId))?.deposit, parseEther('1.5'))
      assert.equal(await watcher.poll(), 0, 'the cursor moved past the event')
    } finally {
      await store.close()
    }
  })

  it('holds back under the gas price cap unless a close deadline forces it', async () => {
    const { store } = await newStore()
    const payee = freshAddress()
    const latest = await channelsWithVouchers(store, payee, 2)
    const [closing] = latest.keys()
    const deadline = await devClient(devnet, 2).requestClose(closing.channelId)
    await store.updateChannel(closing.channelId, { closeDeadline: deadline })
    const rpc = chainReader()
    const setNextBaseFee = async (gwei: string): Promise<void> => {
      await rpc.request({ method: 'anvil_setNextBlockBaseFeePerGas', params: [`0x${parseGwei(gwei).toString(16)}`] } as never)
    }
    try {
      await setNextBaseFee('100')
      const nonceBefore = await hotNonce()
      const capped = settler(store, { gasPriceCap: parseGwei('10') })
      const deferred = await capped.settleNow()
      assert.equal(deferred.batches.length, 0)
      assert.ok(deferred.deferredGasPrice !== undefined && deferred.deferredGasPrice >= parseGwei('100'))
      assert.equal(await hotNonce(), nonceBefore, 'nothing sent above the cap')
      assert.equal(await balance(payee), 0n)
      assert.deepEqual(await store.listOutbox(), [], 'no intent written for a deferred batch')

      // The close deadline is within the margin: the cap no longer holds.
      const forced = await settler(store, { gasPriceCap: parseGwei('10'), deadlineMarginSec: CHALLENGE_PERIOD + 60n }).settleNow()
      assert.equal(forced.batches.length, 1)
      assert.ok(forced.batches[0].effectiveGasPrice >= parseGwei('100'), 'paid the high price to beat the deadline')
      assert.equal(await balance(payee), sum(latest.values()))
      const entry = await store.getOutbox(forced.batches[0].outboxId)
      assert.equal(entry?.forced, true)
    } finally {
      await setNextBaseFee('1')
      await store.close()
    }
  })

  it('settles below the cap with maxFeePerGas bounded by the cap', async () => {
    const { store } = await newStore()
    const payee = freshAddress()
    const latest = await channelsWithVouchers(store, payee, 1)
    try {
      const result = await settler(store, { gasPriceCap: parseGwei('50') }).settleNow()
      assert.equal(result.batches.length, 1)
      const tx = await chainReader().getTransaction({ hash: result.batches[0].txHash })
      assert.equal(tx.maxFeePerGas, parseGwei('50'))
      assert.equal(await balance(payee), sum(latest.values()))
    } finally {
      await store.close()
    }
  })

  it('triggers on the owed threshold per token and on the interval', async () => {
    const { store } = await newStore()
    const payee = freshAddress()
    const [ch] = (await channelsWithVouchers(store, payee, 1)).keys() // owes 3·10^15 + 3
    let clock = Date.now()
    try {
      const byThreshold = settler(store, { threshold: 10n ** 16n, intervalMs: 60_000, now: () => clock })
      await byThreshold.start()
      await byThreshold.stop()
      assert.equal(await byThreshold.dueReason(), undefined, 'below threshold, interval not elapsed')
      await payVoucher(store, devnet, ch, 10n ** 16n)
      assert.equal(await byThreshold.dueReason(), 'threshold')
      const perToken = settler(store, { threshold: 10n ** 30n, thresholdByToken: { [ch.token]: 10n ** 16n }, intervalMs: 60_000, now: () => clock })
      assert.equal(await perToken.dueReason(), 'threshold', 'the token threshold wins over the default')

      const byInterval = settler(store, { intervalMs: 60_000, now: () => clock })
      await byInterval.start()
      await byInterval.stop()
      assert.equal(await byInterval.dueReason(), undefined)
      clock += 60_000
      assert.equal(await byInterval.dueReason(), 'interval')

      // The running loop acts on a due trigger.
      const loop = settler(store, { threshold: 10n ** 16n, checkIntervalMs: 20 })
      const settled = new Promise<void>((resolve) => loop.addEventListener('settled', () => resolve(), { once: true }))
      await loop.start()
      await within(settled, 10_000, 'threshold did not trigger')
      await loop.stop()
      assert.equal(await balance(payee), 10n ** 16n)
      assert.equal(await loop.dueReason(), undefined, 'nothing owed any more')
    } finally {
      await store.close()
    }
  })

  it('a restarted seller keeps its vouchers and settles them', async () => {
    const { store, dataDir } = await newStore()
    const payee = freshAddress()
    const latest = await channelsWithVouchers(store, payee, 3)
    await store.close()
    const reopened = await SellerStore.open({ dataDir })
    try {
      const result = await settler(reopened).settleNow()
      assert.equal(result.batches.length, 1)
      assert.equal(await balance(payee), sum(latest.values()))
    } finally {
      await reopened.close()
    }
  })
})

/** Resolves with `promise`, or rejects with `what` after `ms`; the timer never outlives it. */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function waitFor (check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
