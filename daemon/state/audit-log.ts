import { keccak256, stringToBytes, type Hex } from 'viem'
import { SparebandError } from '../../protocol/errors.ts'
import { toJsonValue, type AuditEntry } from './codec.ts'

/** `prevHash` of the first entry, and the head of an empty log. */
export const AUDIT_GENESIS_HASH: Hex = `0x${'00'.repeat(32)}`

/** Raised when the audit log's hash chain does not verify. */
export class AuditChainError extends SparebandError {
  constructor (seq: number, why: string) {
    super('ERR_AUDIT_CHAIN', `audit log entry ${seq} ${why}; the data directory was altered outside spareband — keep a copy for investigation and restore from a backup`)
  }
}

/** The head of an audit log: the last entry's sequence number and hash. */
export interface AuditHead {
  /** Sequence number the next entry gets. */
  nextSeq: number
  hash: Hex
}

/** Canonical JSON: object keys sorted, no whitespace, bigints as decimal strings. */
export function canonicalJson (value: unknown): string {
  return JSON.stringify(sortKeys(toJsonValue(value)))
}

function sortKeys (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key])
    return out
  }
  return value
}

/** The hash of an entry: keccak256 of the canonical JSON of `[seq, prevHash, at, kind, data]`. */
export function auditEntryHash (entry: Omit<AuditEntry, 'hash'>): Hex {
  return keccak256(stringToBytes(canonicalJson([entry.seq, entry.prevHash, entry.at, entry.kind, entry.data])))
}

/** Builds the entry that follows `head`. `data` may hold bigints; they are stored as decimal strings. */
export function nextAuditEntry (head: AuditHead, kind: string, data: unknown, at: number): AuditEntry {
  const body = { seq: head.nextSeq, prevHash: head.hash, at, kind, data: toJsonValue(data) }
  return { ...body, hash: auditEntryHash(body) }
}

/** Storage key of an entry: the sequence number zero-padded so keys sort in order. */
export function auditKey (seq: number): string {
  return seq.toString().padStart(16, '0')
}

/**
 * Checks that `entry` follows `head`: its sequence number is the next one, its
 * `prevHash` is the head's hash and its hash matches its content. Returns the new head.
 */
export function checkAuditEntry (head: AuditHead, entry: AuditEntry): AuditHead {
  if (entry.seq !== head.nextSeq) throw new AuditChainError(entry.seq, `follows ${head.nextSeq - 1} with a gap`)
  if (entry.prevHash !== head.hash) throw new AuditChainError(entry.seq, 'does not link to the previous entry')
  if (auditEntryHash(entry) !== entry.hash) throw new AuditChainError(entry.seq, 'does not match its hash')
  return { nextSeq: entry.seq + 1, hash: entry.hash }
}
