/**
 * Read models of the seller's state for the control API and the dashboard:
 * channels with their latest voucher, earnings per token, settlement batches,
 * sessions. Pure functions over what the store, the settler and the payment
 * service hold; amounts stay bigint (the API prints them as decimal strings).
 */
import type { Address, Hex } from 'viem'
import type { SessionInfo } from '../payment/seller-payment-service.ts'
import type { Settler } from '../settlement/settler.ts'
import type { BatchRecord, ChannelRecord, OutboxEntry, SessionRecord } from '../state/codec.ts'
import type { SellerStore } from '../state/store.ts'

/** What the read models read. */
export interface SellerReadSource {
  store: SellerStore
  settler: Settler
  /** Live payment sessions. */
  sessions: () => SessionInfo[]
  /** Tokens the seller accepts (always listed in earnings, even at zero). */
  tokens: readonly Address[]
}

/** One channel as `GET /api/channels` shows it. */
export interface ChannelView {
  channelId: Hex
  token: Address
  payer: Address
  signer: Address
  deposit: bigint
  pricePerGiB: bigint
  /** Paid out on chain for this channel, as last read or confirmed. */
  settled: bigint
  /** Unix seconds of the close deadline; 0 while no close was requested. */
  closeDeadline: bigint
  openedAt: number
  lastSeenAt: number
  /** The latest accepted voucher, or null. */
  voucher: { cumulativeAmount: bigint, cumulativeBytes: bigint, receivedAt: number } | null
  /** Voucher amount not yet settled. */
  owed: bigint
  /** The live session on this channel, if any. */
  session: { id: string, peer: string, deliveredBytes: bigint, unpaidAmount: bigint } | null
}

/** Earnings of one token. */
export interface TokenEarnings {
  token: Address
  /** Paid to the payout address by this seller's confirmed batches. */
  settled: bigint
  /** Accepted in vouchers, not settled yet. */
  owed: bigint
  /** Delivered in live sessions, not covered by a voucher yet (at risk, at most one credit window per session). */
  unpaidLive: bigint
  channels: number
}

/** A settlement batch as the dashboard lists it. */
export interface BatchView {
  txHash: Hex
  blockNumber: bigint
  status: 'success' | 'reverted'
  confirmedAt: number
  gasUsed: bigint
  effectiveGasPrice: bigint
  /** Gas cost in wei of the native coin. */
  gasCost: bigint
  /** Vouchers paid and skipped. */
  vouchers: number
  skipped: number
  /** Amount paid per token. */
  paid: Array<{ token: Address, amount: bigint }>
}

/** `GET /api/earnings`. */
export interface EarningsView {
  tokens: TokenEarnings[]
  /** Newest first, at most the requested number. */
  batches: BatchView[]
  batchCount: number
  /** Gas paid by the hot key for every recorded batch, in wei. */
  gasSpent: bigint
  /** Batches in the outbox not mined yet. */
  inFlight: Array<{ id: string, state: OutboxEntry['state'], txHash: Hex | null, createdAt: number, vouchers: number }>
  lastSettlement: { txHash: Hex, confirmedAt: number } | null
}

/** `GET /api/sessions`. */
export interface SessionsView {
  live: Array<SessionInfo & { token: Address | null }>
  /** Ended sessions, newest first. */
  recent: SessionRecord[]
}

/** Every known channel with its latest voucher and live session, most recently seen first. */
export async function readChannels (src: SellerReadSource, limit: number): Promise<{ total: number, channels: ChannelView[] }> {
  const [channels, vouchers] = await Promise.all([src.store.listChannels(), src.store.listVouchers()])
  const voucherOf = new Map(vouchers.map((v) => [v.channelId, v]))
  const sessionOf = new Map(src.sessions().map((s) => [s.channelId.toLowerCase(), s]))
  const rows = channels
    .sort((a, b) => b.lastSeenAt - a.lastSeenAt)
    .slice(0, limit)
    .map((c): ChannelView => {
      const v = voucherOf.get(c.channelId)
      const s = sessionOf.get(c.channelId)
      return {
        channelId: c.channelId,
        token: c.token,
        payer: c.payer,
        signer: c.signer,
        deposit: c.deposit,
        pricePerGiB: c.pricePerGiB,
        settled: c.settled,
        closeDeadline: c.closeDeadline,
        openedAt: c.openedAt,
        lastSeenAt: c.lastSeenAt,
        voucher: v === undefined ? null : { cumulativeAmount: v.cumulativeAmount, cumulativeBytes: v.cumulativeBytes, receivedAt: v.receivedAt },
        owed: v !== undefined && v.cumulativeAmount > c.settled ? v.cumulativeAmount - c.settled : 0n,
        session: s === undefined ? null : { id: s.id, peer: s.peer, deliveredBytes: s.deliveredBytes, unpaidAmount: s.unpaidAmount }
      }
    })
  return { total: channels.length, channels: rows }
}

