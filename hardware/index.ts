/**
 * Entry point of the hardware layer: picks and builds the adapter for this machine.
 * See hardware/README.md for the design and what the counters count.
 */
import { commandRunner, type CommandRunner } from './command.ts'
import { gatherPlatformFacts, selectAdapterKind, type AdapterChoice, type AdapterSelection, type PlatformFacts } from './detect.ts'
import { KernelAdapter, type PlatformProbe } from './kernel-adapter.ts'
import { SimulatedAdapter } from './simulated.ts'
import { linuxPlatform } from './platforms/linux.ts'
import { openwrtPlatform } from './platforms/openwrt.ts'
import { raspberrypiPlatform } from './platforms/raspberrypi.ts'
import { AdapterConfigError } from './errors.ts'
import type { Logger } from 'pino'
import type { ExitMatch } from './nftables/ruleset.ts'
import type { BandwidthLimits, HardwareAdapter } from './adapter.ts'

export type * from './adapter.ts'
export type { AdapterChoice, AdapterSelection, PlatformFacts } from './detect.ts'
export type { ExitMatch } from './nftables/ruleset.ts'
export type { CommandRunner } from './command.ts'
export { commandRunner, netnsPrefix } from './command.ts'
export { spareCapacity } from './spare-capacity.ts'
export { SimulatedAdapter } from './simulated.ts'
export { KernelAdapter } from './kernel-adapter.ts'
export { neighbourMac } from './neighbour.ts'
export { defaultRoute } from './ip-route.ts'
export { readInterfaceCounters, linkHeaderBytes, type InterfaceCounters } from './sysfs.ts'

/** The `hardware` section of the daemon's config. */
export interface HardwareConfig {
  /** Which adapter; `auto` (default) detects it. */
  adapter?: AdapterChoice
  /** Interface the gateway clients are on; required by the kernel adapters. */
  lanInterface?: string
  /** Upstream interface; detected (default route, ubus) when omitted. */
  wanInterface?: string
  /** Masquerade clients on the upstream interface (default true). */
  masquerade?: boolean
  limits?: BandwidthLimits
  exitMatch?: ExitMatch | null
  /** Usable uplink capacity, e.g. the ISP plan (wins over the link speed). */
  uplinkCapacityBytesPerSec?: number | null
  /** Turn on ip_forward while started (default true). */
  enableForwarding?: boolean
  /** OpenWrt: netifd interface of the uplink (default `wan`). */
  wanNetwork?: string
}

/** Dependencies of {@link createHardwareAdapter}; tests pass fixtures and a netns runner. */
export interface HardwareDeps {
  logger: Logger
  runner?: CommandRunner
  facts?: PlatformFacts
}

/** Detects (or takes from config) the adapter kind and builds the adapter. */
export function createHardwareAdapter (config: HardwareConfig, deps: HardwareDeps): { adapter: HardwareAdapter, selection: AdapterSelection } {
  const selection = selectAdapterKind(deps.facts ?? gatherPlatformFacts(), config.adapter ?? 'auto')
  const logger = deps.logger.child({ component: 'hardware', adapter: selection.kind })
  logger.info({ reason: selection.reason }, `hardware adapter: ${selection.kind}`)
  if (selection.kind === 'simulated') {
    return { adapter: new SimulatedAdapter({ logger, reason: selection.reason, uplinkInterface: config.wanInterface, uplinkCapacityBytesPerSec: config.uplinkCapacityBytesPerSec, limits: config.limits }), selection }
  }
  if (config.lanInterface === undefined) {
    throw new AdapterConfigError(`the ${selection.kind} adapter needs the interface the gateway clients are on (config \`gateway.lanInterface\`, e.g. "br-lan" or "wlan0"); a relay-only seller needs no kernel adapter (\`hardware: "simulated"\`)`)
  }
  const runner = deps.runner ?? commandRunner()
  const platform: PlatformProbe = selection.kind === 'openwrt'
    ? openwrtPlatform({ runner, wanNetwork: config.wanNetwork })
    : selection.kind === 'raspberrypi' ? raspberrypiPlatform({ runner }) : linuxPlatform({ runner })
  const adapter = new KernelAdapter({
    platform,
    runner,
    logger,
    lanInterface: config.lanInterface,
    wanInterface: config.wanInterface,
    masquerade: config.masquerade,
    limits: config.limits,
    exitMatch: config.exitMatch,
    uplinkCapacityBytesPerSec: config.uplinkCapacityBytesPerSec,
    enableForwarding: config.enableForwarding
  })
  return { adapter, selection }
}
