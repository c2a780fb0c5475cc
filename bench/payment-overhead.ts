/**
 * payment-overhead: payment-protocol bytes (both ways, with length prefixes) per
 * relayed byte, for one 256 MiB download through the buyer's SOCKS5 proxy and a
 * real seller (startSeller on a devnet) with the default 1 MiB credit window.
 * Target: overheadRatio ≤ 0.001.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { pino } from 'pino'
import { toHex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { createHardwareAdapter } from '../hardware/index.ts'
import { startDevnet } from '../daemon/chain/devnet.ts'
import { createSpareChannelsClient } from '../daemon/chain/client.ts'
import { resolveConfig } from '../daemon/config/load.ts'
import { createNode } from '../daemon/node/create-node.ts'
import { openBuyerPaymentSession } from '../daemon/payment/buyer-payment-session.ts'
import { libp2pRelayDialer } from '../daemon/buyer/relay-dialer.ts'
import { socks5Proxy } from '../daemon/buyer/socks5.ts'
import { startSeller } from '../daemon/seller.ts'
import { NATIVE_TOKEN } from '../protocol/contract/channels.ts'
import { socks5Connect } from '../test/helpers/relay-fixtures.ts'

const TOTAL = 256 * 1024 * 1024
const PRICE = 10n ** 15n
const logger = pino({ level: process.env.BENCH_LOG ?? 'silent' })

const devnet = await startDevnet()
const dir = await mkdtemp(join(tmpdir(), 'spareband-bench-pay-'))
const chunk = randomBytes(1024 * 1024)
const source = createServer({ allowHalfOpen: true }, (socket) => {
  let sent = 0
  const pump = (): void => {
    while (sent < TOTAL) {
      sent += chunk.length
      if (!socket.write(chunk)) { socket.once('drain', pump); return }
    }
    socket.end()
  }
  socket.on('error', () => {})
  pump()
})
await new Promise<void>((resolve) => source.listen(0, '127.0.0.2', resolve))
const sourcePort = (source.address() as AddressInfo).port

try {
  const config = resolveConfig([{
    dataDir: dir,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    apiListen: '127.0.0.1:0',
    hardware: 'simulated',
    uplink: { interface: 'lo', capacityMbps: 10_000 },
    chain: { rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract },
    seller: { prices: [{ token: NATIVE_TOKEN, pricePerGiB: PRICE.toString() }], exitPolicy: { denyPorts: [25], allowCidrs: ['127.0.0.2/32'], denyCidrs: [] } }
  }])
  const { adapter } = createHardwareAdapter({ adapter: 'simulated', wanInterface: 'lo', uplinkCapacityBytesPerSec: 1.25e9 }, { logger })
  const keys = { peerKey: await generateKeyPair('Ed25519'), hot: privateKeyToAccount(devnet.accounts[1]), session: privateKeyToAccount(generatePrivateKey()) }
  const seller = await startSeller({ config, keys, adapter, logger })
  const buyer = await createNode({ privateKey: await generateKeyPair('Ed25519') })
  try {
    await buyer.dial(seller.node.getMultiaddrs())
    const funder = privateKeyToAccount(devnet.accounts[2])
    const signer = privateKeyToAccount(generatePrivateKey())
    const chain = createSpareChannelsClient({ rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract, account: funder, pollingIntervalMs: 50 })
    const salt = toHex(randomBytes(32))
    const payee = (await seller.status()).payout
    const deposit = 10n ** 18n
    const channelId = await chain.openChannel({ payee, token: NATIVE_TOKEN, signer: signer.address, salt, amount: deposit })
    const session = await openBuyerPaymentSession({
      dialProtocol: (peer, protocol, options) => buyer.dialProtocol(peer, protocol, options),
      seller: seller.node.peerId,
      channel: { chainId: devnet.chainId, contract: devnet.contract, channelId, payer: funder.address, payee, token: NATIVE_TOKEN, signer: signer.address, salt },
      deposit,
      pricePerGiB: PRICE,
      signer,
      spendCap: deposit,
      logger
    })
    let vouchers = 0
    session.on('voucher', () => { vouchers++ })
    const proxy = socks5Proxy({
      dialer: libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.node.peerId, sessionId: session.sessionId }) }),
      onForward: (bytes) => { session.meter(bytes) },
      logger
    })
    await proxy.start()
    const started = performance.now()
    const { reply, socket } = await socks5Connect(proxy.address().port, '127.0.0.2', sourcePort)
    if (reply !== 0) throw new Error(`SOCKS5 reply ${reply}`)
    let received = 0
    socket.on('data', (c: Buffer) => { received += c.length })
    socket.resume()
    await new Promise<void>((resolve, reject) => { socket.once('end', resolve); socket.once('error', reject) })
    const seconds = (performance.now() - started) / 1000
    if (received !== TOTAL) throw new Error(`received ${received} of ${TOTAL} bytes`)
    // let the last voucher round trip finish (bounded)
    for (let i = 0; i < 100 && session.paidAmount < session.channel.signedAmount; i++) await new Promise((resolve) => setTimeout(resolve, 20))
    const relayed = Number(session.channel.meteredBytes)
    process.stdout.write(JSON.stringify({
      bench: 'payment-overhead',
      overheadRatio: session.wireBytes / relayed,
      paymentBytes: session.wireBytes,
      relayedBytes: relayed,
      vouchers,
      bytesPerVoucherRound: Math.round(session.wireBytes / Math.max(1, vouchers)),
      creditWindowBytes: Number(session.creditWindowBytes),
      MBps: Math.round(received / seconds / 1e5) / 10,
      target: 0.001
    }) + '\n')
    await session.close()
    await proxy.stop()
  } finally {
    await buyer.stop()
    await seller.stop()
  }
} finally {
  source.close()
  await devnet.stop()
  await rm(dir, { recursive: true, force: true })
}
