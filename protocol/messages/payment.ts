import { Type, type StaticDecode } from '@sinclair/typebox'
import { PAYMENT_PROTOCOL } from '../protocol-ids.ts'
import { messageCodec, messageSchema } from './codec.ts'
import { Amount, ByteCount, Bytes32, ChainId, ErrorCode, EvmAddress, Hex16, SafeInteger, ShortText, Signature65 } from './fields.ts'

/** Message version spoken on {@link PAYMENT_PROTOCOL}. */
export const PAYMENT_MESSAGE_VERSION = 1
/** Largest payment-protocol message. */
export const PAYMENT_MAX_MESSAGE_BYTES = 4096

/**
 * A channel as opened on chain; `channelId` must equal
 * `keccak256(abi.encode(chainId, contract, payer, payee, token, signer, salt))`
 * and the seller checks it, and the deposit, on chain.
 */
export const ChannelSchema = Type.Object({
  chainId: ChainId,
  contract: EvmAddress,
  channelId: Bytes32,
  payer: EvmAddress,
  payee: EvmAddress,
  token: EvmAddress,
  signer: EvmAddress,
  salt: Bytes32
}, { additionalProperties: false })

/** A voucher as carried on the wire: amounts as decimal strings, 65-byte signature. */
export const WireVoucherSchema = Type.Object({
  channelId: Bytes32,
  cumulativeAmount: Amount,
  cumulativeBytes: ByteCount,
  signature: Signature65
}, { additionalProperties: false })

/** Buyer → seller, first message: open a session on `channel` at `pricePerGiB` for `service`. */
export const SessionOpenSchema = messageSchema(PAYMENT_MESSAGE_VERSION, 'open', {
  channel: ChannelSchema,
  service: Type.Union([Type.Literal('relay'), Type.Literal('gateway')]),
  pricePerGiB: Amount
})
/**
 * Seller → buyer: session accepted. `paid` is the latest voucher the seller
 * holds for the channel (zero for a new one), the base both meters continue
 * from; the buyer may run `creditWindowBytes` ahead of it; `toleranceBytes` is
 * the metering slack the seller asks for (a buyer whose own limit is lower closes).
 */
export const SessionAcceptedSchema = messageSchema(PAYMENT_MESSAGE_VERSION, 'accepted', {
  sessionId: Hex16,
  creditWindowBytes: ByteCount,
  toleranceBytes: ByteCount,
  paid: Type.Object({ cumulativeAmount: Amount, cumulativeBytes: ByteCount }, { additionalProperties: false })
})
/** Seller → buyer: session refused; the seller closes the stream. */
export const SessionRejectedSchema = messageSchema(PAYMENT_MESSAGE_VERSION, 'rejected', {
  code: ErrorCode,
  message: ShortText
})
/** Seller → buyer: metered usage so far on the channel and the cumulative amount due for it. */
export const UsageReportSchema = messageSchema(PAYMENT_MESSAGE_VERSION, 'usage', {
  seq: SafeInteger,
  cumulativeBytes: ByteCount,
  amountDue: Amount
})
/** Buyer → seller: a voucher answering usage report `seq`. */
export const VoucherMessageSchema = messageSchema(PAYMENT_MESSAGE_VERSION, 'voucher', {
  seq: SafeInteger,
  voucher: WireVoucherSchema
})
/** Seller → buyer: voucher `seq` is persisted; credit now runs to `creditUntilBytes` (cumulative). */
export const VoucherAckSchema = messageSchema(PAYMENT_MESSAGE_VERSION, 'voucher-ack', {
  seq: SafeInteger,
  cumulativeAmount: Amount,
  creditUntilBytes: ByteCount
})
/** Seller → buyer: voucher `seq` is refused; no credit was granted for it. */
export const VoucherRejectedSchema = messageSchema(PAYMENT_MESSAGE_VERSION, 'voucher-rejected', {
  seq: SafeInteger,
  code: ErrorCode,
  message: ShortText
})
/** Either side: the session ends; the sender closes the stream after this message. */
export const CloseSchema = messageSchema(PAYMENT_MESSAGE_VERSION, 'close', {
  reason: ShortText
})

/** Codes a seller uses in {@link SessionRejected}; peers may send others. */
export const SESSION_REJECTION_CODES = [
  'ERR_CHANNEL_UNKNOWN',
  'ERR_CHANNEL_MISMATCH',
  'ERR_CHANNEL_CLOSING',
  'ERR_DEPOSIT_TOO_LOW',
  'ERR_TOKEN_NOT_ACCEPTED',
  'ERR_PRICE_TOO_LOW',
  'ERR_SERVICE_UNAVAILABLE',
  'ERR_TOO_MANY_SESSIONS'
] as const
/** Codes a seller uses in {@link VoucherRejected}; peers may send others. */
export const VOUCHER_REJECTION_CODES = [
  'ERR_VOUCHER_SIGNATURE',
  'ERR_VOUCHER_CHANNEL',
  'ERR_VOUCHER_NOT_MONOTONIC',
  'ERR_VOUCHER_UNDERPAID',
  'ERR_VOUCHER_OVER_DEPOSIT'
] as const

/** Buyer → seller: opens a session. */
export type SessionOpen = StaticDecode<typeof SessionOpenSchema>
/** Seller → buyer: the session is accepted. */
export type SessionAccepted = StaticDecode<typeof SessionAcceptedSchema>
/** Seller → buyer: the session is refused. */
export type SessionRejected = StaticDecode<typeof SessionRejectedSchema>
/** Seller → buyer: metered usage and the amount due. */
export type UsageReport = StaticDecode<typeof UsageReportSchema>
/** Buyer → seller: a signed voucher. */
export type VoucherMessage = StaticDecode<typeof VoucherMessageSchema>
/** Seller → buyer: a voucher is persisted and credit granted. */
export type VoucherAck = StaticDecode<typeof VoucherAckSchema>
/** Seller → buyer: a voucher is refused. */
export type VoucherRejected = StaticDecode<typeof VoucherRejectedSchema>
/** Either side: the session ends. */
export type Close = StaticDecode<typeof CloseSchema>

/** Codecs of {@link PAYMENT_PROTOCOL}, one per direction. */
export const paymentCodecs = {
  /** Messages the buyer sends. */
  fromBuyer: messageCodec({
    protocol: PAYMENT_PROTOCOL,
    version: PAYMENT_MESSAGE_VERSION,
    maxMessageBytes: PAYMENT_MAX_MESSAGE_BYTES,
    schemas: { open: SessionOpenSchema, voucher: VoucherMessageSchema, close: CloseSchema }
  }),
  /** Messages the seller sends. */
  fromSeller: messageCodec({
    protocol: PAYMENT_PROTOCOL,
    version: PAYMENT_MESSAGE_VERSION,
    maxMessageBytes: PAYMENT_MAX_MESSAGE_BYTES,
    schemas: {
      accepted: SessionAcceptedSchema,
      rejected: SessionRejectedSchema,
      usage: UsageReportSchema,
      'voucher-ack': VoucherAckSchema,
      'voucher-rejected': VoucherRejectedSchema,
      close: CloseSchema
    }
  })
}

/** Any message a buyer sends on the payment protocol. */
export type PaymentBuyerMessage = SessionOpen | VoucherMessage | Close
/** Any message a seller sends on the payment protocol. */
export type PaymentSellerMessage = SessionAccepted | SessionRejected | UsageReport | VoucherAck | VoucherRejected | Close
