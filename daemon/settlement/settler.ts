/**
 * Settler: redeems the latest unsettled voucher of many channels in one
 * `settleBatch` transaction per payee, through a durable outbox.
 *
 * A round: (1) finish what the outbox left open — a `submitted` batch is
 * followed to its receipt (re-broadcasting the recorded raw transaction if the
 * node forgot it), a `pending` one (intent written, nothing signed) is marked
 * failed and rebuilt; (2) read each candidate channel on chain and keep only
 * vouchers above its `settled` amount, within its deposit, not withdrawn;
 * (3) check the gas price cap; (4) write the intent (sync), sign, record the
 * signed transaction and its hash (sync), broadcast, wait for the receipt and
 * record the batch. The contract only ever pays `cumulative − settled`, and
 * the settler re-reads `settled` before every batch, so retries and restarts
 * never pay twice.
 */
import { TypedEventEmitter, type Startable } from '@libp2p/interface'
import {
  BaseError, TransactionReceiptNotFoundError, WaitForTransactionReceiptTimeoutError, encodeFunctionData, keccak256, parseEventLogs, zeroAddress,
  type Address, type Hex, type TransactionReceipt
} from 'viem'
import type { Logger } from 'pino'
import { spareChannelsAbi } from '../../protocol/contract/artifact.ts'
import { VOUCHER_SKIP_REASONS } from '../../protocol/contract/channels.ts'
import { SparebandError } from '../../protocol/errors.ts'
import { encodeVoucherRecords } from '../../protocol/voucher.ts'
import type { OnchainChannel, SpareChannelsClient } from '../chain/client.ts'
import type { BatchItem, BatchRecord, ChannelRecord, OutboxEntry, StoredVoucher } from '../state/codec.ts'
import type { SellerStore } from '../state/store.ts'

/** Default time between two settlements while anything is owed: 1 h. */
export const DEFAULT_SETTLE_INTERVAL_MS = 60 * 60 * 1000
/** Default time between two looks at the triggers: 5 s. */
export const DEFAULT_CHECK_INTERVAL_MS = 5_000
/** Default margin before a close deadline at which settlement is forced past the gas cap: 1 h. */
export const DEFAULT_DEADLINE_MARGIN_SEC = 3600n
/** Default number of vouchers in one transaction (~40k gas each keeps a batch far below a 30M block). */
export const DEFAULT_MAX_VOUCHERS_PER_BATCH = 150
/** Default time to wait for a receipt before leaving the batch in flight for the next round. */
export const DEFAULT_RECEIPT_TIMEOUT_MS = 120_000
/** Default upper bound of the back-off after failed rounds. */
export const DEFAULT_MAX_BACKOFF_MS = 5 * 60 * 1000

const META_LAST_ROUND = 'settler.lastRoundAt'
/** Skip reasons that a retry cannot cure: the voucher is left out until a higher one arrives. */
const PERMANENT_SKIPS: ReadonlySet<number> = new Set([VOUCHER_SKIP_REASONS.noChannel, VOUCHER_SKIP_REASONS.withdrawn, VOUCHER_SKIP_REASONS.badSignature])

/** Raised when the settler is used without an account to sign with. */
export class SettlerConfigError extends SparebandError {
  constructor (message: string) {
    super('ERR_SETTLER_CONFIG', message)
  }
}

/** Raised (to the loop's back-off) when a settlement transaction reverted. */
export class SettlementRevertedError extends SparebandError {
  constructor (txHash: Hex) {
    super('ERR_SETTLEMENT_REVERTED', `settlement transaction ${txHash} reverted; its vouchers stay owed and are retried after a back-off — check that the payee can receive the token`)
  }
}

