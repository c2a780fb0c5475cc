/**
 * The buyer's side of `/spareband/pay/1.0.0`: opens a session on a channel,
 * meters the bytes its proxies relay (or, for a `gateway` session, what its
 * interface meter counts: `daemon/gateway/gateway-buyer.ts`), and answers each usage report with a
 * voucher only when the report is within the tolerance of its own meter
 * (a report that runs ahead waits briefly for in-flight bytes to land, then
 * is refused) and within the spend cap.
 */
import { EventEmitter } from 'node:events'
import type { PeerId, Stream } from '@libp2p/interface'
import type { LocalAccount } from 'viem'
import type { Logger } from 'pino'
import { BuyerChannel, DEFAULT_METER_TOLERANCE, UsageReportRejectedError, type MeterTolerance } from '../../protocol/buyer-channel.ts'
import { SparebandError } from '../../protocol/errors.ts'
import { paymentCodecs, PAYMENT_MAX_MESSAGE_BYTES, type PaymentBuyerMessage, type PaymentSellerMessage, type SessionOpen } from '../../protocol/messages/payment.ts'
import { PAYMENT_PROTOCOL } from '../../protocol/protocol-ids.ts'
import { signVoucher, type SignedVoucher, type Voucher } from '../../protocol/voucher.ts'
import { framedStream, type FramedStream } from '../framing.ts'

/** Raised when the seller refuses the session, or the session ends abnormally. */
export class PaymentSessionError extends SparebandError {}

/** The channel a buyer session pays through, as opened on chain. */
export type SessionChannel = SessionOpen['channel']

/** Options of {@link openBuyerPaymentSession}. */
export interface BuyerPaymentInit {
  /** Opens a stream to the seller (`libp2p.dialProtocol`). */
  dialProtocol: (peer: PeerId, protocol: string, options?: { signal?: AbortSignal }) => Promise<Stream>
  seller: PeerId
  channel: SessionChannel
  /** Deposit on chain. */
  deposit: bigint
  /** The price agreed from the seller's verified offer. */
  pricePerGiB: bigint
  /** The channel's signer (session key). */
  signer: LocalAccount
  /** Most this channel may be asked to pay. */
  spendCap: bigint
  tolerance?: MeterTolerance
  /** The last voucher this buyer signed on the channel, from its own store. */
  lastSigned?: Voucher
  /** Persists a voucher before it is sent (the buyer's own record of what it signed). */
  onSigned?: (voucher: SignedVoucher) => Promise<void>
  /** How long a report ahead of the meter may wait for in-flight bytes. Default 2 s. */
  catchUpMs?: number
  /**
   * Bytes received from the seller that still wait in this buyer's buffers for a slow
   * local client (relay: the read buffers of the session's streams). They count as
   * received, and while there are any, a report ahead of the meter is not refused: the
   * missing bytes are held up by our own client, not by the seller.
   */
  receivedUnforwarded?: () => number
  /** Time for the seller to answer `open`. Default 10 s. */
  timeoutMs?: number
  /** What the session pays for. Default `relay`. */
  service?: SessionOpen['service']
  /**
   * The buyer's own meter reading for this channel when the session opens (gateway:
   * its interface meter, which keeps counting across sessions). Default: continue from
   * the voucher base the seller and this buyer agree on (relay).
   */
  meteredBytes?: bigint
  logger: Logger
}

/** Events of a {@link BuyerPaymentSession}. */
export interface BuyerPaymentEvents {
  /** A voucher was signed and sent. */
  voucher: [SignedVoucher]
  /** The seller persisted a voucher; credit runs to `creditUntilBytes`. */
  ack: [{ cumulativeAmount: bigint, creditUntilBytes: bigint }]
  /** The session ended; `error` is set unless it was closed normally. */
  closed: [PaymentSessionError | undefined]
}

/** A live buyer session. */
export class BuyerPaymentSession extends EventEmitter<BuyerPaymentEvents> {
  readonly sessionId: string
  readonly seller: PeerId
  readonly channel: BuyerChannel
  readonly creditWindowBytes: bigint
  #ackedAmount: bigint
  #wireBytes = 0
  /** Set once the buyer asked to close: a final report is still answered, the seller's close is expected. */
  #closing = false
  #closed = false
  #closeError: PaymentSessionError | undefined
  #pending: { seq: number, cumulativeBytes: bigint, amountDue: bigint, since: number } | undefined
  #signing = false
  /** Received bytes counted in the meter before they were forwarded (see {@link BuyerPaymentInit.receivedUnforwarded}). */
  #countedAhead = 0n
  readonly #framed: FramedStream
  readonly #stream: Stream
  readonly #init: BuyerPaymentInit
  readonly #log: Logger

  constructor (stream: Stream, framed: FramedStream, accepted: Extract<PaymentSellerMessage, { type: 'accepted' }>, init: BuyerPaymentInit, channel: BuyerChannel) {
    super()
    this.#stream = stream
    this.#framed = framed
    this.#init = init
    this.sessionId = accepted.sessionId
    this.seller = init.seller
    this.channel = channel
    this.creditWindowBytes = accepted.creditWindowBytes
    this.#ackedAmount = accepted.paid.cumulativeAmount
    this.#log = init.logger.child({ component: 'buyer-payment', seller: init.seller.toString(), session: accepted.sessionId })
  }

