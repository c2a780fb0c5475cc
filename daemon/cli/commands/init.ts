import { access, chmod, mkdir, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import type { Command } from 'commander'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { getAddress, isAddress } from 'viem'
import { createKeyFile } from '../../config/keys.ts'
import { ConfigError, resolveConfig, type ConfigLayer } from '../../config/load.ts'
import { DEFAULT_CONFIG_PATH, pathExists } from '../api-target.ts'
import { printJson, printLines } from '../output.ts'

/** Where `init` puts the data directory unless told otherwise. */
export const DEFAULT_DATA_DIR = '/var/lib/spareband'

interface InitOptions {
  config?: string
  dataDir?: string
  payout?: string
  rpcUrl?: string
  chainId?: string
  contract?: string
  json?: boolean
}

/** `spareband init`: writes a configuration file and a fresh key file, refusing to overwrite either. */
export function initCommand (program: Command): void {
  program.command('init')
    .description('write a configuration file and fresh keys for a seller (never overwrites)')
    .option('-c, --config <path>', `configuration file to write (default $SPAREBAND_CONFIG, else ${DEFAULT_CONFIG_PATH})`)
    .option('--data-dir <dir>', `data directory for state and keys (default ${DEFAULT_DATA_DIR})`)
    .option('--payout <address>', 'cold address that receives the earnings (default: the hot key; a separate cold address is safer)')
    .option('--rpc-url <url>', 'JSON-RPC endpoint of the chain')
    .option('--chain-id <id>', 'chain id')
    .option('--contract <address>', 'address of the SpareChannels contract')
    .option('--json', 'print the result as JSON')
    .action(async (opts: InitOptions) => {
      const missing = [['--rpc-url', opts.rpcUrl], ['--chain-id', opts.chainId], ['--contract', opts.contract]].filter(([, v]) => v === undefined).map(([flag]) => flag)
      if (missing.length > 0) throw new ConfigError(`init needs the chain: pass ${missing.join(', ')} (for a local test chain run \`spareband devnet\` and use what it prints)`)
      if (opts.payout !== undefined && !isAddress(opts.payout, { strict: false })) throw new ConfigError(`--payout ${opts.payout} is not an EVM address (0x + 40 hex digits)`)
      const configPath = resolve(opts.config ?? (process.env.SPAREBAND_CONFIG !== undefined && process.env.SPAREBAND_CONFIG !== '' ? process.env.SPAREBAND_CONFIG : DEFAULT_CONFIG_PATH))
      const dataDir = resolve(opts.dataDir ?? DEFAULT_DATA_DIR)
      const keyPath = join(dataDir, 'keys.json')
      const layer: ConfigLayer = {
        dataDir,
        chain: { rpcUrl: opts.rpcUrl as string, chainId: Number(opts.chainId), contract: opts.contract as `0x${string}` },
        ...(opts.payout !== undefined ? { seller: { payoutAddress: getAddress(opts.payout) } } : {})
      }
      const config = resolveConfig([layer])
      for (const [path, what] of [[configPath, 'configuration'], [keyPath, 'key file']]) {
        if (await pathExists(path)) throw new ConfigError(`${path} exists already; init never overwrites a ${what} — move it away first, or pass --config/--data-dir to write elsewhere`)
      }
      const keys = await createKeyFile(keyPath)
      await mkdir(dirname(configPath), { recursive: true })
      try {
        await writeFile(configPath, JSON.stringify(config, null, 2) + '\n', { mode: 0o600, flag: 'wx' })
      } catch (err: any) {
        throw new ConfigError(`cannot write ${configPath}: ${err?.message ?? err}; the keys are in ${keyPath} — write the configuration by hand or fix the path and move the keys away to retry`, { cause: err })
      }
      await chmod(configPath, 0o600)
      const result = {
        config: configPath,
        dataDir,
        keyFile: keyPath,
        peerId: peerIdFromPrivateKey(keys.peerKey).toString(),
        hotAddress: keys.hot.address,
        payout: config.seller.payoutAddress ?? keys.hot.address
      }
      if (opts.json === true) {
        printJson(result)
        return
      }
      printLines(
        `Wrote ${configPath} and ${keyPath} (mode 0600).`,
        `  peer id   ${result.peerId}`,
        `  hot key   ${result.hotAddress}  <- send a little native coin here: it pays the settlement gas`,
        `  payout    ${result.payout}${opts.payout === undefined ? '  (the hot key; pass --payout to be paid to a cold address instead)' : ''}`,
        `Review prices, caps and the sharing schedule in ${configPath}, then run: spareband start --config ${configPath}`
      )
    })
}
