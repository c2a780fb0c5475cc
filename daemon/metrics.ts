/**
 * Prometheus metrics of a seller, in a registry of its own (prom-client). Nothing
 * is counted on the hot path: each scrape reads one snapshot of the seller's state
 * (store, settler, live sessions, spare capacity), shared by every collector of that
 * scrape, so a scrape costs a few sublevel reads.
 *
 * Amounts are in token base units and byte counts in bytes, as floats (Prometheus
 * has no integers); labels carry the token address in lower case.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { SpareCapacity } from '../hardware/spare-capacity.ts'
import type { SessionInfo } from './payment/seller-payment-service.ts'
import type { OwedChannel, Settler } from './settlement/settler.ts'
import type { BatchRecord, ChannelRecord } from './state/codec.ts'
import type { SellerStore } from './state/store.ts'

/** What the metrics read. */
export interface SellerMetricsSource {
  store: SellerStore
  settler: Settler
  /** Live payment sessions. */
  sessions: () => SessionInfo[]
  /** Payload bytes the relay exit forwarded since start, per direction. */
  relayedBytes: () => { up: bigint, down: bigint }
  /** The latest spare capacity. */
  capacity: () => SpareCapacity
  /** Vouchers handled since start, by outcome (`accepted` or the rejection code). */
  voucherOutcomes: () => ReadonlyMap<string, number>
  /** Relay-exit reconciliation: kernel vs userspace counts over the last judged span, or null (none yet, or no kernel counters). */
  exitDivergence: () => number | null
}

/** Options of {@link createSellerMetrics}. */
export interface SellerMetricsOptions {
  /** Also export prom-client's process and Node.js metrics. Default true. */
  processMetrics?: boolean
}

interface Snapshot {
  channels: ChannelRecord[]
  batches: BatchRecord[]
  owed: OwedChannel[]
  sessions: SessionInfo[]
  capacity: SpareCapacity
}

const SHARING_REASONS: ReadonlyArray<SpareCapacity['reason']> = ['available', 'outside-schedule', 'monthly-cap-reached', 'link-busy', 'limit-reached', 'unknown-capacity']

