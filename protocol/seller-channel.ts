import { isAddressEqual, type Address } from 'viem'
import { InvalidChannelStateError, type ChannelTerms, type UsageReport } from './channel-terms.ts'
import { SparebandError } from './errors.ts'
import { amountForBytes, assertPrice, bytesForAmount, DEFAULT_CREDIT_WINDOW_BYTES } from './pricing.ts'
import { assertVoucherFields, MAX_VOUCHER_AMOUNT, type SignedVoucher } from './voucher.ts'

/** Default margin before a close deadline under which vouchers are refused: one hour to get a settlement mined. */
export const DEFAULT_MIN_SECONDS_BEFORE_DEADLINE = 3600

/** Recovers the address that signed a voucher; `VoucherVerifier` for the channel's domain is the real one. */
export interface VoucherSignerRecovery {
  /** The signer's address, or `null` when the signature is malformed or unrecoverable. */
  recoverSigner (voucher: SignedVoucher): Address | null
}

/** How cautious the seller is with one channel. */
export interface SellerChannelConfig {
  /** Bytes a buyer may be delivered beyond what its last persisted voucher pays for. */
  creditWindowBytes: bigint
  /**
   * Vouchers (and credit) are refused once the close deadline is nearer than this, in seconds:
   * there would not be enough time to settle them. Set it above one settlement interval.
   */
  minSecondsBeforeDeadline: number
}

/** Default {@link SellerChannelConfig}: a 1 MiB window, one hour of settlement margin. */
export const DEFAULT_SELLER_CHANNEL_CONFIG: SellerChannelConfig = {
  creditWindowBytes: DEFAULT_CREDIT_WINDOW_BYTES,
  minSecondsBeforeDeadline: DEFAULT_MIN_SECONDS_BEFORE_DEADLINE
}

/** Stable codes of {@link VoucherRejectedError}, one per acceptance rule. */
export type VoucherRejectionCode =
  | 'ERR_VOUCHER_CHANNEL_WITHDRAWN'
  | 'ERR_VOUCHER_CHANNEL_CLOSING'
  | 'ERR_VOUCHER_AMOUNT_TOO_LARGE'
  | 'ERR_VOUCHER_MALFORMED'
  | 'ERR_VOUCHER_WRONG_CHANNEL'
  | 'ERR_VOUCHER_NOT_MONOTONIC'
  | 'ERR_VOUCHER_BYTES_DECREASED'
  | 'ERR_VOUCHER_ABOVE_DEPOSIT'
  | 'ERR_VOUCHER_AMOUNT_ABOVE_USAGE'
  | 'ERR_VOUCHER_BYTES_ABOVE_USAGE'
  | 'ERR_VOUCHER_BAD_SIGNATURE'
  | 'ERR_VOUCHER_WRONG_SIGNER'
  | 'ERR_VOUCHER_NOT_CHECKED'

/** Raised when the seller refuses a voucher; `code` names the rule it broke. */
export class VoucherRejectedError extends SparebandError {
  declare readonly code: VoucherRejectionCode

