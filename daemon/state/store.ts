import { mkdir } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { Level, type BatchOperation } from 'level'
import type { AbstractSublevel } from 'abstract-level'
import type { Hex } from 'viem'
import { SparebandError } from '../../protocol/errors.ts'
import { assertVoucherFields, type SignedVoucher } from '../../protocol/voucher.ts'
import { AUDIT_GENESIS_HASH, auditKey, checkAuditEntry, nextAuditEntry, type AuditHead } from './audit-log.ts'
import {
  AuditEntrySchema, BatchRecordSchema, ChannelSchema, MeterSnapshotSchema, OutboxEntrySchema, SessionSchema, StoredVoucherSchema,
  recordEncoding,
  type AuditEntry, type BatchRecord, type ChannelRecord, type MeterSnapshot, type OutboxEntry, type SessionRecord, type StoredVoucher
} from './codec.ts'

/** Raised when the data directory cannot be opened (most often: another daemon holds its lock). */
export class StoreOpenError extends SparebandError {
  constructor (dataDir: string, options?: { cause?: unknown }) {
    super('ERR_STORE_OPEN', `cannot open the state database in ${dataDir}; if another spareband process uses this data directory stop it first, otherwise check the directory's permissions`, options)
  }
}

/** Raised when a voucher does not raise the channel's cumulative amount. */
export class VoucherNotMonotonicError extends SparebandError {
  /** Cumulative amount of the voucher already stored. */
  readonly stored: bigint

  constructor (channelId: Hex, offered: bigint, stored: bigint) {
    super('ERR_VOUCHER_NOT_MONOTONIC', `voucher for channel ${channelId} carries ${offered}, not more than the ${stored} already accepted; the buyer must send a voucher with a higher cumulative amount`)
    this.stored = stored
  }
}

/** Raised when an operation names a channel the store does not know. */
export class UnknownChannelError extends SparebandError {
  constructor (channelId: Hex) {
    super('ERR_UNKNOWN_CHANNEL', `channel ${channelId} is not in the state database; record its terms (putChannel) before using it`)
  }
}

/** Raised when an outbox update names a batch that is not in the outbox. */
export class UnknownOutboxEntryError extends SparebandError {
  constructor (id: string) {
    super('ERR_UNKNOWN_OUTBOX_ENTRY', `settlement batch ${id} is not in the outbox; it may belong to another data directory`)
  }
}

/** Options of {@link SellerStore.open}. */
export interface SellerStoreInit {
  /** Directory of the LevelDB database (created if missing). */
  dataDir: string
  /** Clock in milliseconds; defaults to `Date.now`. */
  now?: () => number
}

/** A batch as the settler drafts it, before the store gives it an id and anchors it in the audit log. */
export type OutboxDraft = Pick<OutboxEntry, 'reason' | 'payee' | 'tokens' | 'forced'>

/** Changes an outbox entry may go through after it was queued. */
export type OutboxUpdate = Partial<Pick<OutboxEntry, 'state' | 'txHash' | 'rawTx' | 'nonce' | 'submittedAt' | 'error'>>

/** Fields of a channel that change over its life. */
export type ChannelUpdate = Partial<Pick<ChannelRecord, 'deposit' | 'closeDeadline' | 'settled' | 'lastSeenAt' | 'pricePerGiB'>>

type StringLevel = Level<string, string>

/**
 * The seller's durable state: LevelDB with one sublevel per concern (channels,
 * vouchers, sessions, meters, outbox, batches, meta) and a hash-chained audit log.
 *
 * Every write that matters for money is a single atomic batch written with
 * `sync: true` (fsync before the promise resolves) and carries its audit entry,
 * so the log and the state never disagree. Writes are serialised in process;
 * LevelDB's lock file keeps a second process out.
 */
export class SellerStore {
  readonly dataDir: string
  readonly #db: StringLevel
  readonly #now: () => number
  readonly #channels
  readonly #vouchers
  readonly #sessions
  readonly #meters
  readonly #outbox
  readonly #batches
  readonly #audit
  readonly #meta
  #head: AuditHead = { nextSeq: 0, hash: AUDIT_GENESIS_HASH }
  #queue: Promise<unknown> = Promise.resolve()

