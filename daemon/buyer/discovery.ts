/**
 * Buyer-side seller discovery: finds providers of the relay key (or a region
 * key) through the DHT only, fetches and verifies each one's offer, and ranks
 * the verified sellers by price in the buyer's token, then by latency. Every
 * search is bounded in providers tried, candidates kept and time.
 */
import { relayKey, regionKey } from '../node/provider-keys.ts'
import { fetchOffer, DEFAULT_OFFER_FETCH_TIMEOUT_MS, OfferUnavailableError } from './fetch-offer.ts'
import { OfferError, type SignedOffer, type OfferService as SoldService } from '../../protocol/offer.ts'
import { ProtocolMessageError } from '../../protocol/messages/codec.ts'
import { FrameTooLargeError, InvalidFrameError } from '../framing.ts'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p, PeerId, PeerInfo } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { Address } from 'viem'

/** Default time limit of one search. */
export const DEFAULT_DISCOVERY_TIMEOUT_MS = 10_000
/** Default most providers whose offers one search fetches. */
export const DEFAULT_MAX_PROVIDERS = 40
/** Default most verified candidates one search collects. */
export const DEFAULT_MAX_CANDIDATES = 20
/** Default number of offers fetched at the same time. */
export const DEFAULT_FETCH_CONCURRENCY = 8
/** First pause before asking the DHT again after a lookup that found nobody; it doubles up to {@link QUERY_RETRY_MAX_MS}. */
const QUERY_RETRY_MIN_MS = 20
/** Longest pause between two lookups of one search. */
const QUERY_RETRY_MAX_MS = 1_000
/** Most sellers remembered by {@link SellerDiscovery.seen}; the oldest are forgotten first. */
export const MAX_SEEN_SELLERS = 1024

/** A seller whose offer was verified and suits the buyer. */
export interface SellerCandidate {
  peerId: PeerId
  offer: SignedOffer
  /** Price of one GiB in the buyer's token, base units. */
  pricePerGiB: bigint
  /** Round-trip time of the offer request, ms. */
  latencyMs: number
}

/** What the buyer last learned about one seller, for `spareband offers`. */
export interface SeenSeller {
  peerId: string
  /** Unix ms of the last attempt. */
  lastSeenAt: number
  /** `verified`: offer checked and suitable; `unsuitable`: valid but not for this buyer; `unavailable`: seller says no; `rejected`: offer invalid; `unreachable`: no answer. */
  status: 'verified' | 'unsuitable' | 'unavailable' | 'rejected' | 'unreachable'
  offer?: SignedOffer
  latencyMs?: number
  /** Why the seller was not a candidate. */
  error?: { code: string, message: string }
}

/** The buyer's fixed terms. */
export interface SellerDiscoveryInit {
  /** The chain the buyer pays on. */
  chainId: number
  /** The channel contract the buyer uses. */
  contract: Address
  /** The token the buyer pays in (`0x000…0` for the native coin); sellers are ranked by their price in it. */
  token: Address
  /** The service the buyer needs. Default `relay`. */
  service?: SoldService
  logger: Logger
}

/** Options of one search. */
export interface FindSellersOptions {
  /** Look up this region's key instead of the global relay key. */
  region?: string
  /** Least spare uplink a seller must offer, bits per second. Default 1. */
  minSpareUplinkBps?: number
  /** Time limit of the search. Default {@link DEFAULT_DISCOVERY_TIMEOUT_MS}. */
  timeoutMs?: number
  /** Time limit of each offer fetch. Default {@link DEFAULT_OFFER_FETCH_TIMEOUT_MS}. */
  offerTimeoutMs?: number
  /** Most providers tried. Default {@link DEFAULT_MAX_PROVIDERS}. */
  maxProviders?: number
  /** Most candidates returned. Default {@link DEFAULT_MAX_CANDIDATES}. */
  maxCandidates?: number
  /** Offers fetched at the same time. Default {@link DEFAULT_FETCH_CONCURRENCY}. */
  concurrency?: number
  signal?: AbortSignal
}

/** The node parts discovery uses. */
export type DiscoveryNode = Pick<Libp2p<{ dht: KadDHT }>, 'peerId' | 'peerStore' | 'dialProtocol' | 'services'>

