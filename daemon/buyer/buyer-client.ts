/**
 * The buyer (`spareband connect`): finds sellers through the DHT, opens (or
 * reuses) a channel on chain to the best one, opens a payment session, and
 * serves local SOCKS5 and HTTP CONNECT proxies whose traffic is relayed
 * through that seller and metered for vouchers. When the seller dies or
 * refuses, the next candidate takes over.
 */
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { toHex, type Address, type LocalAccount } from 'viem'
import type { Logger } from 'pino'
import type { MeterTolerance } from '../../protocol/buyer-channel.ts'
import { SparebandError } from '../../protocol/errors.ts'
import type { SpareChannelsClient } from '../chain/client.ts'
import { openBuyerPaymentSession, type BuyerPaymentSession, type PaymentSessionError, type SessionChannel } from '../payment/buyer-payment-session.ts'
import type { BuyerStore } from './buyer-store.ts'
import type { SellerCandidate, SellerDiscovery } from './discovery.ts'
import { httpConnectProxy } from './http-connect.ts'
import type { LocalProxy, ProxyDirection } from './local-proxy.ts'
import { failureKind, libp2pRelayDialer, type RelayDialerNode, type RelayTarget } from './relay-dialer.ts'
import { socks5Proxy } from './socks5.ts'
import type { PeerId, Stream } from '@libp2p/interface'

/** Raised when no seller could be used. */
export class NoSellerError extends SparebandError {
  constructor (message: string) {
    super('ERR_NO_SELLER', message)
  }
}

/** Raised to new proxied connections once the buyer's spend cap is used up. */
export class SpendCapReachedError extends SparebandError {
  constructor (spent: bigint, cap: bigint) {
    super('ERR_SPEND_CAP_REACHED', `this buyer has spent ${spent} of its spend cap ${cap}; restart it with a higher --spend-cap to go on`)
  }
}

/** Raised when the buyer cannot find or open a channel on chain: a problem of the buyer's chain access or funds, not of the seller. */
export class ChannelOpenError extends SparebandError {
  constructor (payee: Address, funder: Address | undefined, cause: unknown) {
    super('ERR_CHANNEL_OPEN', `cannot open a payment channel to ${payee}: ${(cause as Error)?.message ?? String(cause)}; check the RPC endpoint and that the hot key ${funder ?? '(none configured)'} holds the deposit plus gas`, { cause })
  }
}

/** Raised when a local proxy cannot listen on its address. */
export class ProxyListenError extends SparebandError {
  constructor (proxy: string, cause: NodeJS.ErrnoException & { address?: string, port?: number }) {
    super('ERR_PROXY_LISTEN', `the ${proxy} proxy cannot listen on ${cause.address ?? '?'}:${cause.port ?? '?'} (${cause.code}); stop what uses it or pick another address (port 0 picks a free one)`, { cause })
  }
}

/** Default time a seller that failed is left out of new searches. */
export const DEFAULT_RETRY_FAILED_AFTER_MS = 60_000

/** Options of {@link BuyerClient}. */
export interface BuyerClientInit {
  node: RelayDialerNode & { dialProtocol: (peer: PeerId, protocol: string, options?: { signal?: AbortSignal }) => Promise<Stream> }
  discovery: SellerDiscovery
  /** Chain client with the funding (hot) account. */
  chain: SpareChannelsClient
  /** The channel signer (session key), distinct from the funding account. */
  sessionKey: LocalAccount
  store: BuyerStore
  token: Address
  /** Deposit of a newly opened channel. */
  deposit: bigint
  /** Most this client signs for in total (new vouchers over every seller and channel, from `start()` to `stop()`). */
  spendCap: bigint
  tolerance?: MeterTolerance
  region?: string
  socks?: { host: string, port: number }
  http?: { host: string, port: number }
  /** Time a seller that failed is left out of new searches. Default {@link DEFAULT_RETRY_FAILED_AFTER_MS}. */
  retryFailedAfterMs?: number
  logger: Logger
}

