/**
 * Buyer side of `/spareband/offer/1.0.0`: asks one seller for its offer and
 * returns it only once verified (signature, expiry, peer id of the dialed
 * peer, chain and contract, echoed nonce), with the request's round-trip time.
 */
import { randomBytes } from 'node:crypto'
import { verifyOffer, type SignedOffer } from '../../protocol/offer.ts'
import { OFFER_MESSAGE_VERSION, offerCodecs } from '../../protocol/messages/offer.ts'
import { OFFER_PROTOCOL } from '../../protocol/protocol-ids.ts'
import { SparebandError } from '../../protocol/errors.ts'
import { framedStream } from '../framing.ts'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Address } from 'viem'

/** Default time limit of one offer fetch, dial included. */
export const DEFAULT_OFFER_FETCH_TIMEOUT_MS = 5_000

/** Raised when a seller answers that it has no offer right now; `code` is the seller's reason. */
export class OfferUnavailableError extends SparebandError {
  constructor (code: string, peer: PeerId, reason: string) {
    super(code, `seller ${peer.toString()} has no offer right now (${reason}); try another seller`)
  }
}

/** Options of {@link fetchOffer}. */
export interface FetchOfferOptions {
  /** The chain the buyer pays on; the offer must name it. */
  chainId: number
  /** The channel contract the buyer uses; the offer must name it. */
  contract: Address
  /** Time limit of the whole fetch, dial included. Default {@link DEFAULT_OFFER_FETCH_TIMEOUT_MS}. */
  timeoutMs?: number
  signal?: AbortSignal
}

/** A verified offer and how long the seller took to answer. */
export interface FetchedOffer {
  offer: SignedOffer
  /** From sending the request to receiving the whole offer, in ms (one round trip plus signing). */
  rttMs: number
}

/**
 * Dials `peer` (addresses from the peer store), requests its offer with a
 * fresh nonce and verifies it. Throws {@link OfferUnavailableError}, an
 * `OfferError`, a `ProtocolMessageError` or a framing error; the stream is
 * closed in every case.
 */
export async function fetchOffer (node: Pick<Libp2p, 'dialProtocol'>, peer: PeerId, options: FetchOfferOptions): Promise<FetchedOffer> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_OFFER_FETCH_TIMEOUT_MS
  const timeout = AbortSignal.timeout(timeoutMs)
  const signal = options.signal == null ? timeout : AbortSignal.any([timeout, options.signal])
  const stream = await node.dialProtocol(peer, OFFER_PROTOCOL, { signal })
  try {
    const framed = framedStream(stream, { maxMessageBytes: offerCodecs.fromSeller.maxMessageBytes, timeoutMs })
    const nonce = randomBytes(16).toString('hex')
    const sentAt = performance.now()
    await framed.write(offerCodecs.fromBuyer.encode({ v: OFFER_MESSAGE_VERSION, type: 'offer-request', nonce }), { signal })
    const response = offerCodecs.fromSeller.decode(await framed.read({ signal }))
    const rttMs = performance.now() - sentAt
    await stream.close({ signal })
    if (response.type === 'offer-unavailable') throw new OfferUnavailableError(response.code, peer, response.message)
    const offer = await verifyOffer(response.offer, {
      expectedPeerId: peer,
      nowMs: Date.now(),
      chainId: options.chainId,
      contract: options.contract,
      nonce
    })
    return { offer, rttMs }
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  }
}
