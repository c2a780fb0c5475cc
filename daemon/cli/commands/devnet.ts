import type { Command } from 'commander'
import { startDevnet } from '../../chain/devnet.ts'
import { createLogger } from '../../log.ts'
import { printJson, printLines } from '../output.ts'
import { untilSignal } from '../signals.ts'

/** `spareband devnet`: a local anvil chain with the channel contract deployed, until Ctrl-C. */
export function devnetCommand (program: Command): void {
  program.command('devnet')
    .description('run a local anvil devnet with the SpareChannels contract deployed, until Ctrl-C')
    .option('--chain-id <id>', 'chain id', (v) => Number.parseInt(v, 10), 31337)
    .option('--json', 'print the devnet as JSON')
    .action(async (opts: { chainId: number, json?: boolean }) => {
      const logger = createLogger()
      const devnet = await startDevnet({ chainId: opts.chainId, logger: logger.child({ component: 'devnet' }) })
      const info = { rpcUrl: devnet.rpcUrl, chainId: devnet.chainId, contract: devnet.contract, devAccountKeys: devnet.accounts.slice(0, 3) }
      if (opts.json === true) printJson(info)
      else {
        printLines(
          'spareband devnet is running (anvil on loopback, dev accounts funded with 10000 ETH each)',
          `  RPC        ${info.rpcUrl}`,
          `  chain id   ${info.chainId}`,
          `  contract   SpareChannels at ${info.contract}`,
          `  dev key 0  ${info.devAccountKeys[0]}  (public test key: never hold real funds)`,
          'Press Ctrl-C to stop.'
        )
      }
      await untilSignal()
      await devnet.stop()
    })
}
