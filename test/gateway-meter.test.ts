/**
 * The gateway metering loop's rules without namespaces: the simulated adapter (which
 * counts what the test says a device moved), a real LevelDB store, real channel
 * accounting and real signed vouchers. The kernel side of the same rules runs in
 * `gateway-daemon.test.ts`.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { toHex, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import type { Connection, PeerId } from '@libp2p/interface'
import { SimulatedAdapter } from '../hardware/simulated.ts'
import { CounterLoop } from '../daemon/gateway/counter-loop.ts'
import { GatewayMeter } from '../daemon/gateway/gateway-meter.ts'
import { SellerSession } from '../daemon/payment/seller-session.ts'
import { SellerStore } from '../daemon/state/store.ts'
import { SellerChannel } from '../protocol/seller-channel.ts'
import { amountForBytes } from '../protocol/pricing.ts'
import { signVoucher } from '../protocol/voucher.ts'
import { VoucherVerifier } from '../protocol/voucher-verify.ts'

const logger = pino({ level: 'silent' })
const WINDOW = 1n << 20n
const PRICE = 10n ** 15n
const DEPOSIT = 10n ** 17n
const CHAIN_ID = 31337
const CONTRACT = '0x5FbDB2315678afecb367f032d93F642f64180aa3' as const
const DEVICE = { ip: '10.91.1.2', mac: '02:5b:00:00:00:02' }
const NEIGHBOURS = new Map([[DEVICE.ip, DEVICE.mac], ['10.91.1.3', '02:5b:00:00:00:03']])

/** A libp2p connection as the payment service hands it over: only its remote address matters here. */
function connectionFrom (addr: string): Connection {
  return { remoteAddr: multiaddr(addr) } as unknown as Connection
}