/** What the client is doing. */
export type BuyerState = 'starting' | 'relaying' | 'switching' | 'no-seller' | 'spend-cap' | 'stopped'

/** Live figures for the terminal and `--json`. */
export interface BuyerProgress {
  state: BuyerState
  seller: string | undefined
  sessionId: string | undefined
  /** The current seller's price per GiB in {@link BuyerProgress.token}. */
  pricePerGiB: bigint | undefined
  token: Address
  /** Bytes relayed both ways since `start()`, as the buyer metered them. */
  bytes: bigint
  /** Amount signed since `start()`, over every seller. */
  spent: bigint
  spendCap: bigint
  sellersTried: number
  failovers: number
}

/** Events of {@link BuyerClient}. */
export interface BuyerClientEvents {
  /** A seller was picked and its session opened. */
  seller: [SellerCandidate]
  /** The current seller failed; the next one is being looked for. */
  failover: [{ from: string, reason: string }]
  /** No usable seller was found after a failover; the next proxied connection looks again. */
  'no-seller': [NoSellerError]
  /** The spend cap is used up: the session was closed and new connections are refused. */
  'spend-cap': [{ spent: bigint, cap: bigint }]
}

/** The session in use and the channel figures it started from. */
interface Current {
  candidate: SellerCandidate
  session: BuyerPaymentSession
  /** The channel's meter and signed amount when the session opened (earlier sessions' share). */
  baseBytes: bigint
  baseAmount: bigint
  /** The session's open relay streams. */
  streams: Set<Stream>
}

/** The buyer's side of the market, with local proxies. */
export class BuyerClient extends EventEmitter<BuyerClientEvents> {
  readonly #init: BuyerClientInit
  readonly #log: Logger
  #candidates: SellerCandidate[] = []
  /** Sellers that failed, by peer id, with when. */
  readonly #failedAt = new Map<string, number>()
  readonly #tried = new Set<string>()
  #current: Current | undefined
  #switching: Promise<void> | undefined
  #socks: LocalProxy | undefined
  #http: LocalProxy | undefined
  #bytesBefore = 0n
  #spentBefore = 0n
  #failovers = 0
  #state: BuyerState = 'starting'
  readonly #stopping = new AbortController()

  constructor (init: BuyerClientInit) {
    super()
    this.#init = init
    this.#log = init.logger.child({ component: 'buyer' })
  }

  /** The SOCKS5 proxy's address, once started. */
  get socksAddress (): { host: string, port: number } | undefined {
    return this.#socks?.address()
  }

  /** The HTTP CONNECT proxy's address, once started. */
  get httpAddress (): { host: string, port: number } | undefined {
    return this.#http?.address()
  }

  /** The seller in use and its payment session, if any. */
  get current (): { candidate: SellerCandidate, session: BuyerPaymentSession } | undefined {
    const cur = this.#current
    return cur === undefined ? undefined : { candidate: cur.candidate, session: cur.session }
  }

  /** Bytes relayed, amount signed, seller in use. */
  progress (): BuyerProgress {
    const cur = this.#current
    return {
      state: this.#state,
      seller: cur?.candidate.peerId.toString(),
      sessionId: cur?.session.sessionId,
      pricePerGiB: cur?.candidate.pricePerGiB,
      token: this.#init.token,
      bytes: this.#bytesBefore + (cur === undefined ? 0n : cur.session.channel.meteredBytes - cur.baseBytes),
      spent: this.#spent(),
      spendCap: this.#init.spendCap,
      sellersTried: this.#tried.size,
      failovers: this.#failovers
    }
  }

