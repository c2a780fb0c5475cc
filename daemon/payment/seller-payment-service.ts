/**
 * The seller's payment service: answers `/spareband/pay/1.0.0`, one long-lived
 * stream per buyer session.
 *
 * 1. `open`: the buyer names its channel; the service checks it against the
 *    chain (payer, payee = our payout address, token, signer, deposit, close
 *    deadline), the accepted tokens and the price, then answers `accepted`
 *    with a session id, the credit window and the base both meters continue
 *    from (the latest voucher it holds for the channel).
 * 2. While relay streams consume credit, the service sends `usage` reports;
 *    each `voucher` is checked (fast path), **persisted with a synced write,
 *    then committed and acknowledged**, which moves the credit window and
 *    wakes the paused streams.
 * 3. A buyer that leaves its credit exhausted for `paymentTimeoutMs` is cut
 *    off: the session is revoked, its streams aborted, the exposure recorded.
 *
 * The service is also the relay exit's {@link RelaySessionGate}. A `gateway`
 * session (hotspot/LAN buyer) is handed to the {@link GatewaySessionHost}, which
 * admits the buyer's device and feeds the kernel's counts into the session.
 */
import { randomBytes } from 'node:crypto'
import { isAddressEqual, type Address, type Hex } from 'viem'
import type { Connection, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Logger } from 'pino'
import { channelIdOf } from '../../protocol/contract/channels.ts'
import { paymentCodecs, PAYMENT_MAX_MESSAGE_BYTES, type PaymentBuyerMessage, type PaymentSellerMessage, type SessionOpen } from '../../protocol/messages/payment.ts'
import { PAYMENT_PROTOCOL } from '../../protocol/protocol-ids.ts'
import { SellerChannel, VoucherRejectedError } from '../../protocol/seller-channel.ts'
import { SparebandError } from '../../protocol/errors.ts'
import type { VoucherVerifier } from '../../protocol/voucher-verify.ts'
import type { OnchainChannel } from '../chain/client.ts'
import { framedStream, type FramedStream } from '../framing.ts'
import type { RelayAuthorization, RelaySessionGate } from '../relay/session-gate.ts'
import type { SellerStore } from '../state/store.ts'
import type { GatewayClient } from '../../hardware/adapter.ts'
import type { GatewaySessionHost } from '../gateway/session-host.ts'
import { SellerSession, SessionRevokedError, type SessionService } from './seller-session.ts'

/** Options of {@link sellerPaymentService}. */
export interface SellerPaymentInit {
  store: SellerStore
  /** Reads a channel from the chain (`SpareChannelsClient.getChannel`). */
  readChannel: (channelId: Hex) => Promise<OnchainChannel>
  /** Verifies vouchers for our chain and contract. */
  verifier: VoucherVerifier
  chainId: number
  contract: Address
  /** Where buyers must pay: the channel's payee. */
  payee: Address
  /** Price per GiB of each accepted token (lower-case address → base units). */
  prices: ReadonlyMap<string, bigint>
  /** Bytes a buyer may run ahead of its last persisted voucher. Default 1 MiB. */
  creditWindowBytes?: bigint
  /** Metering slack the seller asks buyers to accept. Default 256 KiB. */
  toleranceBytes?: bigint
  /** Refuse sessions/vouchers when a close deadline is nearer than this. Default 1 h. */
  minSecondsBeforeDeadline?: number
  /** Revoke a session whose credit stayed exhausted this long without a voucher. Default 10 s. */
  paymentTimeoutMs?: number
  /** Time the buyer has to send `open`. Default 10 s. */
  handshakeTimeoutMs?: number
  /** Close a session with no message either way for this long. Default 10 min. */
  idleTimeoutMs?: number
  /** Most concurrent sessions. Default 256. */
  maxSessions?: number
  /** Whether the service sells (the advertiser's spare capacity); refused with `ERR_SERVICE_UNAVAILABLE` otherwise. */
  available?: () => boolean
  /** The gateway (hotspot/LAN mode); without it `service: 'gateway'` sessions are refused. */
  gateway?: GatewaySessionHost
  logger: Logger
}

