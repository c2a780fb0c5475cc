/**
 * Advertiser: while the node has spare uplink, it provides the global relay
 * key and its region key in the DHT and provides them again well before the
 * provider records expire; while it has none, it stops re-providing and lets
 * the records lapse.
 */
import { serviceDependencies, TypedEventEmitter, type Startable } from '@libp2p/interface'
import { relayKey, regionKey } from '../node/provider-keys.ts'
import type { KadDHT } from '@libp2p/kad-dht'
import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'

/** Default time between two provides of the same keys: 6 h, far below the 48 h provider-record validity of kad-dht 16. */
export const DEFAULT_REPROVIDE_INTERVAL_MS = 6 * 60 * 60 * 1000
/** Default time between two looks at the spare capacity. */
export const DEFAULT_CAPACITY_CHECK_INTERVAL_MS = 30_000
/** Delays before the 2nd, 3rd… provide after start: a young advert is repeated while the DHT forms around it. */
export const EARLY_REPROVIDE_DELAYS_MS: readonly number[] = [15_000, 60_000, 5 * 60_000, 30 * 60_000]
/** Default time limit of one provide round. */
export const DEFAULT_PROVIDE_TIMEOUT_MS = 60_000

/** Delay before the first retry of a failed advertisement; it doubles up to the capacity check interval. */
const FIRST_RETRY_DELAY_MS = 1_000

/** How much uplink the node can sell right now. */
export interface SpareCapacity {
  spareUplinkBps: number
}

/** Options of {@link advertiser}. */
export interface AdvertiserInit {
  /** The node's current spare capacity; a value of 0 withdraws the advertisement. */
  spareCapacity: () => SpareCapacity
  /** Region to advertise besides the global relay key, e.g. `eu-west`. */
  region?: string
  /** Time between two provides of the same keys. Default {@link DEFAULT_REPROVIDE_INTERVAL_MS}. */
  reprovideIntervalMs?: number
  /** Time between two looks at the spare capacity. Default {@link DEFAULT_CAPACITY_CHECK_INTERVAL_MS}. */
  capacityCheckIntervalMs?: number
  /** Delays before the 2nd, 3rd… provide after start, while the DHT forms. Default {@link EARLY_REPROVIDE_DELAYS_MS}. */
  earlyReprovideDelaysMs?: readonly number[]
  /** Time limit of one provide round. Default {@link DEFAULT_PROVIDE_TIMEOUT_MS}. */
  provideTimeoutMs?: number
  logger: Logger
}

/** What the `advertised` event carries. */
export interface AdvertisedDetail {
  /** The provided keys. */
  keys: CID[]
  /** When the round finished (ms since the epoch). */
  at: number
  /** True on the node's first successful advertisement since start. */
  first: boolean
  /** How many DHT peers accepted at least one of the records. */
  peers: number
}

/** Events of the {@link Advertiser}. */
export interface AdvertiserEvents {
  /** A provide round reached at least one DHT peer. */
  advertised: CustomEvent<AdvertisedDetail>
  /** The node ran out of spare capacity and stopped re-providing. */
  withdrawn: CustomEvent<{ at: number }>
}

/** Libp2p components the advertiser uses. */
export interface AdvertiserComponents {
  dht: KadDHT
}

/** The advertiser service. */
export interface Advertiser extends TypedEventEmitter<AdvertiserEvents>, Startable {
  /** The keys this node provides while it has spare capacity. */
  readonly keys: readonly CID[]
  /** When the last successful provide round finished (ms since the epoch), or undefined if none since start or since withdrawn. */
  readonly lastAdvertisedAt: number | undefined
  /** Whether the keys are currently advertised (provided and not withdrawn). */
  readonly advertising: boolean
  /** Looks at the spare capacity (after any round in progress) and provides, re-provides or withdraws as needed. */
  refresh(): Promise<void>
}

class DhtAdvertiser extends TypedEventEmitter<AdvertiserEvents> implements Advertiser {
  readonly keys: readonly CID[]
  readonly [serviceDependencies] = ['@libp2p/kad-dht']
  readonly [Symbol.toStringTag] = 'spareband/advertiser'
  private readonly dht: KadDHT
  private readonly init: AdvertiserInit
  private readonly log: Logger
  private timer: NodeJS.Timeout | undefined
  private running = false
  private rounds: Promise<void> = Promise.resolve()
  private shutdown: AbortController | undefined
  private advertisedAt: number | undefined
  private everAdvertised = false
  private failedRounds = 0
  private advertsSinceStart = 0

  constructor (components: AdvertiserComponents, init: AdvertiserInit) {
    super()
    this.dht = components.dht
    this.init = init
    this.log = init.logger.child({ component: 'advertiser' })
    this.keys = init.region == null ? [relayKey()] : [relayKey(), regionKey(init.region)]
  }