  /** Cumulative amount the seller has acknowledged (persisted). */
  get paidAmount (): bigint {
    return this.#ackedAmount
  }

  /** Payment-protocol bytes this session moved both ways (messages and their length prefixes), after the handshake. */
  get wireBytes (): number {
    return this.#wireBytes
  }

  /** Whether the session has ended. */
  get closed (): boolean {
    return this.#closed
  }

  /** Why the session ended abnormally, if it did. */
  get error (): PaymentSessionError | undefined {
    return this.#closeError
  }

  /**
   * Adds relayed bytes to the buyer's meter: `up` sent to the seller, `down`
   * received from it and forwarded to the client (bytes already counted while
   * they waited in a buffer are not counted again).
   */
  meter (bytes: number, direction: 'up' | 'down' = 'up'): void {
    let n = BigInt(bytes)
    if (direction === 'down' && this.#countedAhead > 0n) {
      const counted = n < this.#countedAhead ? n : this.#countedAhead
      this.#countedAhead -= counted
      n -= counted
    }
    if (n > 0n) this.channel.recordUsage(n)
    if (this.#pending !== undefined) this.#answerPending()
  }

  /** Counts received bytes still waiting in our buffers; returns how many there are. */
  #countBuffered (): bigint {
    const buffered = BigInt(this.#init.receivedUnforwarded?.() ?? 0)
    if (buffered > this.#countedAhead) this.channel.recordUsage(buffered - this.#countedAhead)
    this.#countedAhead = buffered
    return buffered
  }

  /** Ends the session politely. */
  /**
   * Ends the session politely: the seller may ask once more for usage not yet paid,
   * which is answered under the usual rules (within the meter and the cap) before the
   * session ends; waits for that at most `settleUpMs` (default 3 s).
   */
  async close (settleUpMs = 3000): Promise<void> {
    if (this.#closed) return
    this.#closing = true
    const ended = new Promise<void>((resolve) => { this.once('closed', () => { resolve() }) })
    await this.#send({ v: 1, type: 'close', reason: 'buyer closed the session' }).catch(() => {})
    const timer = setTimeout(() => { this.#finish(undefined) }, settleUpMs)
    await ended
    clearTimeout(timer)
    await this.#stream.close().catch(() => {})
  }

  /** Reads seller messages until the stream ends. */
  async run (): Promise<void> {
    const catchUpMs = this.#init.catchUpMs ?? 2000
    const timer = setInterval(() => {
      const p = this.#pending
      if (p !== undefined && !this.#signing && Date.now() - p.since > catchUpMs) this.#answerPending(true)
    }, Math.max(20, Math.min(250, catchUpMs / 4)))
    try {
      while (!this.#closed) {
        const bytes = await this.#framed.read()
        this.#wireBytes += framedSize(bytes.byteLength)
        const msg = paymentCodecs.fromSeller.decode(bytes)
        switch (msg.type) {
          case 'usage':
            this.#pending = { seq: msg.seq, cumulativeBytes: msg.cumulativeBytes, amountDue: msg.amountDue, since: this.#pending?.since ?? Date.now() }
            this.#answerPending()
            break
          case 'voucher-ack':
            if (msg.cumulativeAmount > this.#ackedAmount) this.#ackedAmount = msg.cumulativeAmount
            this.emit('ack', { cumulativeAmount: msg.cumulativeAmount, creditUntilBytes: msg.creditUntilBytes })
            break
          case 'voucher-rejected':
            throw new PaymentSessionError(msg.code, `the seller rejected voucher ${msg.seq}: ${msg.message}`)
          case 'close':
            this.#finish(this.#closing ? undefined : new PaymentSessionError('ERR_SESSION_CLOSED_BY_SELLER', `the seller closed the session: ${msg.reason}`))
            return
          default:
            throw new PaymentSessionError('ERR_PROTOCOL', `unexpected "${msg.type}" message during a session`)
        }
      }
    } catch (err: any) {
      if (this.#closing) this.#finish(undefined)
      else if (!this.#closed) {
        const e = err instanceof PaymentSessionError ? err : new PaymentSessionError(err?.code ?? 'ERR_STREAM', `payment stream failed: ${err?.message ?? err}`)
        this.#finish(e)
        this.#stream.abort(e)
      }
    } finally {
      clearInterval(timer)
    }
  }

  #answerPending (deadlinePassed = false): void {
    const p = this.#pending
    if (p === undefined || this.#signing || this.#closed) return
    let voucher: Voucher
    const buffered = this.#countBuffered()
    try {
      voucher = this.channel.nextVoucher({ cumulativeBytes: p.cumulativeBytes, amountDue: p.amountDue })
    } catch (err) {
      if (!(err instanceof UsageReportRejectedError)) throw err
      // wait for in-flight bytes; past the deadline too while our own client holds data up (the rest cannot arrive before it reads)
      if (err.code === 'ERR_USAGE_ABOVE_METER' && (!deadlinePassed || buffered > 0n)) return
      if (err.code === 'ERR_NOT_MONOTONIC') { this.#pending = undefined; return }
      this.#log.warn({ code: err.code }, 'refusing to pay: %s', err.message)
      this.#finish(new PaymentSessionError(err.code, err.message))
      void this.#send({ v: 1, type: 'close', reason: err.message.slice(0, 500) }).catch(() => {}).then(() => this.#stream.close().catch(() => {}))
      return
    }
    this.#pending = undefined
    this.#signing = true
    const domain = { chainId: this.#init.channel.chainId, verifyingContract: this.#init.channel.contract }
    void (async () => {
      const sv = await signVoucher(this.#init.signer, domain, voucher)
      await this.#init.onSigned?.(sv)
      this.channel.commitSigned(sv)
      await this.#send({ v: 1, type: 'voucher', seq: p.seq, voucher: sv })
      this.emit('voucher', sv)
    })().catch((err: any) => {
      this.#finish(new PaymentSessionError('ERR_STREAM', `cannot send a voucher: ${err?.message ?? err}`))
    }).finally(() => {
      this.#signing = false
      if (this.#pending !== undefined) this.#answerPending()
    })
  }

  #sendTail: Promise<void> = Promise.resolve()
  #send (message: PaymentBuyerMessage): Promise<void> {
    const bytes = paymentCodecs.fromBuyer.encode(message)
    this.#wireBytes += framedSize(bytes.byteLength)
    this.#sendTail = this.#sendTail.catch(() => {}).then(() => this.#framed.write(bytes))
    return this.#sendTail
  }

  #finish (error: PaymentSessionError | undefined): void {
    if (this.#closed) return
    this.#closed = true
    this.#closeError = error
    this.emit('closed', error)
  }
}

/**
 * Opens a payment session with `init.seller`. Resolves once the seller accepted
 * (and starts reading its messages); throws {@link PaymentSessionError} with the
 * seller's code when it refuses.
 */
export async function openBuyerPaymentSession (init: BuyerPaymentInit): Promise<BuyerPaymentSession> {
  // the handshake's time limit only: libp2p ties a dial's signal to the stream, so it must not fire later
  const handshake = new AbortController()
  const timer = setTimeout(() => { handshake.abort(new PaymentSessionError('ERR_SESSION_TIMEOUT', 'the seller did not accept the session in time; try another seller')) }, init.timeoutMs ?? 10_000)
  const signal = handshake.signal
  let stream: Stream
  try {
    stream = await init.dialProtocol(init.seller, PAYMENT_PROTOCOL, { signal })
  } catch (err) {
    clearTimeout(timer)
    throw err
  }
  const framed = framedStream(stream, { maxMessageBytes: PAYMENT_MAX_MESSAGE_BYTES, timeoutMs: 24 * 3600_000 })
  try {
    await framed.write(paymentCodecs.fromBuyer.encode({ v: 1, type: 'open', channel: init.channel, service: init.service ?? 'relay', pricePerGiB: init.pricePerGiB }), { signal })
    const answer = paymentCodecs.fromSeller.decode(await framed.read({ signal }))
    if (answer.type === 'rejected') throw new PaymentSessionError(answer.code, `the seller refused the session: ${answer.message}`)
    if (answer.type !== 'accepted') throw new PaymentSessionError('ERR_PROTOCOL', `expected "accepted", the seller sent "${answer.type}"`)
    const own = init.lastSigned
    if (answer.paid.cumulativeAmount > (own?.cumulativeAmount ?? 0n)) {
      throw new PaymentSessionError('ERR_SELLER_OVERCLAIMS', `the seller claims ${answer.paid.cumulativeAmount} was paid on the channel, this buyer signed only ${own?.cumulativeAmount ?? 0n}`)
    }
    const base = own ?? { channelId: init.channel.channelId, cumulativeAmount: 0n, cumulativeBytes: 0n }
    const channel = new BuyerChannel({
      terms: { channelId: init.channel.channelId, pricePerGiB: init.pricePerGiB, deposit: init.deposit },
      spendCap: init.spendCap,
      tolerance: init.tolerance ?? DEFAULT_METER_TOLERANCE,
      lastSigned: own,
      // Both meters continue from the seller's base: bytes it already holds a voucher for.
      meteredBytes: init.meteredBytes ?? (answer.paid.cumulativeBytes > base.cumulativeBytes ? base.cumulativeBytes : answer.paid.cumulativeBytes)
    })
    clearTimeout(timer)
    const session = new BuyerPaymentSession(stream, framed, answer, init, channel)
    void session.run()
    return session
  } catch (err) {
    clearTimeout(timer)
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  }
}

/** Bytes of a message on the wire: its unsigned-varint length prefix plus the message. */
function framedSize (length: number): number {
  return length + (length < 0x80 ? 1 : length < 0x4000 ? 2 : 3)
}
