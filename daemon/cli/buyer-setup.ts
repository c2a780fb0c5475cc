/**
 * Configuration and keys of the buyer commands (`connect`, `offers`): from a
 * configuration file, or with `--dev-rpc` from a spareband devnet (chain id
 * read from the RPC, the contract dev account 0 deployed, keys in
 * `./.spareband-buyer`, the hot key funded from dev account 0); then the
 * `SPAREBAND_*` variables and the flags.
 */
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { createPublicClient, defineChain, http, parseEther, toHex, type Address, type Hex } from 'viem'
import { mnemonicToAccount } from 'viem/accounts'
import { DEV_MNEMONIC } from '../chain/devnet.ts'
import { readKeyFile, type NodeKeys } from '../config/keys.ts'
import { ConfigError, envLayers, readConfigFile, resolveConfig, type ConfigLayer } from '../config/load.ts'
import type { Config } from '../config/schema.ts'
import { devnetContract, fundFromDevAccount, loadOrCreateKeys } from '../local-market.ts'
import { DEFAULT_CONFIG_PATH } from './api-target.ts'

/** Where `--dev-rpc` keeps the buyer's keys and state unless `--data-dir` says otherwise. */
export const DEV_BUYER_DATA_DIR = '.spareband-buyer'

/** Flags shared by the buyer commands. */
export interface BuyerCliOptions {
  config?: string
  devRpc?: string
  contract?: string
  dataDir?: string
  bootstrap?: string[]
  region?: string
}

/** Adds the flags of {@link BuyerCliOptions} to a command. */
export function withBuyerOptions (command: Command): Command {
  return command
    .option('-c, --config <path>', `configuration file (default $SPAREBAND_CONFIG, else ${DEFAULT_CONFIG_PATH}; not needed with --dev-rpc)`)
    .option('--dev-rpc <url>', 'use a spareband devnet (`spareband devnet`, `spareband start --dev`) at this RPC URL instead of a configuration file')
    .option('--contract <address>', 'channel contract (with --dev-rpc: default the one the devnet deployed)')
    .option('--data-dir <dir>', `data directory (keys and the buyer's state; with --dev-rpc default ./${DEV_BUYER_DATA_DIR})`)
    .option('--bootstrap <multiaddr...>', 'DHT peers to join through (a seller prints its address when it starts)')
    .option('--region <name>', 'look up sellers of this region only')
}

/** The buyer's validated configuration, and whether it runs against a devnet. */
export interface BuyerSetup {
  config: Config
  /** Set with `--dev-rpc`: the devnet's dev account keys (account 0 funds the buyer). */
  devAccounts?: readonly Hex[]
}

/** Resolves the configuration from the file or the devnet, the environment and `flags`. */
export async function buyerConfig (opts: BuyerCliOptions, flags: ConfigLayer = {}): Promise<BuyerSetup> {
  const layers: ConfigLayer[] = []
  let devAccounts: Hex[] | undefined
  if (opts.devRpc !== undefined) {
    devAccounts = [0, 1].map((i) => toHex(mnemonicToAccount(DEV_MNEMONIC, { addressIndex: i }).getHdKey().privateKey as Uint8Array))
    let chainId: number
    try {
      chainId = await createPublicClient({ transport: http(opts.devRpc, { retryCount: 0 }) }).getChainId()
    } catch (err: any) {
      throw new ConfigError(`cannot reach the devnet at ${opts.devRpc} (${err?.shortMessage ?? err?.message ?? err}); start one with \`spareband devnet\` and pass the RPC URL it prints`, { cause: err })
    }
    const contract = (opts.contract as Address | undefined) ?? await devnetContract(opts.devRpc, mnemonicToAccount(DEV_MNEMONIC, { addressIndex: 0 }).address)
    layers.push({ dataDir: resolve(DEV_BUYER_DATA_DIR), mdns: false, chain: { rpcUrl: opts.devRpc, chainId, contract } })
  } else {
    const path = opts.config ?? (process.env.SPAREBAND_CONFIG !== undefined && process.env.SPAREBAND_CONFIG !== '' ? process.env.SPAREBAND_CONFIG : DEFAULT_CONFIG_PATH)
    layers.push(await readConfigFile(path))
  }
  const config = resolveConfig([
    ...layers,
    ...envLayers(process.env),
    {
      ...(opts.dataDir !== undefined ? { dataDir: resolve(opts.dataDir) } : {}),
      ...(opts.bootstrap !== undefined ? { bootstrap: opts.bootstrap } : {}),
      ...(opts.contract !== undefined && opts.devRpc === undefined ? { chain: { contract: opts.contract as Address } } : {})
    },
    flags,
    ...(opts.region !== undefined ? [{ buyer: { region: opts.region } }] : [])
  ])
  return devAccounts === undefined ? { config } : { config, devAccounts }
}

/**
 * The buyer's keys from `<dataDir>/keys.json`. Against a devnet they are
 * created when missing and the hot key is funded for a few deposits.
 */
export async function buyerKeys (setup: BuyerSetup): Promise<NodeKeys> {
  const path = join(setup.config.dataDir, 'keys.json')
  if (setup.devAccounts === undefined) return await readKeyFile(path)
  const keys = await loadOrCreateKeys(path)
  const { chainId, rpcUrl } = setup.config.chain
  const chain = defineChain({ id: chainId, name: 'spareband devnet', nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 }, rpcUrls: { default: { http: [rpcUrl] } } })
  const deposit = BigInt(setup.config.buyer.deposit)
  const wanted = 4n * deposit > parseEther('1') ? 4n * deposit : parseEther('1')
  await fundFromDevAccount({ rpcUrl, chain, accounts: setup.devAccounts }, keys.hot.address, wanted)
  return keys
}
