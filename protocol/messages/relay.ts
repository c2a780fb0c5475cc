import type { StaticDecode } from '@sinclair/typebox'
import { RELAY_PROTOCOL } from '../protocol-ids.ts'
import { messageCodec, messageSchema } from './codec.ts'
import { ErrorCode, Hex16, Port, RelayHost, ShortText } from './fields.ts'

/** Message version spoken on {@link RELAY_PROTOCOL}. */
export const RELAY_MESSAGE_VERSION = 1
/** Largest relay header or response. */
export const RELAY_MAX_MESSAGE_BYTES = 2048

/**
 * Buyer → seller, first message of a relay stream: connect me to `host:port`,
 * billed to payment session `sessionId`. `host` is a DNS name or an IP literal
 * (IPv6 without brackets); the seller applies its exit policy after resolving it.
 */
export const RelayConnectSchema = messageSchema(RELAY_MESSAGE_VERSION, 'connect', {
  sessionId: Hex16,
  host: RelayHost,
  port: Port
})
/** Seller → buyer: connected; raw bytes follow in both directions. */
export const RelayConnectedSchema = messageSchema(RELAY_MESSAGE_VERSION, 'connected', {})
/** Seller → buyer: refused; the seller closes the stream after this message. */
export const RelayRefusedSchema = messageSchema(RELAY_MESSAGE_VERSION, 'refused', {
  code: ErrorCode,
  message: ShortText
})

/** Codes a seller uses in {@link RelayRefused}; peers may send others. */
export const RELAY_REFUSAL_CODES = [
  'ERR_EXIT_POLICY',
  'ERR_DNS',
  'ERR_CONNECT_REFUSED',
  'ERR_CONNECT_TIMEOUT',
  'ERR_NO_CREDIT',
  'ERR_UNKNOWN_SESSION',
  'ERR_TOO_MANY_STREAMS'
] as const
/** A refusal code this implementation sends. */
export type RelayRefusalCode = typeof RELAY_REFUSAL_CODES[number]

/** Buyer → seller: the header of a relay stream. */
export type RelayConnect = StaticDecode<typeof RelayConnectSchema>
/** Seller → buyer: the target is connected. */
export type RelayConnected = StaticDecode<typeof RelayConnectedSchema>
/** Seller → buyer: the connection is refused. */
export type RelayRefused = StaticDecode<typeof RelayRefusedSchema>
/** The seller's answer to {@link RelayConnect}. */
export type RelayResponse = RelayConnected | RelayRefused

/** Codecs of {@link RELAY_PROTOCOL}, one per direction. */
export const relayCodecs = {
  /** Messages the buyer sends. */
  fromBuyer: messageCodec({
    protocol: RELAY_PROTOCOL,
    version: RELAY_MESSAGE_VERSION,
    maxMessageBytes: RELAY_MAX_MESSAGE_BYTES,
    schemas: { connect: RelayConnectSchema }
  }),
  /** Messages the seller sends. */
  fromSeller: messageCodec({
    protocol: RELAY_PROTOCOL,
    version: RELAY_MESSAGE_VERSION,
    maxMessageBytes: RELAY_MAX_MESSAGE_BYTES,
    schemas: { connected: RelayConnectedSchema, refused: RelayRefusedSchema }
  })
}