/** Sorts candidates by price, then latency, cheapest and fastest first. */
export function rankCandidates (candidates: readonly SellerCandidate[]): SellerCandidate[] {
  return [...candidates].sort((a, b) => {
    if (a.pricePerGiB !== b.pricePerGiB) return a.pricePerGiB < b.pricePerGiB ? -1 : 1
    return a.latencyMs - b.latencyMs
  })
}

/** Finds, verifies and ranks sellers through the DHT, and remembers what it saw. */
export class SellerDiscovery {
  private readonly node: DiscoveryNode
  private readonly init: SellerDiscoveryInit
  private readonly log: Logger
  private readonly seenSellers = new Map<string, SeenSeller>()

  constructor (node: DiscoveryNode, init: SellerDiscoveryInit) {
    this.node = node
    this.init = init
    this.log = init.logger.child({ component: 'discovery' })
  }

  /** The ranked candidates of one bounded search. */
  async discover (options: FindSellersOptions = {}): Promise<SellerCandidate[]> {
    const found: SellerCandidate[] = []
    for await (const candidate of this.find(options)) found.push(candidate)
    return rankCandidates(found)
  }

  /**
   * Verified candidates in the order their offers arrive, as the DHT query
   * runs. Stops at `maxCandidates`, once a lookup found providers and every
   * one was tried, or at the time limit (a lookup that finds nobody is
   * repeated until then); breaking out of the loop cancels what is still running.
   */
  async * find (options: FindSellersOptions = {}): AsyncGenerator<SellerCandidate> {
    const maxProviders = options.maxProviders ?? DEFAULT_MAX_PROVIDERS
    const maxCandidates = options.maxCandidates ?? DEFAULT_MAX_CANDIDATES
    const concurrency = options.concurrency ?? DEFAULT_FETCH_CONCURRENCY
    const key = options.region == null ? relayKey() : regionKey(options.region)
    const stop = new AbortController()
    const signals = [stop.signal, AbortSignal.timeout(options.timeoutMs ?? DEFAULT_DISCOVERY_TIMEOUT_MS)]
    if (options.signal != null) signals.push(options.signal)
    const signal = AbortSignal.any(signals)

    const ready: SellerCandidate[] = []
    const change = new Change(signal)
    let querying = true
    let fetching = 0

    const query = (async () => {
      const tried = new Set<string>()
      try {
        // a lookup ends empty while the node knows no DHT peer yet (a client node does not wait for one), and may
        // miss every provider while the routing tables around the key are young: ask again, backing off, until a
        // DHT peer answered and some provider was found, or the time is up
        for (let retryMs = QUERY_RETRY_MIN_MS; !signal.aborted; retryMs = Math.min(2 * retryMs, QUERY_RETRY_MAX_MS)) {
          let answered = false
          for await (const event of this.node.services.dht.findProviders(key, { signal })) {
            if (event.name === 'PEER_RESPONSE' && !event.from.equals(this.node.peerId)) answered = true
            if (event.name !== 'PROVIDER') continue
            for (const provider of event.providers) {
              if (tried.size >= maxProviders) return
              if (provider.id.equals(this.node.peerId) || tried.has(provider.id.toString())) continue
              tried.add(provider.id.toString())
              while (fetching >= concurrency && !signal.aborted) await change.next()
              if (signal.aborted) return
              fetching++
              this.check(provider, options, signal)
                .then((candidate) => { if (candidate != null) ready.push(candidate) })
                .finally(() => { fetching--; change.notify() })
            }
          }
          if (answered && tried.size > 0) break
          await sleep(retryMs, signal)
        }
      } catch (err) {
        if (!signal.aborted) this.log.warn({ err, key: key.toString() }, 'DHT provider query failed')
      } finally {
        querying = false
        change.notify()
      }
    })()

    try {
      let yielded = 0
      while (yielded < maxCandidates) {
        const candidate = ready.shift()
        if (candidate != null) {
          yielded++
          yield candidate
          continue
        }
        if ((!querying && fetching === 0) || signal.aborted) break
        await change.next()
      }
    } finally {
      stop.abort()
      await query
    }
  }

