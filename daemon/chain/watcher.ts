/**
 * Chain watcher: polls the channel contract's logs from a block cursor kept in
 * the store, and for channels the seller knows records `CloseRequested` (the
 * close deadline) and `ToppedUp` (the new deposit). A close request on a channel
 * with an unsettled voucher asks the settler for a round, so the voucher is
 * redeemed before the buyer can withdraw.
 */
import { TypedEventEmitter, type Startable } from '@libp2p/interface'
import { getAbiItem, type Hex } from 'viem'
import type { Logger } from 'pino'
import { spareChannelsAbi } from '../../protocol/contract/artifact.ts'
import type { SpareChannelsClient } from './client.ts'
import type { SellerStore } from '../state/store.ts'
import type { Settler } from '../settlement/settler.ts'

/** Default time between two polls: 4 s. */
export const DEFAULT_WATCH_INTERVAL_MS = 4_000
/** Default largest block range of one `eth_getLogs` request. */
export const DEFAULT_MAX_BLOCK_RANGE = 2_000n
/** Most ranges one poll walks before yielding to the next poll. */
const MAX_RANGES_PER_POLL = 16

const WATCHED_EVENTS = [
  getAbiItem({ abi: spareChannelsAbi, name: 'CloseRequested' }),
  getAbiItem({ abi: spareChannelsAbi, name: 'ToppedUp' })
]

/** Options of {@link ChainWatcher}. */
export interface ChainWatcherInit {
  store: SellerStore
  chain: SpareChannelsClient
  logger: Logger
  /** Asked for a round when a channel with an unsettled voucher starts closing. */
  settler?: Pick<Settler, 'trigger'>
  /** Time between two polls. Default {@link DEFAULT_WATCH_INTERVAL_MS}. */
  pollIntervalMs?: number
  /** Blocks to stay behind the head (reorg safety); default 0 (a devnet or an instant-finality chain). */
  confirmations?: bigint
  /** Largest block range of one log request. Default {@link DEFAULT_MAX_BLOCK_RANGE}. */
  maxBlockRange?: bigint
  /** First block to read when the store has no cursor yet; default the current head. */
  startBlock?: bigint
}

/** Events of the {@link ChainWatcher}. */
export interface ChainWatcherEvents {
  /** A known channel's payer requested its close. */
  'close-requested': CustomEvent<{ channelId: Hex, closeDeadline: bigint, owed: boolean }>
  /** A known channel's deposit grew. */
  'topped-up': CustomEvent<{ channelId: Hex, deposit: bigint }>
}

/** Polls the contract's logs and keeps the store's channel terms current. */
export class ChainWatcher extends TypedEventEmitter<ChainWatcherEvents> implements Startable {
  readonly #store: SellerStore
  readonly #chain: SpareChannelsClient
  readonly #log: Logger
  readonly #settler: Pick<Settler, 'trigger'> | undefined
  readonly #intervalMs: number
  readonly #confirmations: bigint
  readonly #range: bigint
  readonly #startBlock: bigint | undefined
  readonly #cursorKey: string
  #timer: ReturnType<typeof setTimeout> | undefined
  #polling: Promise<void> = Promise.resolve()
  #running = false

  constructor (init: ChainWatcherInit) {
    super()
    this.#store = init.store
    this.#chain = init.chain
    this.#log = init.logger.child({ component: 'chain-watcher' })
    this.#settler = init.settler
    this.#intervalMs = init.pollIntervalMs ?? DEFAULT_WATCH_INTERVAL_MS
    this.#confirmations = init.confirmations ?? 0n
    this.#range = init.maxBlockRange ?? DEFAULT_MAX_BLOCK_RANGE
    this.#startBlock = init.startBlock
    this.#cursorKey = `watcher.${init.chain.chain.id}.${init.chain.contract.toLowerCase()}.nextBlock`
  }

  readonly [Symbol.toStringTag] = 'spareband/chain-watcher'

  /** Starts polling (the first poll runs at once). */
  async start (): Promise<void> {
    if (this.#running) return
    this.#running = true
    this.#schedule(0)
  }

  /** Stops polling and waits for a poll in progress. */
  async stop (): Promise<void> {
    this.#running = false
    clearTimeout(this.#timer)
    await this.#polling
  }

  /** The next block the watcher will read, or undefined before the first poll. */
  async cursor (): Promise<bigint | undefined> {
    const stored = await this.#store.getMeta(this.#cursorKey)
    return stored === undefined ? undefined : BigInt(stored)
  }

  /** Reads the logs from the cursor up to the head (minus confirmations) and applies them; returns how many were about known channels. */
  async poll (): Promise<number> {
    const head = await this.#chain.publicClient.getBlockNumber({ cacheTime: 0 })
    const safe = head - this.#confirmations
    let from = (await this.cursor()) ?? this.#startBlock ?? safe
    let applied = 0
    for (let i = 0; i < MAX_RANGES_PER_POLL && from <= safe; i++) {
      const to = from + this.#range - 1n < safe ? from + this.#range - 1n : safe
      const logs = await this.#chain.publicClient.getLogs({ address: this.#chain.contract, events: WATCHED_EVENTS, fromBlock: from, toBlock: to })
      for (const log of logs) {
        if (log.eventName === 'CloseRequested') {
          if (await this.#closeRequested(log.args.id as Hex, log.args.closeDeadline as bigint)) applied++
        } else if (log.eventName === 'ToppedUp') {
          if (await this.#toppedUp(log.args.id as Hex, log.args.deposit as bigint)) applied++
        }
      }
      from = to + 1n
      await this.#store.putMeta(this.#cursorKey, from.toString())
    }
    return applied
  }

  async #closeRequested (channelId: Hex, closeDeadline: bigint): Promise<boolean> {
    const channel = await this.#store.getChannel(channelId)
    if (channel === undefined) return false
    await this.#store.updateChannel(channelId, { closeDeadline }, 'close-requested')
    const voucher = await this.#store.getVoucher(channelId)
    const owed = voucher !== undefined && voucher.cumulativeAmount > channel.settled
    this.#log.info({ channelId, closeDeadline, owed }, 'buyer requested the channel close')
    if (owed) this.#settler?.trigger('close-requested')
    this.safeDispatchEvent('close-requested', { detail: { channelId, closeDeadline, owed } })
    return true
  }

  async #toppedUp (channelId: Hex, deposit: bigint): Promise<boolean> {
    if (await this.#store.getChannel(channelId) === undefined) return false
    await this.#store.updateChannel(channelId, { deposit }, 'topped-up')
    this.safeDispatchEvent('topped-up', { detail: { channelId, deposit } })
    return true
  }

  #schedule (delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#polling = this.poll()
        .then(() => undefined, (err: unknown) => { this.#log.warn({ err }, 'chain watcher poll failed; retrying next interval') })
        .finally(() => { if (this.#running) this.#schedule(this.#intervalMs) })
    }, delayMs)
  }
}
