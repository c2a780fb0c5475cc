import { EventEmitter } from 'node:events'
import type { PeerId } from '@libp2p/interface'
import type { SellerChannel } from '../../protocol/seller-channel.ts'
import { SparebandError } from '../../protocol/errors.ts'
import type { RelayDirection, RelaySession } from '../relay/session-gate.ts'

/** Raised to a session's streams when the session ends; `code` says why. */
export class SessionRevokedError extends SparebandError {
  constructor (code: string, message: string) {
    super(code, message)
  }
}

/** Events of a {@link SellerSession}. */
export interface SellerSessionEvents {
  /** Unreported usage crossed the report threshold, or credit ran out: send a usage report. */
  'report-due': []
  /** The session ended; listeners must not expect more events. */
  revoked: [SessionRevokedError]
  /** A persisted voucher (or a chain event) may have granted credit. */
  credit: []
}

/** What a session pays for: relay streams, or traffic the kernel forwards for a LAN client. */
export type SessionService = 'relay' | 'gateway'

/** Options of a {@link SellerSession}. */
export interface SellerSessionInit {
  id: string
  peer: PeerId
  channel: SellerChannel
  /** Ask for a voucher once this many delivered bytes are unreported. */
  reportEveryBytes: bigint
  /** Clock in unix seconds. */
  nowSec: () => number
  /** Default `relay`. */
  service?: SessionService
  /** Called with every chunk of relay credit granted (the relay exit's userspace byte count). */
  onTake?: (bytes: number, direction: RelayDirection) => void
}

/**
 * One buyer's payment session as the relay exit and the payment stream share it:
 * credit is taken from the channel's accounting chunk by chunk, streams wait while
 * the window is used up, and every waiter wakes when a persisted voucher moves it.
 */
export class SellerSession extends EventEmitter<SellerSessionEvents> implements RelaySession {
  readonly id: string
  readonly peer: PeerId
  readonly channel: SellerChannel
  readonly service: SessionService
  readonly startedAt = Date.now()
  readonly #reportEveryBytes: bigint
  readonly #nowSec: () => number
  readonly #onTake: ((bytes: number, direction: RelayDirection) => void) | undefined
  #reportedBytes = 0n
  #maxExposure = 0n
  #waiters = new Set<() => void>()
  #held = false
  #revoked: SessionRevokedError | undefined

  constructor (init: SellerSessionInit) {
    super()
    this.id = init.id
    this.peer = init.peer
    this.channel = init.channel
    this.#reportEveryBytes = init.reportEveryBytes
    this.#nowSec = init.nowSec
    this.service = init.service ?? 'relay'
    this.#onTake = init.onTake
    // Usage restored from before a restart (gateway) is unreported until a report asks for it.
    this.#reportedBytes = init.channel.lastVoucher?.cumulativeBytes ?? 0n
  }

  /** Highest value delivered but unpaid at any moment of this session (token base units). */
  get maxExposure (): bigint {
    return this.#maxExposure
  }

  /** Why the session ended, if it did. */
  get revokedReason (): SessionRevokedError | undefined {
    return this.#revoked
  }

  /** Whether usage waits for credit right now: relay streams paused, or the gateway client evicted. */
  get starved (): boolean {
    return this.#waiters.size > 0 || this.#held
  }

  take (bytes: number, _direction: RelayDirection): number {
    if (this.#revoked !== undefined || bytes <= 0) return 0
    const remaining = this.channel.creditRemainingBytes(this.#nowSec())
    const granted = BigInt(bytes) <= remaining ? bytes : Number(remaining)
    if (granted > 0) {
      this.#record(BigInt(granted))
      this.#onTake?.(granted, _direction)
    }
    const unreported = this.channel.deliveredBytes - this.#reportedBytes
    if (unreported >= this.#reportEveryBytes || (granted < bytes && unreported > 0n && !this.#reportOutstanding())) {
      this.emit('report-due')
    }
    return granted
  }

  waitForCredit (signal: AbortSignal): Promise<void> {
    if (this.#revoked !== undefined) return Promise.reject(this.#revoked)
    if (this.channel.creditRemainingBytes(this.#nowSec()) > 0n) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.#waiters.delete(wake)
        signal.removeEventListener('abort', onAbort)
      }
      const wake = (): void => {
        done()
        if (this.#revoked !== undefined) reject(this.#revoked)
        else resolve()
      }
      const onAbort = (): void => {
        done()
        reject(signal.reason)
      }
      if (signal.aborted) {
        reject(signal.reason)
        return
      }
      this.#waiters.add(wake)
      signal.addEventListener('abort', onAbort, { once: true })
      if (!this.#reportOutstanding()) this.emit('report-due')
    })
  }

  onRevoked (listener: (reason: Error) => void): () => void {
    if (this.#revoked !== undefined) {
      queueMicrotask(() => listener(this.#revoked as Error))
      return () => {}
    }
    this.once('revoked', listener)
    return () => { this.off('revoked', listener) }
  }

  /**
   * Whether the last usage report still waits for its voucher. While it does, running
   * out of credit asks for no new report: one more would only split the same payment
   * into smaller vouchers (more payment bytes per relayed byte).
   */
  #reportOutstanding (): boolean {
    return this.#reportedBytes > (this.channel.lastVoucher?.cumulativeBytes ?? 0n)
  }

  /**
   * Records bytes the kernel already forwarded for this session (gateway mode: they
   * were counted, not granted beforehand) and asks for a report every report interval,
   * or when the credit is used up and no report is outstanding.
   */
  recordForwarded (bytes: bigint): void {
    if (bytes > 0n) this.#record(bytes)
    const unreported = this.channel.deliveredBytes - this.#reportedBytes
    if (unreported >= this.#reportEveryBytes ||
        (unreported > 0n && !this.#reportOutstanding() && this.channel.creditRemainingBytes(this.#nowSec()) === 0n)) {
      this.emit('report-due')
    }
  }

  /** Asks for a usage report if usage is unreported and no report is outstanding (e.g. the gateway client went idle). */
  requestReport (): void {
    if (this.channel.deliveredBytes > this.#reportedBytes && !this.#reportOutstanding()) this.emit('report-due')
  }

  /** Gateway mode: the client is held out of the gateway set until credit returns (counts as starved). */
  setHeld (held: boolean): void {
    this.#held = held
  }

  #record (bytes: bigint): void {
    this.channel.recordDelivered(bytes)
    const exposure = this.channel.unpaidAmount
    if (exposure > this.#maxExposure) this.#maxExposure = exposure
  }

  /** Marks usage up to the channel's current delivered bytes as reported. */
  markReported (): void {
    this.#reportedBytes = this.channel.deliveredBytes
  }

  /** Wakes every stream waiting for credit (after a voucher was persisted and committed). */
  creditChanged (): void {
    for (const wake of [...this.#waiters]) wake()
    this.emit('credit')
  }

  /** Ends the session: waiting streams fail and every stream of the session is aborted. */
  revoke (reason: SessionRevokedError): void {
    if (this.#revoked !== undefined) return
    this.#revoked = reason
    for (const wake of [...this.#waiters]) wake()
    this.emit('revoked', reason)
  }
}