describe('gateway metering loop', () => {
  let dir: string
  let store: SellerStore
  let adapter: SimulatedAdapter
  let loop: CounterLoop
  let meter: GatewayMeter
  let peer: PeerId
  const signer = privateKeyToAccount(generatePrivateKey())
  const verifier = new VoucherVerifier({ chainId: CHAIN_ID, verifyingContract: CONTRACT })
  const channelId = toHex(randomBytes(32)) as Hex

  function newMeter (): GatewayMeter {
    return new GatewayMeter({ adapter, store, lookupMac: async (ip) => NEIGHBOURS.get(ip) ?? null, lanInterface: 'lan0', logger })
  }

  /** A gateway session as the payment service opens it: from the latest stored voucher and the gateway's count. */
  async function newSession (delivered?: bigint): Promise<SellerSession> {
    const stored = await store.getVoucher(channelId)
    const channel = new SellerChannel({
      terms: { chainId: CHAIN_ID, contract: CONTRACT, channelId, payer: signer.address, payee: signer.address, token: '0x0000000000000000000000000000000000000000', signer: signer.address, deposit: DEPOSIT, closeDeadline: null, pricePerGiB: PRICE },
      verifier,
      config: { creditWindowBytes: WINDOW },
      lastVoucher: stored === undefined ? undefined : { channelId, cumulativeAmount: stored.cumulativeAmount, cumulativeBytes: stored.cumulativeBytes, signature: stored.signature },
      deliveredBytes: delivered
    })
    return new SellerSession({ id: randomBytes(16).toString('hex'), peer, channel, reportEveryBytes: WINDOW / 2n, nowSec: () => Math.floor(Date.now() / 1000), service: 'gateway' })
  }

  /** The buyer pays for everything delivered: persisted, committed, credit granted. */
  async function pay (session: SellerSession): Promise<void> {
    const bytes = session.channel.deliveredBytes
    const sv = await signVoucher(signer, { chainId: CHAIN_ID, verifyingContract: CONTRACT }, { channelId, cumulativeAmount: amountForBytes(bytes, PRICE), cumulativeBytes: bytes })
    const checked = session.channel.checkVoucher(sv, Math.floor(Date.now() / 1000))
    await store.persistVoucher(checked.voucher)
    session.channel.commitVoucher(checked)
    session.creditChanged()
  }

  async function admitted (): Promise<string[]> {
    return (await adapter.listClients()).map((c) => c.ip)
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spareband-gwm-'))
    store = await SellerStore.open({ dataDir: dir })
    await store.putChannel({ chainId: CHAIN_ID, contract: CONTRACT, channelId, payer: signer.address, payee: signer.address, token: '0x0000000000000000000000000000000000000000', signer: signer.address, deposit: DEPOSIT, closeDeadline: 0n, pricePerGiB: PRICE, settled: 0n, openedAt: Date.now(), lastSeenAt: Date.now() })
    peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    adapter = new SimulatedAdapter({ logger, reason: 'test' })
    await adapter.start()
    loop = new CounterLoop({ adapter, intervalMs: 1000, logger })
    meter = newMeter()
    loop.add(meter)
    await meter.start(loop)
  })

  after(async () => {
    await loop?.stop()
    await store?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('binds a session to the device behind a direct IPv4 connection from the LAN, and nothing else', async () => {
    assert.deepEqual(await meter.clientOf(connectionFrom(`/ip4/${DEVICE.ip}/tcp/40000/p2p/${peer.toString()}`)), DEVICE)
    const refused = async (addr: string, code: string): Promise<void> => {
      await assert.rejects(meter.clientOf(connectionFrom(addr)), (err: any) => err.code === code, addr)
    }
    await refused('/ip4/10.91.1.9/tcp/40000', 'ERR_NOT_ON_LAN') // not in the neighbour table
    await refused('/ip6/fe80::1/tcp/40000', 'ERR_NOT_ON_LAN')
    await refused(`/ip4/${DEVICE.ip}/tcp/4001/p2p/${peer.toString()}/p2p-circuit`, 'ERR_NOT_ON_LAN') // relayed: the IP is the relay's
  })

  it('admits a device with credit, meters it, evicts it when the window is used up and readmits it once it pays', async () => {
    const session = await newSession()
    let reports = 0
    session.on('report-due', () => { reports++; session.markReported() })
    await meter.attach(session, DEVICE)
    assert.deepEqual(await admitted(), [DEVICE.ip])
    await assert.rejects(meter.clientOf(connectionFrom(`/ip4/${DEVICE.ip}/tcp/40001`)), (err: any) => err.code === 'ERR_GATEWAY_CLIENT_BUSY')

    adapter.recordTraffic(DEVICE.ip, 100_000n, 500_000n)
    await loop.tick()
    assert.equal(session.channel.deliveredBytes, 600_000n)
    assert.equal(reports, 1, 'half a window unreported asks for a voucher')
    assert.deepEqual(await admitted(), [DEVICE.ip])

    adapter.recordTraffic(DEVICE.ip, 0n, 600_000n)
    await loop.tick()
    assert.deepEqual(await admitted(), [], 'out of credit: evicted in the same reading')
    assert.equal(session.starved, true)
    assert.equal(meter.status()[0].evictions, 1)
    adapter.recordTraffic(DEVICE.ip, 0n, 50_000n)
    await loop.tick()
    assert.equal(session.channel.deliveredBytes, 1_200_000n, 'an evicted device moves nothing that is billed')

    await pay(session)
    await loop.tick() // the readmission is queued behind the meter's other work
    assert.deepEqual(await admitted(), [DEVICE.ip], 'a voucher restores credit and the device')
    assert.equal(session.starved, false)

    adapter.recordTraffic(DEVICE.ip, 0n, 300_000n)
    await meter.detach(session)
    assert.deepEqual(await admitted(), [])
    assert.equal(session.channel.deliveredBytes, 1_500_000n, 'the counts since the last read go to the ending session')
    assert.equal(meter.deliveredBytes(channelId), 1_500_000n, 'unpaid usage stays owed by the channel')
  })

  it('keeps what a channel owes across a restart, and attributes the counts of devices a crash left admitted', async () => {
    const restarted = newMeter()
    const loop2 = new CounterLoop({ adapter, intervalMs: 1000, logger })
    loop2.add(restarted)
    // a crash: the device was admitted with its binding saved, and it moved 70 kB the old process never read
    const session = await newSession(meter.deliveredBytes(channelId))
    await meter.attach(session, DEVICE)
    assert.deepEqual(await admitted(), [DEVICE.ip])
    adapter.recordTraffic(DEVICE.ip, 20_000n, 50_000n)
    await restarted.start(loop2)
    assert.deepEqual(await admitted(), [], 'devices with no live session are evicted at start')
    assert.equal(restarted.deliveredBytes(channelId), 1_570_000n)

    const next = await newSession(restarted.deliveredBytes(channelId))
    let reported = false
    next.on('report-due', () => { reported = true })
    await restarted.attach(next, DEVICE)
    assert.equal(next.channel.deliveredBytes, 1_570_000n)
    assert.deepEqual(await admitted(), [DEVICE.ip], 'credit remains: paid 1.2 MB, window 1 MiB')
    next.requestReport()
    assert.equal(reported, true, 'the owed bytes are asked for at once')
    await restarted.stop()
    assert.deepEqual(await admitted(), [], 'stop evicts every device')
  })
})