/** The libp2p components the service uses. */
export interface SellerPaymentComponents {
  registrar: {
    handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
}

/** A refusal of a session, sent to the buyer as `rejected`. */
class SessionRefusal extends SparebandError {}

/** A snapshot of one live session (for status and the dashboard). */
export interface SessionInfo {
  id: string
  peer: string
  service: SessionService
  channelId: Hex
  deliveredBytes: bigint
  paidAmount: bigint
  unpaidAmount: bigint
  maxExposure: bigint
  starved: boolean
}

const ZERO = '0x0000000000000000000000000000000000000000'
/** How long a buyer that closes its session has to pay for the usage not yet paid. */
const FINAL_VOUCHER_TIMEOUT_MS = 2000
/** Most time `stop()` gives the sessions to say goodbye. */
const STOP_GRACE_MS = 1_000

/** The seller's payment service and relay session gate. */
export class SellerPaymentService implements Startable, RelaySessionGate {
  readonly #components: SellerPaymentComponents
  readonly #init: SellerPaymentInit
  readonly #log: Logger
  readonly #sessions = new Map<string, SellerSession>()
  /** Payment streams being served, until their session is recorded. */
  readonly #serving = new Set<Promise<void>>()
  readonly #voucherOutcomes = new Map<string, number>()
  readonly #windowBytes: bigint
  readonly #toleranceBytes: bigint
  readonly #relayed = { up: 0n, down: 0n }

  constructor (components: SellerPaymentComponents, init: SellerPaymentInit) {
    this.#components = components
    this.#init = init
    this.#log = init.logger.child({ component: 'payment' })
    this.#windowBytes = init.creditWindowBytes ?? 1n << 20n
    this.#toleranceBytes = init.toleranceBytes ?? 256n * 1024n
  }

  readonly [Symbol.toStringTag] = 'spareband/seller-payment'

  async start (): Promise<void> {
    await this.#components.registrar.handle(PAYMENT_PROTOCOL, (stream, connection) => {
      const serving = this.#serve(stream, connection)
      this.#serving.add(serving)
      void serving.finally(() => { this.#serving.delete(serving) })
    }, { maxInboundStreams: 4, runOnLimitedConnection: false })
  }

  /** Ends every session while the connections are still up: each buyer is told why (`close`) and each session recorded. */
  async beforeStop (): Promise<void> {
    await this.#components.registrar.unhandle(PAYMENT_PROTOCOL)
    for (const session of this.#sessions.values()) {
      session.revoke(new SessionRevokedError('ERR_SELLER_STOPPING', 'the seller is shutting down; reconnect to another seller'))
    }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.allSettled([...this.#serving]),
      new Promise((resolve) => { timer = setTimeout(resolve, STOP_GRACE_MS) })
    ])
    clearTimeout(timer)
  }

  async stop (): Promise<void> {
    await this.beforeStop()
  }

