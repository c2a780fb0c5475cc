import { linkStatus } from './link.ts'
import { AdapterConfigError, AdapterStateError } from './errors.ts'
import { assertBandwidthLimits, normalizeGatewayClient } from './validate.ts'
import type { Logger } from 'pino'
import type {
  AdapterCapabilities, AdapterStatus, BandwidthLimits, ClientCounters, CounterReading, GatewayClient, HardwareAdapter,
  LinkStatus, WirelessState
} from './adapter.ts'

/** Settings of a {@link SimulatedAdapter}. */
export interface SimulatedAdapterInit {
  logger: Logger
  /** Why the simulated adapter is in use (shown in status and logs). */
  reason: string
  /** Interface whose link speed and load systeminformation reports, if any. */
  uplinkInterface?: string | null
  uplinkCapacityBytesPerSec?: number | null
  limits?: BandwidthLimits
}

/**
 * The adapter for machines without nftables and for tests: it keeps the admitted
 * set and counts only what {@link recordTraffic} reports. Nothing is forwarded,
 * enforced or counted by the kernel, and capabilities, status and the start-up log
 * say so.
 */
export class SimulatedAdapter implements HardwareAdapter {
  readonly kind = 'simulated' as const
  private readonly init: SimulatedAdapterInit
  private readonly clients = new Map<string, ClientCounters>()
  private pending: ClientCounters[] = []
  private unpaid = { bytes: 0n, packets: 0n }
  private limits: BandwidthLimits
  private started = false

  constructor (init: SimulatedAdapterInit) {
    this.init = init
    this.limits = init.limits ?? { perClientBytesPerSec: null, totalBytesPerSec: null }
    assertBandwidthLimits(this.limits)
  }

  private notes (): string[] {
    return [`simulated hardware adapter: no kernel admission, metering or limits (${this.init.reason})`]
  }

  async start (): Promise<void> {
    this.started = true
    this.init.logger.warn({ reason: this.init.reason }, 'SIMULATED hardware adapter: nothing is forwarded, enforced or metered by the kernel')
  }

  async stop (): Promise<CounterReading> {
    const reading = this.take()
    this.clients.clear()
    this.started = false
    return reading
  }

  capabilities (): AdapterCapabilities {
    return { kind: 'simulated', simulated: true, gateway: false, perClientCounters: false, kernelLimits: false, exitCounters: false, wireless: false, notes: this.notes() }
  }

  status (): AdapterStatus {
    return { kind: 'simulated', simulated: true, started: this.started, admittedClients: this.clients.size, limits: { ...this.limits }, notes: this.notes() }
  }

  async linkStatus (): Promise<LinkStatus> {
    const iface = this.init.uplinkInterface ?? null
    if (iface === null) throw new AdapterConfigError('the simulated adapter has no uplink interface to report on: set hardware.wanInterface in the config')
    return await linkStatus(iface, { configuredCapacityBytesPerSec: this.init.uplinkCapacityBytesPerSec })
  }

  /**
   * Reports traffic of a client as if the kernel had counted it: counted for an
   * admitted client, counted as dropped otherwise (a real gateway would drop it).
   */
  recordTraffic (ip: string, uploadBytes: bigint, downloadBytes: bigint): void {
    this.assertStarted()
    const c = this.clients.get(ip)
    if (c === undefined) {
      this.unpaid.bytes += uploadBytes + downloadBytes
      this.unpaid.packets += 1n
      return
    }
    c.uploadBytes += uploadBytes
    c.uploadPackets += uploadBytes > 0n ? 1n : 0n
    c.downloadBytes += downloadBytes
    c.downloadPackets += downloadBytes > 0n ? 1n : 0n
  }

  async readCounters (): Promise<CounterReading> {
    this.assertStarted()
    return this.take()
  }

  async admit (client: GatewayClient): Promise<void> {
    this.assertStarted()
    const c = normalizeGatewayClient(client)
    const known = this.clients.get(c.ip)
    if (known?.mac === c.mac) return
    if (known !== undefined) this.pending.push({ ...known })
    this.clients.set(c.ip, { ...c, uploadBytes: 0n, uploadPackets: 0n, downloadBytes: 0n, downloadPackets: 0n })
  }

  async evict (client: GatewayClient): Promise<ClientCounters | null> {
    this.assertStarted()
    const c = normalizeGatewayClient(client)
    const known = this.clients.get(c.ip)
    if (known?.mac !== c.mac) return null
    this.clients.delete(c.ip)
    return { ...known }
  }

  async listClients (): Promise<GatewayClient[]> {
    this.assertStarted()
    return [...this.clients.values()].map((c) => ({ ip: c.ip, mac: c.mac }))
  }

  async setLimits (limits: BandwidthLimits): Promise<void> {
    assertBandwidthLimits(limits)
    this.limits = { ...limits }
  }

  async wirelessState (): Promise<WirelessState> {
    return { supported: false, reason: 'simulated hardware adapter', uplink: null, hotspots: [] }
  }

  private assertStarted (): void {
    if (!this.started) throw new AdapterStateError('the simulated adapter is not started: call start() first')
  }

  private take (): CounterReading {
    const clients = [...this.pending, ...[...this.clients.values()].map((c) => ({ ...c }))]
    this.pending = []
    let up = 0n
    let down = 0n
    let upP = 0n
    let downP = 0n
    for (const c of this.clients.values()) {
      up += c.uploadBytes
      down += c.downloadBytes
      upP += c.uploadPackets
      downP += c.downloadPackets
      c.uploadBytes = c.downloadBytes = c.uploadPackets = c.downloadPackets = 0n
    }
    const droppedUnpaid = this.unpaid
    this.unpaid = { bytes: 0n, packets: 0n }
    return { clients, total: { txBytes: up, txPackets: upP, rxBytes: down, rxPackets: downP }, droppedUnpaid, exit: null }
  }
}
