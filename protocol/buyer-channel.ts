import { InvalidChannelStateError, type ChannelTerms, type UsageReport } from './channel-terms.ts'
import { SparebandError } from './errors.ts'
import { amountForBytes, assertPrice } from './pricing.ts'
import type { SignedVoucher, Voucher } from './voucher.ts'

/**
 * How far a seller's usage report may run ahead of the buyer's own meter:
 * `max(bytes, meter × basisPoints / 10 000)`.
 */
export interface MeterTolerance {
  /** Absolute slack in bytes (covers reports racing in-flight data on a small meter). */
  bytes: bigint
  /** Relative slack in basis points of the buyer's meter (100 = 1 %). */
  basisPoints: bigint
}

/** Default tolerance: max(64 KiB, 1 %). */
export const DEFAULT_METER_TOLERANCE: MeterTolerance = { bytes: 64n * 1024n, basisPoints: 100n }

/** Bytes a report may exceed a meter reading by under `tolerance`. */
export function toleranceBytes (meterBytes: bigint, tolerance: MeterTolerance): bigint {
  const relative = meterBytes * tolerance.basisPoints / 10_000n
  return relative > tolerance.bytes ? relative : tolerance.bytes
}

/** Stable codes of {@link UsageReportRejectedError}. */
export type UsageReportRejectionCode =
  | 'ERR_USAGE_ABOVE_METER'
  | 'ERR_PRICE_MISMATCH'
  | 'ERR_NOT_MONOTONIC'
  | 'ERR_SPEND_CAP'
  | 'ERR_DEPOSIT_EXHAUSTED'
  | 'ERR_VOUCHER_NOT_PROPOSED'

/** Raised when the buyer refuses to sign for a seller's usage report; `code` names the rule. */
export class UsageReportRejectedError extends SparebandError {
  declare readonly code: UsageReportRejectionCode

  constructor (code: UsageReportRejectionCode, message: string) {
    super(code, message)
  }
}

/** The channel terms the buyer's accounting depends on. */
export type BuyerChannelTerms = Pick<ChannelTerms, 'channelId' | 'pricePerGiB' | 'deposit'>

/** Everything a {@link BuyerChannel} starts from. */
export interface BuyerChannelInit {
  /** The channel, with the price the buyer agreed to in the seller's offer. */
  terms: BuyerChannelTerms
  /** Most this channel may ever be asked to pay, in token base units. */
  spendCap: bigint
  tolerance?: MeterTolerance
  /** The last voucher the buyer signed, when restarting. */
  lastSigned?: Voucher
  /** The buyer's persisted meter reading, when restarting. */
  meteredBytes?: bigint
}

/**
 * The buyer's accounting for one channel: its own meter and the checks it runs before
 * signing a voucher for a seller's usage report. Pure.
 *
 * What the meter counts: every payload byte relayed for this channel in both directions
 * (sent to and received from the targets of the proxied connections, or forwarded
 * through the seller's gateway), the same bytes the seller meters; not transport
 * framing or encryption overhead.
 */
export class BuyerChannel {
  /** The channel terms; `deposit` follows the chain events fed in. */
  readonly terms: BuyerChannelTerms
  /** Most this channel may be asked to pay. */
  readonly spendCap: bigint
  /** How far a report may exceed the meter. */
  readonly tolerance: MeterTolerance
  #metered: bigint
  #lastSigned: Readonly<Voucher> | null
  #proposed: Readonly<Voucher> | null = null

  constructor (init: BuyerChannelInit) {
    assertPrice(init.terms.pricePerGiB)
    this.terms = { ...init.terms }
    this.spendCap = init.spendCap
    this.tolerance = { ...(init.tolerance ?? DEFAULT_METER_TOLERANCE) }
    this.#lastSigned = init.lastSigned === undefined ? null : Object.freeze({ ...init.lastSigned })
    this.#metered = init.meteredBytes ?? 0n
  }

  /** The buyer's own meter: bytes relayed both ways on this channel. */
  get meteredBytes (): bigint {
    return this.#metered
  }

