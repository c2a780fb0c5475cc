import { rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import type { Devnet } from '../../chain/devnet.ts'
import type { NodeKeys } from '../../config/keys.ts'
import type { ConfigLayer } from '../../config/load.ts'
import { printJson, printLines } from '../output.ts'
import { untilSignal } from '../signals.ts'

/** Flags of `spareband start`. */
interface StartOptions {
  config?: string
  dev?: boolean
  dataDir?: string
  listen?: string[]
  bootstrap?: string[]
  apiListen?: string
  json?: boolean
}

/** `spareband start`: runs the seller daemon until SIGINT/SIGTERM. */
export function startCommand (program: Command): void {
  program.command('start')
    .description('run the seller daemon (with --dev: on a local anvil devnet with the contract deployed)')
    .option('-c, --config <path>', 'configuration file (default $SPAREBAND_CONFIG; not needed with --dev)')
    .option('--dev', 'embedded defaults: data in ./.spareband, a local anvil devnet, loopback only')
    .option('--data-dir <dir>', 'data directory (LevelDB state and keys)')
    .option('--listen <multiaddr...>', 'listen addresses')
    .option('--bootstrap <multiaddr...>', 'DHT peers to join through')
    .option('--api-listen <host:port>', 'control API and dashboard address (default 127.0.0.1:8742; port 0 picks a free one)')
    .option('--json', 'print the started seller as JSON')
    .action(async (opts: StartOptions) => {
      // the daemon's modules load only when it starts, so other commands start fast
      const [{ privateKeyToAccount }, { createHardwareAdapter }, { startDevnet }, { readKeyFile }, { envLayers, readConfigFile, resolveConfig }, { createLogger }, { startSeller }, { compactHeap }] = await Promise.all([
        import('viem/accounts'), import('../../../hardware/index.ts'), import('../../chain/devnet.ts'), import('../../config/keys.ts'),
        import('../../config/load.ts'), import('../../log.ts'), import('../../seller.ts'), import('../../memory.ts')
      ])
      let devnet: Devnet | undefined
      const logger = createLogger()
      try {
        const layers: ConfigLayer[] = []
        let keys: NodeKeys
        if (opts.dev === true) {
          const dataDir = resolve(opts.dataDir ?? process.env.SPAREBAND_DATA_DIR ?? '.spareband')
          const { fundFromDevAccount, loadOrCreateKeys } = await import('../../local-market.ts')
          devnet = await startDevnet({ logger: logger.child({ component: 'devnet' }) })
          keys = await loadOrCreateKeys(join(dataDir, 'keys.json'))
          // a new devnet has none of the old channels: start the dev seller's state afresh
          await rm(join(dataDir, 'seller'), { recursive: true, force: true })
          // gas money for the dev hot key, from the devnet's first account
          await fundFromDevAccount(devnet, keys.hot.address, 10n ** 19n)
          layers.push({
            dataDir,
            listen: ['/ip4/127.0.0.1/tcp/0'],
            mdns: false,
            hardware: 'simulated',
            uplink: { interface: 'lo', capacityMbps: 100 },
            chain: { rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract },
            seller: { payoutAddress: privateKeyToAccount(devnet.accounts[1]).address, settleIntervalSec: 60 }
          })
        } else {
          const path = opts.config ?? process.env.SPAREBAND_CONFIG ?? '/etc/spareband/config.json'
          layers.push(await readConfigFile(path))
          keys = await readKeyFile(join(resolveConfig([...layers, ...envLayers(process.env), flagLayer(opts)]).dataDir, 'keys.json'))
        }
        const config = resolveConfig([...layers, ...envLayers(process.env), flagLayer(opts)])
        const log = logger.child({ component: 'seller' })
        log.level = config.logLevel
        // a relay-only seller meters in userspace: without a gateway, `auto` needs no kernel adapter
        const relayOnly = config.gateway === undefined && config.hardware === 'auto'
        if (relayOnly) log.info('no gateway configured (gateway.lanInterface): relay-only seller, no kernel adapter needed')
        const { adapter } = createHardwareAdapter({
          adapter: relayOnly ? 'simulated' : config.hardware,
          lanInterface: config.gateway?.lanInterface,
          wanInterface: config.uplink.interface,
          masquerade: config.gateway?.masquerade,
          uplinkCapacityBytesPerSec: config.uplink.capacityMbps === undefined ? undefined : config.uplink.capacityMbps * 125_000
        }, { logger })
        const seller = await startSeller({ config, keys, adapter, logger: log })
        const status = await seller.status()
        if (opts.json === true) printJson({ ...status, api: seller.apiUrl, metrics: seller.metricsUrl, devnet: devnet === undefined ? undefined : { rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract } })
        else {
          printLines(
            `spareband seller ${status.peerId}`,
            ...status.addresses.map((a) => `  listening  ${a}`),
            `  chain      ${status.chainId}, contract ${status.contract}${devnet !== undefined ? ` (devnet ${devnet.rpcUrl})` : ''}`,
            `  payout     ${status.payout} (hot key ${status.hotAddress} pays the gas)`,
            `  prices     ${config.seller.prices.map((p) => `${p.pricePerGiB} per GiB of ${p.token}`).join(', ')}`,
            `  capacity   ${(status.spareUplinkBps / 1e6).toFixed(1)} Mbit/s spare (${status.sharing}), hardware adapter ${adapter.kind}`,
            `  data       ${config.dataDir}`,
            `  dashboard  ${seller.apiUrl}`,
            ...(seller.metricsUrl !== undefined ? [`  metrics    ${seller.metricsUrl}metrics`] : []),
            'Press Ctrl-C to stop.'
          )
        }
        // start-up garbage would otherwise stay resident until V8's memory reducer happens to run
        const { rssBefore, rssAfter } = compactHeap()
        log.info({ rssMB: Math.round(rssAfter / 2 ** 20), releasedMB: Math.round((rssBefore - rssAfter) / 2 ** 20) }, 'released start-up memory')
        await untilSignal()
        log.info('stopping')
        await seller.stop()
      } finally {
        await devnet?.stop()
      }
    })
}

function flagLayer (opts: StartOptions): ConfigLayer {
  return {
    ...(opts.dataDir !== undefined ? { dataDir: resolve(opts.dataDir) } : {}),
    ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
    ...(opts.bootstrap !== undefined ? { bootstrap: opts.bootstrap } : {}),
    ...(opts.apiListen !== undefined ? { apiListen: opts.apiListen } : {})
  }
}
