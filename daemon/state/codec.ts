import { Type, type StaticDecode, type TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { SparebandError } from '../../protocol/errors.ts'

/** Raised when a stored record does not match its schema (a corrupt or foreign data directory). */
export class StoredRecordError extends SparebandError {
  constructor (what: string, options?: { cause?: unknown }) {
    super('ERR_STORED_RECORD', `a stored ${what} record is malformed; the data directory is corrupt or was written by an incompatible version — restore it from a backup or move it aside`, options)
  }
}

/** An unsigned integer (bigint in memory, decimal string on disk). */
export const Uint = Type.Transform(Type.String({ pattern: '^(0|[1-9][0-9]{0,77})$' }))
  .Decode((v) => BigInt(v))
  .Encode((v: bigint) => {
    if (v < 0n) throw new RangeError(`cannot store negative amount ${v}`)
    return v.toString()
  })

/** A 0x-prefixed EVM address. */
export const AddressT = Type.Unsafe<`0x${string}`>(Type.String({ pattern: '^0x[0-9a-fA-F]{40}$' }))
/** A 0x-prefixed 32-byte hex string (channel ids, hashes). */
export const Bytes32T = Type.Unsafe<`0x${string}`>(Type.String({ pattern: '^0x[0-9a-fA-F]{64}$' }))
/** Any 0x-prefixed hex string (signatures, raw transactions). */
export const HexT = Type.Unsafe<`0x${string}`>(Type.String({ pattern: '^0x([0-9a-fA-F]{2})*$' }))

/** Terms of a payment channel as the seller knows them. */
export const ChannelSchema = Type.Object({
  chainId: Type.Integer({ minimum: 1 }),
  contract: AddressT,
  channelId: Bytes32T,
  payer: AddressT,
  payee: AddressT,
  token: AddressT,
  signer: AddressT,
  deposit: Uint,
  /** Unix seconds of the close deadline on chain; 0 while no close was requested. */
  closeDeadline: Uint,
  pricePerGiB: Uint,
  /** Cumulative amount the contract has paid out for this channel, as last read or confirmed. */
  settled: Uint,
  openedAt: Type.Integer({ minimum: 0 }),
  lastSeenAt: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })

/** The latest accepted voucher of a channel. */
export const StoredVoucherSchema = Type.Object({
  channelId: Bytes32T,
  cumulativeAmount: Uint,
  cumulativeBytes: Uint,
  signature: HexT,
  receivedAt: Type.Integer({ minimum: 0 }),
  /** Sequence number of the audit entry written with it. */
  auditSeq: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })

/** One buyer session of the seller. */
export const SessionSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128 }),
  peer: Type.String({ minLength: 1, maxLength: 256 }),
  channelId: Bytes32T,
  deliveredBytes: Uint,
  /** Value delivered but not covered by a persisted voucher (token base units). */
  unpaid: Uint,
  /** Highest unpaid value seen during the session (token base units). */
  maxExposure: Uint,
  state: Type.Union([Type.Literal('active'), Type.Literal('ended')]),
  startedAt: Type.Integer({ minimum: 0 }),
  endedAt: Type.Optional(Type.Integer({ minimum: 0 }))
}, { additionalProperties: false })

/** A snapshot of named counters (bytes, packets, sessions…). */
export const MeterSnapshotSchema = Type.Object({
  at: Type.Integer({ minimum: 0 }),
  counters: Type.Record(Type.String(), Uint)
}, { additionalProperties: false })

/** One voucher of a settlement batch, with the on-chain settled amount it was checked against. */
export const BatchItemSchema = Type.Object({
  channelId: Bytes32T,
  cumulativeAmount: Uint,
  cumulativeBytes: Uint,
  signature: HexT,
  /** `settled` on chain when the batch was built; the batch pays `cumulativeAmount - settledBefore`. */
  settledBefore: Uint
}, { additionalProperties: false })

/** The vouchers of one token in a batch. */
export const TokenItemsSchema = Type.Object({
  token: AddressT,
  items: Type.Array(BatchItemSchema)
}, { additionalProperties: false })

/** States of a settlement batch in the outbox. */
export const OutboxStateSchema = Type.Union([
  Type.Literal('pending'),
  Type.Literal('submitted'),
  Type.Literal('confirmed'),
  Type.Literal('failed')
])