/** Options of {@link Settler}. */
export interface SettlerInit {
  store: SellerStore
  /** Chain client with the hot account that pays the gas (the payee may be a cold address). */
  chain: SpareChannelsClient
  logger: Logger
  /** Settle everything owed at least this often. Default {@link DEFAULT_SETTLE_INTERVAL_MS}. */
  intervalMs?: number
  /** How often the triggers are checked (no RPC unless one fires). Default {@link DEFAULT_CHECK_INTERVAL_MS}. */
  checkIntervalMs?: number
  /** Settle as soon as the amount owed in one token reaches this (base units); applies to every token without its own. */
  threshold?: bigint
  /** Per-token thresholds (token address, any case). */
  thresholdByToken?: Readonly<Record<string, bigint>>
  /**
   * Most the settler pays per gas unit (wei). A round is deferred while the next
   * block's base fee plus the priority fee exceeds it, and the transaction's
   * `maxFeePerGas` is the cap. A channel within {@link deadlineMarginSec} of its
   * close deadline lifts the cap (losing the voucher costs more than gas).
   */
  gasPriceCap?: bigint
  /** Seconds before a close deadline at which a channel is settled whatever the gas price. Default {@link DEFAULT_DEADLINE_MARGIN_SEC}. */
  deadlineMarginSec?: bigint
  /** Most vouchers in one transaction; the rest follow in the next round at once. Default {@link DEFAULT_MAX_VOUCHERS_PER_BATCH}. */
  maxVouchersPerBatch?: number
  /** How long one round waits for a receipt. Default {@link DEFAULT_RECEIPT_TIMEOUT_MS}. */
  receiptTimeoutMs?: number
  /** First back-off after a failed round, doubled per failure. Default 1 s. */
  baseBackoffMs?: number
  /** Back-off bound. Default {@link DEFAULT_MAX_BACKOFF_MS}. */
  maxBackoffMs?: number
  /** Clock in ms; default `Date.now`. Close deadlines are compared with it. */
  now?: () => number
}

/** Why a round runs. */
export type SettleReason = 'on-demand' | 'close-requested' | 'close-deadline' | 'threshold' | 'interval' | 'resume'

/** Options of {@link Settler.settleNow}. */
export interface SettleNowOptions {
  /** Send even if the gas price is above the cap. */
  ignoreGasCap?: boolean
  reason?: SettleReason
}

/** What one round did. */
export interface SettleResult {
  /** Batches mined during the round (success or reverted). */
  batches: BatchRecord[]
  /** Set when the gas price cap held a batch back: the gas price seen (wei). */
  deferredGasPrice?: bigint
  /** Set when a batch was sent but not mined within the receipt timeout. */
  inFlight?: Hex
  /** Vouchers left for the next round because the batch was full. */
  remaining: number
}

/** Events of the {@link Settler}; listeners run synchronously at each durable step. */
export interface SettlerEvents {
  /** A batch intent is in the outbox (synced). */
  queued: CustomEvent<OutboxEntry>
  /** Its transaction is signed and recorded with its hash (synced), not yet broadcast. */
  signed: CustomEvent<OutboxEntry>
  /** The transaction was handed to the RPC node. */
  sent: CustomEvent<OutboxEntry>
  /** The batch was mined and recorded. */
  settled: CustomEvent<BatchRecord>
  /** The gas price cap held a batch back. */
  deferred: CustomEvent<{ gasPrice: bigint, cap: bigint }>
  /** A round failed; it is retried after a back-off. */
  failed: CustomEvent<{ error: unknown, attempt: number }>
}

/** What the store says one channel is owed. */
export interface OwedChannel {
  channel: ChannelRecord
  voucher: StoredVoucher
  owed: bigint
}

interface Candidate extends OwedChannel {
  onchain: OnchainChannel
}

/**
 * Batch settlement service: `start()` checks the triggers every
 * `checkIntervalMs` (owed threshold per token, interval, close deadlines) and
 * settles; `settleNow()` settles on demand; `trigger()` asks for a round soon.
 */
export class Settler extends TypedEventEmitter<SettlerEvents> implements Startable {
  readonly #store: SellerStore
  readonly #chain: SpareChannelsClient
  readonly #log: Logger
  readonly #intervalMs: number
  readonly #checkIntervalMs: number
  readonly #threshold: bigint | undefined
  readonly #thresholdByToken: Map<string, bigint>
  readonly #gasPriceCap: bigint | undefined
  readonly #marginSec: bigint
  readonly #maxVouchers: number
  readonly #receiptTimeoutMs: number
  readonly #baseBackoffMs: number
  readonly #maxBackoffMs: number
  readonly #now: () => number
  /** channelId → amount of a voucher the contract refused for good; left out until a higher one arrives. */
  readonly #refused = new Map<Hex, bigint>()
  /** Vouchers without channel terms already warned about. */
  readonly #orphans = new Set<Hex>()
  #rounds: Promise<unknown> = Promise.resolve()
  #timer: ReturnType<typeof setTimeout> | undefined
  #running = false
  #failures = 0
  #soon: SettleReason | undefined
  #lastRoundAt = 0

