/**
 * The gateway buyer's own meter: its network interface's kernel statistics
 * (`/sys/class/net/IF/statistics`, read through the hardware layer), turned into
 * IP-layer bytes (the link header taken off every frame), both directions.
 *
 * Why the interface: every byte the gateway forwards for this device crosses this
 * interface, as the same IP packet the gateway's forward counter counts, so the
 * meter is never below the gateway's count and the buyer can hold the seller to it
 * without root or nftables. It counts more than the gateway bills (traffic to the
 * gateway itself, such as the payment stream, other LAN hosts, packets the gateway
 * dropped), so a dishonest gateway could claim up to that local traffic on top of
 * what it forwarded; the tolerance adds the usual slack.
 */
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { linkHeaderBytes, readInterfaceCounters } from '../../hardware/sysfs.ts'
import type { CommandRunner } from '../../hardware/command.ts'

/** Events of an {@link InterfaceMeter}. */
export interface InterfaceMeterEvents {
  /** IP-layer bytes (both directions) counted since the previous poll. */
  bytes: [bigint]
}

/** Options of {@link InterfaceMeter}. */
export interface InterfaceMeterInit {
  runner: CommandRunner
  /** The interface the device reaches the gateway through (its default route's). */
  interface: string
  /** Time between two polls. Default 250 ms (well inside the 2 s a usage report may wait for the meter). */
  pollMs?: number
  logger: Logger
}

/** See the module comment. */
export class InterfaceMeter extends EventEmitter<InterfaceMeterEvents> {
  readonly #init: InterfaceMeterInit
  readonly #log: Logger
  #header = 0n
  #last: bigint | undefined
  #total = 0n
  #timer: NodeJS.Timeout | undefined
  #polling: Promise<bigint> | undefined

  constructor (init: InterfaceMeterInit) {
    super()
    this.#init = init
    this.#log = init.logger.child({ component: 'interface-meter', interface: init.interface })
  }

  /** IP-layer bytes counted since {@link start}, both directions. */
  get totalBytes (): bigint {
    return this.#total
  }

  /** Takes the baseline and polls every interval. */
  async start (): Promise<void> {
    if (this.#last !== undefined) return
    this.#header = BigInt(await linkHeaderBytes(this.#init.runner, this.#init.interface))
    this.#last = await this.#read()
    this.#timer = setInterval(() => {
      this.poll().catch((err: any) => this.#log.warn({ err: err?.message }, 'cannot read the interface counters'))
    }, this.#init.pollMs ?? 250)
  }

  /** Reads the counters now and emits what moved since the last poll; returns the total. */
  poll (): Promise<bigint> {
    this.#polling ??= (async () => {
      try {
        const now = await this.#read()
        const delta = now - (this.#last ?? now)
        this.#last = now
        // a counter that went backwards (interface re-created) restarts the baseline
        if (delta > 0n) {
          this.#total += delta
          this.emit('bytes', delta)
        }
        return this.#total
      } finally {
        this.#polling = undefined
      }
    })()
    return this.#polling
  }

  /** Stops polling. */
  stop (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  async #read (): Promise<bigint> {
    const c = await readInterfaceCounters(this.#init.runner, this.#init.interface)
    return (c.rxBytes - this.#header * c.rxPackets) + (c.txBytes - this.#header * c.txPackets)
  }
}
