/**
 * The gateway's metering loop (hotspot/LAN buyers). A buyer's `gateway` payment
 * session is bound to its device, IP + MAC, learned from the LAN side: the IP of its
 * libp2p connection and the MAC the kernel's neighbour table holds for it. While the
 * session has credit the device is admitted into the kernel's gateway set; every
 * counter reading feeds the device's kernel-counted bytes into the session
 * (`SellerChannel.recordDelivered` through `SellerSession.recordForwarded`), which
 * asks the buyer for vouchers; a device whose credit is used up is evicted in the
 * same reading and readmitted as soon as a persisted voucher restores credit.
 *
 * Exposure: the kernel forwards between two readings, so an unpaying device gets at
 * most one credit window plus what it moves in one read interval (bounded by the
 * kernel's per-client limit) before it is cut off.
 *
 * Restarts: the bytes counted per channel and the device bindings are kept in the
 * store, so usage forwarded but not yet paid stays owed by the channel across a
 * restart; after a crash the kernel table survives, the unread counts of the devices
 * admitted before are added to their channels and the devices are evicted until
 * their buyers open a new session. A crash loses at most the counts of the last
 * read (the seller's loss, never the buyer's).
 */
import type { Connection } from '@libp2p/interface'
import type { Hex } from 'viem'
import type { Logger } from 'pino'
import { SparebandError } from '../../protocol/errors.ts'
import type { ClientCounters, CounterReading, GatewayClient, HardwareAdapter } from '../../hardware/adapter.ts'
import type { SellerSession } from '../payment/seller-session.ts'
import type { SellerStore } from '../state/store.ts'
import type { CounterConsumer, CounterLoop } from './counter-loop.ts'
import type { GatewaySessionHost } from './session-host.ts'

/** Meter snapshot name of the bytes counted per channel (`SellerStore.putMeterSnapshot`). */
export const GATEWAY_LEDGER = 'gateway-delivered'
/** Meta key of the device bindings (IP, MAC, channel), JSON. */
export const GATEWAY_BINDINGS = 'gateway-clients'

/** Raised when a buyer's connection cannot be bound to a device on the LAN; the code goes back to the buyer. */
export class GatewayClientError extends SparebandError {
  constructor (code: 'ERR_NOT_ON_LAN' | 'ERR_GATEWAY_CLIENT_BUSY', message: string) {
    super(code, message)
  }
}

/** Options of {@link GatewayMeter}. */
export interface GatewayMeterInit {
  adapter: Pick<HardwareAdapter, 'admit' | 'evict' | 'listClients'>
  store: Pick<SellerStore, 'getMeterSnapshot' | 'putMeterSnapshot' | 'getMeta' | 'putMeta'>
  /** The MAC the neighbour table holds for an IP on the LAN interface, or null when it is not a LAN neighbour. */
  lookupMac: (ip: string) => Promise<string | null>
  /** Name of the LAN interface (for messages). */
  lanInterface: string
  logger: Logger
}

/** One metered device, for status and the dashboard. */
export interface GatewayClientStatus {
  ip: string
  mac: string
  sessionId: string
  channelId: Hex
  /** In the kernel's gateway set now. */
  admitted: boolean
  deliveredBytes: bigint
  unpaidBytes: bigint
  /** Times it was evicted for lack of credit in this session. */
  evictions: number
}

interface Attached {
  session: SellerSession
  client: GatewayClient
  admitted: boolean
  evictions: number
  detached: boolean
  stopListening: () => void
}

interface Binding {
  mac: string
  channelId: Hex
}

const CHANNEL_ID = /^0x[0-9a-f]{64}$/
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

/** See the module comment. */
export class GatewayMeter implements CounterConsumer, GatewaySessionHost {
  readonly #init: GatewayMeterInit
  readonly #log: Logger
  /** Devices with a live session, by IP. */
  readonly #attached = new Map<string, Attached>()
  #countedBytes = 0n
  /** Which channel pays for which device (persisted): also the devices left admitted by a crash. */
  readonly #bindings = new Map<string, Binding>()
  /** Bytes counted per channel (lower-case id) of channels with no live session and unpaid usage. */
  readonly #ledger = new Map<string, bigint>()
  #queue: Promise<unknown> = Promise.resolve()
  #stopped = false

  readonly [Symbol.toStringTag] = 'spareband/gateway-meter'

  constructor (init: GatewayMeterInit) {
    this.#init = init
    this.#log = init.logger.child({ component: 'gateway' })
  }

