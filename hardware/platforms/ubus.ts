/**
 * Parsers of OpenWrt `ubus call …` answers (JSON printed by the `ubus` CLI). Each
 * keeps only the fields spareband uses and checks their types.
 */
import { UnexpectedOutputError } from '../errors.ts'
import type { WirelessHotspot } from '../adapter.ts'

type Json = Record<string, unknown>

function object (stdout: string, what: string): Json {
  let v: unknown
  try {
    v = JSON.parse(stdout)
  } catch (err) {
    throw new UnexpectedOutputError(`ubus call ${what}`, `not JSON (${(err as Error).message})`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UnexpectedOutputError(`ubus call ${what}`, 'not a JSON object')
  return v as Json
}

function optString (o: Json, key: string): string | null {
  return typeof o[key] === 'string' ? o[key] : null
}

/** Facts of one netifd interface (`ubus call network.interface.NAME status`). */
export interface InterfaceStatus {
  up: boolean
  /** The Linux device traffic leaves by (e.g. `wan`, `eth0.2`, `pppoe-wan`), null while down. */
  l3Device: string | null
  proto: string | null
  ipv4Addresses: string[]
}

/** Parses `ubus call network.interface.NAME status`. */
export function parseInterfaceStatus (stdout: string): InterfaceStatus {
  const o = object(stdout, 'network.interface status')
  if (typeof o.up !== 'boolean') throw new UnexpectedOutputError('ubus call network.interface status', 'no boolean "up"')
  const addrs = Array.isArray(o['ipv4-address']) ? o['ipv4-address'] : []
  return {
    up: o.up,
    l3Device: optString(o, 'l3_device'),
    proto: optString(o, 'proto'),
    ipv4Addresses: addrs.flatMap((a: unknown) => (typeof a === 'object' && a !== null && typeof (a as Json).address === 'string') ? [`${(a as Json).address as string}/${String((a as Json).mask)}`] : [])
  }
}

/** Facts of the device (`ubus call system board`). */
export interface SystemBoard {
  model: string | null
  boardName: string | null
  distribution: string | null
  version: string | null
  description: string | null
}

/** Parses `ubus call system board`. */
export function parseSystemBoard (stdout: string): SystemBoard {
  const o = object(stdout, 'system board')
  const release = (typeof o.release === 'object' && o.release !== null ? o.release : {}) as Json
  return {
    model: optString(o, 'model'),
    boardName: optString(o, 'board_name'),
    distribution: optString(release, 'distribution'),
    version: optString(release, 'version'),
    description: optString(release, 'description')
  }
}

/** One wifi-iface of `network.wireless status`. */
export interface WirelessInterface {
  radio: string
  radioUp: boolean
  ifname: string | null
  mode: string | null
  ssid: string | null
  band: string | null
  channel: number | null
}

/** Parses `ubus call network.wireless status` into its wifi-ifaces, radio facts attached. */
export function parseWirelessStatus (stdout: string): WirelessInterface[] {
  const o = object(stdout, 'network.wireless status')
  const out: WirelessInterface[] = []
  for (const [radio, value] of Object.entries(o)) {
    if (typeof value !== 'object' || value === null) continue
    const r = value as Json
    const config = (typeof r.config === 'object' && r.config !== null ? r.config : {}) as Json
    // 21.02 and older name the band by hwmode (11g/11a); 22.03+ by band (2g/5g/6g).
    const band = optString(config, 'band') ?? optString(config, 'hwmode')
    const channel = typeof config.channel === 'string' && /^\d+$/.test(config.channel) ? Number(config.channel) : (typeof config.channel === 'number' ? config.channel : null)
    for (const i of Array.isArray(r.interfaces) ? r.interfaces : []) {
      if (typeof i !== 'object' || i === null) continue
      const iface = i as Json
      const ic = (typeof iface.config === 'object' && iface.config !== null ? iface.config : {}) as Json
      out.push({ radio, radioUp: r.up === true, ifname: optString(iface, 'ifname'), mode: optString(ic, 'mode'), ssid: optString(ic, 'ssid'), band, channel })
    }
  }
  return out
}

/** The access points among parsed wifi-ifaces, as hotspots. */
export function hotspotsOf (ifaces: WirelessInterface[]): WirelessHotspot[] {
  return ifaces
    .filter((i) => i.mode === 'ap' && i.ifname !== null && i.ssid !== null)
    .map((i) => ({ interface: i.ifname as string, ssid: i.ssid as string, up: i.radioUp, band: i.band, channel: i.channel }))
}

/** Radio facts of one interface (`ubus call iwinfo info '{"device":"IF"}'`). */
export interface IwinfoInfo {
  ssid: string | null
  mode: string | null
  signalDbm: number | null
  frequencyMhz: number | null
}

/** Parses `ubus call iwinfo info`. */
export function parseIwinfoInfo (stdout: string): IwinfoInfo {
  const o = object(stdout, 'iwinfo info')
  const num = (k: string): number | null => typeof o[k] === 'number' ? o[k] : null
  const signal = num('signal')
  return { ssid: optString(o, 'ssid'), mode: optString(o, 'mode'), signalDbm: signal === 0 ? null : signal, frequencyMhz: num('frequency') }
}