  constructor (init: SettlerInit) {
    super()
    if (init.chain.walletClient === undefined) throw new SettlerConfigError('the settler needs a chain client with an account (the hot key) to sign settlement transactions')
    this.#store = init.store
    this.#chain = init.chain
    this.#log = init.logger.child({ component: 'settler' })
    this.#intervalMs = init.intervalMs ?? DEFAULT_SETTLE_INTERVAL_MS
    this.#checkIntervalMs = Math.min(init.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS, this.#intervalMs)
    this.#threshold = init.threshold
    this.#thresholdByToken = new Map(Object.entries(init.thresholdByToken ?? {}).map(([t, v]) => [t.toLowerCase(), v]))
    this.#gasPriceCap = init.gasPriceCap
    this.#marginSec = init.deadlineMarginSec ?? DEFAULT_DEADLINE_MARGIN_SEC
    this.#maxVouchers = init.maxVouchersPerBatch ?? DEFAULT_MAX_VOUCHERS_PER_BATCH
    this.#receiptTimeoutMs = init.receiptTimeoutMs ?? DEFAULT_RECEIPT_TIMEOUT_MS
    this.#baseBackoffMs = init.baseBackoffMs ?? 1000
    this.#maxBackoffMs = init.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS
    this.#now = init.now ?? Date.now
  }

  readonly [Symbol.toStringTag] = 'spareband/settler'

