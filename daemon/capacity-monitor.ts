import type { Logger } from 'pino'
import type { HardwareAdapter } from '../hardware/adapter.ts'
import { spareCapacity, type SharingPolicy, type SpareCapacity } from '../hardware/spare-capacity.ts'
import type { SellerStore } from './state/store.ts'

/** Meter snapshot (`SellerStore`) of the bytes sold in the current cap period. */
export const SOLD_PERIOD_METER = 'sold-period'

/** Options of {@link CapacityMonitor}. */
export interface CapacityMonitorInit {
  adapter: HardwareAdapter
  policy: SharingPolicy
  /** Bytes sold to buyers since the daemon started (relayed plus gateway-counted); never decreases. */
  soldBytes: () => bigint
  /** Keeps the bytes sold in the current cap period across restarts. */
  store: Pick<SellerStore, 'getMeterSnapshot' | 'putMeterSnapshot'>
  /** Time between two samples. Default 5 s. */
  intervalMs?: number
  logger: Logger
}

/**
 * Samples the uplink through the hardware adapter and the bytes sold, and keeps the
 * seller's spare capacity current: the advertiser and the offer read
 * {@link CapacityMonitor.current}. The bytes sold in the current cap period are
 * persisted (a meter snapshot), so a restart does not reset the monthly cap.
 */
export class CapacityMonitor {
  readonly #init: CapacityMonitorInit
  readonly #log: Logger
  #current: SpareCapacity | undefined
  #timer: NodeJS.Timeout | undefined
  #lastSold = 0n
  #lastAt = 0
  #period = { startMs: 0, bytes: 0n }

  constructor (init: CapacityMonitorInit) {
    this.#init = init
    this.#log = init.logger.child({ component: 'capacity' })
  }

  /** The latest spare capacity (zero until the first sample). */
  current (): SpareCapacity {
    return this.#current ?? { spareBytesPerSec: 0, sharing: false, reason: 'unknown-capacity', periodStartMs: 0, periodEndMs: 0, remainingCapBytes: null }
  }

  /** Bytes sold in the current cap period. */
  soldThisPeriod (): bigint {
    return this.#period.bytes
  }

  /** Restores the period's sold bytes, takes a first sample, then one every interval. */
  async start (): Promise<void> {
    const saved = await this.#init.store.getMeterSnapshot(SOLD_PERIOD_METER)
    if (saved !== undefined) this.#period = { startMs: Number(saved.counters.periodStartMs ?? 0n), bytes: saved.counters.bytes ?? 0n }
    this.#lastSold = this.#init.soldBytes()
    this.#lastAt = Date.now()
    await this.sample()
    this.#timer = setInterval(() => { void this.sample() }, this.#init.intervalMs ?? 5000)
    this.#timer.unref()
  }

  /** Stops sampling and saves the period's sold bytes. */
  async stop (): Promise<void> {
    clearInterval(this.#timer)
    await this.#save()
  }

  /** Samples the link and the sold bytes once and recomputes the spare capacity. */
  async sample (): Promise<SpareCapacity> {
    const now = Date.now()
    const sold = this.#init.soldBytes()
    const delta = sold - this.#lastSold
    const soldRate = now > this.#lastAt ? Number(delta) * 1000 / (now - this.#lastAt) : 0
    this.#lastSold = sold
    this.#lastAt = now
    this.#period.bytes += delta
    try {
      const link = await this.#init.adapter.linkStatus()
      const sample = {
        // a link that reports no speed (loopback, Wi-Fi, virtual) may not report carrier either: trust the configured capacity
        capacityBytesPerSec: link.up || link.speedBytesPerSec === null ? link.capacityBytesPerSec : 0,
        linkUseBytesPerSec: Math.max(link.rxBytesPerSec, link.txBytesPerSec),
        soldUseBytesPerSec: soldRate,
        soldThisPeriodBytes: this.#period.bytes
      }
      let next = spareCapacity(this.#init.policy, sample, now)
      if (next.periodStartMs !== this.#period.startMs) {
        // a new cap period: only what was sold since it began counts
        this.#period = { startMs: next.periodStartMs, bytes: this.#period.startMs === 0 ? this.#period.bytes : delta }
        next = spareCapacity(this.#init.policy, { ...sample, soldThisPeriodBytes: this.#period.bytes }, now)
      }
      if (this.#current?.reason !== next.reason) this.#log.info({ reason: next.reason, spareBytesPerSec: next.spareBytesPerSec }, 'spare capacity changed')
      this.#current = next
    } catch (err: any) {
      this.#log.warn({ err: err?.message }, 'cannot sample the uplink; keeping the last figure')
    }
    if (delta > 0n) await this.#save()
    return this.current()
  }

  async #save (): Promise<void> {
    await this.#init.store.putMeterSnapshot(SOLD_PERIOD_METER, { at: Date.now(), counters: { periodStartMs: BigInt(this.#period.startMs), bytes: this.#period.bytes } })
      .catch((err: any) => { this.#log.warn({ err: err?.message }, 'cannot save the bytes sold this period') })
  }
}