  private constructor (db: StringLevel, init: SellerStoreInit) {
    this.dataDir = init.dataDir
    this.#db = db
    this.#now = init.now ?? Date.now
    this.#channels = db.sublevel<string, ChannelRecord>('channels', { valueEncoding: recordEncoding('channel', ChannelSchema) })
    this.#vouchers = db.sublevel<string, StoredVoucher>('vouchers', { valueEncoding: recordEncoding('voucher', StoredVoucherSchema) })
    this.#sessions = db.sublevel<string, SessionRecord>('sessions', { valueEncoding: recordEncoding('session', SessionSchema) })
    this.#meters = db.sublevel<string, MeterSnapshot>('meters', { valueEncoding: recordEncoding('meter', MeterSnapshotSchema) })
    this.#outbox = db.sublevel<string, OutboxEntry>('outbox', { valueEncoding: recordEncoding('outbox entry', OutboxEntrySchema) })
    this.#batches = db.sublevel<string, BatchRecord>('batches', { valueEncoding: recordEncoding('batch', BatchRecordSchema) })
    this.#audit = db.sublevel<string, AuditEntry>('audit', { valueEncoding: recordEncoding('audit entry', AuditEntrySchema) })
    this.#meta = db.sublevel<string, string>('meta', { valueEncoding: 'utf8' })
  }

