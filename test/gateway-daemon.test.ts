/**
 * Gateway mode end to end, on real parts: three network namespaces (client, gateway,
 * upstream) joined by veth pairs, the seller daemon (`startSeller` with gateway mode,
 * the linux adapter, real nftables, kernel forwarding and NAT) in the gateway
 * namespace, a buyer device in the client namespace that finds the gateway by mDNS
 * and pays from its own interface meter, a devnet chain in the gateway namespace
 * reached through the gateway's LAN address.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { privateKeyToAccount, generatePrivateKey } from 'viem/accounts'
import { createTopology, inNs, netnsUnavailable, type Topology } from './hardware/netns.ts'
import { sendTraffic, startServer, stopChild } from './hardware/helpers.ts'
import { Fixture, type FixtureMessage } from './helpers/gateway-fixtures.ts'
import { commandRunner, netnsPrefix } from '../hardware/command.ts'
import { readInterfaceCounters, type InterfaceCounters } from '../hardware/sysfs.ts'
import { TABLE_NAME, limitBurstBytes } from '../hardware/nftables/ruleset.ts'

const unavailable = netnsUnavailable()
if (unavailable !== null) process.stdout.write(`# SKIP gateway daemon tests: ${unavailable}\n`)

const TRAFFIC_PORT = 5311
const RPC_PORT = 18545
const SELLER_PORT = 4601
const WINDOW = 4 * 1024 * 1024
const READ_MS = 100
const LIMIT_MBPS = 16
const LIMIT = LIMIT_MBPS * 125_000 // bytes per second, per device and direction
const PRICE = 10n ** 15n
const DEPOSIT = 10n ** 17n
const LIFETIME_S = 240

/** IP-layer bytes both ways between two readings of an Ethernet interface. */
function l3Bytes (a: InterfaceCounters, b: InterfaceCounters): bigint {
  return (b.rxBytes - a.rxBytes) - 14n * (b.rxPackets - a.rxPackets) + (b.txBytes - a.txBytes) - 14n * (b.txPackets - a.txPackets)
}

function within (actual: bigint, expected: bigint, fraction: number): boolean {
  const diff = actual > expected ? actual - expected : expected - actual
  return Number(diff) <= Number(expected) * fraction
}

