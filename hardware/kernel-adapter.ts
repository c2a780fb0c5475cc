import { NftablesGateway } from './nftables/gateway.ts'
import { linkStatus } from './link.ts'
import { readInterfaceCounters, type InterfaceCounters } from './sysfs.ts'
import { AdapterConfigError, AdapterStateError } from './errors.ts'
import type { Logger } from 'pino'
import type { CommandRunner } from './command.ts'
import type { ExitMatch } from './nftables/ruleset.ts'
import type {
  AdapterCapabilities, AdapterKind, AdapterStatus, BandwidthLimits, ClientCounters, CounterReading, GatewayClient,
  HardwareAdapter, LinkStatus, WirelessState
} from './adapter.ts'

/** The platform-specific part of a kernel adapter: facts about the uplink and Wi-Fi. */
export interface PlatformProbe {
  readonly kind: Exclude<AdapterKind, 'simulated'>
  /** Checks run before the gateway starts; returns remarks, throws when the platform cannot be metered. */
  preflight(): Promise<string[]>
  /** The upstream interface when the config names none, or null. */
  uplinkInterface(): Promise<string | null>
  wirelessState(): Promise<WirelessState>
}

/** Settings of a {@link KernelAdapter}. */
export interface KernelAdapterInit {
  platform: PlatformProbe
  runner: CommandRunner
  logger: Logger
  /** Interface the gateway clients are on (hotspot/LAN). */
  lanInterface: string
  /** Upstream interface; found by the platform (default route, ubus) when omitted. */
  wanInterface?: string
  /** Masquerade clients on the upstream interface (default true). */
  masquerade?: boolean
  limits?: BandwidthLimits
  /** Count the daemon's own relay-exit traffic (default off). */
  exitMatch?: ExitMatch | null
  /** The operator's usable uplink capacity (wins over the link speed). */
  uplinkCapacityBytesPerSec?: number | null
  /** Turn on `net.ipv4.ip_forward` while started (default true). */
  enableForwarding?: boolean
}

/**
 * The adapter of platforms with nftables (generic Linux, OpenWrt fw4, Raspberry Pi):
 * the gateway lives in spareband's own table, link facts come from
 * systeminformation and sysfs, platform facts from a {@link PlatformProbe}.
 */
export class KernelAdapter implements HardwareAdapter {
  readonly kind: Exclude<AdapterKind, 'simulated'>
  private readonly init: KernelAdapterInit
  private readonly log: Logger
  private gateway: NftablesGateway | null = null
  private wan: string | null
  private notes: string[] = []

  constructor (init: KernelAdapterInit) {
    this.init = init
    this.kind = init.platform.kind
    this.log = init.logger
    this.wan = init.wanInterface ?? null
  }

  async start (): Promise<void> {
    if (this.gateway?.isStarted === true) return
    const notes = await this.init.platform.preflight()
    this.wan ??= await this.init.platform.uplinkInterface()
    if (this.wan === null) {
      throw new AdapterConfigError('no upstream interface: there is no default route; set hardware.wanInterface in the config')
    }
    this.gateway = new NftablesGateway({
      runner: this.init.runner,
      logger: this.log,
      lanInterface: this.init.lanInterface,
      wanInterface: this.wan,
      masquerade: this.init.masquerade,
      limits: this.init.limits,
      exitMatch: this.init.exitMatch,
      enableForwarding: this.init.enableForwarding
    })
    notes.push(...await this.gateway.start())
    this.notes = notes
    this.log.info({ kind: this.kind, lan: this.init.lanInterface, wan: this.wan, notes }, 'hardware adapter started')
  }

  async stop (): Promise<CounterReading> {
    const gateway = this.gateway
    if (gateway === null) throw new AdapterStateError('the hardware adapter was never started')
    return await gateway.stop()
  }

  capabilities (): AdapterCapabilities {
    return {
      kind: this.kind,
      simulated: false,
      gateway: true,
      perClientCounters: true,
      kernelLimits: true,
      exitCounters: (this.init.exitMatch ?? null) !== null,
      wireless: this.kind !== 'linux',
      notes: [...this.notes]
    }
  }

  status (): AdapterStatus {
    return {
      kind: this.kind,
      simulated: false,
      started: this.gateway?.isStarted ?? false,
      admittedClients: this.gateway?.clientCount ?? 0,
      limits: this.gateway?.currentLimits ?? this.init.limits ?? { perClientBytesPerSec: null, totalBytesPerSec: null },
      notes: [...this.notes]
    }
  }

  async linkStatus (): Promise<LinkStatus> {
    const wan = this.wan ?? await this.init.platform.uplinkInterface()
    if (wan === null) throw new AdapterConfigError('no upstream interface: there is no default route; set hardware.wanInterface in the config')
    return await linkStatus(wan, { configuredCapacityBytesPerSec: this.init.uplinkCapacityBytesPerSec })
  }

  /** Monotonic sysfs counters of the LAN and upstream interfaces (L2 frames, every protocol). */
  async interfaceCounters (): Promise<{ lan: InterfaceCounters, wan: InterfaceCounters }> {
    this.requireGateway()
    const [lan, up] = await Promise.all([readInterfaceCounters(this.init.runner, this.init.lanInterface), readInterfaceCounters(this.init.runner, this.wan as string)])
    return { lan, wan: up }
  }

  async readCounters (): Promise<CounterReading> {
    return await this.requireGateway().readCounters()
  }

  async admit (client: GatewayClient): Promise<void> {
    await this.requireGateway().admit(client)
  }

  async evict (client: GatewayClient): Promise<ClientCounters | null> {
    return await this.requireGateway().evict(client)
  }

  async listClients (): Promise<GatewayClient[]> {
    return await this.requireGateway().listClients()
  }

  async setLimits (limits: BandwidthLimits): Promise<void> {
    await this.requireGateway().setLimits(limits)
  }

  async wirelessState (): Promise<WirelessState> {
    return await this.init.platform.wirelessState()
  }

  private requireGateway (): NftablesGateway {
    if (this.gateway === null) throw new AdapterStateError('the hardware adapter is not started: call start() first')
    return this.gateway
  }
}
