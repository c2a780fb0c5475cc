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
}

/** Options of a {@link SellerSession}. */
export interface SellerSessionInit {
  id: string
  peer: PeerId
  channel: SellerChannel
  /** Ask for a voucher once this many delivered bytes are unreported. */
  reportEveryBytes: bigint
  /** Clock in unix seconds. */
  nowSec: () => number
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
  readonly startedAt = Date.now()
  readonly #reportEveryBytes: bigint
  readonly #nowSec: () => number
  #reportedBytes = 0n
  #maxExposure = 0n
  #waiters = new Set<() => void>()
  #revoked: SessionRevokedError | undefined

  constructor (init: SellerSessionInit) {
    super()
    this.id = init.id
    this.peer = init.peer
    this.channel = init.channel
    this.#reportEveryBytes = init.reportEveryBytes
    this.#nowSec = init.nowSec
    this.#reportedBytes = init.channel.deliveredBytes
  }

  /** Highest value delivered but unpaid at any moment of this session (token base units). */
  get maxExposure (): bigint {
    return this.#maxExposure
  }

  /** Why the session ended, if it did. */
  get revokedReason (): SessionRevokedError | undefined {
    return this.#revoked
  }

  /** Whether streams are waiting for credit right now. */
  get starved (): boolean {
    return this.#waiters.size > 0
  }

  take (bytes: number, _direction: RelayDirection): number {
    if (this.#revoked !== undefined || bytes <= 0) return 0
    const remaining = this.channel.creditRemainingBytes(this.#nowSec())
    const granted = BigInt(bytes) <= remaining ? bytes : Number(remaining)
    if (granted > 0) {
      this.channel.recordDelivered(BigInt(granted))
      const exposure = this.channel.unpaidAmount
      if (exposure > this.#maxExposure) this.#maxExposure = exposure
    }
    if (granted < bytes || this.channel.deliveredBytes - this.#reportedBytes >= this.#reportEveryBytes) {
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
      this.emit('report-due')
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

  /** Marks usage up to the channel's current delivered bytes as reported. */
  markReported (): void {
    this.#reportedBytes = this.channel.deliveredBytes
  }

  /** Wakes every stream waiting for credit (after a voucher was persisted and committed). */
  creditChanged (): void {
    for (const wake of [...this.#waiters]) wake()
  }

  /** Ends the session: waiting streams fail and every stream of the session is aborted. */
  revoke (reason: SessionRevokedError): void {
    if (this.#revoked !== undefined) return
    this.#revoked = reason
    for (const wake of [...this.#waiters]) wake()
    this.emit('revoked', reason)
  }
}
