/**
 * A real seller for the API, CLI and dashboard tests: `startSeller` on a devnet,
 * LevelDB in a temp dir, the simulated hardware adapter on `lo` with a configured
 * capacity, the control API on a free loopback port; and a real buyer (libp2p node,
 * payment session, SOCKS5 proxy) that relays a download through it.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createPublicClient, createWalletClient, http, parseEther, toHex, type Address } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { SimulatedAdapter } from '../../hardware/simulated.ts'
import type { Devnet } from '../../daemon/chain/devnet.ts'
import { createSpareChannelsClient } from '../../daemon/chain/client.ts'
import { createKeyFile, readKeyFile, type NodeKeys } from '../../daemon/config/keys.ts'
import { readConfigFile, resolveConfig, type ConfigLayer } from '../../daemon/config/load.ts'
import type { Config } from '../../daemon/config/schema.ts'
import { createNode, type SparebandNode } from '../../daemon/node/create-node.ts'
import { openBuyerPaymentSession, type BuyerPaymentSession } from '../../daemon/payment/buyer-payment-session.ts'
import { socks5Proxy } from '../../daemon/buyer/socks5.ts'
import { libp2pRelayDialer } from '../../daemon/buyer/relay-dialer.ts'
import { startSeller, type Seller } from '../../daemon/seller.ts'
import { readApiToken } from '../../daemon/api/token.ts'
import { NATIVE_TOKEN } from '../../protocol/contract/channels.ts'
import { readAll, socks5Connect, sourceServer } from './relay-fixtures.ts'
import { silentLogger } from './settlement-fixtures.ts'

/** Capacity of `lo` as configured: far above what parallel tests push through loopback, so the seller always has spare. */
const LO_CAPACITY_MBPS = 100_000

/** The target the test buyer downloads from through the seller (the seller's exit policy allows only it). */
export const RELAY_TARGET_HOST = '127.0.0.2'

/** A running seller and what the tests need to reach it. */
export interface SellerFixture {
  seller: Seller
  config: Config
  dataDir: string
  payout: Address
  /** Base URL of the control API, e.g. `http://127.0.0.1:40123/`. */
  apiUrl: string
  /** The API token (from `<dataDir>/api-token`). */
  token: string
  /** Stops the seller (once) and removes its temp dir if the fixture made it. */
  stop: () => Promise<void>
}

/** Options of {@link startSellerFixture}. */
export interface SellerFixtureOptions {
  devnet: Devnet
  /** A configuration file to start from (as `spareband start --config`); its keys file is read. */
  configFile?: string
  /** Extra config layered on top. */
  layer?: ConfigLayer
}

/** Starts a seller on the devnet, with its hot key funded. */
export async function startSellerFixture (opts: SellerFixtureOptions): Promise<SellerFixture> {
  const { devnet } = opts
  let ownDir: string | undefined
  let base: ConfigLayer
  let keys: NodeKeys
  if (opts.configFile !== undefined) {
    base = await readConfigFile(opts.configFile)
    keys = await readKeyFile(join(resolveConfig([base]).dataDir, 'keys.json'))
  } else {
    ownDir = await mkdtemp(join(tmpdir(), 'spareband-api-'))
    keys = await createKeyFile(join(ownDir, 'keys.json'))
    base = {
      dataDir: ownDir,
      chain: { rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract },
      seller: { payoutAddress: privateKeyToAccount(generatePrivateKey()).address }
    }
  }
  const config = resolveConfig([base, {
    listen: ['/ip4/127.0.0.1/tcp/0'],
    mdns: false,
    hardware: 'simulated',
    uplink: { interface: 'lo', capacityMbps: LO_CAPACITY_MBPS },
    apiListen: '127.0.0.1:0',
    logLevel: 'silent',
    // settlement only on demand, so a test decides when a batch goes out
    seller: { ...(base.seller ?? {}), settleThreshold: (10n ** 24n).toString(), exitPolicy: { denyPorts: [25], allowCidrs: [`${RELAY_TARGET_HOST}/32`], denyCidrs: [] } }
  }, opts.layer ?? {}])
  await fund(devnet, keys.hot.address)
  const adapter = new SimulatedAdapter({ logger: silentLogger, reason: 'test', uplinkInterface: 'lo', uplinkCapacityBytesPerSec: LO_CAPACITY_MBPS * 125_000 })
  let seller: Seller
  try {
    seller = await startSeller({ config, keys, adapter, logger: silentLogger })
  } catch (err) {
    if (ownDir !== undefined) await rm(ownDir, { recursive: true, force: true })
    throw err
  }
  let stopped: Promise<void> | undefined
  return {
    seller,
    config,
    dataDir: config.dataDir,
    payout: (config.seller.payoutAddress ?? keys.hot.address) as Address,
    apiUrl: seller.apiUrl,
    token: await readApiToken(join(config.dataDir, 'api-token')),
    stop: async () => {
      stopped ??= (async () => {
        await seller.stop()
        if (ownDir !== undefined) await rm(ownDir, { recursive: true, force: true })
      })()
      await stopped
    }
  }
}

