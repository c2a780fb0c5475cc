import { Type, type StaticDecode } from '@sinclair/typebox'
import { SignedOfferSchema } from '../offer.ts'
import { OFFER_PROTOCOL } from '../protocol-ids.ts'
import { messageCodec, messageSchema } from './codec.ts'
import { ErrorCode, Hex16, ShortText } from './fields.ts'

/** Message version spoken on {@link OFFER_PROTOCOL}. */
export const OFFER_MESSAGE_VERSION = 1
/** Largest offer-protocol message: an offer with an 8192-bit RSA key and every list full fits. */
export const OFFER_MAX_MESSAGE_BYTES = 16 * 1024

/** Buyer → seller: send me your current offer, echoing `nonce` (16 random bytes, hex) if given. */
export const OfferRequestSchema = messageSchema(OFFER_MESSAGE_VERSION, 'offer-request', {
  nonce: Type.Optional(Hex16)
})
/** Seller → buyer: the signed offer. */
export const OfferResponseSchema = messageSchema(OFFER_MESSAGE_VERSION, 'offer', {
  offer: SignedOfferSchema
})
/** Seller → buyer: no offer now (outside sharing hours, cap reached, no spare uplink). */
export const OfferUnavailableSchema = messageSchema(OFFER_MESSAGE_VERSION, 'offer-unavailable', {
  code: ErrorCode,
  message: ShortText
})

/** Codes a seller uses in {@link OfferUnavailable}; peers may send others. */
export const OFFER_UNAVAILABLE_CODES = ['ERR_NOT_SELLING', 'ERR_NO_SPARE_CAPACITY'] as const

/** Buyer → seller: asks for the seller's offer. */
export type OfferRequest = StaticDecode<typeof OfferRequestSchema>
/** Seller → buyer: the signed offer (verify it with `verifyOffer` before use). */
export type OfferResponse = StaticDecode<typeof OfferResponseSchema>
/** Seller → buyer: no offer right now. */
export type OfferUnavailable = StaticDecode<typeof OfferUnavailableSchema>

/** Codecs of {@link OFFER_PROTOCOL}, one per direction. */
export const offerCodecs = {
  /** Messages the buyer sends. */
  fromBuyer: messageCodec({
    protocol: OFFER_PROTOCOL,
    version: OFFER_MESSAGE_VERSION,
    maxMessageBytes: OFFER_MAX_MESSAGE_BYTES,
    schemas: { 'offer-request': OfferRequestSchema }
  }),
  /** Messages the seller sends. */
  fromSeller: messageCodec({
    protocol: OFFER_PROTOCOL,
    version: OFFER_MESSAGE_VERSION,
    maxMessageBytes: OFFER_MAX_MESSAGE_BYTES,
    schemas: { offer: OfferResponseSchema, 'offer-unavailable': OfferUnavailableSchema }
  })
}
