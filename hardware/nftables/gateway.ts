import { CommandFailedError, AdapterStateError } from '../errors.ts'
import { assertBandwidthLimits, normalizeGatewayClient } from '../validate.ts'
import { parseCounters, parseFlowtables, parseForwardingComment, parseMapElements, parseNftJson, type NftCounter, type NftObject } from './parse.ts'
import {
  FORWARDING_COMMENT_PREFIX, TABLE, TABLE_NAME, TABLE_FAMILY, TOTAL_COUNTERS, admitBatch, deleteClientCountersBatch, deleteTableBatch, evictBatch,
  freezeBatch, ipOfCounterName, limitsBatch, clientCounterNames, startBatch, type ExitMatch
} from './ruleset.ts'
import type { Logger } from 'pino'
import type { CommandRunner } from '../command.ts'
import type { BandwidthLimits, ClientCounters, CounterReading, DirectionCounters, GatewayClient } from '../adapter.ts'

/** The clients' counts added up (tx = upload, rx = download). */
function sumClients (clients: ClientCounters[]): DirectionCounters {
  const total: DirectionCounters = { txBytes: 0n, txPackets: 0n, rxBytes: 0n, rxPackets: 0n }
  for (const c of clients) {
    total.txBytes += c.uploadBytes
    total.txPackets += c.uploadPackets
    total.rxBytes += c.downloadBytes
    total.rxPackets += c.downloadPackets
  }
  return total
}

/** Settings of an {@link NftablesGateway}. */
export interface NftablesGatewayInit {
  /** Runs `nft`, `cat`, `sysctl` (give it an `ip netns exec` prefix to target a namespace). */
  runner: CommandRunner
  logger: Logger
  /** Interface the clients are on. */
  lanInterface: string
  /** Upstream interface. */
  wanInterface: string
  /** Masquerade admitted clients on the upstream interface (default true). */
  masquerade?: boolean
  /** Initial limits (default none). */
  limits?: BandwidthLimits
  /** Count the daemon's relay-exit traffic (default off). */
  exitMatch?: ExitMatch | null
  /** Turn on `net.ipv4.ip_forward` while started, restoring the old value on stop (default true). */
  enableForwarding?: boolean
}

const NO_LIMITS: BandwidthLimits = { perClientBytesPerSec: null, totalBytesPerSec: null }

/**
 * The kernel gateway: admission, per-client metering, limits and NAT in spareband's
 * own nftables table (see `ruleset.ts` for its layout), driven through `nft`.
 * Every operation is serialized, so a read never interleaves with an admit or evict.
 */
export class NftablesGateway {
  private readonly init: NftablesGatewayInit
  private readonly log: Logger
  private limits: BandwidthLimits
  /** Admitted clients, ip → mac, mirrored from the kernel. */
  private readonly clients = new Map<string, string>()
  /** Counts of clients evicted while replaced by admit, delivered with the next read. */
  private pending: ClientCounters[] = []
  private queue: Promise<unknown> = Promise.resolve()
  private restoreForwarding: string | null = null
  private started = false

  constructor (init: NftablesGatewayInit) {
    this.init = init
    this.log = init.logger
    this.limits = init.limits ?? NO_LIMITS
    assertBandwidthLimits(this.limits)
  }

  /** Whether {@link start} has run and {@link stop} has not. */
  get isStarted (): boolean {
    return this.started
  }

  /** The limits in force. */
  get currentLimits (): BandwidthLimits {
    return { ...this.limits }
  }

  /** Number of admitted clients. */
  get clientCount (): number {
    return this.clients.size
  }

  private serialize<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  private async nft (args: string[]): Promise<NftObject[]> {
    const { stdout } = await this.init.runner(['nft', '-j', ...args])
    return parseNftJson(stdout)
  }

  private async nftBatch (batch: string): Promise<void> {
    await this.init.runner(['nft', '-f', '-'], { input: batch })
  }

  private ruleset () {
    return {
      lanInterface: this.init.lanInterface,
      wanInterface: this.init.wanInterface,
      masquerade: this.init.masquerade ?? true,
      limits: this.limits,
      exitMatch: this.init.exitMatch ?? null
    }
  }