  /** Opens (creating if needed) the database in `dataDir` and loads the audit head. */
  static async open (init: SellerStoreInit): Promise<SellerStore> {
    await mkdir(init.dataDir, { recursive: true, mode: 0o700 })
    const db: StringLevel = new Level<string, string>(init.dataDir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    try {
      await db.open()
    } catch (err) {
      throw new StoreOpenError(init.dataDir, { cause: err })
    }
    const store = new SellerStore(db, init)
    for await (const entry of store.#audit.values({ reverse: true, limit: 1 })) {
      store.#head = { nextSeq: entry.seq + 1, hash: entry.hash }
    }
    return store
  }

  /** Waits for pending writes, then closes the database. */
  async close (): Promise<void> {
    await this.#queue
    await this.#db.close()
  }

  /** Hash of the last audit entry (all zeros while the log is empty): what settlement anchors on chain. */
  auditHead (): Hex {
    return this.#head.hash
  }

  // ---- channels ----------------------------------------------------------

  /** Records a channel's terms (or replaces them), with a `channel` audit entry, durably. */
  async putChannel (terms: ChannelRecord): Promise<void> {
    const channel = { ...terms, channelId: idKey(terms.channelId) }
    await this.#exclusive(async () => {
      const audit = this.#nextAudit('channel', channel)
      await this.#write([this.#put(this.#channels, channel.channelId, channel), audit.op], audit.head)
    })
  }

  /**
   * Applies `update` to a known channel, durably; with `auditKind` the change is
   * also recorded in the audit log. Returns the updated record.
   */
  async updateChannel (id: Hex, update: ChannelUpdate, auditKind?: string): Promise<ChannelRecord> {
    const channelId = idKey(id)
    return await this.#exclusive(async () => {
      const current = await this.#channels.get(channelId)
      if (current === undefined) throw new UnknownChannelError(channelId)
      const next = { ...current, ...update }
      if (auditKind === undefined) {
        await this.#write([this.#put(this.#channels, channelId, next)])
      } else {
        const audit = this.#nextAudit(auditKind, { channelId, ...update })
        await this.#write([this.#put(this.#channels, channelId, next), audit.op], audit.head)
      }
      return next
    })
  }

  /** The terms of one channel, or undefined. */
  async getChannel (channelId: Hex): Promise<ChannelRecord | undefined> {
    return await this.#channels.get(idKey(channelId))
  }

  /** Every known channel. */
  async listChannels (): Promise<ChannelRecord[]> {
    return await this.#channels.values().all()
  }

  // ---- vouchers ----------------------------------------------------------

  /**
   * Persists a voucher as the channel's latest, with its audit entry, in one atomic
   * batch written with `sync: true`. Resolves only once both are on disk: call it
   * before acknowledging the voucher or granting more credit.
   *
   * Monotonic: throws {@link VoucherNotMonotonicError} unless the cumulative amount
   * is strictly higher than the stored one. The signature is not checked here; the
   * payment plane verifies it before calling.
   */
  async persistVoucher (signed: SignedVoucher): Promise<StoredVoucher> {
    assertVoucherFields(signed)
    const voucher = { ...signed, channelId: idKey(signed.channelId) }
    return await this.#exclusive(async () => {
      const current = await this.#vouchers.get(voucher.channelId)
      if (current !== undefined && voucher.cumulativeAmount <= current.cumulativeAmount) {
        throw new VoucherNotMonotonicError(voucher.channelId, voucher.cumulativeAmount, current.cumulativeAmount)
      }
      const audit = this.#nextAudit('voucher', {
        channelId: voucher.channelId,
        cumulativeAmount: voucher.cumulativeAmount,
        cumulativeBytes: voucher.cumulativeBytes,
        signature: voucher.signature
      })
      const stored: StoredVoucher = {
        channelId: voucher.channelId,
        cumulativeAmount: voucher.cumulativeAmount,
        cumulativeBytes: voucher.cumulativeBytes,
        signature: voucher.signature,
        receivedAt: audit.entry.at,
        auditSeq: audit.entry.seq
      }
      await this.#write([this.#put(this.#vouchers, voucher.channelId, stored), audit.op], audit.head)
      return stored
    })
  }

  /** The latest accepted voucher of a channel, or undefined. */
  async getVoucher (channelId: Hex): Promise<StoredVoucher | undefined> {
    return await this.#vouchers.get(idKey(channelId))
  }

  /** The latest accepted voucher of every channel. */
  async listVouchers (): Promise<StoredVoucher[]> {
    return await this.#vouchers.values().all()
  }

  // ---- sessions and meters ----------------------------------------------

  /** Records a buyer session (created or updated); an ended session gets a `session-end` audit entry. */
  async putSession (session: SessionRecord): Promise<void> {
    await this.#exclusive(async () => {
      if (session.state === 'ended') {
        const audit = this.#nextAudit('session-end', session)
        await this.#write([this.#put(this.#sessions, session.id, session), audit.op], audit.head)
      } else {
        await this.#write([this.#put(this.#sessions, session.id, session)])
      }
    })
  }

  /** One session, or undefined. */
  async getSession (id: string): Promise<SessionRecord | undefined> {
    return await this.#sessions.get(id)
  }

  /** Every recorded session. */
  async listSessions (): Promise<SessionRecord[]> {
    return await this.#sessions.values().all()
  }

  /** Stores the latest snapshot of a named set of counters (not synced: a lost snapshot is re-taken). */
  async putMeterSnapshot (name: string, snapshot: MeterSnapshot): Promise<void> {
    await this.#meters.put(name, snapshot)
  }

  /** The latest snapshot of a named set of counters, or undefined. */
  async getMeterSnapshot (name: string): Promise<MeterSnapshot | undefined> {
    return await this.#meters.get(name)
  }

  // ---- settlement outbox and batches --------------------------------------

  /**
   * Queues a settlement batch: writes its intent to the outbox as `pending` together
   * with a `batch-intent` audit entry, durably. The entry's `auditHead` is the hash of
   * that audit entry, the value the transaction anchors on chain.
   */
  async queueBatch (draft: OutboxDraft): Promise<OutboxEntry> {
    return await this.#exclusive(async () => {
      const now = this.#now()
      const id = `${now.toString().padStart(15, '0')}-${randomBytes(4).toString('hex')}`
      const audit = this.#nextAudit('batch-intent', { id, ...draft })
      const entry: OutboxEntry = { id, state: 'pending', createdAt: now, updatedAt: now, auditHead: audit.entry.hash, ...draft }
      await this.#write([this.#put(this.#outbox, id, entry), audit.op], audit.head)
      return entry
    })
  }

  /** Applies a state change to an outbox entry durably, with a `batch-<state>` audit entry. */
  async updateOutbox (id: string, update: OutboxUpdate): Promise<OutboxEntry> {
    return await this.#exclusive(async () => {
      const current = await this.#outbox.get(id)
      if (current === undefined) throw new UnknownOutboxEntryError(id)
      const next: OutboxEntry = { ...current, ...update, updatedAt: this.#now() }
      const audit = this.#nextAudit(`batch-${next.state}`, { id, txHash: next.txHash, nonce: next.nonce, error: next.error })
      await this.#write([this.#put(this.#outbox, id, next), audit.op], audit.head)
      return next
    })
  }

  /**
   * Records a mined batch in one durable write: the outbox entry becomes
   * `confirmed` (or `failed` if the transaction reverted), the batch record is stored, each channel's `settled` amount is
   * updated, and a `batch-settled` audit entry is appended.
   */
  async completeBatch (id: string, record: BatchRecord, settled: ReadonlyMap<Hex, bigint>): Promise<void> {
    await this.#exclusive(async () => {
      const current = await this.#outbox.get(id)
      if (current === undefined) throw new UnknownOutboxEntryError(id)
      const confirmed: OutboxEntry = { ...current, state: record.status === 'success' ? 'confirmed' : 'failed', txHash: record.txHash, updatedAt: this.#now() }
      const ops: BatchOp[] = [
        this.#put(this.#outbox, id, confirmed),
        this.#put(this.#batches, record.txHash, record)
      ]
      for (const [id, amount] of settled) {
        const channelId = idKey(id)
        const channel = await this.#channels.get(channelId)
        if (channel !== undefined && amount > channel.settled) ops.push(this.#put(this.#channels, channelId, { ...channel, settled: amount }))
      }
      const audit = this.#nextAudit('batch-settled', record)
      ops.push(audit.op)
      await this.#write(ops, audit.head)
    })
  }

  /** One outbox entry, or undefined. */
  async getOutbox (id: string): Promise<OutboxEntry | undefined> {
    return await this.#outbox.get(id)
  }

  /** Every outbox entry, oldest first. */
  async listOutbox (): Promise<OutboxEntry[]> {
    return await this.#outbox.values().all()
  }

  /** The record of a settled batch by transaction hash, or undefined. */
  async getBatch (txHash: Hex): Promise<BatchRecord | undefined> {
    return await this.#batches.get(txHash)
  }

  /** Every settled batch, by transaction hash. */
  async listBatches (): Promise<BatchRecord[]> {
    return await this.#batches.values().all()
  }

  // ---- meta and audit ----------------------------------------------------

  /** A small named value (e.g. the chain watcher's block cursor), or undefined. */
  async getMeta (key: string): Promise<string | undefined> {
    return await this.#meta.get(key)
  }

  /** Stores a small named value durably. */
  async putMeta (key: string, value: string): Promise<void> {
    await this.#write([this.#put(this.#meta, key, value)])
  }

  /** The audit entries from sequence number `fromSeq` on, in order. */
  async * readAudit (fromSeq = 0): AsyncGenerator<AuditEntry> {
    for await (const entry of this.#audit.values({ gte: auditKey(fromSeq) })) yield entry
  }

  /**
   * Walks the whole audit log and checks its hash chain; throws `AuditChainError`
   * on the first broken link, or if the chain does not end at the current head.
   * Returns the head.
   */
  async verifyAudit (): Promise<AuditHead> {
    let head: AuditHead = { nextSeq: 0, hash: AUDIT_GENESIS_HASH }
    for await (const entry of this.readAudit()) head = checkAuditEntry(head, entry)
    if (head.hash !== this.#head.hash || head.nextSeq !== this.#head.nextSeq) {
      throw new SparebandError('ERR_AUDIT_CHAIN', `audit log ends at entry ${head.nextSeq - 1} but the head in memory is entry ${this.#head.nextSeq - 1}; restart the daemon`)
    }
    return head
  }

  // ---- internals ---------------------------------------------------------

  #nextAudit (kind: string, data: unknown): { entry: AuditEntry, head: AuditHead, op: BatchOp } {
    const entry = nextAuditEntry(this.#head, kind, data, this.#now())
    return { entry, head: { nextSeq: entry.seq + 1, hash: entry.hash }, op: this.#put(this.#audit, auditKey(entry.seq), entry) }
  }

  #put<V> (sublevel: Sublevel<V>, key: string, value: V): BatchOp {
    return { type: 'put', sublevel, key, value } as unknown as BatchOp
  }

  /** One atomic, synced batch; moves the in-memory audit head only once it is durable. */
  async #write (ops: BatchOp[], head?: AuditHead): Promise<void> {
    await this.#db.batch(ops, { sync: true })
    if (head !== undefined) this.#head = head
  }

  #exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(() => undefined)
    return run
  }
}

/** Channel ids are keyed (and stored) in lower case, whatever case a caller used. */
function idKey (channelId: Hex): Hex {
  return channelId.toLowerCase() as Hex
}

type Sublevel<V> = AbstractSublevel<StringLevel, string | Uint8Array, string, V>
type BatchOp = BatchOperation<StringLevel, string, string>
