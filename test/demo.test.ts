/**
 * `spareband demo` end to end: the local market runs, real bytes move through
 * the SOCKS5 proxy, the buyer fails over when the cheapest seller leaves, the
 * payouts on chain equal the vouchers, and everything it started is stopped.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { pino } from 'pino'
import { createPublicClient, http } from 'viem'
import { runDemo } from '../daemon/demo.ts'

const logger = pino({ level: process.env.TEST_LOG ?? 'silent' }, pino.destination(2))

async function demoDirs (): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith('spareband-demo-'))
}

describe('spareband demo', () => {
  it('runs a market of three sellers and a buyer, settles what the vouchers say, and stops everything', async () => {
    const dirsBefore = await demoDirs()
    const steps: string[] = []
    const report = await runDemo({ logger, downloadBytes: 2 * 1024 * 1024, onStep: (s) => steps.push(s) })

    assert.equal(report.downloads.length, 2)
    for (const d of report.downloads) assert.ok(d.sha256Matches && d.bytes === 2 * 1024 * 1024)
    const [A, B, C] = report.sellers
    assert.equal(report.downloads[0].seller, A.peerId, 'the cheapest seller first')
    assert.equal(report.downloads[1].seller, B.peerId, 'then the next cheapest, after A left')
    assert.equal(report.buyer.failovers, 1)
    assert.match(report.buyer.failoverReasons[0], /seller is shutting down/, 'a seller that stops tells its buyers why')
    for (const s of [A, B]) {
      assert.equal(s.settlements.length, 1, `seller ${s.name} settled in one transaction`)
      assert.ok(s.paidAmount > 0n && s.vouchers > 0)
      assert.equal(s.payoutBalance, s.paidAmount, `seller ${s.name}'s payout holds exactly its vouchers' worth`)
    }
    assert.equal(C.paidAmount, 0n)
    assert.equal(C.payoutBalance, 0n)
    assert.equal(report.buyer.spent, A.paidAmount + B.paidAmount, 'the buyer signed what the sellers hold')
    assert.ok(steps.length >= 6)

    // everything stopped: the devnet no longer answers and the temporary directory is gone
    const client = createPublicClient({ transport: http(report.rpcUrl, { retryCount: 0, timeout: 2_000 }) })
    await assert.rejects(client.getChainId())
    assert.deepEqual(await demoDirs(), dirsBefore)
  })
})