async function until<T> (what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('gateway mode: seller daemon and buyer device in network namespaces', { skip: unavailable ?? false }, () => {
  let t: Topology
  let dir: string
  let server: ChildProcess | undefined
  let chain: Fixture | undefined
  let seller: Fixture | undefined
  let buyer: Fixture | undefined
  let chainInfo: FixtureMessage
  let sellerPeer: string
  let channelId: string
  let rulesetBefore: string
  const payout = privateKeyToAccount(generatePrivateKey()).address
  let clientStats: () => Promise<InterfaceCounters>
  const send = async (up: number, down: number, timeoutMs = 20_000) => await sendTraffic(t.client, t.upstreamIp, TRAFFIC_PORT, up, down, timeoutMs)

  async function startSellerFixture (): Promise<void> {
    const started = await Fixture.start(t.gateway, 'seller', [JSON.stringify({
      dataDir: join(dir, 'seller'),
      listen: `/ip4/${t.gatewayLanIp}/tcp/${SELLER_PORT}`,
      lanInterface: t.lanIf,
      wanInterface: t.wanIf,
      rpcUrl: chainInfo.rpcUrl,
      chainId: chainInfo.chainId,
      contract: chainInfo.contract,
      payout,
      pricePerGiB: PRICE.toString(),
      creditWindowBytes: WINDOW,
      readIntervalMs: READ_MS,
      clientLimitMbps: LIMIT_MBPS,
      lifetimeS: LIFETIME_S
    })])
    seller = started.fixture
    sellerPeer = started.ready.peerId
  }

  async function sellerStatus (): Promise<{ sessions: any[], gateway: any[], ledger: Record<string, string> }> {
    return await (seller as Fixture).request('status') as any
  }

  async function storedVoucherBytes (): Promise<bigint> {
    const { voucher } = await (seller as Fixture).request('voucher', { channelId })
    return voucher === null ? 0n : BigInt(voucher.cumulativeBytes)
  }

  /**
   * Waits until the device is settled: its count no longer moves (two reads apart) and
   * the persisted voucher covers every byte the gateway counted (the idle flush).
   */
  async function paidUp (): Promise<bigint> {
    let last: { delivered: bigint, at: number } | undefined
    return await until('the voucher to cover the counted bytes', 5000, async () => {
      const g = (await sellerStatus()).gateway[0]
      if (g === undefined) return undefined
      const delivered = BigInt(g.deliveredBytes)
      const now = Date.now()
      if (last === undefined || last.delivered !== delivered) {
        last = { delivered, at: now }
        return undefined
      }
      if (now - last.at < 2 * READ_MS) return undefined
      return await storedVoucherBytes() === delivered ? delivered : undefined
    })
  }

  before(async () => {
    t = createTopology()
    dir = await mkdtemp(join(tmpdir(), 'spareband-gw-'))
    const runner = commandRunner({ prefix: netnsPrefix(t.client) })
    clientStats = async () => await readInterfaceCounters(runner, t.clientIf)
    rulesetBefore = inNs(t.gateway, 'nft', '-j', 'list', 'ruleset')
    server = await startServer(t.upstream, t.upstreamIp, TRAFFIC_PORT, LIFETIME_S)
    const c = await Fixture.start(t.gateway, 'chain', [t.gatewayLanIp, String(RPC_PORT), String(LIFETIME_S)])
    chain = c.fixture
    chainInfo = c.ready
    await startSellerFixture()
    const b = await Fixture.start(t.client, 'buyer', [JSON.stringify({
      listen: `/ip4/${t.clientIp}/tcp/0`,
      lanRpcUrl: chainInfo.lanRpcUrl,
      chainId: chainInfo.chainId,
      contract: chainInfo.contract,
      funderKey: chainInfo.accounts[2],
      deposit: DEPOSIT.toString(),
      lifetimeS: LIFETIME_S
    })])
    buyer = b.fixture
  })

  after(async () => {
    await buyer?.stop()
    await seller?.stop()
    await chain?.stop()
    await stopChild(server)
    t?.destroy()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('the buyer finds the gateway by mDNS on the LAN', async (tc) => {
    const found = await (buyer as Fixture).request('find', {}, 20_000)
    tc.diagnostic(`found the gateway in ${found.ms} ms`)
    assert.equal(found.peer, sellerPeer)
    assert.ok(found.services.includes('gateway'), `offer services ${found.services}`)
    assert.equal(found.address, t.gatewayLanIp)
    assert.equal(found.interface, t.clientIf)
  })

  it('an unpaid client cannot reach the upstream server', async () => {
    const res = await send(1000, 1000, 1500)
    assert.equal(res.ok, false, 'traffic of a device without a session must be dropped')
    assert.deepEqual((await sellerStatus()).gateway, [])
  })

  it('after paying it can; the kernel counters agree with the bytes moved within 1 %; vouchers cover them', async (tc) => {
    const opened = await (buyer as Fixture).request('open', {}, 30_000)
    channelId = opened.channelId
    const g = await until('the client to be admitted', 3000, async () => (await sellerStatus()).gateway.find((c) => c.admitted === true))
    assert.equal(g.ip, t.clientIp)
    assert.equal(g.mac, t.clientMac, 'the device is bound to the MAC of its LAN interface')
    const deliveredBefore = BigInt(g.deliveredBytes)
    const before = await clientStats()
    const res = await send(2_000_000, 6_000_000)
    assert.equal(res.ok, true, `transfer failed: ${JSON.stringify(res)}`)
    const paid = await paidUp()
    const afterStats = await clientStats()
    const counted = paid - deliveredBefore
    const moved = l3Bytes(before, afterStats)
    tc.diagnostic(`kernel counted ${counted} B, client interface ${moved} B (L3), payload 8000008 B: ${(Number(counted - moved) / Number(moved) * 100).toFixed(3)} %`)
    // the interface also carries the payment stream to the gateway itself, which is not forwarded: a few KB
    assert.ok(within(counted, moved, 0.01), `kernel counted ${counted} bytes, the client's interface moved ${moved} (L3)`)
    assert.ok(counted >= 8_000_008n && counted < 8_000_008n * 105n / 100n, `counted ${counted} vs payload 8000008`)
    // invariant 3: the buyer signed no more than its own meter (plus tolerance)
    const b = await (buyer as Fixture).request('status')
    assert.equal(BigInt(b.signedBytes), paid)
    assert.ok(BigInt(b.signedBytes) <= BigInt(b.metered), `signed ${b.signedBytes} bytes, meter ${b.metered}`)
  })

  it('a client that stops paying is cut off within one credit window plus one read interval, and readmitted once it pays', async (tc) => {
    const paidBefore = await paidUp()
    await (buyer as Fixture).request('pause')
    const res = await send(0, 24_000_000, 3000)
    assert.equal(res.ok, false, 'the unpaid download must be cut off')
    // one window of credit, plus what the kernel's per-device limit lets through in one read interval
    // (two more intervals of slack for timer jitter and the evict command); nft's byte bucket (one second
    // of rate plus the burst) is spent within the window here, else its excess would add to the bound
    const bucket = LIMIT + limitBurstBytes(LIMIT)
    const bound = WINDOW + LIMIT * 3 * READ_MS / 1000 + Math.max(0, bucket - WINDOW)
    assert.ok((res.down ?? 0) <= bound, `received ${res.down} bytes unpaid, bound ${bound}`)
    const s = await sellerStatus()
    const g = s.gateway[0]
    assert.equal(g.admitted, false, 'the device was evicted')
    assert.ok(g.evictions >= 1)
    const unpaid = BigInt(g.deliveredBytes) - paidBefore
    tc.diagnostic(`cut off after ${res.down} B received, ${unpaid} B (L3) unpaid; window ${WINDOW} B, bound ${bound} B`)
    assert.ok(unpaid > BigInt(WINDOW), `it ran the window out (${unpaid} unpaid bytes)`)
    assert.ok(unpaid <= BigInt(Math.ceil(bound * 1.05)), `unpaid ${unpaid} bytes (L3) past the bound ${bound}`)
    assert.ok(s.sessions[0].starved, 'the session waits for a voucher')
    assert.equal((await send(1000, 1000, 1500)).ok, false, 'an evicted device must not reach upstream')

    await (buyer as Fixture).request('resume')
    await until('the client to be readmitted', 5000, async () => (await sellerStatus()).gateway[0]?.admitted === true ? true : undefined)
    assert.equal((await send(100_000, 100_000)).ok, true, 'a device that paid gets through again')
    const paid = await paidUp()
    assert.ok(paid >= BigInt(g.deliveredBytes), 'the vouchers cover what was forwarded while it did not pay')
  })

  it('a daemon crash and restart keeps counters and credit consistent', async (tc) => {
    const paidBefore = await paidUp()
    await (seller as Fixture).kill('SIGKILL')
    await (buyer as Fixture).event('session-closed', 10_000)
    // the table outlives the crash: the device stays admitted and the kernel keeps counting
    assert.ok(inNs(t.gateway, 'nft', 'list', 'tables').includes(TABLE_NAME))
    const beforeDown = await clientStats()
    const down = await send(0, 1_000_000)
    assert.equal(down.ok, true, JSON.stringify(down))
    const movedDown = l3Bytes(beforeDown, await clientStats())

    await startSellerFixture()
    const s = await sellerStatus()
    assert.deepEqual(s.gateway, [], 'a device with no live session is evicted at start')
    const owed = BigInt(s.ledger[channelId.toLowerCase()])
    tc.diagnostic(`counted while down ${owed - paidBefore} B, client moved ${movedDown} B (L3)`)
    assert.ok(within(owed - paidBefore, movedDown, 0.01),
      `traffic while the daemon was down is owed by the channel: ${owed - paidBefore} bytes counted, the client moved ${movedDown}`)
    assert.equal((await send(1000, 1000, 1500)).ok, false, 'no session, no forwarding')

    await (buyer as Fixture).request('reopen', {}, 15_000)
    await until('the client to be readmitted', 5000, async () => (await sellerStatus()).gateway[0]?.admitted === true ? true : undefined)
    assert.equal((await send(50_000, 50_000)).ok, true)
    const paid = await paidUp()
    assert.ok(paid >= owed, `the buyer paid for the bytes counted across the restart (${paid} ≥ ${owed})`)
    const b = await (buyer as Fixture).request('status')
    assert.ok(BigInt(b.signedBytes) <= BigInt(b.metered), `signed ${b.signedBytes} bytes, meter ${b.metered}`)
    tc.diagnostic(`gateway counted ${paid} B in all, device meter ${b.meterTotal} B`)
    assert.ok(within(paid, BigInt(b.meterTotal), 0.01), `the gateway counted ${paid} bytes in all, the device's own meter ${b.meterTotal}`)
  })

  it('stopping the daemon leaves no table or rule behind', async () => {
    await (seller as Fixture).stop()
    assert.equal((seller as Fixture).child.exitCode, 0)
    assert.equal(inNs(t.gateway, 'nft', '-j', 'list', 'ruleset'), rulesetBefore)
    assert.equal(inNs(t.gateway, 'sysctl', '-n', 'net.ipv4.ip_forward').trim(), '0')
    assert.equal((await send(1000, 1000, 1500)).ok, false)
  })
})