  /** Starts the trigger loop; an unfinished outbox batch is resumed at once. */
  async start (): Promise<void> {
    if (this.#running) return
    this.#running = true
    const last = await this.#store.getMeta(META_LAST_ROUND)
    this.#lastRoundAt = last === undefined ? this.#now() : Number(last)
    this.#schedule(0)
  }

  /** Stops the loop and waits for a round in progress. */
  async stop (): Promise<void> {
    this.#running = false
    clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#rounds
  }

  /** Asks the running service for a round at its next opportunity (e.g. a channel's close was requested). */
  trigger (reason: SettleReason): void {
    this.#soon ??= reason
    if (this.#running) this.#schedule(0)
  }

  /** Runs a round now (after any round in progress) and resolves with what it did. */
  async settleNow (options: SettleNowOptions = {}): Promise<SettleResult> {
    return await this.#enqueue(options.reason ?? 'on-demand', options.ignoreGasCap === true)
  }

  /**
   * Why a round is due now, judged from the store alone (no RPC): an unfinished
   * outbox batch, a close deadline within the margin, a token's owed total at its
   * threshold, or the interval elapsed with something owed. Undefined if none.
   */
  async dueReason (): Promise<SettleReason | undefined> {
    if ((await this.#store.listOutbox()).some(isOpen)) return 'resume'
    const owed = await this.owed()
    if (owed.length === 0) return undefined
    const nowSec = BigInt(Math.floor(this.#now() / 1000))
    if (owed.some((o) => this.#withinMargin(o.channel.closeDeadline, nowSec))) return 'close-deadline'
    const perToken = new Map<string, bigint>()
    for (const o of owed) {
      const token = o.channel.token.toLowerCase()
      perToken.set(token, (perToken.get(token) ?? 0n) + o.owed)
    }
    for (const [token, total] of perToken) {
      const threshold = this.#thresholdByToken.get(token) ?? this.#threshold
      if (threshold !== undefined && total >= threshold) return 'threshold'
    }
    if (this.#now() - this.#lastRoundAt >= this.#intervalMs) return 'interval'
    return undefined
  }

  /** Channels whose latest voucher exceeds what the store knows was settled. */
  async owed (): Promise<OwedChannel[]> {
    const channels = new Map((await this.#store.listChannels()).map((c) => [c.channelId, c]))
    const out: OwedChannel[] = []
    for (const voucher of await this.#store.listVouchers()) {
      const channel = channels.get(voucher.channelId)
      if (channel === undefined) {
        if (this.#orphans.has(voucher.channelId)) continue
        this.#orphans.add(voucher.channelId)
        this.#log.warn({ channelId: voucher.channelId }, 'voucher without channel terms in the store; it cannot be settled until the channel is recorded')
        continue
      }
      const refused = this.#refused.get(voucher.channelId)
      if (refused !== undefined && voucher.cumulativeAmount <= refused) continue
      if (voucher.cumulativeAmount > channel.settled) out.push({ channel, voucher, owed: voucher.cumulativeAmount - channel.settled })
    }
    return out
  }

  // ---- loop ----------------------------------------------------------------

  #schedule (delayMs: number): void {
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => { void this.#tick() }, delayMs)
  }

  async #tick (): Promise<void> {
    this.#timer = undefined
    if (!this.#running) return
    let next = this.#checkIntervalMs
    try {
      const reason = this.#soon ?? await this.dueReason()
      this.#soon = undefined
      if (reason !== undefined) {
        const result = await this.#enqueue(reason, false)
        const reverted = result.batches.find((b) => b.status === 'reverted')
        if (reverted !== undefined) throw new SettlementRevertedError(reverted.txHash)
        if (result.remaining > 0) next = 0
      }
      this.#failures = 0
    } catch (error) {
      this.#failures++
      next = Math.min(this.#baseBackoffMs * 2 ** (this.#failures - 1), this.#maxBackoffMs)
      this.#log.warn({ err: error, attempt: this.#failures, retryInMs: next }, 'settlement round failed; retrying after back-off')
      this.safeDispatchEvent('failed', { detail: { error, attempt: this.#failures } })
    }
    if (this.#running && this.#timer === undefined) this.#schedule(next)
  }

  async #enqueue (reason: SettleReason, ignoreGasCap: boolean): Promise<SettleResult> {
    const run = this.#rounds.then(async () => await this.#round(reason, ignoreGasCap))
    this.#rounds = run.catch(() => undefined)
    return await run
  }

  // ---- one round -----------------------------------------------------------

  async #round (reason: SettleReason, ignoreGasCap: boolean): Promise<SettleResult> {
    const result: SettleResult = { batches: [], remaining: 0 }
    for (const entry of (await this.#store.listOutbox()).filter(isOpen)) {
      if (entry.state === 'pending') {
        await this.#store.updateOutbox(entry.id, { state: 'failed', error: 'intent written but no transaction signed; rebuilt from the latest vouchers' })
        continue
      }
      const outcome = await this.#follow(entry)
      if (outcome === 'in-flight') return { ...result, inFlight: entry.txHash }
      if (outcome !== 'dropped') result.batches.push(outcome)
    }

    const candidates = await this.#candidates()
    const byPayee = new Map<Address, Candidate[]>()
    for (const c of candidates) byPayee.set(c.onchain.payee, [...(byPayee.get(c.onchain.payee) ?? []), c])
    for (const [payee, group] of byPayee) {
      const nowSec = BigInt(Math.floor(this.#now() / 1000))
      group.sort((a, b) => Number(this.#withinMargin(b.onchain.closeDeadline, nowSec)) - Number(this.#withinMargin(a.onchain.closeDeadline, nowSec)) || (b.owed > a.owed ? 1 : b.owed < a.owed ? -1 : 0))
      const chosen = group.slice(0, this.#maxVouchers)
      result.remaining += group.length - chosen.length
      const forced = chosen.some((c) => this.#withinMargin(c.onchain.closeDeadline, nowSec))
      const fees = await this.#chain.nextBlockFees()
      const gasPrice = fees.baseFeePerGas + fees.maxPriorityFeePerGas
      const cap = this.#gasPriceCap
      if (cap !== undefined && gasPrice > cap && !forced && !ignoreGasCap) {
        this.#log.info({ gasPrice, cap, payee, vouchers: chosen.length }, 'gas price above the cap; settlement deferred')
        this.safeDispatchEvent('deferred', { detail: { gasPrice, cap } })
        result.deferredGasPrice = gasPrice
        continue
      }
      const maxPriorityFeePerGas = fees.maxPriorityFeePerGas
      const maxFeePerGas = cap !== undefined && gasPrice <= cap ? cap : 2n * fees.baseFeePerGas + maxPriorityFeePerGas
      const entry = await this.#store.queueBatch({ reason, payee, forced, tokens: groupByToken(chosen) })
      this.safeDispatchEvent('queued', { detail: entry })
      const signed = await this.#sign(entry, maxFeePerGas, maxPriorityFeePerGas)
      const outcome = await this.#follow(signed)
      if (outcome === 'in-flight') return { ...result, inFlight: signed.txHash }
      if (outcome !== 'dropped') result.batches.push(outcome)
    }
    // A deferred round keeps the interval due, so the next check tries again.
    if (result.deferredGasPrice === undefined) {
      this.#lastRoundAt = this.#now()
      await this.#store.putMeta(META_LAST_ROUND, String(this.#lastRoundAt))
    }
    return result
  }

  /** Owed channels re-checked on chain: only vouchers the contract would pay. */
  async #candidates (): Promise<Candidate[]> {
    const owed = await this.owed()
    if (owed.length === 0) return []
    const onchain = await this.#chain.getChannels(owed.map((o) => o.channel.channelId))
    const out: Candidate[] = []
    for (const o of owed) {
      const id = o.channel.channelId
      const view = onchain.get(id) as OnchainChannel
      const log = this.#log.child({ channelId: id })
      if (view.payer === zeroAddress) {
        log.warn('channel unknown to the contract; its voucher cannot be settled')
        this.#refused.set(id, o.voucher.cumulativeAmount)
        continue
      }
      if (view.settled !== o.channel.settled || view.deposit !== o.channel.deposit || view.closeDeadline !== o.channel.closeDeadline) {
        await this.#store.updateChannel(id, { settled: view.settled, deposit: view.deposit, closeDeadline: view.closeDeadline })
      }
      if (o.voucher.cumulativeAmount <= view.settled) continue
      if (view.withdrawn) {
        log.error({ unpaid: o.voucher.cumulativeAmount - view.settled }, 'channel was withdrawn before its latest voucher was settled; that amount is lost')
        this.#refused.set(id, o.voucher.cumulativeAmount)
        continue
      }
      if (o.voucher.cumulativeAmount > view.deposit) {
        log.warn({ amount: o.voucher.cumulativeAmount, deposit: view.deposit }, 'voucher exceeds the channel deposit; waiting for a top-up')
        continue
      }
      out.push({ ...o, owed: o.voucher.cumulativeAmount - view.settled, onchain: view })
    }
    return out
  }

  /** Signs the batch's transaction and records it (raw bytes, hash, nonce) durably before anything is broadcast. */
  async #sign (entry: OutboxEntry, maxFeePerGas: bigint, maxPriorityFeePerGas: bigint): Promise<OutboxEntry> {
    const wallet = this.#chain.walletClient
    if (wallet === undefined) throw new SettlerConfigError('no account to sign with')
    const data = encodeFunctionData({
      abi: spareChannelsAbi,
      functionName: 'settleBatch',
      args: [entry.payee, entry.tokens.map((t) => ({ token: t.token, vouchers: encodeVoucherRecords(t.items) })), entry.auditHead]
    })
    const request = await wallet.prepareTransactionRequest({ to: this.#chain.contract, data, maxFeePerGas, maxPriorityFeePerGas, type: 'eip1559' })
    // Head-room over the estimate: skipped vouchers cost less, not more, so 25% is ample.
    const rawTx = await wallet.signTransaction({ ...request, gas: request.gas * 5n / 4n })
    const signed = await this.#store.updateOutbox(entry.id, { state: 'submitted', rawTx, txHash: keccak256(rawTx), nonce: request.nonce, submittedAt: this.#now() })
    this.safeDispatchEvent('signed', { detail: signed })
    return signed
  }

  /**
   * Drives a signed batch to its end: finds its receipt, or (re-)broadcasts the
   * recorded raw transaction and waits. A transaction whose nonce was taken by
   * another one is marked failed ('dropped'); its vouchers are rebuilt from chain state.
   */
  async #follow (entry: OutboxEntry): Promise<BatchRecord | 'in-flight' | 'dropped'> {
    const hash = entry.txHash as Hex
    let receipt = await this.#receipt(hash)
    if (receipt === undefined) {
      try {
        await this.#chain.publicClient.sendRawTransaction({ serializedTransaction: entry.rawTx as Hex })
        this.safeDispatchEvent('sent', { detail: entry })
      } catch (err) {
        if (!matches(err, /already known|known transaction|already imported/i)) {
          if (!matches(err, /nonce too low|nonce.*(lower|too small)|invalid nonce/i)) throw err
          receipt = await this.#receipt(hash)
          if (receipt === undefined) {
            this.#log.warn({ txHash: hash, nonce: entry.nonce }, 'settlement transaction dropped: its nonce was used by another transaction; rebuilding')
            await this.#store.updateOutbox(entry.id, { state: 'failed', error: 'dropped: nonce used by another transaction' })
            return 'dropped'
          }
        }
      }
    }
    if (receipt === undefined) {
      try {
        receipt = await this.#chain.publicClient.waitForTransactionReceipt({ hash, timeout: this.#receiptTimeoutMs })
      } catch (err) {
        if (err instanceof WaitForTransactionReceiptTimeoutError) {
          this.#log.info({ txHash: hash }, 'settlement transaction not mined yet; following it next round')
          return 'in-flight'
        }
        throw err
      }
    }
    return await this.#finish(entry, receipt)
  }

  async #receipt (hash: Hex): Promise<TransactionReceipt | undefined> {
    try {
      return await this.#chain.publicClient.getTransactionReceipt({ hash })
    } catch (err) {
      if (err instanceof TransactionReceiptNotFoundError) return undefined
      throw err
    }
  }

  /** Records a mined batch: what each channel was paid, what was skipped and why, the gas. */
  async #finish (entry: OutboxEntry, receipt: TransactionReceipt): Promise<BatchRecord> {
    const contract = this.#chain.contract.toLowerCase()
    const logs = receipt.logs.filter((l) => l.address.toLowerCase() === contract)
    const skipped = parseEventLogs({ abi: spareChannelsAbi, logs, eventName: 'VoucherSkipped' })
      .map((e) => ({ channelId: e.args.channelId, reason: e.args.reason }))
    const skippedIds = new Set(skipped.map((s) => s.channelId))
    const success = receipt.status === 'success'
    const paid = success
      ? entry.tokens.flatMap((t) => t.items.filter((i) => !skippedIds.has(i.channelId)).map((i) => ({
        channelId: i.channelId, token: t.token, cumulativeAmount: i.cumulativeAmount, paid: i.cumulativeAmount - i.settledBefore
      })))
      : []
    for (const s of skipped) {
      const item = entry.tokens.flatMap((t) => t.items).find((i) => i.channelId === s.channelId)
      this.#log.warn({ channelId: s.channelId, reason: s.reason, txHash: receipt.transactionHash }, 'the contract skipped a voucher')
      if (item !== undefined && PERMANENT_SKIPS.has(s.reason)) this.#refused.set(s.channelId, item.cumulativeAmount)
    }
    const ids = entry.tokens.flatMap((t) => t.items.map((i) => i.channelId))
    const views = await this.#chain.getChannels(ids)
    const settled = new Map([...views].map(([id, v]) => [id, v.settled]))
    const record: BatchRecord = {
      outboxId: entry.id,
      txHash: receipt.transactionHash,
      blockNumber: receipt.blockNumber,
      status: success ? 'success' : 'reverted',
      gasUsed: receipt.gasUsed,
      effectiveGasPrice: receipt.effectiveGasPrice,
      auditHead: entry.auditHead,
      paid,
      skipped,
      confirmedAt: this.#now()
    }
    await this.#store.completeBatch(entry.id, record, settled)
    this.#log.info({ txHash: record.txHash, paid: paid.length, skipped: skipped.length, gasUsed: record.gasUsed, status: record.status }, 'settlement batch mined')
    this.safeDispatchEvent('settled', { detail: record })
    return record
  }

  #withinMargin (closeDeadline: bigint, nowSec: bigint): boolean {
    return closeDeadline !== 0n && nowSec + this.#marginSec >= closeDeadline
  }
}

function isOpen (entry: OutboxEntry): boolean {
  return entry.state === 'pending' || entry.state === 'submitted'
}

function groupByToken (candidates: readonly Candidate[]): Array<{ token: Address, items: BatchItem[] }> {
  const tokens = new Map<Address, BatchItem[]>()
  for (const c of candidates) {
    const item: BatchItem = {
      channelId: c.channel.channelId,
      cumulativeAmount: c.voucher.cumulativeAmount,
      cumulativeBytes: c.voucher.cumulativeBytes,
      signature: c.voucher.signature,
      settledBefore: c.onchain.settled
    }
    tokens.set(c.onchain.token, [...(tokens.get(c.onchain.token) ?? []), item])
  }
  return [...tokens].map(([token, items]) => ({ token, items }))
}

function matches (err: unknown, pattern: RegExp): boolean {
  if (err instanceof BaseError) return err.walk((e) => pattern.test((e as Error).message)) !== null
  return err instanceof Error && pattern.test(err.message)
}
