/**
 * A local development chain: starts anvil (the binary of the `@foundry-rs/anvil-<platform>-<arch>` package, a dev dependency) on
 * 127.0.0.1 and a free port, waits until its RPC answers, and deploys `SpareChannels` with
 * anvil's well-known dev account 0. Used by tests, benchmarks and `npm start`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import type { Logger } from 'pino'
import { createPublicClient, createWalletClient, defineChain, http, toHex, type Address, type Chain, type Hex } from 'viem'
import { mnemonicToAccount, privateKeyToAccount } from 'viem/accounts'
import { SparebandError } from '../../protocol/errors.ts'
import { spareChannelsAbi, spareChannelsBytecode } from '../../protocol/contract/artifact.ts'

/** The mnemonic anvil derives its dev accounts from (public knowledge: never hold real funds with it). */
export const DEV_MNEMONIC = 'test test test test test test test test test test test junk'

/** Raised when the devnet cannot be started or the contract cannot be deployed on it. */
export class DevnetError extends SparebandError {
  constructor (code: 'ERR_DEVNET_START' | 'ERR_DEVNET_DEPLOY', message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

/** Options of {@link startDevnet}. */
export interface DevnetOptions {
  /** Chain id of the devnet; default 31337 (anvil's). */
  chainId?: number
  /** Number of funded dev accounts; default 10. */
  accounts?: number
  /** Seconds between `requestClose` and `withdraw` of the deployed contract; default one day. */
  challengePeriod?: bigint
  /** Block gas limit; default anvil's (30,000,000). */
  blockGasLimit?: bigint
  /** Upper bound on start-up plus deployment; default 20 s. */
  timeoutMs?: number
  /** Receives anvil's output at `debug` level; without it the output is discarded. */
  logger?: Logger
}

/** A running devnet with the channel contract deployed. */
export interface Devnet {
  /** HTTP JSON-RPC endpoint on loopback. */
  rpcUrl: string
  chainId: number
  /** viem chain definition pointing at {@link Devnet.rpcUrl}. */
  chain: Chain
  /** Address of the deployed `SpareChannels`. */
  contract: Address
  /** Private keys of the funded dev accounts; index 0 deployed the contract. */
  accounts: readonly Hex[]
  /** Kills anvil and resolves once it has exited. Safe to call twice. */
  stop: () => Promise<void>
}

const DEFAULT_CHAIN_ID = 31337
const DEFAULT_ACCOUNTS = 10
const DEFAULT_CHALLENGE_PERIOD = 86_400n
const DEFAULT_TIMEOUT_MS = 20_000
const STOP_GRACE_MS = 5_000
const RPC_POLL_MS = 50

/** Path of the anvil binary shipped by the platform package of `@foundry-rs/anvil`. */
export function anvilBinaryPath (): string {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch
  const pkg = `@foundry-rs/anvil-${process.platform}-${arch}`
  const binary = process.platform === 'win32' ? 'anvil.exe' : 'anvil'
  const require = createRequire(import.meta.url)
  let path: string
  try {
    path = require.resolve(`${pkg}/bin/${binary}`)
  } catch (err) {
    throw new DevnetError('ERR_DEVNET_START', `anvil is not installed for ${process.platform}/${process.arch} (${pkg}); install it with \`npm install --no-save ${pkg}\` (the project pins the linux-x64 build), or point the daemon at another chain with --config`, { cause: err })
  }
  if (!existsSync(path)) throw new DevnetError('ERR_DEVNET_START', `anvil binary missing at ${path}; reinstall @foundry-rs/anvil`)
  return path
}

/** Starts anvil, deploys `SpareChannels` and returns the running devnet. */
export async function startDevnet (options: DevnetOptions = {}): Promise<Devnet> {
  const chainId = options.chainId ?? DEFAULT_CHAIN_ID
  const accountCount = options.accounts ?? DEFAULT_ACCOUNTS
  const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
  const args = [
    '--host', '127.0.0.1',
    '--port', '0',
    '--chain-id', String(chainId),
    '--accounts', String(accountCount),
    '--mnemonic', DEV_MNEMONIC
  ]
  if (options.blockGasLimit !== undefined) args.push('--gas-limit', options.blockGasLimit.toString())

  const child = spawn(anvilBinaryPath(), args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const stop = stopper(child)
  try {
    const rpcUrl = await waitForListening(child, deadline, options.logger)
    const chain = defineChain({
      id: chainId,
      name: 'spareband devnet',
      nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
      rpcUrls: { default: { http: [rpcUrl] } }
    })
    await waitForRpc(rpcUrl, chain, deadline)
    const accounts = Array.from({ length: accountCount }, (_, i) =>
      toHex(mnemonicToAccount(DEV_MNEMONIC, { addressIndex: i }).getHdKey().privateKey as Uint8Array))
    const contract = await deploy(rpcUrl, chain, accounts[0], options.challengePeriod ?? DEFAULT_CHALLENGE_PERIOD, deadline)
    return { rpcUrl, chainId, chain, contract, accounts, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/** Resolves with the RPC URL once anvil prints `Listening on host:port`. */
function waitForListening (child: ChildProcess, deadline: number, logger?: Logger): Promise<string> {
  return new Promise((resolve, reject) => {
    const stderrTail: string[] = []
    let settled = false
    const finish = (err: Error | undefined, url?: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err !== undefined) reject(err)
      else resolve(url as string)
    }
    const timer = setTimeout(() => {
      finish(new DevnetError('ERR_DEVNET_START', `anvil did not start listening within the time limit; last output: ${stderrTail.join(' | ') || 'none'}`))
    }, Math.max(0, deadline - Date.now()))
    // Keep draining both pipes for the life of the process so anvil never blocks on a full pipe.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logger?.debug({ component: 'anvil' }, line)
      const match = /Listening on (\S+):(\d+)/.exec(line)
      if (match !== null) finish(undefined, `http://${match[1]}:${match[2]}`)
    })
    createInterface({ input: child.stderr! }).on('line', (line) => {
      logger?.debug({ component: 'anvil', stream: 'stderr' }, line)
      stderrTail.push(line)
      if (stderrTail.length > 5) stderrTail.shift()
    })
    child.once('error', (err) => finish(new DevnetError('ERR_DEVNET_START', `cannot run anvil: ${err.message}`, { cause: err })))
    child.once('exit', (code, signal) => {
      finish(new DevnetError('ERR_DEVNET_START', `anvil exited during start-up (${signal ?? `code ${code}`}); last output: ${stderrTail.join(' | ') || 'none'}`))
    })
  })
}

async function waitForRpc (rpcUrl: string, chain: Chain, deadline: number): Promise<void> {
  const client = createPublicClient({ chain, transport: http(rpcUrl, { retryCount: 0 }) })
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      const id = await client.getChainId()
      if (id !== chain.id) throw new DevnetError('ERR_DEVNET_START', `anvil reports chain id ${id}, expected ${chain.id}`)
      return
    } catch (err) {
      if (err instanceof DevnetError) throw err
      lastError = err
    }
    await new Promise((resolve) => setTimeout(resolve, RPC_POLL_MS))
  }
  throw new DevnetError('ERR_DEVNET_START', `anvil RPC at ${rpcUrl} did not answer within the time limit`, { cause: lastError })
}

async function deploy (rpcUrl: string, chain: Chain, deployerKey: Hex, challengePeriod: bigint, deadline: number): Promise<Address> {
  const account = privateKeyToAccount(deployerKey)
  const transport = http(rpcUrl, { retryCount: 0 })
  const wallet = createWalletClient({ account, chain, transport })
  const client = createPublicClient({ chain, transport })
  try {
    const hash = await wallet.deployContract({ abi: spareChannelsAbi, bytecode: spareChannelsBytecode, args: [challengePeriod] })
    const receipt = await client.waitForTransactionReceipt({ hash, pollingInterval: RPC_POLL_MS, timeout: Math.max(1, deadline - Date.now()) })
    if (receipt.status !== 'success' || receipt.contractAddress == null) {
      throw new DevnetError('ERR_DEVNET_DEPLOY', `SpareChannels deployment reverted (tx ${hash}); check the constructor arguments`)
    }
    return receipt.contractAddress
  } catch (err) {
    if (err instanceof DevnetError) throw err
    throw new DevnetError('ERR_DEVNET_DEPLOY', `cannot deploy SpareChannels on the devnet: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * Returns an idempotent stop(): SIGTERM, then SIGKILL after a grace period; resolves on exit.
 * Until then, anvil is also killed if this process exits without calling stop().
 */
function stopper (child: ChildProcess): () => Promise<void> {
  const killOnExit = (): void => { child.kill('SIGKILL') }
  process.once('exit', killOnExit)
  const exited = new Promise<void>((resolve) => {
    const done = (): void => {
      process.off('exit', killOnExit)
      resolve()
    }
    if (child.exitCode !== null || child.signalCode !== null) done()
    child.once('exit', done)
    // A process that failed to spawn may never emit 'exit'.
    child.once('error', done)
  })
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const force = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
      await exited
      clearTimeout(force)
    }
    await exited
  }
}