  /**
   * Creates (or adopts, after a crash) the table and replaces its rules; clients
   * admitted before a crash stay admitted and their counts are read by the next
   * {@link readCounters}. Returns remarks for the operator. Fails if a flowtable
   * offloads the LAN interface, because offloaded packets skip the forward hook and
   * would be neither metered nor limited.
   */
  start (): Promise<string[]> {
    return this.serialize(async () => {
      const notes: string[] = []
      const flowtables = await this.offloadingFlowtables()
      if (flowtables.length > 0) {
        throw new AdapterStateError(`flowtable ${flowtables.join(', ')} offloads ${this.init.lanInterface}: offloaded packets skip the forward hook, so spareband could neither meter nor limit them. Turn flow offloading off (OpenWrt: uci set firewall.@defaults[0].flow_offloading=0; uci commit firewall; fw4 reload) and start again`)
      }
      const forwarding = (this.init.enableForwarding ?? true) ? (await this.init.runner(['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim() : null
      const ruleset = this.ruleset()
      const natChainExists = !ruleset.masquerade && await this.chainExists('postrouting')
      const batch = startBatch({ ...ruleset, forwardingBefore: forwarding === '0' || forwarding === '1' ? forwarding : null, natChainExists })
      try {
        await this.nftBatch(batch)
      } catch (err) {
        if (!(err instanceof CommandFailedError) || !(await this.tableExists())) throw err
        // An older spareband left a table whose declarations differ: keep its counts, then replace it.
        this.log.warn({ err: err.message }, 'replacing an incompatible spareband table left by an earlier run')
        this.pending.push(...this.clientCounters(parseCounters(await this.nft(['reset', 'counters', 'table', TABLE_FAMILY, TABLE_NAME])), true))
        await this.nftBatch(deleteTableBatch())
        await this.nftBatch(batch)
        notes.push('replaced an incompatible spareband table; clients admitted before were cut off')
      }
      this.clients.clear()
      for (const c of await this.kernelClients()) this.clients.set(c.ip, c.mac)
      if (this.clients.size > 0) notes.push(`adopted ${this.clients.size} client(s) admitted before a restart`)
      if (forwarding !== null) await this.turnOnForwarding(forwarding, notes)
      this.started = true
      this.log.info({ table: TABLE, lan: this.init.lanInterface, wan: this.init.wanInterface, clients: this.clients.size }, 'nftables gateway started')
      return notes
    })
  }

  /**
   * Drops all LAN traffic, reads the final counts, deletes the table (and nothing
   * else) and restores `ip_forward`. Returns the final counts.
   */
  stop (): Promise<CounterReading> {
    return this.serialize(async () => {
      if (!(await this.tableExists())) {
        this.started = false
        return this.emptyReading()
      }
      await this.nftBatch(freezeBatch(this.init.lanInterface))
      const reading = await this.readLocked()
      await this.nftBatch(deleteTableBatch())
      if (this.restoreForwarding !== null) {
        await this.init.runner(['sysctl', '-q', '-w', `net.ipv4.ip_forward=${this.restoreForwarding}`])
        this.restoreForwarding = null
      }
      this.clients.clear()
      this.started = false
      this.log.info({ table: TABLE }, 'nftables gateway stopped, table removed')
      return reading
    })
  }

  /** Reads and zeroes every counter of the table in one netlink dump (`nft reset counters`). */
  readCounters (): Promise<CounterReading> {
    return this.serialize(async () => {
      this.assertStarted()
      return await this.readLocked()
    })
  }

  /** Admits a client (idempotent); a new MAC for an admitted IP replaces the old binding. */
  admit (client: GatewayClient): Promise<void> {
    const c = normalizeGatewayClient(client)
    return this.serialize(async () => {
      this.assertStarted()
      const known = this.clients.get(c.ip)
      if (known === c.mac) return
      if (known !== undefined) {
        const final = await this.evictLocked({ ip: c.ip, mac: known })
        if (final !== null) this.pending.push(final)
      }
      await this.nftBatch(admitBatch(c))
      this.clients.set(c.ip, c.mac)
      this.log.debug({ ip: c.ip, mac: c.mac }, 'gateway client admitted')
    })
  }

  /** Evicts a client and returns its counts since the last read, or null if it was not admitted. */
  evict (client: GatewayClient): Promise<ClientCounters | null> {
    const c = normalizeGatewayClient(client)
    return this.serialize(async () => {
      this.assertStarted()
      if (this.clients.get(c.ip) !== c.mac) return null
      return await this.evictLocked(c)
    })
  }

  /** The admitted clients as the kernel's `client_up` map holds them. */
  listClients (): Promise<GatewayClient[]> {
    return this.serialize(async () => {
      this.assertStarted()
      return await this.kernelClients()
    })
  }

  /** Replaces the limits atomically (the per-client meters restart empty). */
  setLimits (limits: BandwidthLimits): Promise<void> {
    assertBandwidthLimits(limits)
    return this.serialize(async () => {
      this.assertStarted()
      await this.nftBatch(limitsBatch(this.init.lanInterface, limits))
      this.limits = { ...limits }
      this.log.info({ limits }, 'gateway bandwidth limits set')
    })
  }

  private assertStarted (): void {
    if (!this.started) throw new AdapterStateError('the nftables gateway is not started: call start() first')
  }

  private async evictLocked (c: GatewayClient): Promise<ClientCounters | null> {
    // Out of the maps first: from then on the client's packets are dropped and its counters frozen.
    await this.nftBatch(evictBatch(c))
    const names = clientCounterNames(c.ip)
    const counters = parseCounters(await this.nft(['reset', 'counter', TABLE_FAMILY, TABLE_NAME, names.up, ';', 'reset', 'counter', TABLE_FAMILY, TABLE_NAME, names.down]))
    await this.nftBatch(deleteClientCountersBatch(c.ip))
    this.clients.delete(c.ip)
    this.log.debug({ ip: c.ip, mac: c.mac }, 'gateway client evicted')
    const [final] = this.clientCounters(counters, false, new Map([[c.ip, c.mac]]))
    return final ?? null
  }

  private async readLocked (): Promise<CounterReading> {
    const counters = parseCounters(await this.nft(['reset', 'counters', 'table', TABLE_FAMILY, TABLE_NAME]))
    const byName = new Map(counters.map((c) => [c.name, c]))
    const pick = (name: string): NftCounter | undefined => byName.get(name)
    const dir = (tx: string, rx: string): DirectionCounters => ({
      txBytes: pick(tx)?.bytes ?? 0n,
      txPackets: pick(tx)?.packets ?? 0n,
      rxBytes: pick(rx)?.bytes ?? 0n,
      rxPackets: pick(rx)?.packets ?? 0n
    })
    const clients = [...this.pending, ...this.clientCounters(counters, false)]
    this.pending = []
    return {
      clients,
      total: sumClients(clients),
      droppedUnpaid: { bytes: pick(TOTAL_COUNTERS.unpaid)?.bytes ?? 0n, packets: pick(TOTAL_COUNTERS.unpaid)?.packets ?? 0n },
      exit: (this.init.exitMatch ?? null) === null ? null : dir(TOTAL_COUNTERS.exitTx, TOTAL_COUNTERS.exitRx)
    }
  }

  /** Groups per-client counters (`up_…`/`down_…`) by IP; `all` keeps clients whose MAC is unknown. */
  private clientCounters (counters: NftCounter[], all: boolean, macs: Map<string, string> = this.clients): ClientCounters[] {
    const out = new Map<string, ClientCounters>()
    for (const c of counters) {
      const parsed = ipOfCounterName(c.name)
      if (parsed === null) continue
      const mac = macs.get(parsed.ip)
      if (mac === undefined && !all) continue
      let entry = out.get(parsed.ip)
      if (entry === undefined) {
        entry = { ip: parsed.ip, mac: mac ?? '', uploadBytes: 0n, uploadPackets: 0n, downloadBytes: 0n, downloadPackets: 0n }
        out.set(parsed.ip, entry)
      }
      if (parsed.direction === 'up') {
        entry.uploadBytes = c.bytes
        entry.uploadPackets = c.packets
      } else {
        entry.downloadBytes = c.bytes
        entry.downloadPackets = c.packets
      }
    }
    return [...out.values()]
  }

  private async kernelClients (): Promise<GatewayClient[]> {
    const elements = parseMapElements(await this.nft(['list', 'map', TABLE_FAMILY, TABLE_NAME, 'client_up']), 'client_up')
    return elements.map((e) => ({ ip: e.key[0], mac: e.key[1] }))
  }

  private async chainExists (chain: string): Promise<boolean> {
    const res = await this.init.runner(['nft', 'list', 'chain', TABLE_FAMILY, TABLE_NAME, chain], { allowFailure: true })
    return res.exitCode === 0
  }

  private async tableExists (): Promise<boolean> {
    const res = await this.init.runner(['nft', '-j', 'list', 'table', TABLE_FAMILY, TABLE_NAME], { allowFailure: true })
    return res.exitCode === 0
  }

  private async offloadingFlowtables (): Promise<string[]> {
    const objects = await this.nft(['list', 'flowtables'])
    const names = parseFlowtables(objects)
    return names.filter((_, i) => {
      const devs = objects.filter((o) => 'flowtable' in o)[i].flowtable.dev
      const list = Array.isArray(devs) ? devs : [devs]
      return list.includes(this.init.lanInterface)
    })
  }

  /**
   * Turns `ip_forward` on and remembers what to restore on stop: the value the table's
   * comment recorded when it was created (so a run that crashed with forwarding on is
   * still undone), else the value found now.
   */
  private async turnOnForwarding (current: string, notes: string[]): Promise<void> {
    const listed = await this.init.runner(['nft', 'list', 'table', TABLE_FAMILY, TABLE_NAME])
    const original = parseForwardingComment(listed.stdout, FORWARDING_COMMENT_PREFIX) ?? current
    if (current !== '1') {
      await this.init.runner(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'])
      notes.push('turned on net.ipv4.ip_forward (restored on stop)')
    } else if (original !== '1') {
      notes.push('net.ipv4.ip_forward was left on by a run that did not stop cleanly; it is restored on stop')
    }
    if (original !== '1') this.restoreForwarding ??= original
  }

  private emptyReading (): CounterReading {
    const zero: DirectionCounters = { txBytes: 0n, txPackets: 0n, rxBytes: 0n, rxPackets: 0n }
    return { clients: [], total: zero, droppedUnpaid: { bytes: 0n, packets: 0n }, exit: (this.init.exitMatch ?? null) === null ? null : { ...zero } }
  }
}
