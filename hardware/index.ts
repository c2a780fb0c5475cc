/**
 * Entry point of the hardware layer: picks and builds the adapter for this machine.
 * See hardware/README.md for the design and what the counters count.
 */
import { commandRunner, type CommandRunner } from './command.ts'
import { gatherPlatformFacts, selectAdapterKind, type AdapterChoice, type AdapterSelection, type PlatformFacts } from './detect.ts'
import { KernelAdapter, type KernelAdapterInit, type PlatformProbe } from './kernel-adapter.ts'
import { SimulatedAdapter } from './simulated.ts'
import { linuxPlatform } from './platforms/linux.ts'
import { openwrtPlatform } from './platforms/openwrt.ts'
import { raspberrypiPlatform } from './platforms/raspberrypi.ts'
import { AdapterConfigError } from './errors.ts'
import type { Logger } from 'pino'
import type { HardwareAdapter } from './adapter.ts'

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

/** The kernel adapter's settings that come from the daemon's config. */
type KernelAdapterSettings = Pick<KernelAdapterInit, 'wanInterface' | 'masquerade' | 'limits' | 'exitMatch' | 'uplinkCapacityBytesPerSec' | 'enableForwarding'>

/** The `hardware` section of the daemon's config: the kernel adapter's settings plus the choice of adapter. */
export interface HardwareConfig extends KernelAdapterSettings {
  /** Which adapter; `auto` (default) detects it. */
  adapter?: AdapterChoice
  /** Interface the gateway clients are on; required by the kernel adapters. */
  lanInterface?: string
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
  const { adapter: _choice, wanNetwork: _wanNetwork, lanInterface, ...settings } = config
  const adapter = new KernelAdapter({ ...settings, platform, runner, logger, lanInterface })
  return { adapter, selection }
}