  /** What the buyer last learned about each seller, most recent first. */
  seen (): SeenSeller[] {
    return [...this.seenSellers.values()].sort((a, b) => b.lastSeenAt - a.lastSeenAt)
  }

  /** Fetches and judges one provider's offer; records the outcome. */
  private async check (provider: PeerInfo, options: FindSellersOptions, signal: AbortSignal): Promise<SellerCandidate | undefined> {
    const peerId = provider.id
    try {
      if (provider.multiaddrs.length > 0) await this.node.peerStore.merge(peerId, { multiaddrs: provider.multiaddrs })
      const { offer, rttMs } = await fetchOffer(this.node, peerId, {
        chainId: this.init.chainId,
        contract: this.init.contract,
        timeoutMs: options.offerTimeoutMs ?? DEFAULT_OFFER_FETCH_TIMEOUT_MS,
        signal
      })
      const unsuitable = this.unsuitability(offer, options)
      if (unsuitable != null) {
        this.remember({ peerId: peerId.toString(), lastSeenAt: Date.now(), status: 'unsuitable', offer, latencyMs: rttMs, error: unsuitable })
        return undefined
      }
      const price = offer.tokens.find(({ token }) => token.toLowerCase() === this.init.token.toLowerCase())
      this.remember({ peerId: peerId.toString(), lastSeenAt: Date.now(), status: 'verified', offer, latencyMs: rttMs })
      return { peerId, offer, pricePerGiB: price?.pricePerGiB ?? 0n, latencyMs: rttMs }
    } catch (err) {
      const code = (err as { code?: unknown })?.code
      const error = { code: typeof code === 'string' ? code : 'ERR_UNREACHABLE', message: (err as Error)?.message ?? String(err) }
      this.remember({ peerId: peerId.toString(), lastSeenAt: Date.now(), status: statusOf(err), error })
      this.log.debug({ peer: peerId.toString(), err }, 'seller is not a candidate')
      return undefined
    }
  }

  /** Why a verified offer does not suit this buyer, or undefined if it does. */
  private unsuitability (offer: SignedOffer, options: FindSellersOptions): { code: string, message: string } | undefined {
    const service = this.init.service ?? 'relay'
    if (!offer.services.includes(service)) return { code: 'ERR_SERVICE_NOT_OFFERED', message: `seller does not offer ${service}` }
    if (!offer.tokens.some(({ token }) => token.toLowerCase() === this.init.token.toLowerCase())) {
      return { code: 'ERR_TOKEN_NOT_ACCEPTED', message: `seller does not accept token ${this.init.token}` }
    }
    const minSpare = options.minSpareUplinkBps ?? 1
    if (offer.spareUplinkBps < minSpare) {
      return { code: 'ERR_NO_SPARE_CAPACITY', message: `seller offers ${offer.spareUplinkBps} bit/s of spare uplink, less than ${minSpare}` }
    }
    return undefined
  }

  private remember (seller: SeenSeller): void {
    this.seenSellers.delete(seller.peerId)
    this.seenSellers.set(seller.peerId, seller)
    if (this.seenSellers.size > MAX_SEEN_SELLERS) {
      const oldest = this.seenSellers.keys().next().value
      if (oldest != null) this.seenSellers.delete(oldest)
    }
  }
}

/** A seller whose answer broke the rules is `rejected`; one that said no is `unavailable`; any other failure (dial, timeout, reset) is `unreachable`. */
function statusOf (err: unknown): SeenSeller['status'] {
  if (err instanceof OfferUnavailableError) return 'unavailable'
  if (err instanceof OfferError || err instanceof ProtocolMessageError || err instanceof FrameTooLargeError || err instanceof InvalidFrameError) return 'rejected'
  return 'unreachable'
}

/** Resolves after `ms`, or at once when `signal` aborts. */
async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/** Wakes waiters when the search's state changes or its signal aborts. */
class Change {
  private waiters: Array<() => void> = []
  private readonly signal: AbortSignal

  constructor (signal: AbortSignal) {
    this.signal = signal
    signal.addEventListener('abort', () => { this.notify() }, { once: true })
  }

  notify (): void {
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }

  async next (): Promise<void> {
    if (this.signal.aborted) return
    await new Promise<void>((resolve) => this.waiters.push(resolve))
  }
}
