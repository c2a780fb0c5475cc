import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { SimulatedAdapter } from '../hardware/simulated.ts'
import type { SharingPolicy } from '../hardware/spare-capacity.ts'
import { CapacityMonitor } from '../daemon/capacity-monitor.ts'
import { SellerStore } from '../daemon/state/store.ts'

const logger = pino({ level: 'silent' })
const policy = (over: Partial<SharingPolicy> = {}): SharingPolicy => ({
  timeZone: 'UTC', schedule: null, bandwidthLimitBytesPerSec: null, monthlyCapBytes: null, capResetDay: 1, reserveFraction: 0.1, ...over
})

describe('capacity monitor (real store, simulated adapter on lo)', () => {
  let dir: string
  let store: SellerStore
  let adapter: SimulatedAdapter

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spareband-cap-'))
    store = await SellerStore.open({ dataDir: dir })
    adapter = new SimulatedAdapter({ logger, reason: 'test', uplinkInterface: 'lo', uplinkCapacityBytesPerSec: 1e12 })
    await adapter.start()
  })

  after(async () => {
    await adapter?.stop()
    await store?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('stops sharing once the monthly cap is sold, and remembers it across a restart', async () => {
    let sold = 0n
    const first = new CapacityMonitor({ adapter, policy: policy({ monthlyCapBytes: 1_000_000n }), soldBytes: () => sold, store, logger, intervalMs: 3_600_000 })
    await first.start()
    assert.equal(first.current().reason, 'available')
    sold += 1_200_000n
    assert.equal((await first.sample()).reason, 'monthly-cap-reached')
    assert.equal(first.current().spareBytesPerSec, 0)
    await first.stop()

    // a restarted daemon starts its own byte count at zero: the period's sales come from the store
    const second = new CapacityMonitor({ adapter, policy: policy({ monthlyCapBytes: 1_000_000n }), soldBytes: () => 0n, store, logger, intervalMs: 3_600_000 })
    await second.start()
    assert.equal(second.soldThisPeriod(), 1_200_000n)
    assert.equal(second.current().reason, 'monthly-cap-reached')
    await second.stop()
  })

  it('counts what buyers use now against the bandwidth limit', async () => {
    let sold = 0n
    const monitor = new CapacityMonitor({ adapter, policy: policy({ bandwidthLimitBytesPerSec: 1_000_000 }), soldBytes: () => sold, store: { getMeterSnapshot: async () => undefined, putMeterSnapshot: async () => {} }, logger, intervalMs: 3_600_000 })
    await monitor.start()
    assert.equal(monitor.current().reason, 'available')
    await new Promise((resolve) => setTimeout(resolve, 200))
    sold += 1_000_000n // 1 MB in ~0.2 s: 5 MB/s, above the 1 MB/s limit
    const busy = await monitor.sample()
    assert.equal(busy.reason, 'limit-reached')
    assert.equal(busy.spareBytesPerSec, 0)
    await monitor.stop()
  })
})
