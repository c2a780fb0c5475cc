/**
 * The payment plane end to end on real parts: a seller node (payment service +
 * relay exit + LevelDB), a buyer node (payment session + SOCKS5 proxy), a
 * channel opened on a real anvil chain, traffic through the relay.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { pino } from 'pino'
import { privateKeyToAccount, generatePrivateKey } from 'viem/accounts'
import { toHex, type Address } from 'viem'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import { createSpareChannelsClient } from '../daemon/chain/client.ts'
import { createNode, type SparebandNode } from '../daemon/node/create-node.ts'
import { sellerPaymentService, type SellerPaymentService } from '../daemon/payment/seller-payment-service.ts'
import { openBuyerPaymentSession, type BuyerPaymentSession } from '../daemon/payment/buyer-payment-session.ts'
import { relayExit, type RelayExit } from '../daemon/relay/exit-service.ts'
import { socks5Proxy } from '../daemon/buyer/socks5.ts'
import { libp2pRelayDialer } from '../daemon/buyer/relay-dialer.ts'
import { SellerStore } from '../daemon/state/store.ts'
import { channelIdOf, NATIVE_TOKEN } from '../protocol/contract/channels.ts'
import { exitPolicy } from '../protocol/exit-policy.ts'
import { paymentCodecs, PAYMENT_MAX_MESSAGE_BYTES } from '../protocol/messages/payment.ts'
import { PAYMENT_PROTOCOL } from '../protocol/protocol-ids.ts'
import { amountForBytes } from '../protocol/pricing.ts'
import { VoucherVerifier } from '../protocol/voucher-verify.ts'
import { framedStream } from '../daemon/framing.ts'
import { readAll, sha256, socks5Connect, sourceServer, type TestServer } from './helpers/relay-fixtures.ts'

const logger = pino({ level: process.env.TEST_LOG ?? 'silent' })
const PRICE = 10n ** 15n // per GiB
const WINDOW = 1n << 20n
const DEPOSIT = 10n ** 18n

describe('payment stream (real nodes, real chain, real LevelDB)', () => {
  let devnet: Devnet
  let dir: string
  let store: SellerStore
  let seller: SparebandNode<{ payment: SellerPaymentService, relay: RelayExit }>
  let buyer: SparebandNode
  let server: TestServer
  const payload = randomBytes(6 * 1024 * 1024)
  const payout = privateKeyToAccount(generatePrivateKey()).address

  before(async () => {
    devnet = await startDevnet()
    dir = await mkdtemp(join(tmpdir(), 'spareband-pay-'))
    store = await SellerStore.open({ dataDir: join(dir, 'seller') })
    server = await sourceServer('127.0.0.2', payload)
    const chain = createSpareChannelsClient({ rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract, pollingIntervalMs: 100 })
    let node: typeof seller | undefined
    seller = node = await createNode({
      privateKey: await generateKeyPair('Ed25519'),
      services: {
        payment: sellerPaymentService({
          store,
          readChannel: (id) => chain.getChannel(id),
          verifier: new VoucherVerifier({ chainId: devnet.chainId, verifyingContract: devnet.contract }),
          chainId: devnet.chainId,
          contract: devnet.contract,
          payee: payout,
          prices: new Map([[NATIVE_TOKEN.toLowerCase(), PRICE]]),
          creditWindowBytes: WINDOW,
          paymentTimeoutMs: 1500,
          logger
        }),
        relay: relayExit({
          gate: { authorize: async (peer, id) => await node!.services.payment.authorize(peer, id) },
          policy: exitPolicy({ allowCidrs: ['127.0.0.2/32'] }),
          logger
        })
      }
    })
    buyer = await createNode({ privateKey: await generateKeyPair('Ed25519') })
    await buyer.dial(seller.getMultiaddrs())
  })

  after(async () => {
    await buyer?.stop()
    await seller?.stop()
    await store?.close()
    await server?.close()
    await devnet?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  async function openChannel (payerIndex: number): Promise<{ channel: Parameters<typeof channelIdOf>[0] & { channelId: `0x${string}`, salt: `0x${string}` }, session: ReturnType<typeof privateKeyToAccount> }> {
    const funder = privateKeyToAccount(devnet.accounts[payerIndex])
    const session = privateKeyToAccount(generatePrivateKey())
    const client = createSpareChannelsClient({ rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract, account: funder, pollingIntervalMs: 100 })
    const salt = toHex(randomBytes(32))
    const channelId = await client.openChannel({ payee: payout, token: NATIVE_TOKEN, signer: session.address, salt, amount: DEPOSIT })
    const channel = { chainId: devnet.chainId, contract: devnet.contract, channelId, payer: funder.address, payee: payout as Address, token: NATIVE_TOKEN, signer: session.address, salt }
    assert.equal(channelIdOf(channel), channelId)
    return { channel, session }
  }

  it('pays for a relayed download: vouchers persisted before credit, exposure within one window', async () => {
    const { channel, session: signer } = await openChannel(2)
    const session: BuyerPaymentSession = await openBuyerPaymentSession({
      dialProtocol: (peer, protocol, options) => buyer.dialProtocol(peer, protocol, options),
      seller: seller.peerId,
      channel,
      deposit: DEPOSIT,
      pricePerGiB: PRICE,
      signer,
      spendCap: DEPOSIT,
      logger
    })
    let maxExposure = 0n
    const proxy = socks5Proxy({
      dialer: libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId: session.sessionId }) }),
      onForward: (bytes) => {
        session.meter(bytes)
        for (const s of seller.services.payment.sessions()) if (s.maxExposure > maxExposure) maxExposure = s.maxExposure
      },
      logger
    })
    await proxy.start()
    try {
      const { reply, socket } = await socks5Connect(proxy.address().port, '127.0.0.2', server.port)
      assert.equal(reply, 0)
      const received = await readAll(socket)
      assert.equal(sha256(received), sha256(payload))
      // Wait for the last voucher round trip (bounded).
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline) {
        const stored = await store.getVoucher(channel.channelId)
        if (stored !== undefined && stored.cumulativeAmount >= amountForBytes(BigInt(payload.length) - WINDOW, PRICE)) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      const stored = await store.getVoucher(channel.channelId)
      assert.ok(stored !== undefined, 'a voucher was persisted')
      const live = seller.services.payment.sessions().find((s) => s.channelId === channel.channelId)
      assert.ok(live !== undefined)
      // Everything acknowledged was persisted first: the store holds at least what the buyer saw acknowledged.
      assert.ok(stored.cumulativeAmount >= session.paidAmount)
      // The vouchers cover the delivered bytes up to one credit window, and never exceed the buyer's meter + tolerance.
      assert.ok(live.deliveredBytes - stored.cumulativeBytes <= WINDOW, `unpaid ${live.deliveredBytes - stored.cumulativeBytes} bytes > window`)
      assert.ok(stored.cumulativeBytes <= session.channel.meteredBytes + 256n * 1024n)
      assert.ok(stored.cumulativeBytes >= BigInt(payload.length) - WINDOW)
      // Invariant 2: exposure never above the value of one window (plus price rounding).
      assert.ok(maxExposure <= amountForBytes(WINDOW, PRICE) + 1n, `max exposure ${maxExposure}`)
      // The voucher is genuine: signed by the channel's session key for this chain and contract.
      const verifier = new VoucherVerifier({ chainId: devnet.chainId, verifyingContract: devnet.contract })
      assert.equal(verifier.recoverSigner(stored), signer.address)
      // Closing settles up: the seller asks for the last partial window and the buyer pays it.
      const sessionId = live.id
      await session.close()
      let ended: Awaited<ReturnType<typeof store.getSession>>
      for (let i = 0; i < 100 && ended?.state !== 'ended'; i++) {
        ended = await store.getSession(sessionId)
        if (ended?.state !== 'ended') await new Promise((resolve) => setTimeout(resolve, 20))
      }
      assert.ok(ended !== undefined)
      assert.equal(ended.unpaid, 0n, 'no usage left unpaid after a polite close')
      const final = await store.getVoucher(channel.channelId)
      assert.equal(final?.cumulativeBytes, ended.deliveredBytes)
      assert.equal(session.error, undefined)
    } finally {
      await session.close()
      await proxy.stop()
    }
  })

  it('cuts off a buyer that stops paying within one credit window', async () => {
    const { channel } = await openChannel(3)
    // A hostile buyer: opens a session, then never answers usage reports.
    const stream = await buyer.dialProtocol(seller.peerId, PAYMENT_PROTOCOL)
    const framed = framedStream(stream, { maxMessageBytes: PAYMENT_MAX_MESSAGE_BYTES })
    await framed.write(paymentCodecs.fromBuyer.encode({ v: 1, type: 'open', channel, service: 'relay', pricePerGiB: PRICE }))
    const accepted = paymentCodecs.fromSeller.decode(await framed.read())
    assert.equal(accepted.type, 'accepted')
    const sessionId = accepted.type === 'accepted' ? accepted.sessionId : ''
    const proxy = socks5Proxy({
      dialer: libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId }) }),
      logger
    })
    await proxy.start()
    try {
      const { reply, socket } = await socks5Connect(proxy.address().port, '127.0.0.2', server.port)
      assert.equal(reply, 0)
      let received = 0
      socket.on('data', (chunk: Buffer) => { received += chunk.length })
      const ended = new Promise<void>((resolve) => { socket.once('close', () => resolve()); socket.once('end', () => resolve()) })
      socket.on('error', () => {})
      socket.resume()
      const cutOff = await Promise.race([ended.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 15_000))])
      assert.ok(cutOff, 'the relayed connection was cut off')
      assert.ok(received < payload.length, 'the download did not complete')
      assert.ok(BigInt(received) <= WINDOW, `received ${received} bytes unpaid, more than one window`)
      // The seller recorded the session's exposure, within the window.
      let rec: Awaited<ReturnType<typeof store.getSession>>
      for (let i = 0; i < 100 && rec?.state !== 'ended'; i++) {
        rec = await store.getSession(sessionId)
        if (rec?.state !== 'ended') await new Promise((resolve) => setTimeout(resolve, 50))
      }
      assert.ok(rec !== undefined && rec.state === 'ended')
      assert.ok(rec.deliveredBytes <= WINDOW)
      assert.ok(rec.maxExposure <= amountForBytes(WINDOW, PRICE))
      assert.ok(rec.unpaid > 0n)
    } finally {
      await proxy.stop()
      stream.abort(new Error('test done'))
    }
  })

  it('a hostile peer sending garbage or an oversize frame only loses its own stream', async () => {
    for (const frame of [new TextEncoder().encode('{"v":1,"type":"open","channel":{"__proto__":1}}'), new Uint8Array(PAYMENT_MAX_MESSAGE_BYTES + 1)]) {
      const stream = await buyer.dialProtocol(seller.peerId, PAYMENT_PROTOCOL)
      // an oversize frame must be refused by the seller's framing: write the length prefix and bytes by hand
      const prefix = frame.length < 0x80 ? Uint8Array.of(frame.length) : Uint8Array.of((frame.length & 0x7f) | 0x80, frame.length >> 7)
      stream.send(prefix)
      stream.send(frame)
      const closed = await Promise.race([
        new Promise<boolean>((resolve) => { stream.addEventListener('close', () => resolve(true), { once: true }) }),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))
      ])
      assert.ok(closed, 'the seller closed the hostile stream')
    }
    // the service still serves others: a real session opens and is answered
    const { channel } = await openChannel(5)
    const stream = await buyer.dialProtocol(seller.peerId, PAYMENT_PROTOCOL)
    const framed = framedStream(stream, { maxMessageBytes: PAYMENT_MAX_MESSAGE_BYTES })
    await framed.write(paymentCodecs.fromBuyer.encode({ v: 1, type: 'open', channel, service: 'relay', pricePerGiB: PRICE }))
    assert.equal(paymentCodecs.fromSeller.decode(await framed.read()).type, 'accepted')
    stream.abort(new Error('test done'))
  })

  it('refuses a session whose channel pays someone else', async () => {
    const { channel } = await openChannel(4)
    const other = { ...channel, payee: privateKeyToAccount(generatePrivateKey()).address }
    const stream = await buyer.dialProtocol(seller.peerId, PAYMENT_PROTOCOL)
    const framed = framedStream(stream, { maxMessageBytes: PAYMENT_MAX_MESSAGE_BYTES })
    await framed.write(paymentCodecs.fromBuyer.encode({ v: 1, type: 'open', channel: other, service: 'relay', pricePerGiB: PRICE }))
    const answer = paymentCodecs.fromSeller.decode(await framed.read())
    assert.equal(answer.type, 'rejected')
    assert.equal(answer.type === 'rejected' ? answer.code : '', 'ERR_CHANNEL_MISMATCH')
  })
})
