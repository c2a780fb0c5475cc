/**
 * Parts of a market on one machine, for `spareband demo` and the end-to-end
 * tests: sellers on loopback with the simulated hardware adapter, paid on a
 * devnet, and a buyer configured against them. Nothing here listens on
 * anything but loopback.
 */
import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { createPublicClient, createWalletClient, getContractAddress, http, parseEther, type Address, type Chain, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { SimulatedAdapter } from '../hardware/simulated.ts'
import { NATIVE_TOKEN } from '../protocol/contract/channels.ts'
import { SparebandError } from '../protocol/errors.ts'
import { createKeyFile, readKeyFile, type NodeKeys } from './config/keys.ts'
import { resolveConfig, type ConfigLayer } from './config/load.ts'
import type { Config } from './config/schema.ts'
import { startSeller, type Seller } from './seller.ts'

/** The chain a local market pays on: a devnet's RPC, id, contract and funded dev keys. */
export interface LocalChain {
  rpcUrl: string
  chainId: number
  chain: Chain
  contract: Address
  /** Private keys of funded accounts (anvil's dev accounts); index 0 pays for the others. */
  accounts: readonly Hex[]
}

/** Uplink capacity the simulated sellers claim: loopback carries far more than a home line. */
export const LOCAL_CAPACITY_MBPS = 10_000

/** How often local chain clients poll: a devnet mines every transaction at once. */
export const LOCAL_POLLING_MS = 50

/** Options of {@link startLocalSeller}. */
export interface LocalSellerInit {
  chain: LocalChain
  /** The seller's data directory; its keys are created there on first start and reused after. */
  dataDir: string
  /** Price per GiB of the native coin, in wei. */
  pricePerGiB: bigint
  /** Where earnings go (a cold address). */
  payout: Address
  /** DHT peers to join through. */
  bootstrap?: string[]
  /** Listen addresses. Default one free port on 127.0.0.1. */
  listen?: string[]
  /** Destinations the exit may reach beyond the public internet, e.g. `127.0.0.2/32` for a local test server. */
  allowCidrs?: string[]
  region?: string
  /** Credit window in bytes. Default the config's (1 MiB). */
  creditWindowBytes?: number
  logger: Logger
}

/** A running local seller with the configuration and keys it was started with. */
export interface LocalSeller extends Seller {
  config: Config
  keys: NodeKeys
}

/** The configuration of a seller of a local market: loopback, simulated hardware, settlement on demand only. */
export function localSellerConfig (init: Omit<LocalSellerInit, 'logger'>): Config {
  const layer: ConfigLayer = {
    dataDir: init.dataDir,
    listen: init.listen ?? ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: init.bootstrap ?? [],
    mdns: false,
    hardware: 'simulated',
    uplink: { interface: 'lo', capacityMbps: LOCAL_CAPACITY_MBPS },
    apiListen: '127.0.0.1:0',
    chain: { rpcUrl: init.chain.rpcUrl, chainId: init.chain.chainId, contract: init.chain.contract },
    seller: {
      payoutAddress: init.payout,
      region: init.region ?? 'local',
      prices: [{ token: NATIVE_TOKEN, pricePerGiB: init.pricePerGiB.toString() }],
      ...(init.creditWindowBytes !== undefined ? { creditWindowBytes: init.creditWindowBytes } : {}),
      // settle when asked (`settleNow`, `spareband settle`), not on a timer
      settleIntervalSec: 24 * 3600,
      settleThreshold: parseEther('1000').toString(),
      exitPolicy: { denyPorts: [25], allowCidrs: init.allowCidrs ?? [], denyCidrs: [] }
    }
  }
  return resolveConfig([layer])
}

/** Starts a seller of a local market; its hot key gets gas money from dev account 0 when it has little. */
export async function startLocalSeller (init: LocalSellerInit): Promise<LocalSeller> {
  const config = localSellerConfig(init)
  const keys = await loadOrCreateKeys(join(init.dataDir, 'keys.json'))
  await fundFromDevAccount(init.chain, keys.hot.address, parseEther('1'))
  const adapter = new SimulatedAdapter({
    logger: init.logger.child({ component: 'hardware' }),
    reason: 'local market on loopback',
    uplinkInterface: 'lo',
    uplinkCapacityBytesPerSec: LOCAL_CAPACITY_MBPS * 125_000
  })
  const seller = await startSeller({ config, keys, adapter, logger: init.logger, chainPollingIntervalMs: LOCAL_POLLING_MS })
  return Object.assign(seller, { config, keys })
}

/**
 * Forms the market's DHT: waits until every seller advertised and knows its
 * own addresses, then provides every seller's keys again so that each record
 * reaches every DHT peer there is now. Sellers that advertised while the DHT had fewer peers left their records
 * on those peers only (the advertiser provides again after hours), and a lookup
 * stops at the peers closest to the key, so a buyer entering through another
 * seller could miss them.
 */
export async function formMarketDht (sellers: readonly LocalSeller[], timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const until = async (check: () => Promise<boolean> | boolean, what: string): Promise<void> => {
    while (!await check()) {
      if (Date.now() > deadline) throw new SparebandError('ERR_MARKET_DHT', `${what} within ${timeoutMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  for (const seller of sellers) {
    const id = seller.node.peerId
    if (seller !== sellers[0]) await until(() => seller.node.services.advertiser.advertising, `seller ${id.toString()} did not advertise`)
    // a DHT peer lists itself among the providers only once libp2p has put its own addresses in its peer store (1 s after listening)
    await until(async () => (await seller.node.peerStore.get(id)).addresses.length > 0, `seller ${id.toString()} did not record its own addresses`)
  }
  await Promise.all(sellers.map(async (seller) => {
    await seller.node.services.advertiser.refresh()
    const signal = AbortSignal.timeout(Math.max(1, deadline - Date.now()))
    for (const key of seller.node.services.advertiser.keys) {
      for await (const _ of seller.node.services.dht.provide(key, { signal })) { /* drain the query */ }
    }
  }))
}

/** Options of {@link localBuyerConfig}. */
export interface LocalBuyerConfigInit {
  chain: Pick<LocalChain, 'rpcUrl' | 'chainId' | 'contract'>
  dataDir: string
  bootstrap: string[]
  /** Most the buyer signs for, in wei. Default the config's. */
  spendCap?: bigint
  /** Deposit of a new channel, in wei. Default the config's. */
  deposit?: bigint
}

/** The configuration of a buyer of a local market: proxies on free loopback ports. */
export function localBuyerConfig (init: LocalBuyerConfigInit): Config {
  return resolveConfig([{
    dataDir: init.dataDir,
    bootstrap: init.bootstrap,
    mdns: false,
    chain: { rpcUrl: init.chain.rpcUrl, chainId: init.chain.chainId, contract: init.chain.contract },
    buyer: {
      socksListen: '127.0.0.1:0',
      httpListen: '127.0.0.1:0',
      ...(init.spendCap !== undefined ? { spendCap: init.spendCap.toString() } : {}),
      ...(init.deposit !== undefined ? { deposit: init.deposit.toString() } : {})
    }
  }])
}

/** Reads the key file at `path`, creating it (mode 0600) when there is none. */
export async function loadOrCreateKeys (path: string): Promise<NodeKeys> {
  try {
    await readFile(path)
  } catch (err: any) {
    if (err?.code === 'ENOENT') return await createKeyFile(path)
    throw err
  }
  return await readKeyFile(path)
}

/** Tops `to` up to at least `amount` wei from the chain's account 0; resolves once mined. */
export async function fundFromDevAccount (chain: Pick<LocalChain, 'rpcUrl' | 'chain' | 'accounts'>, to: Address, amount: bigint): Promise<void> {
  const transport = http(chain.rpcUrl)
  const client = createPublicClient({ chain: chain.chain, transport, pollingInterval: LOCAL_POLLING_MS })
  const balance = await client.getBalance({ address: to })
  if (balance >= amount) return
  const wallet = createWalletClient({ account: privateKeyToAccount(chain.accounts[0]), chain: chain.chain, transport })
  const hash = await wallet.sendTransaction({ to, value: amount - balance })
  await client.waitForTransactionReceipt({ hash, pollingInterval: LOCAL_POLLING_MS })
}

/** Raised when a devnet RPC endpoint has no channel contract where the devnet deploys it. */
export class DevContractNotFoundError extends SparebandError {
  constructor (rpcUrl: string, contract: Address) {
    super('ERR_DEV_CONTRACT', `no SpareChannels contract at ${contract} on ${rpcUrl}; is it a devnet started by \`spareband devnet\` or \`spareband start --dev\`? Otherwise pass --contract`)
  }
}

/**
 * The channel contract of a devnet started by spareband: the first contract
 * dev account 0 deployed. Checks that code is there.
 */
export async function devnetContract (rpcUrl: string, deployer: Address): Promise<Address> {
  const client = createPublicClient({ transport: http(rpcUrl, { retryCount: 0 }) })
  const contract = getContractAddress({ from: deployer, nonce: 0n })
  const code = await client.getCode({ address: contract })
  if (code === undefined || code === '0x') throw new DevContractNotFoundError(rpcUrl, contract)
  return contract
}

/** An HTTP server on loopback serving one payload at `/data`. */
export interface FileServer {
  host: string
  port: number
  /** Requests received so far. */
  requests: number
  close: () => Promise<void>
}

/** Serves `payload` at `GET /data` on `host`, honouring `Range: bytes=a-` and `bytes=a-b`. */
export async function fileServer (host: string, payload: Buffer): Promise<FileServer> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    result.requests++
    if (req.url !== '/data') {
      res.writeHead(404).end()
      return
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    if (range === null) {
      res.writeHead(200, { 'content-length': payload.length, 'content-type': 'application/octet-stream' })
      res.end(payload)
      return
    }
    const start = Number(range[1])
    const end = range[2] === '' ? payload.length - 1 : Math.min(Number(range[2]), payload.length - 1)
    if (start > end) {
      res.writeHead(416, { 'content-range': `bytes */${payload.length}` }).end()
      return
    }
    res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${payload.length}` })
    res.end(payload.subarray(start, end + 1))
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => { resolve() })
  })
  const result: FileServer = {
    host,
    port: (server.address() as AddressInfo).port,
    requests: 0,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
  return result
}
