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
import { openBuyerPaymentSession, type BuyerPaymentSession, type SessionChannel } from '../payment/buyer-payment-session.ts'
import type { BuyerStore } from './buyer-store.ts'
import type { SellerCandidate, SellerDiscovery } from './discovery.ts'
import { httpConnectProxy } from './http-connect.ts'
import type { LocalProxy } from './local-proxy.ts'
import { failureKind, libp2pRelayDialer, type RelayDialerNode } from './relay-dialer.ts'
import { socks5Proxy } from './socks5.ts'
import type { PeerId, Stream } from '@libp2p/interface'

/** Raised when no seller could be used. */
export class NoSellerError extends SparebandError {
  constructor (message: string) {
    super('ERR_NO_SELLER', message)
  }
}

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
  /** Most one channel may be asked to pay. */
  spendCap: bigint
  tolerance?: MeterTolerance
  region?: string
  socks?: { host: string, port: number }
  http?: { host: string, port: number }
  logger: Logger
}

/** Live figures for the terminal and `--json`. */
export interface BuyerProgress {
  seller: string | undefined
  sessionId: string | undefined
  bytes: bigint
  spent: bigint
  sellersTried: number
  failovers: number
}

/** Events of {@link BuyerClient}. */
export interface BuyerClientEvents {
  /** A seller was picked and its session opened. */
  seller: [SellerCandidate]
  /** The current seller failed; `next` takes over if there is one. */
  failover: [{ from: string, reason: string }]
}

/** The buyer's side of the market, with local proxies. */
export class BuyerClient extends EventEmitter<BuyerClientEvents> {
  readonly #init: BuyerClientInit
  readonly #log: Logger
  #candidates: SellerCandidate[] = []
  readonly #failed = new Set<string>()
  #current: { candidate: SellerCandidate, session: BuyerPaymentSession } | undefined
  #switching: Promise<void> | undefined
  #socks: LocalProxy | undefined
  #http: LocalProxy | undefined
  #bytesBefore = 0n
  #spentBefore = 0n
  #failovers = 0
  #stopped = false

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

  /** Bytes relayed, amount signed, seller in use. */
  progress (): BuyerProgress {
    const s = this.#current?.session
    return {
      seller: this.#current?.candidate.peerId.toString(),
      sessionId: s?.sessionId,
      bytes: this.#bytesBefore + (s?.channel.meteredBytes ?? 0n),
      spent: this.#spentBefore + (s?.channel.signedAmount ?? 0n),
      sellersTried: this.#failed.size + (this.#current === undefined ? 0 : 1),
      failovers: this.#failovers
    }
  }

  /** Finds a seller, opens its session and starts the proxies. */
  async start (): Promise<void> {
    await this.#useNextSeller()
    const dialer = libp2pRelayDialer({
      node: this.#init.node,
      route: () => {
        const cur = this.#current
        if (cur === undefined) throw new NoSellerError('no seller is connected right now')
        return { seller: cur.candidate.peerId, sessionId: cur.session.sessionId }
      }
    })
    // A dial that fails because of the seller (not the target) moves to the next seller and retries once.
    const failoverDialer = {
      dial: async (target: { host: string, port: number }, options?: { signal?: AbortSignal }) => {
        try {
          return await dialer.dial(target, options)
        } catch (err) {
          const kind = failureKind(err)
          if (kind !== 'seller' && kind !== 'session') throw err
          await this.#failover((err as Error).message)
          return await dialer.dial(target, options)
        }
      }
    }
    const onForward = (bytes: number): void => { this.#current?.session.meter(bytes) }
    const common = { dialer: failoverDialer, onForward, logger: this.#init.logger }
    this.#socks = socks5Proxy({ ...common, host: this.#init.socks?.host ?? '127.0.0.1', port: this.#init.socks?.port ?? 0 })
    this.#http = httpConnectProxy({ ...common, host: this.#init.http?.host ?? '127.0.0.1', port: this.#init.http?.port ?? 0 })
    await this.#socks.start()
    await this.#http.start()
  }

  /** Stops the proxies and closes the session. */
  async stop (): Promise<void> {
    this.#stopped = true
    await this.#socks?.stop()
    await this.#http?.stop()
    await this.#current?.session.close()
  }

  async #failover (reason: string): Promise<void> {
    const cur = this.#current
    if (this.#switching !== undefined) return await this.#switching
    if (cur !== undefined) {
      this.#failed.add(cur.candidate.peerId.toString())
      this.#bytesBefore += cur.session.channel.meteredBytes
      this.#spentBefore += cur.session.channel.signedAmount
      this.#current = undefined
      this.#failovers++
      this.emit('failover', { from: cur.candidate.peerId.toString(), reason })
      this.#log.warn({ seller: cur.candidate.peerId.toString(), reason }, 'seller failed; switching to the next one')
      void cur.session.close().catch(() => {})
    }
    this.#switching = this.#useNextSeller().finally(() => { this.#switching = undefined })
    await this.#switching
  }

  async #useNextSeller (): Promise<void> {
    for (let round = 0; round < 2 && !this.#stopped; round++) {
      if (this.#candidates.length === 0 || round > 0) {
        this.#candidates = (await this.#init.discovery.discover({ region: this.#init.region }))
          .filter((c) => !this.#failed.has(c.peerId.toString()))
      }
      while (this.#candidates.length > 0) {
        const candidate = this.#candidates.shift() as SellerCandidate
        try {
          const session = await this.#openSession(candidate)
          this.#current = { candidate, session }
          session.once('closed', (err) => {
            if (err !== undefined && !this.#stopped && this.#current?.session === session) void this.#failover(err.message).catch(() => {})
          })
          this.emit('seller', candidate)
          this.#log.info({ seller: candidate.peerId.toString(), price: candidate.pricePerGiB.toString(), latencyMs: candidate.latencyMs, session: session.sessionId }, 'relaying through seller')
          return
        } catch (err: any) {
          this.#failed.add(candidate.peerId.toString())
          this.#log.warn({ seller: candidate.peerId.toString(), code: err?.code, err: err?.message }, 'cannot use seller')
        }
      }
    }
    throw new NoSellerError('no usable seller was found in the DHT; check the bootstrap peers and the token, or raise the spend cap')
  }

  async #openSession (candidate: SellerCandidate): Promise<BuyerPaymentSession> {
    const init = this.#init
    const payee = candidate.offer.payout as Address
    const channel = await this.#channelTo(payee, candidate.pricePerGiB)
    const lastSigned = await init.store.getSigned(channel.channel.channelId)
    return await openBuyerPaymentSession({
      dialProtocol: init.node.dialProtocol.bind(init.node),
      seller: candidate.peerId,
      channel: channel.channel,
      deposit: channel.deposit,
      pricePerGiB: candidate.pricePerGiB,
      signer: init.sessionKey,
      spendCap: init.spendCap,
      tolerance: init.tolerance,
      lastSigned,
      onSigned: (sv) => init.store.putSigned(sv),
      logger: init.logger
    })
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