  get lastAdvertisedAt (): number | undefined {
    return this.advertisedAt
  }

  get advertising (): boolean {
    return this.advertisedAt != null
  }

  start (): void {
    this.running = true
    this.advertsSinceStart = 0
    this.shutdown = new AbortController()
    this.everAdvertised = false
  }

  /** Begins advertising once libp2p listens, so the provider records carry our addresses. */
  afterStart (): void {
    this.schedule(0)
  }

  async stop (): Promise<void> {
    this.running = false
    clearTimeout(this.timer)
    this.shutdown?.abort()
    await this.rounds.catch(() => {})
    this.advertisedAt = undefined
  }

  async refresh (): Promise<void> {
    // rounds run one after the other, so a refresh always looks at the capacity after the call
    const round = this.rounds.catch(() => {}).then(async () => this.round())
    this.rounds = round
    return round
  }

  private schedule (delayMs: number): void {
    if (!this.running) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.refresh()
        .catch((err: unknown) => { this.log.warn({ err }, 'advertising round failed; will retry') })
        .finally(() => { this.schedule(this.nextDelay()) })
    }, delayMs)
  }

  /** The capacity check interval, or a shorter, doubling delay while a node with capacity failed to advertise. */
  private nextDelay (): number {
    const interval = this.init.capacityCheckIntervalMs ?? DEFAULT_CAPACITY_CHECK_INTERVAL_MS
    if (this.advertisedAt != null) {
      this.failedRounds = 0
      return Math.max(0, Math.min(interval, this.advertisedAt + this.reprovideDelay() - Date.now()))
    }
    if (this.init.spareCapacity().spareUplinkBps <= 0) {
      this.failedRounds = 0
      return interval
    }
    this.failedRounds++
    return Math.min(interval, FIRST_RETRY_DELAY_MS * 2 ** Math.min(this.failedRounds - 1, 16))
  }

  private async round (): Promise<void> {
    const { spareUplinkBps } = this.init.spareCapacity()
    if (spareUplinkBps <= 0) {
      if (this.advertisedAt != null) await this.withdraw()
      return
    }
    if (this.advertisedAt != null && Date.now() - this.advertisedAt < this.reprovideDelay()) return
    await this.provideAll()
  }

  /**
   * Time until the next provide: short while the advert is young, because a node that
   * advertised while the DHT was still forming reached only the few peers it knew
   * then (the records belong on the peers closest to the keys, which it may not have
   * known yet); then the configured interval.
   */
  private reprovideDelay (): number {
    const interval = this.init.reprovideIntervalMs ?? DEFAULT_REPROVIDE_INTERVAL_MS
    const early = (this.init.earlyReprovideDelaysMs ?? EARLY_REPROVIDE_DELAYS_MS)[this.advertsSinceStart - 1]
    return early === undefined ? interval : Math.min(early, interval)
  }

  private async provideAll (): Promise<void> {
    const signal = AbortSignal.any([
      AbortSignal.timeout(this.init.provideTimeoutMs ?? DEFAULT_PROVIDE_TIMEOUT_MS),
      this.shutdown?.signal ?? new AbortController().signal
    ])
    const reached = new Set<string>()
    await Promise.all(this.keys.map(async (key) => {
      for await (const event of this.dht.provide(key, { signal })) {
        if (event.name === 'PEER_RESPONSE' && event.messageName === 'ADD_PROVIDER') reached.add(event.from.toString())
      }
    }))
    if (reached.size === 0) {
      this.log.warn('no DHT peer accepted our provider records yet; will retry')
      return
    }
    const at = Date.now()
    const first = !this.everAdvertised
    this.advertisedAt = at
    this.everAdvertised = true
    this.advertsSinceStart++
    // `first advert` marks the end of a cold start (the footprint benchmark waits for it)
    this.log.info({ keys: this.keys.map(String), peers: reached.size, first }, first ? 'first advert in the DHT' : 'advertised in the DHT')
    this.safeDispatchEvent('advertised', { detail: { keys: [...this.keys], at, first, peers: reached.size } })
  }

  private async withdraw (): Promise<void> {
    // kad-dht has no un-provide: dropping our own records stops the DHT's reprovider and our own
    // answers; copies held by other peers lapse at their expiry, and buyers see spareUplinkBps 0 in the offer
    await Promise.all(this.keys.map(async (key) => this.dht.cancelReprovide(key)))
    this.advertisedAt = undefined
    this.log.info('no spare capacity: stopped advertising')
    this.safeDispatchEvent('withdrawn', { detail: { at: Date.now() } })
  }
}

/** Libp2p service factory of the {@link Advertiser}; register it after the DHT as `advertiser`. */
export function advertiser (init: AdvertiserInit): (components: AdvertiserComponents) => Advertiser {
  return (components) => new DhtAdvertiser(components, init)
}
