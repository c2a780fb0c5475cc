import { mkdir } from 'node:fs/promises'
import { Level } from 'level'
import type { Address, Hex } from 'viem'
import type { SessionChannel } from '../payment/buyer-payment-session.ts'
import type { SignedVoucher, Voucher } from '../../protocol/voucher.ts'

/** A channel this buyer opened, as it keeps it. */
export interface BuyerChannelRecord {
  channel: SessionChannel
  deposit: bigint
  openedAt: number
}

/**
 * The buyer's own durable record (LevelDB): the channels it opened and the last
 * voucher it signed on each, written with synced writes before a voucher is sent,
 * so a seller can never claim more was paid than the buyer signed.
 */
export class BuyerStore {
  readonly #db: Level<string, string>
  readonly #channels
  readonly #signed

  private constructor (db: Level<string, string>) {
    this.#db = db
    this.#channels = db.sublevel<string, string>('channels', { valueEncoding: 'utf8' })
    this.#signed = db.sublevel<string, string>('signed', { valueEncoding: 'utf8' })
  }

  /** Opens (creating if needed) the buyer database in `dir`. */
  static async open (dir: string): Promise<BuyerStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' })
    await db.open()
    return new BuyerStore(db)
  }

  /** Closes the database. */
  async close (): Promise<void> {
    await this.#db.close()
  }

  /** Records a channel opened to `channel.payee`. */
  async putChannel (record: BuyerChannelRecord): Promise<void> {
    await this.#db.batch([{ type: 'put', sublevel: this.#channels, key: channelKey(record.channel.payee, record.channel.token, record.channel.channelId), value: encode(record) }], { sync: true })
  }

  /** Channels opened to `payee` in `token`, newest first. */
  async channelsTo (payee: Address, token: Address): Promise<BuyerChannelRecord[]> {
    const prefix = `${payee.toLowerCase()}:${token.toLowerCase()}:`
    const out: BuyerChannelRecord[] = []
    for await (const value of this.#channels.values({ gte: prefix, lt: prefix + '\xff' })) out.push(decode(value) as BuyerChannelRecord)
    return out.sort((a, b) => b.openedAt - a.openedAt)
  }

  /** Every channel this buyer opened. */
  async listChannels (): Promise<BuyerChannelRecord[]> {
    const out: BuyerChannelRecord[] = []
    for await (const value of this.#channels.values()) out.push(decode(value) as BuyerChannelRecord)
    return out
  }

  /** Persists the last voucher signed on a channel (synced), before it is sent. */
  async putSigned (voucher: SignedVoucher): Promise<void> {
    await this.#db.batch([{ type: 'put', sublevel: this.#signed, key: voucher.channelId.toLowerCase(), value: encode(voucher) }], { sync: true })
  }

  /** The last voucher signed on a channel. */
  async getSigned (channelId: Hex): Promise<Voucher | undefined> {
    const value = await this.#signed.get(channelId.toLowerCase())
    return value === undefined ? undefined : decode(value) as SignedVoucher
  }
}

function channelKey (payee: Address, token: Address, channelId: Hex): string {
  return `${payee.toLowerCase()}:${token.toLowerCase()}:${channelId.toLowerCase()}`
}

function encode (value: unknown): string {
  return JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? { $big: v.toString() } : v)
}

function decode (text: string): unknown {
  return JSON.parse(text, (_k, v) => (v !== null && typeof v === 'object' && typeof v.$big === 'string') ? BigInt(v.$big) : v)
}