/** A buyer with a live payment session to the seller and a SOCKS5 proxy through it. */
export interface BuyerFixture {
  session: BuyerPaymentSession
  channelId: `0x${string}`
  /** Downloads `size` random bytes from {@link RELAY_TARGET_HOST} through the seller; resolves with the bytes received. */
  download: (size: number) => Promise<number>
  stop: () => Promise<void>
}

/** Opens a channel from dev account `payerIndex` to the seller and a payment session on it. */
export async function connectBuyer (devnet: Devnet, fixture: SellerFixture, payerIndex: number, deposit = 10n ** 17n): Promise<BuyerFixture> {
  const node: SparebandNode = await createNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false })
  const stoppers: Array<() => Promise<void>> = [async () => { await node.stop() }]
  const stop = async (): Promise<void> => { for (const s of stoppers.reverse()) await s().catch(() => {}) }
  try {
    const seller = fixture.seller.node
    await node.dial(seller.getMultiaddrs())
    const funder = privateKeyToAccount(devnet.accounts[payerIndex])
    const signer = privateKeyToAccount(generatePrivateKey())
    const client = createSpareChannelsClient({ rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract, account: funder, pollingIntervalMs: 50 })
    const salt = toHex(randomBytes(32))
    const channelId = await client.openChannel({ payee: fixture.payout, token: NATIVE_TOKEN, signer: signer.address, salt, amount: deposit })
    const price = BigInt(fixture.config.seller.prices[0].pricePerGiB)
    const session = await openBuyerPaymentSession({
      dialProtocol: (peer, protocol, options) => node.dialProtocol(peer, protocol, options),
      seller: seller.peerId,
      channel: { chainId: devnet.chainId, contract: devnet.contract, channelId, payer: funder.address, payee: fixture.payout, token: NATIVE_TOKEN, signer: signer.address, salt },
      deposit,
      pricePerGiB: price,
      signer,
      spendCap: deposit,
      logger: silentLogger
    })
    stoppers.push(async () => { await session.close() })
    const proxy = socks5Proxy({
      dialer: libp2pRelayDialer({ node, route: () => ({ seller: seller.peerId, sessionId: session.sessionId }) }),
      onForward: (bytes) => { session.meter(bytes) },
      logger: silentLogger
    })
    await proxy.start()
    stoppers.push(async () => { await proxy.stop() })
    return {
      session,
      channelId,
      download: async (size) => {
        const server = await sourceServer(RELAY_TARGET_HOST, randomBytes(size))
        try {
          const { reply, socket } = await socks5Connect(proxy.address().port, RELAY_TARGET_HOST, server.port)
          if (reply !== 0) throw new Error(`the seller refused the relay (SOCKS reply ${reply})`)
          return (await readAll(socket)).length
        } finally {
          await server.close()
        }
      },
      stop
    }
  } catch (err) {
    await stop()
    throw err
  }
}

/** Gives `to` gas money from the devnet's first account. */
async function fund (devnet: Devnet, to: Address): Promise<void> {
  const transport = http(devnet.rpcUrl)
  const wallet = createWalletClient({ account: privateKeyToAccount(devnet.accounts[0]), chain: devnet.chain, transport })
  const client = createPublicClient({ chain: devnet.chain, transport })
  await client.waitForTransactionReceipt({ hash: await wallet.sendTransaction({ to, value: parseEther('10') }), pollingInterval: 50 })
}