  constructor (code: VoucherRejectionCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

/**
 * A voucher that passed {@link SellerChannel.checkVoucher} and now has to be persisted
 * (synced write) before {@link SellerChannel.commitVoucher} grants credit for it.
 */
export interface CheckedVoucher {
  /** An immutable copy of the voucher to persist. */
  readonly voucher: Readonly<SignedVoucher>
}

/** Where a channel stands for the seller at a given time. */
export type SellerChannelStatus = 'open' | 'closing' | 'withdrawn'

/** Everything a {@link SellerChannel} starts from. */
export interface SellerChannelInit {
  terms: ChannelTerms
  /** Recovers voucher signers for this channel's EIP-712 domain (chain id and contract). */
  verifier: VoucherSignerRecovery
  config?: Partial<SellerChannelConfig>
  /** The last persisted voucher of this channel, when restarting. */
  lastVoucher?: SignedVoucher
  /** The last persisted meter reading (bytes delivered), when restarting. */
  deliveredBytes?: bigint
}

/**
 * The seller's accounting for one channel: metered usage, credit and exposure, and
 * voucher acceptance. Pure: time is passed in, persistence is the caller's job.
 *
 * Acceptance is two-phase so that no credit is granted for an unpersisted voucher:
 * `checkVoucher` validates and returns a {@link CheckedVoucher}; the caller writes it
 * with a synced write, then calls `commitVoucher`, which is the only thing that moves
 * the paid mark and therefore the credit.
 */
export class SellerChannel {
  /** The channel's terms; `deposit` and `closeDeadline` follow the chain events fed in. */
  readonly terms: ChannelTerms
  /** The effective configuration. */
  readonly config: SellerChannelConfig
  readonly #verifier: VoucherSignerRecovery
  readonly #checked = new WeakSet<CheckedVoucher>()
  #delivered: bigint
  #lastVoucher: Readonly<SignedVoucher> | null
  #withdrawn = false

  constructor (init: SellerChannelInit) {
    assertPrice(init.terms.pricePerGiB)
    this.terms = { ...init.terms }
    this.config = { ...DEFAULT_SELLER_CHANNEL_CONFIG, ...init.config }
    if (this.config.creditWindowBytes < 0n) {
      throw new InvalidChannelStateError('creditWindowBytes must not be negative; fix the seller config')
    }
    this.#verifier = init.verifier
    this.#lastVoucher = null
    if (init.lastVoucher !== undefined) {
      if (init.lastVoucher.channelId.toLowerCase() !== this.terms.channelId.toLowerCase()) {
        throw new InvalidChannelStateError(`the persisted voucher belongs to channel ${init.lastVoucher.channelId}, not ${this.terms.channelId}; the state store is inconsistent`)
      }
      assertVoucherFields(init.lastVoucher)
      this.#lastVoucher = Object.freeze({ ...init.lastVoucher })
    }
    const restored = init.deliveredBytes ?? 0n
    const vouched = this.#lastVoucher?.cumulativeBytes ?? 0n
    this.#delivered = restored > vouched ? restored : vouched
  }

  /** Bytes delivered (relayed both ways) on this channel so far. */
  get deliveredBytes (): bigint {
    return this.#delivered
  }

  /** The last voucher committed (persisted and acknowledged), or `null`. */
  get lastVoucher (): Readonly<SignedVoucher> | null {
    return this.#lastVoucher
  }

  /** Cumulative amount of the last committed voucher. */
  get paidAmount (): bigint {
    return this.#lastVoucher?.cumulativeAmount ?? 0n
  }

  /** Bytes the committed amount pays for at the channel's price (rounded down). */
  get paidBytes (): bigint {
    return bytesForAmount(this.paidAmount, this.terms.pricePerGiB)
  }

  /** Delivered bytes not yet paid for by a committed voucher: the exposure in bytes. */
  get unpaidBytes (): bigint {
    const unpaid = this.#delivered - this.paidBytes
    return unpaid > 0n ? unpaid : 0n
  }

  /** Value of delivered usage not yet covered by a committed voucher: the exposure in base units. */
  get unpaidAmount (): bigint {
    const unpaid = amountForBytes(this.#delivered, this.terms.pricePerGiB) - this.paidAmount
    return unpaid > 0n ? unpaid : 0n
  }

  /** Whether the channel is open, too close to its deadline to be paid safely, or withdrawn. */
  status (nowSec: number): SellerChannelStatus {
    if (this.#withdrawn) return 'withdrawn'
    const deadline = this.terms.closeDeadline
    if (deadline !== null && deadline - nowSec < this.config.minSecondsBeforeDeadline) return 'closing'
    return 'open'
  }

  /**
   * Bytes that may still be forwarded now: up to one credit window past what the committed
   * voucher pays for, never past what the deposit can pay for, and nothing once the channel
   * is closing or withdrawn. Zero means: pause the buyer's streams (or evict it from the gateway set).
   */
  creditRemainingBytes (nowSec: number): bigint {
    if (this.status(nowSec) !== 'open') return 0n
    const windowLimit = this.paidBytes + this.config.creditWindowBytes
    const depositLimit = bytesForAmount(this.terms.deposit, this.terms.pricePerGiB)
    const limit = windowLimit < depositLimit ? windowLimit : depositLimit
    const remaining = limit - this.#delivered
    return remaining > 0n ? remaining : 0n
  }

  /** Whether `bytes` more may be forwarded now without exceeding the credit. */
  mayForward (bytes: bigint, nowSec: number): boolean {
    return bytes <= this.creditRemainingBytes(nowSec)
  }

  /**
   * Records metered usage (bytes relayed both ways). Forward only what
   * {@link creditRemainingBytes} allows, or the exposure can exceed the window.
   */
  recordDelivered (bytes: bigint): void {
    if (bytes < 0n) throw new InvalidChannelStateError(`delivered bytes must not be negative, got ${bytes}`)
    this.#delivered += bytes
  }

  /**
   * What to ask the buyer for: all delivered bytes, priced (rounded up), capped at the
   * deposit so that a buyer whose deposit ran out can still pay all of it.
   */
  usageReport (): UsageReport {
    const due = amountForBytes(this.#delivered, this.terms.pricePerGiB)
    return {
      cumulativeBytes: this.#delivered,
      amountDue: due < this.terms.deposit ? due : this.terms.deposit
    }
  }

  /**
   * Validates a voucher against every acceptance rule and returns it as a
   * {@link CheckedVoucher} to persist; throws {@link VoucherRejectedError} otherwise.
   * Changes no state: credit only moves in {@link commitVoucher}.
   */
  checkVoucher (sv: SignedVoucher, nowSec: number): CheckedVoucher {
    const status = this.status(nowSec)
    if (status === 'withdrawn') {
      throw new VoucherRejectedError('ERR_VOUCHER_CHANNEL_WITHDRAWN', `channel ${this.terms.channelId} was withdrawn; open a new channel`)
    }
    if (status === 'closing') {
      throw new VoucherRejectedError('ERR_VOUCHER_CHANNEL_CLOSING', `channel ${this.terms.channelId} closes at ${this.terms.closeDeadline}, too soon to settle; open a new channel`)
    }
    if (typeof sv.cumulativeAmount !== 'bigint' || typeof sv.cumulativeBytes !== 'bigint' || typeof sv.channelId !== 'string' || typeof sv.signature !== 'string') {
      throw new VoucherRejectedError('ERR_VOUCHER_MALFORMED', 'voucher fields have the wrong types; send amounts and bytes as integers')
    }
    if (sv.cumulativeAmount > MAX_VOUCHER_AMOUNT) {
      throw new VoucherRejectedError('ERR_VOUCHER_AMOUNT_TOO_LARGE', `voucher amount ${sv.cumulativeAmount} exceeds 2^96-1, the most the contract can settle`)
    }
    try {
      assertVoucherFields(sv)
    } catch (err) {
      throw new VoucherRejectedError('ERR_VOUCHER_MALFORMED', `voucher is malformed: ${(err as Error).message}`, { cause: err })
    }
    if (sv.channelId.toLowerCase() !== this.terms.channelId.toLowerCase()) {
      throw new VoucherRejectedError('ERR_VOUCHER_WRONG_CHANNEL', `voucher is for channel ${sv.channelId}, this session pays through ${this.terms.channelId}`)
    }
    this.#assertAdvances(sv)
    if (sv.cumulativeAmount > this.terms.deposit) {
      throw new VoucherRejectedError('ERR_VOUCHER_ABOVE_DEPOSIT', `voucher amount ${sv.cumulativeAmount} exceeds the on-chain deposit ${this.terms.deposit}; top up the channel`)
    }
    const due = amountForBytes(this.#delivered, this.terms.pricePerGiB)
    if (sv.cumulativeAmount > due) {
      throw new VoucherRejectedError('ERR_VOUCHER_AMOUNT_ABOVE_USAGE', `voucher amount ${sv.cumulativeAmount} exceeds the value ${due} of the ${this.#delivered} bytes delivered`)
    }
    if (sv.cumulativeBytes > this.#delivered) {
      throw new VoucherRejectedError('ERR_VOUCHER_BYTES_ABOVE_USAGE', `voucher claims ${sv.cumulativeBytes} bytes, only ${this.#delivered} were delivered`)
    }
    let signer: Address | null
    try {
      signer = this.#verifier.recoverSigner(sv)
    } catch (err) {
      throw new VoucherRejectedError('ERR_VOUCHER_BAD_SIGNATURE', 'voucher signature cannot be recovered; sign with the channel signer key', { cause: err })
    }
    if (signer === null) {
      throw new VoucherRejectedError('ERR_VOUCHER_BAD_SIGNATURE', 'voucher signature cannot be recovered; sign with the channel signer key')
    }
    if (!isAddressEqual(signer, this.terms.signer)) {
      throw new VoucherRejectedError('ERR_VOUCHER_WRONG_SIGNER', `voucher is signed by ${signer}, the channel's signer is ${this.terms.signer} (or it was signed for another chain or contract)`)
    }
    const checked: CheckedVoucher = Object.freeze({
      voucher: Object.freeze({
        channelId: sv.channelId,
        cumulativeAmount: sv.cumulativeAmount,
        cumulativeBytes: sv.cumulativeBytes,
        signature: sv.signature
      })
    })
    this.#checked.add(checked)
    return checked
  }

  /**
   * Makes a checked voucher the paid mark, which grants credit. Call it only after the
   * voucher has been persisted with a synced write. Throws {@link VoucherRejectedError}
   * with `ERR_VOUCHER_NOT_CHECKED` for anything `checkVoucher` did not return (or that
   * was committed already), and `ERR_VOUCHER_NOT_MONOTONIC` when a higher voucher was
   * committed in the meantime.
   */
  commitVoucher (checked: CheckedVoucher): void {
    if (!this.#checked.has(checked)) {
      throw new VoucherRejectedError('ERR_VOUCHER_NOT_CHECKED', 'only a voucher returned by checkVoucher can be committed, and only once')
    }
    this.#checked.delete(checked)
    this.#assertAdvances(checked.voucher)
    this.#lastVoucher = checked.voucher
  }

  /** Feeds in a new on-chain deposit (after a top-up). */
  onDepositChanged (deposit: bigint): void {
    if (deposit < 0n) throw new InvalidChannelStateError(`deposit must not be negative, got ${deposit}`)
    this.terms.deposit = deposit
  }

  /** Feeds in a close request seen on chain: the payer may withdraw after `deadline` (unix seconds). */
  onCloseRequested (deadline: number): void {
    this.terms.closeDeadline = deadline
  }

  /** Feeds in a withdrawal seen on chain: no voucher of this channel can be paid any more. */
  onWithdrawn (): void {
    this.#withdrawn = true
  }

  #assertAdvances (v: Readonly<SignedVoucher>): void {
    const lastAmount = this.paidAmount
    const lastBytes = this.#lastVoucher?.cumulativeBytes ?? 0n
    if (v.cumulativeAmount <= lastAmount) {
      throw new VoucherRejectedError('ERR_VOUCHER_NOT_MONOTONIC', `voucher amount ${v.cumulativeAmount} is not above the last accepted ${lastAmount}; send a higher cumulative amount`)
    }
    if (v.cumulativeBytes < lastBytes) {
      throw new VoucherRejectedError('ERR_VOUCHER_BYTES_DECREASED', `voucher bytes ${v.cumulativeBytes} are below the last accepted ${lastBytes}; cumulative bytes never go down`)
    }
  }
}