/** Builds the seller's metrics registry (serve it with `registry.metrics()`). */
export function createSellerMetrics (src: SellerMetricsSource, options: SellerMetricsOptions = {}): Registry {
  const registry = new Registry()
  // prom-client starts every collector of a scrape in the same tick: they share the read in flight
  let inFlight: Promise<Snapshot> | undefined
  const snapshot = async (): Promise<Snapshot> => {
    inFlight ??= takeSnapshot(src).finally(() => { inFlight = undefined })
    return await inFlight
  }
  const registers = [registry]

  new Gauge({
    name: 'spareband_exit_divergence_ratio',
    help: 'Relay-exit reconciliation: (kernel-counted payload - the exit\'s own count) / the larger, over the last judged span; absent until a span was judged',
    registers,
    collect () {
      this.reset()
      const d = src.exitDivergence()
      if (d !== null) this.set(d)
    }
  })

  new Counter({
    name: 'spareband_vouchers_total',
    help: 'Vouchers received from buyers since the daemon started, by outcome: accepted (persisted, then acknowledged) or the rejection code',
    labelNames: ['outcome'],
    registers,
    collect () {
      this.reset()
      for (const [outcome, n] of src.voucherOutcomes()) this.inc({ outcome }, n)
    }
  })

  new Counter({
    name: 'spareband_relayed_bytes_total',
    help: 'Payload bytes the relay exit forwarded for buyers since the daemon started, by direction (up = towards the targets)',
    labelNames: ['direction'],
    registers,
    collect () {
      const relayed = src.relayedBytes()
      this.reset()
      this.inc({ direction: 'up' }, Number(relayed.up))
      this.inc({ direction: 'down' }, Number(relayed.down))
    }
  })

  new Gauge({
    name: 'spareband_sessions_active',
    help: 'Live buyer payment sessions',
    registers,
    async collect () {
      this.set((await snapshot()).sessions.length)
    }
  })

  new Gauge({
    name: 'spareband_channels',
    help: 'Payment channels in the state database',
    registers,
    async collect () {
      this.set((await snapshot()).channels.length)
    }
  })

  new Gauge({
    name: 'spareband_unpaid_exposure',
    help: 'Value delivered in live sessions and not yet covered by a persisted voucher, summed over sessions (token base units)',
    labelNames: ['token'],
    registers,
    async collect () {
      const s = await snapshot()
      this.reset()
      for (const [token, amounts] of unpaidByToken(s)) this.set({ token }, Number(amounts.reduce((a, b) => a + b, 0n)))
    }
  })

  new Gauge({
    name: 'spareband_unpaid_exposure_max',
    help: 'Largest unpaid value of any one live session (token base units); bounded by the credit window',
    labelNames: ['token'],
    registers,
    async collect () {
      const s = await snapshot()
      this.reset()
      for (const [token, amounts] of unpaidByToken(s)) this.set({ token }, Number(amounts.reduce((a, b) => a > b ? a : b, 0n)))
    }
  })

  new Gauge({
    name: 'spareband_owed',
    help: 'Accepted in vouchers and not settled yet (token base units)',
    labelNames: ['token'],
    registers,
    async collect () {
      const s = await snapshot()
      this.reset()
      for (const [token, amount] of sumBy(s.owed, (o) => o.channel.token, (o) => o.owed)) this.set({ token }, Number(amount))
    }
  })

  new Counter({
    name: 'spareband_settled_total',
    help: 'Paid to the payout address by this seller\'s confirmed settlement batches (token base units)',
    labelNames: ['token'],
    registers,
    async collect () {
      const s = await snapshot()
      const paid = s.batches.filter((b) => b.status === 'success').flatMap((b) => b.paid)
      this.reset()
      for (const [token, amount] of sumBy(paid, (p) => p.token, (p) => p.paid)) this.inc({ token }, Number(amount))
    }
  })

  new Counter({
    name: 'spareband_settlement_batches_total',
    help: 'Settlement transactions mined, by outcome',
    labelNames: ['status'],
    registers,
    async collect () {
      const s = await snapshot()
      this.reset()
      for (const status of ['success', 'reverted'] as const) this.inc({ status }, s.batches.filter((b) => b.status === status).length)
    }
  })

  new Counter({
    name: 'spareband_settlement_gas_used_total',
    help: 'Gas used by settlement transactions',
    registers,
    async collect () {
      const s = await snapshot()
      this.reset()
      this.inc(Number(s.batches.reduce((sum, b) => sum + b.gasUsed, 0n)))
    }
  })

  new Counter({
    name: 'spareband_settlement_gas_cost_wei_total',
    help: 'Native coin paid by the hot key for settlement gas (wei)',
    registers,
    async collect () {
      const s = await snapshot()
      this.reset()
      this.inc(Number(s.batches.reduce((sum, b) => sum + b.gasUsed * b.effectiveGasPrice, 0n)))
    }
  })

  new Gauge({
    name: 'spareband_settlement_last_timestamp_seconds',
    help: 'Unix time of the last mined settlement batch (0 before the first)',
    registers,
    async collect () {
      const s = await snapshot()
      this.set(s.batches.reduce((last, b) => Math.max(last, b.confirmedAt), 0) / 1000)
    }
  })

  new Gauge({
    name: 'spareband_spare_uplink_bps',
    help: 'Spare uplink capacity offered to buyers now (bits per second)',
    registers,
    async collect () {
      this.set(Math.floor((await snapshot()).capacity.spareBytesPerSec * 8))
    }
  })

  new Gauge({
    name: 'spareband_sharing',
    help: 'Why the spare capacity is what it is: 1 for the current reason, 0 for the others',
    labelNames: ['reason'],
    registers,
    async collect () {
      const current = (await snapshot()).capacity.reason
      for (const reason of SHARING_REASONS) this.set({ reason }, reason === current ? 1 : 0)
    }
  })

  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry })
  return registry
}

async function takeSnapshot (src: SellerMetricsSource): Promise<Snapshot> {
  const [channels, batches, owed] = await Promise.all([src.store.listChannels(), src.store.listBatches(), src.settler.owed()])
  return { channels, batches, owed, sessions: src.sessions(), capacity: src.capacity() }
}

function unpaidByToken (s: Snapshot): Map<string, bigint[]> {
  const tokenOf = new Map(s.channels.map((c) => [c.channelId.toLowerCase(), c.token.toLowerCase()]))
  const out = new Map<string, bigint[]>()
  for (const session of s.sessions) {
    const token = tokenOf.get(session.channelId.toLowerCase())
    if (token === undefined) continue
    out.set(token, [...(out.get(token) ?? []), session.unpaidAmount])
  }
  return out
}

function sumBy<T> (items: readonly T[], key: (t: T) => string, amount: (t: T) => bigint): Map<string, bigint> {
  const out = new Map<string, bigint>()
  for (const item of items) {
    const k = key(item).toLowerCase()
    out.set(k, (out.get(k) ?? 0n) + amount(item))
  }
  return out
}
