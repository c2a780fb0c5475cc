import si from 'systeminformation'
import { setTimeout as sleep } from 'node:timers/promises'
import { assertInterfaceName } from './validate.ts'
import type { LinkStatus } from './adapter.ts'

/** Settings of {@link linkStatus}. */
export interface LinkStatusOptions {
  /** The operator's usable uplink capacity (e.g. the ISP plan), which wins over the link speed. */
  configuredCapacityBytesPerSec?: number | null
  /** When systeminformation has no earlier sample of the interface, wait this long and sample again (default 1000 ms). */
  sampleMs?: number
}

/**
 * Link speed (`networkInterfaces`) and current load (`networkStats`, a rate between
 * this call and the previous one) of an interface, from systeminformation, which
 * reads this process's network namespace. A link that reports no speed (Wi-Fi,
 * virtual links, `-1`) gives `speedBytesPerSec: null`.
 */
export async function linkStatus (iface: string, options: LinkStatusOptions = {}): Promise<LinkStatus> {
  assertInterfaceName(iface, 'uplink interface')
  let [stats] = await si.networkStats(iface)
  if (stats === undefined || stats.rx_sec === null || stats.tx_sec === null) {
    await sleep(options.sampleMs ?? 1000)
    ;[stats] = await si.networkStats(iface)
  }
  const nic = (await si.networkInterfaces()).find((n) => n.iface === iface)
  const mbit = nic?.speed ?? null
  const speedBytesPerSec = mbit !== null && mbit > 0 ? mbit * 125_000 : null
  return {
    interface: iface,
    up: (stats?.operstate ?? nic?.operstate) === 'up',
    speedBytesPerSec,
    capacityBytesPerSec: options.configuredCapacityBytesPerSec ?? speedBytesPerSec,
    rxBytesPerSec: Math.max(0, stats?.rx_sec ?? 0),
    txBytesPerSec: Math.max(0, stats?.tx_sec ?? 0)
  }
}
