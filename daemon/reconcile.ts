/**
 * Relay-exit reconciliation: the kernel counts the daemon's own exit traffic (the
 * hardware adapter's `exitMatch`, by socket owner) and the relay exit counts, in
 * userspace, the payload it forwards for its sessions. This compares the two over
 * spans of traffic and reports the divergence: a number for metrics, and a pino
 * warning past a threshold. A divergence means bytes leave through the exit that no
 * session billed (or the other way round): a metering bug, retransmissions on a
 * lossy uplink, or other traffic under the exit's uid.
 *
 * The two counts measure different layers: the kernel counts IP packets (headers
 * included, one header per GSO aggregate), the exit counts payload. The kernel
 * count is turned into a payload estimate by taking off one IPv4 + TCP header
 * (with timestamps, 52 bytes) per packet, which also removes pure ACKs. They are
 * also counted at different instants (the exit counts when it hands bytes to a
 * socket, the kernel when they leave): a span is judged once it carries enough
 * bytes and the interval that closes it is quiet (nothing left in socket buffers),
 * or once it is so large that in-flight bytes no longer matter.
 */
import type { Logger } from 'pino'
import type { CounterReading } from '../hardware/adapter.ts'
import type { CounterConsumer } from './gateway/counter-loop.ts'

/** IPv4 (20) + TCP with the timestamp option (32): the header the kernel counts per packet. */
export const EXIT_HEADER_BYTES_PER_PACKET = 52

/** Options of {@link ExitReconciler}. */
export interface ExitReconcilerInit {
  /** The exit's cumulative userspace count since start, per direction (`up` = to targets). */
  userspaceBytes: () => { up: bigint, down: bigint }
  /** Warn when |divergence| is above this fraction. Default 0.05. */
  warnAbove?: number
  /** Judge a span once it holds this many bytes (and is followed by a quiet interval). Default 4 MiB. */
  minSpanBytes?: bigint
  /** An interval moving at most this many bytes is quiet. Default 64 KiB. */
  quietBytes?: bigint
  /** Judge a span at this size even without a quiet interval. Default 256 MiB. */
  maxSpanBytes?: bigint
  /** Header bytes taken off per kernel-counted packet. Default {@link EXIT_HEADER_BYTES_PER_PACKET}. */
  headerBytesPerPacket?: number
  logger: Logger
}

/** The reconciliation at a glance (for metrics and status). */
export interface ExitReconciliation {
  /** IP-layer bytes the kernel counted for the exit since start, both directions. */
  kernelBytes: bigint
  /** The kernel count as payload (headers taken off), since start. */
  kernelPayloadBytes: bigint
  /** Payload bytes the exit counted since start, both directions. */
  userspaceBytes: bigint
  /**
   * `(kernel payload − userspace) / max(both)` over the last judged span, from −1 to 1
   * (0.01 = the kernel saw 1 % more); null until a span was judged.
   */
  divergence: number | null
  /** Bytes of the last judged span (the larger of the two counts). */
  spanBytes: bigint
  /** When the last span was judged (ms since the epoch), or null. */
  judgedAt: number | null
  /** Spans judged, and how many of them were past the threshold. */
  spans: number
  warnings: number
}

/** See the module comment. */
export class ExitReconciler implements CounterConsumer {
  readonly #init: ExitReconcilerInit
  readonly #log: Logger
  readonly #warnAbove: number
  readonly #minSpan: bigint
  readonly #quiet: bigint
  readonly #maxSpan: bigint
  readonly #header: bigint
  #lastUser: bigint | undefined
  #span = { kernel: 0n, user: 0n }
  readonly [Symbol.toStringTag] = 'spareband/exit-reconciler'
  #state: ExitReconciliation = { kernelBytes: 0n, kernelPayloadBytes: 0n, userspaceBytes: 0n, divergence: null, spanBytes: 0n, judgedAt: null, spans: 0, warnings: 0 }

  constructor (init: ExitReconcilerInit) {
    this.#init = init
    this.#log = init.logger.child({ component: 'reconcile' })
    this.#warnAbove = init.warnAbove ?? 0.05
    this.#minSpan = init.minSpanBytes ?? 4n << 20n
    this.#quiet = init.quietBytes ?? 64n << 10n
    this.#maxSpan = init.maxSpanBytes ?? 256n << 20n
    this.#header = BigInt(init.headerBytesPerPacket ?? EXIT_HEADER_BYTES_PER_PACKET)
    if (!(this.#warnAbove > 0 && this.#warnAbove < 1)) throw new RangeError(`warnAbove must be a fraction between 0 and 1, got ${this.#warnAbove}`)
  }

  /** The reconciliation so far. */
  current (): ExitReconciliation {
    return { ...this.#state }
  }

  onReading (reading: CounterReading, nowMs: number): void {
    const exit = reading.exit
    if (exit === null) return
    const u = this.#init.userspaceBytes()
    const user = u.up + u.down
    const userDelta = this.#lastUser === undefined ? 0n : user - this.#lastUser
    this.#lastUser = user
    const payload = (bytes: bigint, packets: bigint): bigint => bytes > this.#header * packets ? bytes - this.#header * packets : 0n
    const kernel = payload(exit.txBytes, exit.txPackets) + payload(exit.rxBytes, exit.rxPackets)
    const s = this.#state
    s.kernelBytes += exit.txBytes + exit.rxBytes
    s.kernelPayloadBytes += kernel
    s.userspaceBytes += userDelta
    this.#span.kernel += kernel
    this.#span.user += userDelta
    const volume = this.#span.kernel > this.#span.user ? this.#span.kernel : this.#span.user
    const quiet = kernel + userDelta <= this.#quiet
    if (volume < this.#minSpan || (!quiet && volume < this.#maxSpan)) return
    const divergence = Number(this.#span.kernel - this.#span.user) / Number(volume)
    s.divergence = divergence
    s.spanBytes = volume
    s.judgedAt = nowMs
    s.spans++
    if (Math.abs(divergence) > this.#warnAbove) {
      s.warnings++
      this.#log.warn({
        divergence,
        kernelPayloadBytes: this.#span.kernel.toString(),
        userspaceBytes: this.#span.user.toString(),
        threshold: this.#warnAbove
      }, `the kernel counted ${(divergence * 100).toFixed(1)} % ${divergence > 0 ? 'more' : 'less'} relay-exit traffic than the sessions billed; check for other traffic under the exit's uid/gid, retransmissions on the uplink, or a metering bug`)
    }
    this.#span = { kernel: 0n, user: 0n }
  }
}