/** Earnings per token, the latest `batchLimit` batches, gas spent and batches in flight. */
export async function readEarnings (src: SellerReadSource, batchLimit: number): Promise<EarningsView> {
  const [channels, batches, outbox, owed] = await Promise.all([src.store.listChannels(), src.store.listBatches(), src.store.listOutbox(), src.settler.owed()])
  const byToken = new Map<string, TokenEarnings>()
  const row = (token: Address): TokenEarnings => {
    const key = token.toLowerCase()
    let r = byToken.get(key)
    if (r === undefined) {
      r = { token, settled: 0n, owed: 0n, unpaidLive: 0n, channels: 0 }
      byToken.set(key, r)
    }
    return r
  }
  for (const token of src.tokens) row(token)
  for (const c of channels) row(c.token).channels++
  for (const b of batches) {
    if (b.status !== 'success') continue
    for (const p of b.paid) row(p.token).settled += p.paid
  }
  for (const o of owed) row(o.channel.token).owed += o.owed
  const tokenOf = channelTokens(channels)
  for (const s of src.sessions()) {
    const token = tokenOf.get(s.channelId.toLowerCase())
    if (token !== undefined) row(token).unpaidLive += s.unpaidAmount
  }
  const newest = [...batches].sort((a, b) => b.confirmedAt - a.confirmedAt)
  return {
    tokens: [...byToken.values()],
    batches: newest.slice(0, batchLimit).map(batchView),
    batchCount: batches.length,
    gasSpent: batches.reduce((sum, b) => sum + b.gasUsed * b.effectiveGasPrice, 0n),
    inFlight: outbox.filter((e) => e.state === 'pending' || e.state === 'submitted').map((e) => ({
      id: e.id, state: e.state, txHash: e.txHash ?? null, createdAt: e.createdAt, vouchers: e.tokens.reduce((n, t) => n + t.items.length, 0)
    })),
    lastSettlement: newest.length === 0 ? null : { txHash: newest[0].txHash, confirmedAt: newest[0].confirmedAt }
  }
}

/** The last mined batch, or null. */
export async function readLastSettlement (store: SellerStore): Promise<EarningsView['lastSettlement']> {
  let last: BatchRecord | undefined
  for (const b of await store.listBatches()) if (last === undefined || b.confirmedAt > last.confirmedAt) last = b
  return last === undefined ? null : { txHash: last.txHash, confirmedAt: last.confirmedAt }
}

/** Live sessions (with their token) and the `recentLimit` most recently ended ones. */
export async function readSessions (src: SellerReadSource, recentLimit: number): Promise<SessionsView> {
  const [channels, records] = await Promise.all([src.store.listChannels(), src.store.listSessions()])
  const tokenOf = channelTokens(channels)
  return {
    live: src.sessions().map((s) => ({ ...s, token: tokenOf.get(s.channelId.toLowerCase()) ?? null })),
    recent: records.filter((r) => r.state === 'ended').sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0)).slice(0, recentLimit)
  }
}

/** Lower-case channel id → token. */
export function channelTokens (channels: readonly ChannelRecord[]): Map<string, Address> {
  return new Map(channels.map((c) => [c.channelId.toLowerCase(), c.token]))
}

/** A mined batch as the API shows it: totals per token and the gas cost. */
export function batchView (b: BatchRecord): BatchView {
  const paid = new Map<string, { token: Address, amount: bigint }>()
  for (const p of b.paid) {
    const key = p.token.toLowerCase()
    const entry = paid.get(key) ?? { token: p.token, amount: 0n }
    entry.amount += p.paid
    paid.set(key, entry)
  }
  return {
    txHash: b.txHash,
    blockNumber: b.blockNumber,
    status: b.status,
    confirmedAt: b.confirmedAt,
    gasUsed: b.gasUsed,
    effectiveGasPrice: b.effectiveGasPrice,
    gasCost: b.gasUsed * b.effectiveGasPrice,
    vouchers: b.paid.length,
    skipped: b.skipped.length,
    paid: [...paid.values()]
  }
}

/** A view as it travels in JSON: bigints become decimal strings. */
export type Wire<T> = T extends bigint
  ? string
  : T extends ReadonlyArray<infer U>
    ? Array<Wire<U>>
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T