  /**
   * Restores the ledger and the bindings, then settles devices a crash left admitted:
   * one counter read (through `loop`, the only reader) adds their unread counts to
   * their channels, and they are evicted until their buyers open a new session.
   */
  async start (loop: CounterLoop): Promise<void> {
    const snapshot = await this.#init.store.getMeterSnapshot(GATEWAY_LEDGER)
    for (const [id, bytes] of Object.entries(snapshot?.counters ?? {})) {
      if (CHANNEL_ID.test(id)) this.#ledger.set(id, bytes)
    }
    for (const b of parseBindings(await this.#init.store.getMeta(GATEWAY_BINDINGS))) this.#bindings.set(b.ip, { mac: b.mac, channelId: b.channelId })
    const adopted = await this.#init.adapter.listClients()
    await loop.tick()
    for (const client of adopted) {
      const final = await this.#init.adapter.evict(client)
      if (final !== null) this.#attribute(final)
    }
    this.#bindings.clear()
    await this.#saveBindings()
    await this.#saveLedger()
    if (adopted.length > 0) this.#log.info({ clients: adopted.length }, 'evicted devices admitted before a restart; their counts were added to their channels')
  }

  /** Evicts every device, adds its last counts to its session, and saves the ledger. */
  async stop (): Promise<void> {
    this.#stopped = true
    await this.#serialize(async () => {
      for (const att of [...this.#attached.values()]) await this.#release(att)
      await this.#saveBindings()
      await this.#saveLedger()
    })
  }

  async clientOf (connection: Connection): Promise<GatewayClient> {
    const parts = connection.remoteAddr.getComponents().filter((c) => c.name !== 'p2p')
    const ip = parts[0]?.name === 'ip4' && parts.length === 2 && parts[1].name === 'tcp' ? parts[0].value : undefined
    if (ip === undefined) {
      throw new GatewayClientError('ERR_NOT_ON_LAN', `gateway sessions need a direct IPv4 connection from the gateway's LAN, this one comes from ${connection.remoteAddr.toString()}; join the hotspot and dial the gateway's LAN address`)
    }
    if (this.#attached.has(ip)) throw new GatewayClientError('ERR_GATEWAY_CLIENT_BUSY', `device ${ip} already has a gateway session; close it before opening another`)
    const mac = await this.#init.lookupMac(ip)
    if (mac === null) {
      throw new GatewayClientError('ERR_NOT_ON_LAN', `${ip} is not a device on the gateway's LAN (${this.#init.lanInterface}); join the hotspot and dial the gateway's LAN address`)
    }
    return { ip, mac }
  }

  deliveredBytes (channelId: Hex): bigint | undefined {
    return this.#ledger.get(channelId.toLowerCase())
  }

  attach (session: SellerSession, client: GatewayClient): Promise<void> {
    return this.#serialize(async () => {
      if (this.#stopped) throw new GatewayClientError('ERR_GATEWAY_CLIENT_BUSY', 'the gateway is shutting down; try again later')
      if (this.#attached.has(client.ip)) throw new GatewayClientError('ERR_GATEWAY_CLIENT_BUSY', `device ${client.ip} already has a gateway session; close it before opening another`)
      const channelId = session.channel.terms.channelId.toLowerCase() as Hex
      this.#ledger.delete(channelId)
      // the binding is durable before the device is admitted: a crash can always attribute its counts
      this.#bindings.set(client.ip, { mac: client.mac, channelId })
      await this.#saveBindings()
      const att: Attached = { session, client, admitted: false, evictions: 0, detached: false, stopListening: () => {} }
      const onCredit = (): void => { void this.#serialize(async () => { await this.#admitIfCredit(att) }).catch((err: any) => this.#log.error({ err: err?.message, ip: client.ip }, 'cannot readmit a gateway client')) }
      session.on('credit', onCredit)
      att.stopListening = () => { session.off('credit', onCredit) }
      this.#attached.set(client.ip, att)
      session.setHeld(true)
      await this.#admitIfCredit(att)
      this.#log.info({ ip: client.ip, mac: client.mac, session: session.id, channel: channelId, admitted: att.admitted }, 'gateway client attached')
    })
  }

  detach (session: SellerSession): Promise<void> {
    return this.#serialize(async () => {
      const att = [...this.#attached.values()].find((a) => a.session === session)
      if (att === undefined) return
      await this.#release(att)
      await this.#saveBindings()
      await this.#saveLedger()
    })
  }

  onReading (reading: CounterReading): Promise<void> {
    return this.#serialize(async () => {
      const moved = new Set<string>()
      let changed = false
      for (const c of reading.clients) {
        const bytes = c.uploadBytes + c.downloadBytes
        this.#countedBytes += bytes
        const att = this.#attached.get(c.ip)
        if (att !== undefined && att.client.mac === c.mac) {
          if (bytes > 0n) moved.add(c.ip)
          att.session.recordForwarded(bytes)
        } else {
          changed = this.#attribute(c) || changed
        }
      }
      const nowSec = Math.floor(Date.now() / 1000)
      for (const att of this.#attached.values()) {
        const credit = att.session.channel.creditRemainingBytes(nowSec)
        if (att.admitted && credit === 0n) await this.#evict(att)
        else if (!att.admitted && credit > 0n) await this.#admitIfCredit(att)
        // an idle device settles up: the buyer pays for everything counted so far
        if (!moved.has(att.client.ip)) att.session.requestReport()
      }
      if (changed || moved.size > 0) await this.#saveLedger()
    })
  }

  /** Bytes the kernel counted for admitted devices since start (what the gateway sold, paid or not). */
  countedBytes (): bigint {
    return this.#countedBytes
  }

  /** The metered devices now. */
  status (): GatewayClientStatus[] {
    return [...this.#attached.values()].map((a) => ({
      ip: a.client.ip,
      mac: a.client.mac,
      sessionId: a.session.id,
      channelId: a.session.channel.terms.channelId,
      admitted: a.admitted,
      deliveredBytes: a.session.channel.deliveredBytes,
      unpaidBytes: a.session.channel.unpaidBytes,
      evictions: a.evictions
    }))
  }

  /** Admits the device when its session has credit (and is live). */
  async #admitIfCredit (att: Attached): Promise<void> {
    if (att.detached || att.admitted || this.#stopped) return
    if (att.session.revokedReason !== undefined) return
    if (att.session.channel.creditRemainingBytes(Math.floor(Date.now() / 1000)) === 0n) return
    await this.#init.adapter.admit(att.client)
    att.admitted = true
    att.session.setHeld(false)
    this.#log.debug({ ip: att.client.ip, session: att.session.id }, 'gateway client admitted')
  }

  /** Evicts the device for lack of credit; its counts since the last read go to its session. */
  async #evict (att: Attached): Promise<void> {
    const final = await this.#init.adapter.evict(att.client)
    att.admitted = false
    att.evictions++
    att.session.setHeld(true)
    att.session.recordForwarded(final === null ? 0n : final.uploadBytes + final.downloadBytes)
    this.#log.info({ ip: att.client.ip, session: att.session.id, unpaidBytes: att.session.channel.unpaidBytes.toString() }, 'gateway client out of credit: evicted until it pays')
  }

  /** Ends metering a device: evicts it, records its last counts, keeps its channel's unpaid usage in the ledger. */
  async #release (att: Attached): Promise<void> {
    att.detached = true
    att.stopListening()
    if (att.admitted) {
      const final = await this.#init.adapter.evict(att.client)
      att.admitted = false
      if (final !== null) att.session.recordForwarded(final.uploadBytes + final.downloadBytes)
    }
    this.#attached.delete(att.client.ip)
    this.#bindings.delete(att.client.ip)
    const channel = att.session.channel
    const id = channel.terms.channelId.toLowerCase()
    if (channel.deliveredBytes > (channel.lastVoucher?.cumulativeBytes ?? 0n)) this.#ledger.set(id, channel.deliveredBytes)
    else this.#ledger.delete(id)
    this.#log.info({ ip: att.client.ip, session: att.session.id, delivered: channel.deliveredBytes.toString(), unpaidBytes: channel.unpaidBytes.toString() }, 'gateway client detached')
  }

  /** Counts of a device with no live session: added to the channel its binding names. Returns whether any were. */
  #attribute (c: ClientCounters): boolean {
    const bytes = c.uploadBytes + c.downloadBytes
    if (bytes === 0n) return false
    const binding = this.#bindings.get(c.ip)
    if (binding === undefined || (c.mac !== '' && c.mac !== binding.mac)) {
      this.#log.warn({ ip: c.ip, mac: c.mac, bytes: bytes.toString() }, 'counted gateway traffic of a device no channel pays for')
      return false
    }
    const id = binding.channelId.toLowerCase()
    this.#ledger.set(id, (this.#ledger.get(id) ?? 0n) + bytes)
    return true
  }

  /** Saves which channel pays for which device, durably. */
  async #saveBindings (): Promise<void> {
    await this.#init.store.putMeta(GATEWAY_BINDINGS, JSON.stringify([...this.#bindings].map(([ip, b]) => ({ ip, mac: b.mac, channelId: b.channelId }))))
  }

  /** Saves the bytes counted per channel (live sessions and the ledger). */
  async #saveLedger (): Promise<void> {
    const counters: Record<string, bigint> = Object.fromEntries(this.#ledger)
    for (const att of this.#attached.values()) counters[att.session.channel.terms.channelId.toLowerCase()] = att.session.channel.deliveredBytes
    await this.#init.store.putMeterSnapshot(GATEWAY_LEDGER, { at: Date.now(), counters })
  }

  #serialize<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn)
    this.#queue = run.catch(() => {})
    return run
  }
}

/** Parses the stored bindings, skipping anything malformed. */
function parseBindings (text: string | undefined): Array<{ ip: string, mac: string, channelId: Hex }> {
  if (text === undefined) return []
  let rows: unknown
  try {
    rows = JSON.parse(text)
  } catch {
    return []
  }
  if (!Array.isArray(rows)) return []
  return rows.filter((r): r is { ip: string, mac: string, channelId: Hex } =>
    typeof r === 'object' && r !== null && typeof r.ip === 'string' && /^\d{1,3}(\.\d{1,3}){3}$/.test(r.ip) &&
    typeof r.mac === 'string' && MAC.test(r.mac) && typeof r.channelId === 'string' && CHANNEL_ID.test(r.channelId))
}