/** A settlement batch in the durable outbox: intent first, then the signed transaction, then the outcome. */
export const OutboxEntrySchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64 }),
  state: OutboxStateSchema,
  createdAt: Type.Integer({ minimum: 0 }),
  reason: Type.String({ maxLength: 64 }),
  payee: AddressT,
  auditHead: Bytes32T,
  tokens: Type.Array(TokenItemsSchema),
  /** Whether a close deadline forced this batch past the gas price cap. */
  forced: Type.Boolean(),
  txHash: Type.Optional(Bytes32T),
  rawTx: Type.Optional(HexT),
  nonce: Type.Optional(Type.Integer({ minimum: 0 })),
  submittedAt: Type.Optional(Type.Integer({ minimum: 0 })),
  error: Type.Optional(Type.String({ maxLength: 2048 })),
  updatedAt: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })

/** What one channel was paid by a confirmed batch. */
export const PaidItemSchema = Type.Object({
  channelId: Bytes32T,
  token: AddressT,
  cumulativeAmount: Uint,
  paid: Uint
}, { additionalProperties: false })

/** A voucher the contract skipped, with its reason code. */
export const SkippedItemSchema = Type.Object({
  channelId: Bytes32T,
  reason: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })

/** A settled batch, as mined. */
export const BatchRecordSchema = Type.Object({
  outboxId: Type.String({ minLength: 1, maxLength: 64 }),
  txHash: Bytes32T,
  blockNumber: Uint,
  status: Type.Union([Type.Literal('success'), Type.Literal('reverted')]),
  gasUsed: Uint,
  effectiveGasPrice: Uint,
  auditHead: Bytes32T,
  paid: Type.Array(PaidItemSchema),
  skipped: Type.Array(SkippedItemSchema),
  confirmedAt: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })

/** One entry of the hash-chained audit log. */
export const AuditEntrySchema = Type.Object({
  seq: Type.Integer({ minimum: 0 }),
  prevHash: Bytes32T,
  at: Type.Integer({ minimum: 0 }),
  kind: Type.String({ minLength: 1, maxLength: 64 }),
  data: Type.Unknown(),
  hash: Bytes32T
}, { additionalProperties: false })

/** Channel terms. */
export type ChannelRecord = StaticDecode<typeof ChannelSchema>
/** The latest voucher of a channel as stored. */
export type StoredVoucher = StaticDecode<typeof StoredVoucherSchema>
/** A buyer session record. */
export type SessionRecord = StaticDecode<typeof SessionSchema>
/** A counters snapshot. */
export type MeterSnapshot = StaticDecode<typeof MeterSnapshotSchema>
/** One voucher of a batch. */
export type BatchItem = StaticDecode<typeof BatchItemSchema>
/** The vouchers of one token of a batch. */
export type TokenItems = StaticDecode<typeof TokenItemsSchema>
/** Outbox state. */
export type OutboxState = StaticDecode<typeof OutboxStateSchema>
/** A settlement batch in the outbox. */
export type OutboxEntry = StaticDecode<typeof OutboxEntrySchema>
/** What one channel was paid. */
export type PaidItem = StaticDecode<typeof PaidItemSchema>
/** A skipped voucher. */
export type SkippedItem = StaticDecode<typeof SkippedItemSchema>
/** A settled batch. */
export type BatchRecord = StaticDecode<typeof BatchRecordSchema>
/** An audit log entry. */
export type AuditEntry = StaticDecode<typeof AuditEntrySchema>

/** A level value encoding (utf8 JSON) that validates on read and turns decimal strings into bigints. */
export interface RecordEncoding<T> {
  name: string
  format: 'utf8'
  encode: (value: T) => string
  decode: (text: string) => T
}

/** Builds the value encoding of one sublevel from its schema. */
export function recordEncoding<S extends TSchema> (name: string, schema: S): RecordEncoding<StaticDecode<S>> {
  const check = TypeCompiler.Compile(schema)
  return {
    name: `spareband-${name}`,
    format: 'utf8',
    encode: (value) => JSON.stringify(check.Encode(value)),
    decode: (text) => {
      try {
        return check.Decode(JSON.parse(text))
      } catch (err) {
        throw new StoredRecordError(name, { cause: err })
      }
    }
  }
}

/** Turns a value with bigints into plain JSON (bigints as decimal strings), for audit data. */
export function toJsonValue (value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (Array.isArray(value)) return value.map(toJsonValue)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) out[k] = toJsonValue(v)
    }
    return out
  }
  return value
}
