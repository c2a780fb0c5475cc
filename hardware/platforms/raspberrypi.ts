import { createRequire } from 'node:module'
import { defaultRouteInterface } from '../ip-route.ts'
import { parseActiveConnections, parseTerseFields } from './nmcli.ts'
import { CommandFailedError } from '../errors.ts'
import type { CommandRunner } from '../command.ts'
import type { PlatformProbe } from '../kernel-adapter.ts'
import type { WirelessHotspot, WirelessState, WirelessUplink } from '../adapter.ts'

/** The part of node-wifi spareband uses (the package ships no types). */
interface NodeWifi {
  init(options: { iface: string | null }): void
  getCurrentConnections(): Promise<Array<{ iface: string, ssid: string, mode: string, frequency: number, signal_level: number }>>
}

const nodeWifi = createRequire(import.meta.url)('node-wifi') as NodeWifi

/**
 * Raspberry Pi OS (bookworm and later run NetworkManager): the Wi-Fi uplink comes from
 * node-wifi (`getCurrentConnections`), the hotspot — which node-wifi has no call for —
 * from `nmcli -t` on the active connections in AP mode.
 */
export function raspberrypiPlatform (init: { runner: CommandRunner }): PlatformProbe {
  const run = init.runner
  return {
    kind: 'raspberrypi',
    async preflight () {
      return []
    },
    async uplinkInterface () {
      return await defaultRouteInterface(run)
    },
    async wirelessState (): Promise<WirelessState> {
      let active
      try {
        active = parseActiveConnections((await run(['nmcli', '-t', '-f', 'NAME,UUID,TYPE,DEVICE', 'connection', 'show', '--active'])).stdout)
      } catch (err) {
        if (!(err instanceof CommandFailedError)) throw err
        return { supported: false, reason: `NetworkManager is not usable: ${err.message}`, uplink: null, hotspots: [] }
      }
      const hotspots: WirelessHotspot[] = []
      for (const c of active.filter((a) => a.type === '802-11-wireless')) {
        const fields = parseTerseFields((await run(['nmcli', '-t', '-f', '802-11-wireless.mode,802-11-wireless.ssid,802-11-wireless.band,802-11-wireless.channel', 'connection', 'show', 'uuid', c.uuid])).stdout)
        if (fields.get('802-11-wireless.mode') !== 'ap') continue
        const channel = Number(fields.get('802-11-wireless.channel') ?? '0')
        hotspots.push({ interface: c.device, ssid: fields.get('802-11-wireless.ssid') ?? '', up: true, band: fields.get('802-11-wireless.band') || null, channel: channel > 0 ? channel : null })
      }
      nodeWifi.init({ iface: null })
      const apDevices = new Set(hotspots.map((h) => h.interface))
      const current = (await nodeWifi.getCurrentConnections()).find((c) => !apDevices.has(c.iface))
      const uplink: WirelessUplink | null = current === undefined
        ? null
        : { interface: current.iface, ssid: current.ssid, signalDbm: Number.isFinite(current.signal_level) ? current.signal_level : null, frequencyMhz: Number.isFinite(current.frequency) ? current.frequency : null }
      return { supported: true, reason: null, uplink, hotspots }
    }
  }
}