  /** Live sessions. */
  sessions (): SessionInfo[] {
    return [...this.#sessions.values()].map((s) => ({
      id: s.id,
      peer: s.peer.toString(),
      service: s.service,
      channelId: s.channel.terms.channelId,
      deliveredBytes: s.channel.deliveredBytes,
      paidAmount: s.channel.paidAmount,
      unpaidAmount: s.channel.unpaidAmount,
      maxExposure: s.maxExposure,
      starved: s.starved
    }))
  }

  /** Payload bytes the relay exit forwarded for all sessions since start, per direction (`up` = to targets): its userspace count. */
  /** Vouchers handled since start: `accepted` (persisted and acknowledged) or the rejection code. */
  voucherOutcomes (): ReadonlyMap<string, number> {
    return this.#voucherOutcomes
  }

  #countVoucher (outcome: string): void {
    this.#voucherOutcomes.set(outcome, (this.#voucherOutcomes.get(outcome) ?? 0) + 1)
  }

  relayedBytes (): { up: bigint, down: bigint } {
    return { ...this.#relayed }
  }

  /** Feeds a chain event to live sessions of the channel. */
  onChannelEvent (channelId: Hex, event: { deposit?: bigint, closeDeadline?: number, withdrawn?: boolean }): void {
    for (const s of this.#sessions.values()) {
      if (s.channel.terms.channelId.toLowerCase() !== channelId.toLowerCase()) continue
      if (event.deposit !== undefined) s.channel.onDepositChanged(event.deposit)
      if (event.closeDeadline !== undefined) s.channel.onCloseRequested(event.closeDeadline)
      if (event.withdrawn === true) s.channel.onWithdrawn()
      s.creditChanged()
    }
  }

  async authorize (peer: PeerId, sessionId: string): Promise<RelayAuthorization> {
    const session = this.#sessions.get(sessionId)
    if (session === undefined || !session.peer.equals(peer)) {
      return { ok: false, code: 'ERR_UNKNOWN_SESSION', message: 'no payment session with this id for your peer; open one on /spareband/pay first' }
    }
    if (session.revokedReason !== undefined) {
      return { ok: false, code: 'ERR_NO_CREDIT', message: `the payment session ended: ${session.revokedReason.message}` }
    }
    if (session.service !== 'relay') {
      return { ok: false, code: 'ERR_UNKNOWN_SESSION', message: 'this payment session pays for gateway traffic; open a relay session for relay streams' }
    }
    return { ok: true, session }
  }

  async #serve (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer
    const log = this.#log.child({ peer: peer.toString() })
    const idleMs = this.#init.idleTimeoutMs ?? 600_000
    const framed = framedStream(stream, { maxMessageBytes: PAYMENT_MAX_MESSAGE_BYTES, timeoutMs: idleMs })
    const send = serialSender(framed)
    let session: SellerSession | undefined
    try {
      const first = await this.#read(framed, AbortSignal.timeout(this.#init.handshakeTimeoutMs ?? 10_000))
      if (first.type !== 'open') throw new SessionRefusal('ERR_PROTOCOL', `the first message must be "open", got "${first.type}"`)
      try {
        session = await this.#openSession(peer, first, connection)
      } catch (err) {
        if (!(err instanceof SessionRefusal)) throw err
        log.info({ code: err.code }, 'session refused: %s', err.message)
        await send({ v: 1, type: 'rejected', code: err.code, message: err.message.slice(0, 500) })
        await stream.close()
        return
      }
      await send({
        v: 1,
        type: 'accepted',
        sessionId: session.id,
        creditWindowBytes: this.#windowBytes,
        toleranceBytes: this.#toleranceBytes,
        paid: { cumulativeAmount: session.channel.paidAmount, cumulativeBytes: session.channel.lastVoucher?.cumulativeBytes ?? 0n }
      })
      log.info({ session: session.id, channel: session.channel.terms.channelId }, 'session opened')
      await this.#run(session, framed, send, log)
    } catch (err: any) {
      log.debug({ err: err?.message, code: err?.code }, 'payment stream ended with an error')
      session?.revoke(new SessionRevokedError(err?.code ?? 'ERR_STREAM', `payment stream failed: ${err?.message ?? err}`))
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      if (session !== undefined) await this.#endSession(session, log)
    }
  }

  async #run (session: SellerSession, framed: FramedStream, send: (m: PaymentSellerMessage) => Promise<void>, log: Logger): Promise<void> {
    let seq = 0
    let starvedSince: number | undefined
    const paymentTimeoutMs = this.#init.paymentTimeoutMs ?? 10_000
    const report = (): void => {
      const usage = session.channel.usageReport()
      if (usage.amountDue <= session.channel.paidAmount) return
      session.markReported()
      send({ v: 1, type: 'usage', seq: ++seq, cumulativeBytes: usage.cumulativeBytes, amountDue: usage.amountDue })
        .catch((err) => session.revoke(new SessionRevokedError('ERR_STREAM', `cannot send a usage report: ${err.message}`)))
    }
    let reportQueued = false
    session.on('report-due', () => {
      if (reportQueued) return
      reportQueued = true
      queueMicrotask(() => { reportQueued = false; report() })
    })
    // Usage the gateway counted before this session (e.g. across a restart) is asked for at once.
    session.requestReport()
    // Cut off a buyer that leaves its credit exhausted without paying.
    const watchdog = setInterval(() => {
      if (!session.starved) { starvedSince = undefined; return }
      starvedSince ??= Date.now()
      if (Date.now() - starvedSince >= paymentTimeoutMs) {
        log.warn({ session: session.id, unpaid: session.channel.unpaidAmount.toString() }, 'buyer stopped paying; session cut off')
        session.revoke(new SessionRevokedError('ERR_PAYMENT_TIMEOUT', `no voucher within ${paymentTimeoutMs} ms of running out of credit; the session was cut off`))
      }
    }, Math.max(50, Math.min(1000, paymentTimeoutMs / 4)))
    const revoked = new AbortController()
    session.onRevoked((reason) => revoked.abort(reason))
    // set when the buyer closed with usage unpaid: the seller asks for it and waits this long for the voucher
    let settleUpUntil: number | undefined
    const paidUp = (): boolean => session.channel.usageReport().amountDue <= session.channel.paidAmount
    try {
      while (!revoked.signal.aborted) {
        const signal = settleUpUntil === undefined ? revoked.signal : AbortSignal.any([revoked.signal, AbortSignal.timeout(Math.max(1, settleUpUntil - Date.now()))])
        const msg = await this.#read(framed, signal)
        if (msg.type === 'close') {
          if (settleUpUntil !== undefined) return
          settleUpUntil = Date.now() + FINAL_VOUCHER_TIMEOUT_MS
          if (paidUp()) return
          report()
          continue
        }
        if (msg.type !== 'voucher') throw new SessionRefusal('ERR_PROTOCOL', `unexpected "${msg.type}" during a session`)
        try {
          const checked = session.channel.checkVoucher({ ...msg.voucher }, Math.floor(Date.now() / 1000))
          await this.#init.store.persistVoucher(checked.voucher)
          session.channel.commitVoucher(checked)
          this.#countVoucher('accepted')
        } catch (err) {
          if (!(err instanceof VoucherRejectedError)) throw err
          this.#countVoucher(err.code)
          log.warn({ session: session.id, code: err.code }, 'voucher rejected: %s', err.message)
          await send({ v: 1, type: 'voucher-rejected', seq: msg.seq, code: err.code, message: err.message.slice(0, 500) })
          continue
        }
        starvedSince = undefined
        const nowSec = Math.floor(Date.now() / 1000)
        await send({
          v: 1,
          type: 'voucher-ack',
          seq: msg.seq,
          cumulativeAmount: session.channel.paidAmount,
          creditUntilBytes: session.channel.deliveredBytes + session.channel.creditRemainingBytes(nowSec)
        })
        session.creditChanged()
        if (settleUpUntil !== undefined && paidUp()) return
      }
    } catch (err) {
      if (revoked.signal.aborted || settleUpUntil !== undefined) return
      throw err
    } finally {
      clearInterval(watchdog)
      if (revoked.signal.aborted) {
        const reason = revoked.signal.reason as SessionRevokedError
        await send({ v: 1, type: 'close', reason: reason.message.slice(0, 500) }).catch(() => {})
      } else if (settleUpUntil !== undefined) {
        await send({ v: 1, type: 'close', reason: paidUp() ? 'session closed, all usage paid' : 'session closed with usage unpaid' }).catch(() => {})
      }
    }
  }

  async #read (framed: FramedStream, signal: AbortSignal): Promise<PaymentBuyerMessage> {
    return paymentCodecs.fromBuyer.decode(await framed.read({ signal }))
  }

  async #openSession (peer: PeerId, open: SessionOpen, connection: Connection): Promise<SellerSession> {
    const init = this.#init
    if (init.available !== undefined && !init.available()) throw new SessionRefusal('ERR_SERVICE_UNAVAILABLE', 'this seller has no spare capacity now; pick another seller')
    const gateway = open.service === 'gateway' ? init.gateway : undefined
    if (open.service !== 'relay' && gateway === undefined) throw new SessionRefusal('ERR_SERVICE_UNAVAILABLE', `service "${open.service}" is not offered by this seller`)
    let client: GatewayClient | undefined
    if (gateway !== undefined) {
      try {
        client = await gateway.clientOf(connection)
      } catch (err) {
        if (err instanceof SparebandError) throw new SessionRefusal(err.code, err.message)
        throw err
      }
    }
    if (this.#sessions.size >= (init.maxSessions ?? 256)) throw new SessionRefusal('ERR_TOO_MANY_SESSIONS', 'this seller is at its session limit; try again later or pick another seller')
    const c = open.channel
    if (c.chainId !== init.chainId || !isAddressEqual(c.contract, init.contract)) {
      throw new SessionRefusal('ERR_CHANNEL_MISMATCH', `this seller settles on chain ${init.chainId} contract ${init.contract}`)
    }
    if (!isAddressEqual(c.payee, init.payee)) throw new SessionRefusal('ERR_CHANNEL_MISMATCH', `the channel must pay ${init.payee}, this seller's payout address`)
    const price = init.prices.get(c.token.toLowerCase())
    if (price === undefined) throw new SessionRefusal('ERR_TOKEN_NOT_ACCEPTED', `token ${c.token} is not accepted; see the seller's offer`)
    if (open.pricePerGiB < price) throw new SessionRefusal('ERR_PRICE_TOO_LOW', `the price is ${price} per GiB; see the seller's offer`)
    if (channelIdOf(c).toLowerCase() !== c.channelId.toLowerCase()) throw new SessionRefusal('ERR_CHANNEL_MISMATCH', 'the channel id does not match its parameters')
    let onchain: OnchainChannel
    try {
      onchain = await init.readChannel(c.channelId)
    } catch (err: any) {
      throw new SessionRefusal('ERR_CHANNEL_UNKNOWN', `cannot read the channel from the chain now (${err?.message ?? err}); try again`)
    }
    if (isAddressEqual(onchain.payer, ZERO)) throw new SessionRefusal('ERR_CHANNEL_UNKNOWN', 'the channel does not exist on chain (yet); wait for the open transaction to be mined')
    if (!isAddressEqual(onchain.payer, c.payer) || !isAddressEqual(onchain.payee, c.payee) ||
        !isAddressEqual(onchain.token, c.token) || !isAddressEqual(onchain.signer, c.signer)) {
      throw new SessionRefusal('ERR_CHANNEL_MISMATCH', 'the channel on chain has other parameters')
    }
    if (onchain.withdrawn || onchain.closeDeadline !== 0n) throw new SessionRefusal('ERR_CHANNEL_CLOSING', 'the channel is closing; open a new one')
    for (const s of [...this.#sessions.values()]) {
      if (s.channel.terms.channelId.toLowerCase() !== c.channelId.toLowerCase()) continue
      if (!s.peer.equals(peer)) throw new SessionRefusal('ERR_CHANNEL_MISMATCH', 'this channel already has a live session; close it first')
      // the same buyer opens the channel again (it restarted, or lost its stream before we noticed): the new session replaces the old
      s.revoke(new SessionRevokedError('ERR_SESSION_REPLACED', 'the buyer opened a new session on this channel'))
      this.#sessions.delete(s.id)
    }
    const stored = await init.store.getVoucher(c.channelId)
    const known = await init.store.getChannel(c.channelId)
    const nowMs = Date.now()
    const { salt: _salt, ...ids } = c
    const terms = { ...ids, deposit: onchain.deposit, pricePerGiB: open.pricePerGiB }
    await init.store.putChannel({
      ...terms,
      closeDeadline: 0n,
      settled: onchain.settled > (known?.settled ?? 0n) ? onchain.settled : (known?.settled ?? 0n),
      openedAt: known?.openedAt ?? nowMs,
      lastSeenAt: nowMs
    })
    const channel = new SellerChannel({
      terms: { ...terms, closeDeadline: null },
      verifier: init.verifier,
      config: { creditWindowBytes: this.#windowBytes, minSecondsBeforeDeadline: init.minSecondsBeforeDeadline ?? 3600 },
      lastVoucher: stored === undefined ? undefined : { channelId: stored.channelId, cumulativeAmount: stored.cumulativeAmount, cumulativeBytes: stored.cumulativeBytes, signature: stored.signature },
      // the gateway's count survives restarts: usage forwarded but not yet paid stays owed
      deliveredBytes: gateway?.deliveredBytes(c.channelId)
    })
    const session = new SellerSession({
      id: randomBytes(16).toString('hex'),
      peer,
      channel,
      // ask for a voucher at 5/8 of the window: 3/8 stay for the bytes in flight while it is signed and persisted
      reportEveryBytes: this.#windowBytes * 5n / 8n,
      nowSec: () => Math.floor(Date.now() / 1000),
      service: open.service,
      onTake: (bytes, direction) => { this.#relayed[direction] += BigInt(bytes) }
    })
    this.#sessions.set(session.id, session)
    if (gateway !== undefined && client !== undefined) {
      try {
        await gateway.attach(session, client)
      } catch (err: any) {
        this.#sessions.delete(session.id)
        if (err instanceof SparebandError && err.code === 'ERR_GATEWAY_CLIENT_BUSY') throw new SessionRefusal(err.code, err.message)
        this.#log.error({ err: err?.message, ip: client.ip }, 'cannot admit a gateway client')
        throw new SessionRefusal('ERR_SERVICE_UNAVAILABLE', 'the gateway cannot admit your device now; try again later')
      }
    }
    return session
  }

  async #endSession (session: SellerSession, log: Logger): Promise<void> {
    this.#sessions.delete(session.id)
    session.revoke(new SessionRevokedError('ERR_SESSION_ENDED', 'the payment session ended'))
    if (session.service === 'gateway') {
      // the client's last counts belong to this session: evict before recording it
      await this.#init.gateway?.detach(session).catch((err: any) => log.error({ err: err?.message }, 'cannot evict the gateway client of an ended session'))
    }
    try {
      await this.#init.store.putSession({
        id: session.id,
        peer: session.peer.toString(),
        channelId: session.channel.terms.channelId,
        deliveredBytes: session.channel.deliveredBytes,
        unpaid: session.channel.unpaidAmount,
        maxExposure: session.maxExposure,
        state: 'ended',
        startedAt: session.startedAt,
        endedAt: Date.now()
      })
    } catch (err: any) {
      log.error({ err: err?.message }, 'cannot record the ended session')
    }
    log.info({ session: session.id, delivered: session.channel.deliveredBytes.toString(), unpaid: session.channel.unpaidAmount.toString(), reason: session.revokedReason?.code }, 'session ended')
  }
}

/** Sends messages on one framed stream one at a time, in call order. */
function serialSender (framed: FramedStream): (m: PaymentSellerMessage) => Promise<void> {
  let tail: Promise<void> = Promise.resolve()
  return (message) => {
    const bytes = paymentCodecs.fromSeller.encode(message)
    tail = tail.catch(() => {}).then(() => framed.write(bytes))
    return tail
  }
}

/** The seller's payment service as a libp2p service factory. */
export function sellerPaymentService (init: SellerPaymentInit): (components: SellerPaymentComponents) => SellerPaymentService {
  return (components) => new SellerPaymentService(components, init)
}