  /**
   * Starts the proxies, then finds a seller and opens its session (connections
   * that arrive meanwhile wait for it). Throws {@link ProxyListenError} when a
   * proxy address is taken, {@link NoSellerError} when no seller can be used.
   */
  async start (): Promise<void> {
    const dialer = { dial: async (target: RelayTarget, options?: { signal?: AbortSignal }) => await this.#dial(target, options) }
    // bytes count towards the session in use; the streams of a seller left behind end with its session
    // (closed by us, or by the seller), so at most the bytes in flight at a switch reach the next meter
    const onForward = (bytes: number, direction: ProxyDirection): void => { this.#current?.session.meter(bytes, direction) }
    const common = { dialer, onForward, logger: this.#init.logger }
    this.#socks = socks5Proxy({ ...common, host: this.#init.socks?.host ?? '127.0.0.1', port: this.#init.socks?.port ?? 0 })
    this.#http = httpConnectProxy({ ...common, host: this.#init.http?.host ?? '127.0.0.1', port: this.#init.http?.port ?? 0 })
    try {
      for (const proxy of [this.#socks, this.#http]) {
        await proxy.start().catch((err: NodeJS.ErrnoException) => {
          throw err.code === 'EADDRINUSE' || err.code === 'EADDRNOTAVAIL' || err.code === 'EACCES' ? new ProxyListenError(proxy === this.#socks ? 'SOCKS5' : 'HTTP CONNECT', err) : err
        })
      }
      let failure: unknown
      this.#switching = this.#useNextSeller().catch((err: unknown) => { failure = err }).finally(() => { this.#switching = undefined })
      await this.#switching
      if (failure !== undefined) throw failure
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  /** Stops the proxies and closes the session politely. */
  async stop (): Promise<void> {
    this.#state = 'stopped'
    this.#stopping.abort()
    await this.#socks?.stop()
    await this.#http?.stop()
    await this.#switching
    const cur = this.#current
    if (cur !== undefined) {
      // close first: a polite close may sign one last voucher, which counts as spent
      await cur.session.close()
      this.#retire(cur)
    }
  }

  /**
   * Opens a relay stream through the seller in use. A dial that fails because
   * of the seller (unreachable, session gone) moves to the next seller and
   * tries once more; refusals about the target (exit policy, DNS, …) are
   * the client's answer and do not count against the seller.
   */
  async #dial (target: RelayTarget, options?: { signal?: AbortSignal }): Promise<Stream> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.#ready()
      const route = { seller: cur.candidate.peerId, sessionId: cur.session.sessionId }
      try {
        const stream = await libp2pRelayDialer({ node: this.#init.node, route: () => route }).dial(target, options)
        cur.streams.add(stream)
        stream.addEventListener('close', () => { cur.streams.delete(stream) }, { once: true })
        return stream
      } catch (err) {
        const kind = failureKind(err)
        if ((kind !== 'seller' && kind !== 'session') || attempt > 0 || options?.signal?.aborted === true) throw err
        await this.#failover(cur, (err as Error).message)
      }
    }
  }

  /** The session to relay through: waits for a switch in progress, or looks for a seller when there is none. */
  async #ready (): Promise<Current> {
    if (this.#state === 'stopped') throw new NoSellerError('the buyer is stopping')
    if (this.#state === 'spend-cap') throw new SpendCapReachedError(this.#spent(), this.#init.spendCap)
    if (this.#current === undefined) await this.#switch()
    const cur = this.#current
    if (cur !== undefined) return cur
    if (this.#stateNow() === 'spend-cap') throw new SpendCapReachedError(this.#spent(), this.#init.spendCap)
    throw new NoSellerError('no usable seller right now; retry in a moment, or check the bootstrap peers')
  }

  /** Moves `from`'s figures to the totals and forgets it as the session in use. */
  #retire (from: Current): void {
    if (this.#current !== from) return
    this.#current = undefined
    this.#bytesBefore += from.session.channel.meteredBytes - from.baseBytes
    this.#spentBefore += from.session.channel.signedAmount - from.baseAmount
  }

  /** The state as it is now (not as narrowed before an `await`). */
  #stateNow (): BuyerState {
    return this.#state
  }

  #spent (): bigint {
    const cur = this.#current
    return this.#spentBefore + (cur === undefined ? 0n : cur.session.channel.signedAmount - cur.baseAmount)
  }

  /** Leaves `from` (if it is still in use) for the next seller; resolves once the switch is over. */
  async #failover (from: Current, reason: string): Promise<void> {
    if (this.#current === from) {
      const seller = from.candidate.peerId.toString()
      this.#retire(from)
      this.#failedAt.set(seller, Date.now())
      this.#failovers++
      this.emit('failover', { from: seller, reason })
      this.#log.warn({ seller, reason }, 'seller failed; switching to the next one')
      void from.session.close().catch(() => {})
    }
    await this.#switch()
  }

  /** Runs one search for the next seller, shared by every caller while it runs; never rejects. */
  async #switch (): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'spend-cap') return
    this.#switching ??= (async () => {
      this.#state = 'switching'
      try {
        await this.#useNextSeller()
      } catch (err) {
        if (this.#state !== 'switching') return
        if (err instanceof SpendCapReachedError) {
          this.#state = 'spend-cap'
          this.emit('spend-cap', { spent: this.#spent(), cap: this.#init.spendCap })
          return
        }
        this.#state = 'no-seller'
        const e = err instanceof NoSellerError ? err : new NoSellerError(`cannot switch to another seller: ${(err as Error)?.message ?? err}`)
        this.#log.error({ err: e.message }, 'no seller to switch to')
        this.emit('no-seller', e)
      } finally {
        this.#switching = undefined
      }
    })()
    await this.#switching
  }

  /** Whether `peerId` failed recently enough to be left out. */
  #recentlyFailed (peerId: string): boolean {
    const at = this.#failedAt.get(peerId)
    return at !== undefined && Date.now() - at < (this.#init.retryFailedAfterMs ?? DEFAULT_RETRY_FAILED_AFTER_MS)
  }

  async #useNextSeller (): Promise<void> {
    for (let round = 0; round < 2 && this.#state !== 'stopped'; round++) {
      if (this.#candidates.length === 0 || round > 0) {
        this.#candidates = await this.#init.discovery.discover({ region: this.#init.region, signal: this.#stopping.signal })
      }
      this.#candidates = this.#candidates.filter((c) => !this.#recentlyFailed(c.peerId.toString()))
      while (this.#candidates.length > 0 && this.#stateNow() !== 'stopped') {
        const candidate = this.#candidates.shift() as SellerCandidate
        const seller = candidate.peerId.toString()
        this.#tried.add(seller)
        let cur: Current
        try {
          cur = await this.#openSession(candidate)
        } catch (err: any) {
          if (err instanceof SpendCapReachedError || err instanceof ChannelOpenError) throw err
          this.#failedAt.set(seller, Date.now())
          this.#log.warn({ seller, code: err?.code, err: err?.message }, 'cannot use seller')
          continue
        }
        if (this.#stateNow() === 'stopped') {
          await cur.session.close()
          return
        }
        this.#current = cur
        this.#state = 'relaying'
        cur.session.once('closed', (err) => { this.#onSessionClosed(cur, err) })
        this.emit('seller', candidate)
        this.#log.info({ seller, price: candidate.pricePerGiB.toString(), latencyMs: candidate.latencyMs, session: cur.session.sessionId }, 'relaying through seller')
        return
      }
    }
    throw new NoSellerError('no usable seller was found in the DHT; check the bootstrap peers and the token, or raise the spend cap')
  }

  #onSessionClosed (cur: Current, err: PaymentSessionError | undefined): void {
    if (err === undefined || this.#state === 'stopped' || this.#current !== cur) return
    if (err.code === 'ERR_SPEND_CAP') {
      this.#retire(cur)
      this.#state = 'spend-cap'
      const spent = this.#spent()
      this.#log.warn({ spent: spent.toString(), cap: this.#init.spendCap.toString() }, 'spend cap reached; no more traffic is relayed')
      this.emit('spend-cap', { spent, cap: this.#init.spendCap })
      return
    }
    void this.#failover(cur, err.message)
  }

  /** Opens a payment session with `candidate` on a channel to its payout address, within what is left of the spend cap. */
  async #openSession (candidate: SellerCandidate): Promise<Current> {
    const init = this.#init
    const left = init.spendCap - this.#spent()
    if (left <= 0n) throw new SpendCapReachedError(this.#spent(), init.spendCap)
    const payee = candidate.offer.payout as Address
    let channel: { channel: SessionChannel, deposit: bigint }
    try {
      channel = await this.#channelTo(payee, candidate.pricePerGiB)
    } catch (err) {
      throw new ChannelOpenError(payee, init.chain.walletClient?.account.address, err)
    }
    const lastSigned = await init.store.getSigned(channel.channel.channelId)
    const baseAmount = lastSigned?.cumulativeAmount ?? 0n
    const streams = new Set<Stream>()
    const session = await openBuyerPaymentSession({
      dialProtocol: init.node.dialProtocol.bind(init.node),
      seller: candidate.peerId,
      channel: channel.channel,
      deposit: channel.deposit,
      pricePerGiB: candidate.pricePerGiB,
      signer: init.sessionKey,
      // the channel's cumulative amount may grow by what is left of this client's cap
      spendCap: baseAmount + left,
      tolerance: init.tolerance,
      lastSigned,
      onSigned: (sv) => init.store.putSigned(sv),
      // what the seller sent that waits in our streams for a slow local client
      receivedUnforwarded: () => {
        let bytes = 0
        for (const stream of streams) bytes += stream.readBufferLength
        return bytes
      },
      logger: init.logger
    })
    return { candidate, session, baseBytes: session.channel.meteredBytes, baseAmount: session.channel.signedAmount, streams }
  }

  /** An open channel to `payee` with deposit left, or a new one. */
  async #channelTo (payee: Address, pricePerGiB: bigint): Promise<{ channel: SessionChannel, deposit: bigint }> {
    const init = this.#init
    for (const rec of await init.store.channelsTo(payee, init.token)) {
      if (rec.channel.chainId !== init.chain.chain.id || rec.channel.contract.toLowerCase() !== init.chain.contract.toLowerCase()) continue
      if (rec.channel.signer.toLowerCase() !== init.sessionKey.address.toLowerCase()) continue
      const onchain = await init.chain.getChannel(rec.channel.channelId)
      const signed = (await init.store.getSigned(rec.channel.channelId))?.cumulativeAmount ?? 0n
      // reuse while at least a tenth of the deposit, and enough for 64 MiB, is left
      const left = onchain.deposit - signed
      if (!onchain.withdrawn && onchain.closeDeadline === 0n && left * 10n >= onchain.deposit && left >= pricePerGiB / 16n) {
        return { channel: rec.channel, deposit: onchain.deposit }
      }
    }
    const funder = init.chain.walletClient?.account
    if (funder === undefined) throw new NoSellerError('the chain client has no funding account; configure the hot key')
    const salt = toHex(randomBytes(32))
    const channelId = await init.chain.openChannel({ payee, token: init.token, signer: init.sessionKey.address, salt, amount: init.deposit })
    const channel: SessionChannel = {
      chainId: init.chain.chain.id,
      contract: init.chain.contract,
      channelId,
      payer: funder.address,
      payee,
      token: init.token,
      signer: init.sessionKey.address,
      salt
    }
    await init.store.putChannel({ channel, deposit: init.deposit, openedAt: Date.now() })
    this.#log.info({ channel: channelId, payee, deposit: init.deposit.toString() }, 'opened a channel on chain')
    return { channel, deposit: init.deposit }
  }
}
