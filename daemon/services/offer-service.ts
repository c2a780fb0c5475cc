/**
 * Offer service: answers `/spareband/offer/1.0.0` with a freshly signed,
 * short-lived Offer. One request and one response per stream; each stream is
 * bounded in size, time and number per connection, and any failure closes
 * only that stream.
 */
import { serviceCapabilities, type PrivateKey, type Startable, type Stream } from '@libp2p/interface'
import { createOffer, MAX_OFFER_LISTEN_ADDRS, type OfferFields, type SignedOffer } from '../../protocol/offer.ts'
import { OFFER_MESSAGE_VERSION, offerCodecs, type OfferRequest, type OfferResponse, type OfferUnavailable } from '../../protocol/messages/offer.ts'
import { OFFER_PROTOCOL } from '../../protocol/protocol-ids.ts'
import { framedStream } from '../framing.ts'
import type { Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'

/** Default validity of an offer: long enough to open a channel, short enough that prices stay current. */
export const DEFAULT_OFFER_LIFETIME_MS = 5 * 60 * 1000
/** Default time a buyer has to send its request, and the seller to send its answer. */
export const DEFAULT_OFFER_STREAM_TIMEOUT_MS = 5_000
/** Default number of offer streams one connection may have open at once. */
export const DEFAULT_OFFER_MAX_INBOUND_STREAMS = 2

/** The seller's current terms; the service adds identity, addresses, times and the buyer's nonce. */
export type OfferTerms = Omit<OfferFields, 'issuedAt' | 'expiresAt' | 'nonce' | 'listenAddrs'>

/** Options of {@link offerService}. */
export interface OfferServiceInit {
  /** The terms to offer now, or `null` while the node does not sell (outside sharing hours, cap reached). */
  terms: () => OfferTerms | null
  /** Validity of each offer. Default {@link DEFAULT_OFFER_LIFETIME_MS}. */
  offerLifetimeMs?: number
  /** Time limit of reading the request and of writing the answer. Default {@link DEFAULT_OFFER_STREAM_TIMEOUT_MS}. */
  streamTimeoutMs?: number
  /** Offer streams one connection may have open at once. Default {@link DEFAULT_OFFER_MAX_INBOUND_STREAMS}. */
  maxInboundStreams?: number
  logger: Logger
}

/** Libp2p components the offer service uses. */
export interface OfferServiceComponents {
  privateKey: PrivateKey
  registrar: Pick<Libp2p, 'handle' | 'unhandle'>
  addressManager: { getAddresses(): Multiaddr[] }
}

/** The offer service. */
export interface OfferService extends Startable {
  /** A signed offer for the current terms, as a buyer would receive it; `null` while not selling. */
  currentOffer(nonce?: string): Promise<SignedOffer | null>
}

class SignedOfferService implements OfferService {
  readonly [serviceCapabilities] = ['@spareband/offer']
  readonly [Symbol.toStringTag] = 'spareband/offer-service'
  private readonly components: OfferServiceComponents
  private readonly init: OfferServiceInit
  private readonly log: Logger

  constructor (components: OfferServiceComponents, init: OfferServiceInit) {
    this.components = components
    this.init = init
    this.log = init.logger.child({ component: 'offer-service' })
  }

  async start (): Promise<void> {
    await this.components.registrar.handle(OFFER_PROTOCOL, async (stream, connection) => {
      await this.handle(stream, connection.remotePeer.toString())
    }, {
      maxInboundStreams: this.init.maxInboundStreams ?? DEFAULT_OFFER_MAX_INBOUND_STREAMS
    })
  }

  async stop (): Promise<void> {
    await this.components.registrar.unhandle(OFFER_PROTOCOL)
  }

  async currentOffer (nonce?: string): Promise<SignedOffer | null> {
    const terms = this.init.terms()
    return terms == null ? null : this.sign(terms, nonce)
  }

  private async sign (terms: OfferTerms, nonce: string | undefined): Promise<SignedOffer> {
    const issuedAt = Date.now()
    return createOffer({
      ...terms,
      listenAddrs: this.components.addressManager.getAddresses().slice(0, MAX_OFFER_LISTEN_ADDRS).map(String),
      issuedAt,
      expiresAt: issuedAt + (this.init.offerLifetimeMs ?? DEFAULT_OFFER_LIFETIME_MS),
      nonce
    }, this.components.privateKey)
  }

  private async handle (stream: Stream, peer: string): Promise<void> {
    const timeoutMs = this.init.streamTimeoutMs ?? DEFAULT_OFFER_STREAM_TIMEOUT_MS
    const framed = framedStream(stream, { maxMessageBytes: offerCodecs.fromBuyer.maxMessageBytes, timeoutMs })
    try {
      const request = offerCodecs.fromBuyer.decode(await framed.read())
      await framed.write(offerCodecs.fromSeller.encode(await this.answer(request)))
      await stream.close({ signal: AbortSignal.timeout(timeoutMs) })
    } catch (err) {
      this.log.debug({ err, peer }, 'offer stream failed; closed it')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  private async answer (request: OfferRequest): Promise<OfferResponse | OfferUnavailable> {
    const terms = this.init.terms()
    if (terms == null) {
      return { v: OFFER_MESSAGE_VERSION, type: 'offer-unavailable', code: 'ERR_NOT_SELLING', message: 'this seller is not selling right now' }
    }
    if (terms.spareUplinkBps <= 0) {
      return { v: OFFER_MESSAGE_VERSION, type: 'offer-unavailable', code: 'ERR_NO_SPARE_CAPACITY', message: 'this seller has no spare uplink right now' }
    }
    return { v: OFFER_MESSAGE_VERSION, type: 'offer', offer: await this.sign(terms, request.nonce) }
  }
}

/** Libp2p service factory of the {@link OfferService}; register it as `offer`. */
export function offerService (init: OfferServiceInit): (components: OfferServiceComponents) => OfferService {
  return (components) => new SignedOfferService(components, init)
}