  /** The last voucher signed and committed, or `null`. */
  get lastSigned (): Readonly<Voucher> | null {
    return this.#lastSigned
  }

  /** Cumulative amount signed so far. */
  get signedAmount (): bigint {
    return this.#lastSigned?.cumulativeAmount ?? 0n
  }

  /** Adds relayed bytes (either direction) to the buyer's meter. */
  recordUsage (bytes: bigint): void {
    if (bytes < 0n) throw new InvalidChannelStateError(`usage must not be negative, got ${bytes}`)
    this.#metered += bytes
  }

  /** Feeds in a new on-chain deposit (after a top-up). */
  onDepositChanged (deposit: bigint): void {
    if (deposit < 0n) throw new InvalidChannelStateError(`deposit must not be negative, got ${deposit}`)
    this.terms.deposit = deposit
  }

  /**
   * The voucher to sign for a seller's usage report, or throws
   * {@link UsageReportRejectedError} when the report claims more bytes than the meter
   * plus tolerance, charges above the agreed price, does not advance, or would exceed
   * the spend cap or the deposit. Remembered as the proposal {@link commitSigned} expects.
   */
  nextVoucher (report: UsageReport): Voucher {
    const allowedBytes = this.#metered + toleranceBytes(this.#metered, this.tolerance)
    if (report.cumulativeBytes > allowedBytes) {
      throw new UsageReportRejectedError('ERR_USAGE_ABOVE_METER', `seller reports ${report.cumulativeBytes} bytes, our meter shows ${this.#metered} (at most ${allowedBytes} with tolerance); not signing`)
    }
    const priced = amountForBytes(report.cumulativeBytes, this.terms.pricePerGiB)
    if (report.amountDue > priced) {
      throw new UsageReportRejectedError('ERR_PRICE_MISMATCH', `seller asks ${report.amountDue} for ${report.cumulativeBytes} bytes, the agreed price makes it ${priced}; not signing`)
    }
    const last = this.#lastSigned
    if (report.amountDue <= this.signedAmount || report.cumulativeBytes < (last?.cumulativeBytes ?? 0n)) {
      throw new UsageReportRejectedError('ERR_NOT_MONOTONIC', `report (${report.amountDue} for ${report.cumulativeBytes} bytes) does not advance past the last signed voucher (${this.signedAmount} for ${last?.cumulativeBytes ?? 0n} bytes); nothing new to sign`)
    }
    if (report.amountDue > this.spendCap) {
      throw new UsageReportRejectedError('ERR_SPEND_CAP', `paying ${report.amountDue} would exceed the spend cap ${this.spendCap}; raise the cap or stop using this seller`)
    }
    if (report.amountDue > this.terms.deposit) {
      throw new UsageReportRejectedError('ERR_DEPOSIT_EXHAUSTED', `paying ${report.amountDue} would exceed the deposit ${this.terms.deposit}; top up the channel`)
    }
    const voucher = Object.freeze({
      channelId: this.terms.channelId,
      cumulativeAmount: report.amountDue,
      cumulativeBytes: report.cumulativeBytes
    })
    this.#proposed = voucher
    return { ...voucher }
  }

  /**
   * Records the signed form of the last proposal as the latest voucher. Throws
   * `ERR_VOUCHER_NOT_PROPOSED` when it differs from what {@link nextVoucher} returned.
   */
  commitSigned (sv: SignedVoucher): void {
    const proposed = this.#proposed
    if (proposed === null || sv.channelId !== proposed.channelId ||
        sv.cumulativeAmount !== proposed.cumulativeAmount || sv.cumulativeBytes !== proposed.cumulativeBytes) {
      throw new UsageReportRejectedError('ERR_VOUCHER_NOT_PROPOSED', 'only the voucher last returned by nextVoucher can be committed')
    }
    this.#proposed = null
    this.#lastSigned = Object.freeze({
      channelId: sv.channelId,
      cumulativeAmount: sv.cumulativeAmount,
      cumulativeBytes: sv.cumulativeBytes
    })
  }
}
