/**
 * The market end to end on real parts: three sellers (`startSeller`, LevelDB on
 * disk, libp2p on 127.0.0.1) forming the DHT, one buyer (`startBuyer`:
 * discovery, BuyerClient, SOCKS5 and HTTP CONNECT proxies) that knows a single
 * bootstrap peer, channels and settlement on a real anvil devnet, traffic to
 * an HTTP server on 127.0.0.2.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { createPublicClient, http, parseEther, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { startBuyer, type Buyer } from '../daemon/buyer/start-buyer.ts'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import type { NodeKeys } from '../daemon/config/keys.ts'
import { formMarketDht, fundFromDevAccount, loadOrCreateKeys, localBuyerConfig, startLocalSeller, LOCAL_POLLING_MS, type LocalSeller } from '../daemon/local-market.ts'
import { openBuyerPaymentSession } from '../daemon/payment/buyer-payment-session.ts'
import { toleranceBytes } from '../protocol/buyer-channel.ts'
import { NATIVE_TOKEN } from '../protocol/contract/channels.ts'
import { amountForBytes } from '../protocol/pricing.ts'
import { fileServer, type FileServer } from '../daemon/local-market.ts'
import { download, type OpenTunnel } from './helpers/market.ts'
import { canaryServer, httpConnect, sha256, socks5Connect, type TestServer } from './helpers/relay-fixtures.ts'
import { waitFor } from './helpers/libp2p-nodes.ts'

const logger = pino({ level: process.env.TEST_LOG ?? 'silent' }, pino.destination(2))
const MiB = 1024 * 1024
const PAYLOAD_BYTES = 50 * MiB
const WINDOW = 1n << 20n
const PRICES = [1n, 2n, 3n].map((n) => n * 10n ** 15n) // wei per GiB: sellers A, B, C
const SOCKS_NOT_ALLOWED = 0x02

describe('market: three sellers and a buyer (real nodes, chain, LevelDB)', () => {
  let devnet: Devnet
  let dir: string
  let server: FileServer
  let canary: TestServer
  let buyerKeys: NodeKeys
  let buyerDir: string
  const payload = randomBytes(PAYLOAD_BYTES)
  const payloadHash = sha256(payload)
  const sellers: LocalSeller[] = []
  const payouts = PRICES.map(() => privateKeyToAccount(generatePrivateKey()).address)
  const buyers = new Set<Buyer>()
  let chain: ReturnType<typeof createPublicClient>
  let portOfA: string | undefined

  const addressOf = (s: LocalSeller): string => s.node.getMultiaddrs()[0].toString()
  const balance = async (a: Address): Promise<bigint> => await chain.getBalance({ address: a })

  async function seller (i: number, bootstrap: string[], listen?: string[]): Promise<LocalSeller> {
    return await startLocalSeller({
      chain: devnet,
      dataDir: join(dir, `seller-${i}`),
      pricePerGiB: PRICES[i],
      payout: payouts[i],
      bootstrap,
      listen,
      allowCidrs: ['127.0.0.2/32'],
      logger: logger.child({ seller: 'ABC'[i] })
    })
  }

  /** Starts the buyer (one at a time: they share a data directory; one a failed test left running is stopped first). */
  async function buyer (bootstrap: LocalSeller): Promise<Buyer> {
    for (const running of buyers) await stopBuyer(running)
    const b = await startBuyer({
      config: localBuyerConfig({ chain: devnet, dataDir: buyerDir, bootstrap: [addressOf(bootstrap)] }),
      keys: buyerKeys,
      logger: logger.child({ buyer: true }),
      pollingIntervalMs: LOCAL_POLLING_MS
    })
    buyers.add(b)
    return b
  }

  async function stopBuyer (b: Buyer): Promise<void> {
    buyers.delete(b)
    await b.stop()
  }

  const socksTunnel = (b: Buyer): OpenTunnel => async () => {
    const { reply, socket } = await socks5Connect(b.client.socksAddress!.port, server.host, server.port)
    if (reply !== 0) throw new Error(`SOCKS5 reply ${reply}`)
    return socket
  }
  const httpTunnel = (b: Buyer): OpenTunnel => async () => {
    const { status, socket } = await httpConnect(b.client.httpAddress!.port, server.host, server.port)
    if (status !== 200) throw new Error(`HTTP CONNECT status ${status}`)
    return socket
  }
  const authority = (): string => `${server.host}:${server.port}`

  /** Waits until the seller holds the last voucher the buyer signed on `channelId`. */
  async function settledUp (s: LocalSeller, b: Buyer, channelId: Hex): Promise<void> {
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const signed = await b.store.getSigned(channelId)
      const held = await s.store.getVoucher(channelId)
      if (signed !== undefined && held?.cumulativeAmount === signed.cumulativeAmount) return
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.fail('the seller did not persist the buyer\'s last voucher within 10 s')
  }

  before(async () => {
    devnet = await startDevnet()
    chain = createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl) })
    dir = await mkdtemp(join(tmpdir(), 'spareband-market-'))
    buyerDir = join(dir, 'buyer')
    buyerKeys = await loadOrCreateKeys(join(buyerDir, 'keys.json'))
    await fundFromDevAccount(devnet, buyerKeys.hot.address, parseEther('10'))
    server = await fileServer('127.0.0.2', payload)
    canary = await canaryServer('127.0.0.1')
    sellers.push(await seller(0, []))
    portOfA = sellers[0].node.getMultiaddrs()[0].getComponents().find((c) => c.name === 'tcp')?.value
    sellers.push(await seller(1, [addressOf(sellers[0])]))
    sellers.push(await seller(2, [addressOf(sellers[0])]))
    await formMarketDht(sellers)
    for (const s of sellers) assert.ok(s.node.services.advertiser.advertising)
  })

  after(async () => {
    for (const b of buyers) await b.stop().catch(() => {})
    for (const s of sellers) await s.stop().catch(() => {})
    await server?.close()
    await canary?.close()
    await devnet?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('finds the sellers through the DHT, downloads 50 MiB through SOCKS5 and HTTP CONNECT, and the seller settles exactly what the vouchers say', async (t) => {
    const [A] = sellers
    // the buyer knows only the most expensive seller, C
    const b = await buyer(sellers[2])
    const seen = new Map(b.discovery.seen().map((s) => [s.peerId, s.status]))
    for (const s of sellers) assert.equal(seen.get(s.node.peerId.toString()), 'verified', `seller ${s.node.peerId.toString()} among ${JSON.stringify(b.discovery.seen().map((x) => [x.peerId, x.status, x.error?.code]))}`)
    assert.equal(b.client.current?.candidate.peerId.toString(), A.node.peerId.toString(), 'the cheapest seller is picked')
    const channelId = b.client.current!.session.channel.terms.channelId

    for (const [name, tunnel] of [['SOCKS5', socksTunnel(b)], ['HTTP CONNECT', httpTunnel(b)]] as const) {
      const started = performance.now()
      const { body } = await download({ tunnel, authority: authority() })
      const ms = performance.now() - started
      t.diagnostic(`${name}: 50 MiB in ${ms.toFixed(0)} ms (${(PAYLOAD_BYTES / MiB / (ms / 1000)).toFixed(1)} MiB/s)`)
      assert.equal(body.length, PAYLOAD_BYTES)
      assert.equal(sha256(body), payloadHash)
    }

    await settledUp(A, b, channelId)
    const voucher = await A.store.getVoucher(channelId)
    assert.ok(voucher !== undefined)
    const live = A.node.services.payment.sessions().find((s) => s.channelId === channelId)
    assert.ok(live !== undefined)
    const meter = b.client.current!.session.channel.meteredBytes
    // the vouchers cover what was delivered up to one credit window, and never more than the buyer's meter plus its tolerance
    assert.ok(live.deliveredBytes - voucher.cumulativeBytes <= WINDOW, `${live.deliveredBytes - voucher.cumulativeBytes} bytes unpaid`)
    assert.ok(voucher.cumulativeBytes <= meter + toleranceBytes(meter, b.client.current!.session.channel.tolerance))
    assert.ok(voucher.cumulativeBytes >= BigInt(2 * PAYLOAD_BYTES) - WINDOW)
    assert.equal(voucher.cumulativeAmount, amountForBytes(voucher.cumulativeBytes, PRICES[0]))
    assert.equal(b.client.progress().spent, voucher.cumulativeAmount)
    const delivered = live.deliveredBytes
    await stopBuyer(b)
    // a polite close settles up: the last voucher covers every byte delivered
    const latest = await A.store.getVoucher(channelId)
    assert.ok(latest !== undefined && latest.cumulativeAmount >= voucher.cumulativeAmount)
    assert.equal(latest.cumulativeBytes, delivered)

    const before = await balance(payouts[0])
    const result = await A.settler.settleNow()
    assert.equal(result.batches.length, 1, 'one transaction')
    assert.equal(result.batches[0].status, 'success')
    assert.deepEqual(result.batches[0].paid.map((p) => [p.channelId, p.cumulativeAmount]), [[channelId, latest.cumulativeAmount]])
    assert.equal(await balance(payouts[0]) - before, latest.cumulativeAmount, 'the payout received the latest voucher amount to the wei')
  })

  it('refuses loopback targets at the exit with typed errors, and connects nothing', async () => {
    const b = await buyer(sellers[1])
    const socksPort = b.client.socksAddress!.port
    const httpPort = b.client.httpAddress!.port
    for (const host of ['127.0.0.1', 'localhost']) {
      const { reply, socket } = await socks5Connect(socksPort, host, canary.port)
      socket.destroy()
      assert.equal(reply, SOCKS_NOT_ALLOWED, `SOCKS5 reply for ${host}`)
      const answer = await httpConnect(httpPort, host, canary.port)
      answer.socket.destroy()
      assert.equal(answer.status, 403, `HTTP status for ${host}`)
      assert.equal(answer.headers['x-spareband-error'], 'ERR_EXIT_POLICY')
    }
    const v6 = await httpConnect(httpPort, '[::1]', canary.port)
    v6.socket.destroy()
    assert.equal(v6.status, 403)
    assert.equal(v6.headers['x-spareband-error'], 'ERR_EXIT_POLICY')
    // a denied port on an allowed address
    const denied = await httpConnect(httpPort, '127.0.0.2', 25)
    denied.socket.destroy()
    assert.equal(denied.status, 403)
    assert.equal(denied.headers['x-spareband-error'], 'ERR_EXIT_POLICY')
    assert.equal(canary.connections, 0, 'nothing connected to the canary')
    // refusals are about the target, not the seller: no failover, and the proxy still relays
    assert.equal(b.client.progress().failovers, 0)
    const { body } = await download({ tunnel: socksTunnel(b), authority: authority(), length: MiB })
    assert.equal(sha256(body), sha256(payload.subarray(0, MiB)))
    await stopBuyer(b)
  })

  it('keeps paying, and keeps its seller, while its own client stops reading for longer than the catch-up time', async () => {
    const b = await buyer(sellers[1])
    const seller = b.client.current!.candidate.peerId.toString()
    // the seller's reports run ahead of what the client took: the rest waits in the buyer's buffers, and counts as received
    const { body } = await download({ tunnel: socksTunnel(b), authority: authority(), length: 20 * MiB, stall: { afterBytes: 5 * MiB, ms: 3_000 } })
    assert.equal(sha256(body), sha256(payload.subarray(0, 20 * MiB)))
    assert.equal(b.client.progress().failovers, 0)
    assert.equal(b.client.current?.candidate.peerId.toString(), seller)
    await stopBuyer(b)
  })

  it('fails over to the next seller when the seller dies mid-download; the client only reissues with a Range', async () => {
    const [A, B] = sellers
    const b = await buyer(B)
    assert.equal(b.client.current?.candidate.peerId.toString(), A.node.peerId.toString())
    let killed: Promise<void> | undefined
    const { body, attempts } = await download({
      tunnel: socksTunnel(b),
      authority: authority(),
      attempts: 3,
      onData: (received) => {
        if (received < 10 * MiB || killed !== undefined) return
        // the seller process dies: every connection is cut at once, then it is shut down
        for (const connection of A.node.getConnections()) connection.abort(new Error('seller killed'))
        killed = A.stop()
      }
    })
    await killed
    assert.equal(sha256(body), payloadHash)
    assert.equal(attempts, 2, 'one reissue after the break')
    const progress = b.client.progress()
    assert.equal(progress.failovers, 1)
    assert.equal(progress.seller, B.node.peerId.toString(), 'the next cheapest seller took over')
    const channelB = b.client.current!.session.channel.terms.channelId
    await settledUp(B, b, channelB)
    assert.ok((await B.store.getVoucher(channelB))!.cumulativeBytes > 0n, 'seller B was paid for its part')
    await stopBuyer(b)
  })

  it('keeps its vouchers across a restart, continues the channel in a new session and settles it', async () => {
    const old = sellers[0]
    const port = portOfA
    // restart seller A from the same data directory, on the same port
    const A = await seller(0, [addressOf(sellers[1])], [`/ip4/127.0.0.1/tcp/${port}`])
    sellers[0] = A
    assert.equal(A.node.peerId.toString(), old.node.peerId.toString())
    const [channel] = await A.store.listChannels()
    const kept = await A.store.getVoucher(channel.channelId)
    assert.ok(kept !== undefined && kept.cumulativeAmount > channel.settled, 'the vouchers of the killed session are still there, unsettled')
    await waitFor(() => A.node.services.advertiser.advertising, 10_000, 'seller A to advertise again')

    const b = await buyer(sellers[1])
    assert.equal(b.client.current?.candidate.peerId.toString(), A.node.peerId.toString())
    assert.equal(b.client.current!.session.channel.terms.channelId, channel.channelId, 'the buyer reuses its channel')
    assert.equal(b.client.current!.session.paidAmount, kept.cumulativeAmount, 'the new session continues from the kept voucher')
    const { body } = await download({ tunnel: httpTunnel(b), authority: authority(), from: 3 * MiB, length: 8 * MiB })
    assert.equal(sha256(body), sha256(payload.subarray(3 * MiB, 11 * MiB)))
    await settledUp(A, b, channel.channelId)
    await stopBuyer(b)

    const latest = await A.store.getVoucher(channel.channelId)
    assert.ok(latest !== undefined && latest.cumulativeAmount > kept.cumulativeAmount)
    const before = await balance(payouts[0])
    const result = await A.settler.settleNow()
    assert.equal(result.batches.length, 1, 'one transaction')
    assert.equal(await balance(payouts[0]) - before, latest.cumulativeAmount - channel.settled, 'paid the rest of the channel to the wei')
  })

  it('lets a buyer that lost track of its session open its channel again at once: the stale session is replaced', async () => {
    const b = await buyer(sellers[1])
    const stale = b.client.current!
    const record = (await b.store.channelsTo(stale.candidate.offer.payout as Address, NATIVE_TOKEN))
      .find((r) => r.channel.channelId === stale.session.channel.terms.channelId)
    assert.ok(record !== undefined)
    const closed = once(stale.session, 'closed')
    const fresh = await openBuyerPaymentSession({
      dialProtocol: async (peer, protocol, options) => await b.node.dialProtocol(peer, protocol, options),
      seller: stale.candidate.peerId,
      channel: record.channel,
      deposit: record.deposit,
      pricePerGiB: stale.candidate.pricePerGiB,
      signer: buyerKeys.session,
      spendCap: parseEther('1'),
      lastSigned: await b.store.getSigned(record.channel.channelId),
      logger
    })
    try {
      assert.notEqual(fresh.sessionId, stale.session.sessionId)
      const [err] = await closed
      assert.equal(err?.code, 'ERR_SESSION_CLOSED_BY_SELLER')
      assert.match(err?.message ?? '', /new session/)
    } finally {
      await fresh.close()
      await stopBuyer(b)
    }
  })
})
