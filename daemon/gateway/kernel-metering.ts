/**
 * Everything the seller daemon meters through the kernel, started as one piece:
 * the counter loop (the only reader of the adapter's read-and-reset counters), the
 * gateway (when configured: limits, metering, eviction, LAN discovery) and the
 * relay-exit reconciliation (when the adapter counts exit traffic).
 */
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import type { HardwareAdapter } from '../../hardware/adapter.ts'
import { commandRunner } from '../../hardware/command.ts'
import { neighbourMac } from '../../hardware/neighbour.ts'
import type { Config } from '../config/schema.ts'
import { ExitReconciler } from '../reconcile.ts'
import type { SellerStore } from '../state/store.ts'
import { CounterLoop } from './counter-loop.ts'
import { GatewayMeter } from './gateway-meter.ts'
import { GatewayConfigError, LanAnnouncer } from './lan-announcer.ts'

/** Read interval of the exit counters when no gateway sets one. */
const EXIT_ONLY_READ_INTERVAL_MS = 1000

/** Options of {@link startKernelMetering}. */
export interface KernelMeteringInit {
  adapter: HardwareAdapter
  store: SellerStore
  /** The `gateway` config section; gateway mode is off without it. */
  gateway: Config['gateway']
  /** The sellers' credit window (to warn about limits that would stall paying devices). */
  creditWindowBytes: bigint
  /** The relay exit's userspace count (`SellerPaymentService.relayedBytes`). */
  relayedBytes: () => { up: bigint, down: bigint }
  /** MAC of a LAN neighbour; default: the kernel's neighbour table on the LAN interface. */
  lookupMac?: (ip: string) => Promise<string | null>
  logger: Logger
}

/** The running kernel metering. */
export interface KernelMetering {
  /** The gateway, when gateway mode is on: the payment service's `gateway` host. */
  gateway: GatewayMeter | undefined
  /** The exit reconciliation, when the adapter counts exit traffic. */
  reconciler: ExitReconciler | undefined
  /** Starts answering mDNS discovery on the LAN with the node's LAN addresses (gateway mode). */
  announce: (addresses: () => Multiaddr[]) => void
  /** Stops reading, evicts every device (their last counts go to their sessions) and stops announcing. */
  stop: () => Promise<void>
}

/**
 * Starts the kernel metering the adapter and config call for, or returns undefined
 * when there is none (no gateway, no exit counters). Throws `ERR_GATEWAY_CONFIG`
 * when gateway mode is configured on an adapter that cannot admit or meter devices.
 */
export async function startKernelMetering (init: KernelMeteringInit): Promise<KernelMetering | undefined> {
  const { adapter, gateway: config } = init
  const caps = adapter.capabilities()
  const log = init.logger.child({ component: 'kernel-metering' })
  if (config !== undefined && !caps.gateway) {
    throw new GatewayConfigError(`gateway mode needs a kernel adapter with nftables; this machine uses the ${caps.kind} adapter (${caps.notes.join('; ') || 'no kernel gateway'}). Install nftables or remove "gateway" from the config`)
  }
  if (config === undefined && !caps.exitCounters) return undefined

  const loop = new CounterLoop({ adapter, intervalMs: config?.readIntervalMs ?? EXIT_ONLY_READ_INTERVAL_MS, logger: init.logger })
  const reconciler = caps.exitCounters ? new ExitReconciler({ userspaceBytes: init.relayedBytes, logger: init.logger }) : undefined
  if (reconciler !== undefined) loop.add(reconciler)
  let meter: GatewayMeter | undefined
  let announcer: LanAnnouncer | undefined
  if (config !== undefined) {
    const perClient = config.clientLimitMbps === undefined ? null : Math.round(config.clientLimitMbps * 125_000)
    const total = config.totalLimitMbps === undefined ? null : Math.round(config.totalLimitMbps * 125_000)
    await adapter.setLimits({ perClientBytesPerSec: perClient, totalBytesPerSec: total })
    const perRead = perClient === null ? null : BigInt(Math.ceil(perClient * config.readIntervalMs / 1000))
    if (perRead === null || perRead * 2n > init.creditWindowBytes) {
      log.warn({ clientLimitMbps: config.clientLimitMbps ?? null, readIntervalMs: config.readIntervalMs, creditWindowBytes: init.creditWindowBytes.toString() },
        'a device can move more than half a credit window between two counter reads: paying devices will stall while their vouchers travel, and an unpaying one gets that much more; set gateway.clientLimitMbps (or a shorter readIntervalMs)')
    }
    const runner = commandRunner()
    meter = new GatewayMeter({
      adapter,
      store: init.store,
      lookupMac: init.lookupMac ?? (async (ip) => await neighbourMac(runner, ip, config.lanInterface)),
      lanInterface: config.lanInterface,
      logger: init.logger
    })
    loop.add(meter)
    await meter.start(loop)
  }
  loop.start()
  log.info({ gateway: config?.lanInterface ?? null, exitReconciliation: reconciler !== undefined, readIntervalMs: loop.intervalMs }, 'kernel metering started')

  return {
    gateway: meter,
    reconciler,
    announce: (addresses) => {
      if (config === undefined || announcer !== undefined) return
      announcer = new LanAnnouncer({ lanInterface: config.lanInterface, addresses, logger: init.logger })
      announcer.start()
    },
    stop: async () => {
      await loop.stop()
      await meter?.stop()
      await announcer?.stop()
    }
  }
}
