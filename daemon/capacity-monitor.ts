import type { Logger } from 'pino'
import type { HardwareAdapter } from '../hardware/adapter.ts'
import { spareCapacity, type SharingPolicy, type SpareCapacity } from '../hardware/spare-capacity.ts'

/** Options of {@link CapacityMonitor}. */
export interface CapacityMonitorInit {
  adapter: HardwareAdapter
  policy: SharingPolicy
  /** Bytes relayed for buyers since the cap period started (from the seller's meters). */
  soldThisPeriodBytes: () => bigint
  /** Time between two samples. Default 5 s. */
  intervalMs?: number
  logger: Logger
}

/**
 * Samples the uplink through the hardware adapter and keeps the seller's spare
 * capacity current: the advertiser and the offer read {@link CapacityMonitor.current}.
 */
export class CapacityMonitor {
  readonly #init: CapacityMonitorInit
  readonly #log: Logger
  #current: SpareCapacity | undefined
  #timer: NodeJS.Timeout | undefined

  constructor (init: CapacityMonitorInit) {
    this.#init = init
    this.#log = init.logger.child({ component: 'capacity' })
  }

  /** The latest spare capacity (zero until the first sample). */
  current (): SpareCapacity {
    return this.#current ?? { spareBytesPerSec: 0, sharing: false, reason: 'unknown-capacity', periodStartMs: 0, periodEndMs: 0, remainingCapBytes: null }
  }

  /** Takes a first sample, then one every interval. */
  async start (): Promise<void> {
    await this.sample()
    this.#timer = setInterval(() => { void this.sample() }, this.#init.intervalMs ?? 5000)
    this.#timer.unref()
  }

  /** Stops sampling. */
  stop (): void {
    clearInterval(this.#timer)
  }

  /** Samples the link once and recomputes the spare capacity. */
  async sample (): Promise<SpareCapacity> {
    try {
      const link = await this.#init.adapter.linkStatus()
      const next = spareCapacity(this.#init.policy, {
        // a link that reports no speed (loopback, Wi-Fi, virtual) may not report carrier either: trust the configured capacity
        capacityBytesPerSec: link.up || link.speedBytesPerSec === null ? link.capacityBytesPerSec : 0,
        linkUseBytesPerSec: Math.max(link.rxBytesPerSec, link.txBytesPerSec),
        soldUseBytesPerSec: 0,
        soldThisPeriodBytes: this.#init.soldThisPeriodBytes()
      }, Date.now())
      if (this.#current?.reason !== next.reason) this.#log.info({ reason: next.reason, spareBytesPerSec: next.spareBytesPerSec }, 'spare capacity changed')
      this.#current = next
    } catch (err: any) {
      this.#log.warn({ err: err?.message }, 'cannot sample the uplink; keeping the last figure')
    }
    return this.current()
  }
}
